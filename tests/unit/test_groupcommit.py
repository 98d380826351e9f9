"""GroupCommitter: batching, ordering, durability-before-ack, fatal errors, failed appends (a full
disk), counters."""

import asyncio
import errno
import logging
import os
import threading
import time

import pytest

from zkpy.errors import LogAppendError
from zkpy.storage.groupcommit import GroupCommitter
from zkpy.storage.txnlog import TxnLog


class FakeLog:
    """append_batch sleeps a little (like an fsync) and records what it saw."""

    def __init__(self, delay=0.005, fail_on_call=None, full_on_calls=()):
        self.delay = delay
        self.fail_on_call = fail_on_call
        self.full_on_calls = set(full_on_calls)   # calls (0-based) that fail: disk full
        self.calls = 0
        self.batches = []
        self.done = set()  # zxids whose append_batch has returned
        self.in_flight = 0
        self.max_in_flight = 0
        self.threads = set()
        self.thread_of = []  # the thread of each append_batch call, in order
        self.started = []  # zxids of each append_batch, as it starts
        self.lock = threading.Lock()
        self.last_fsync_ms = None

    def append_batch(self, records):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.threads.add(threading.get_ident())
        self.thread_of.append(threading.get_ident())
        self.started.append([z for z, _ in records])
        call = self.calls
        self.calls += 1
        try:
            if self.fail_on_call is not None and len(self.batches) == self.fail_on_call:
                raise OSError(5, "Input/output error")
            time.sleep(self.delay)
            if call in self.full_on_calls:
                raise LogAppendError("/logdir", OSError(errno.ENOSPC, "No space left on device"))
            self.batches.append(list(records))
            self.last_fsync_ms = self.delay * 1000.0
            self.done.update(z for z, _ in records)
        finally:
            with self.lock:
                self.in_flight -= 1


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_batches_and_order():
    log = FakeLog()
    acked = []

    def on_durable(tokens):
        # Never before the append_batch covering these records returned; an append in flight
        # meanwhile is of later records only.
        assert all(t in log.done for t in tokens)
        assert log.in_flight <= 1
        assert all(z > tokens[-1] for z in log.started[-1]) or log.started[-1][-1] == tokens[-1]
        acked.extend(tokens)

    async def main():
        gc = GroupCommitter(log, on_durable)
        for z in range(1, 501):
            gc.submit(z, b"x" * 10, z)
            if z % 50 == 0:
                await asyncio.sleep(0)  # let the flusher start a batch while we keep submitting
        await gc.flush()
        assert gc.pending == 0
        await gc.close()
        return gc

    gc = run(main())
    assert acked == list(range(1, 501))
    assert [z for b in log.batches for z, _ in b] == list(range(1, 501))
    assert len(log.batches) < 50  # many submits share an append_batch
    assert log.max_in_flight == 1
    assert threading.get_ident() not in log.threads  # the write ran off the loop thread
    st = gc.stats()
    assert st["batches"] == len(log.batches) == gc.batches
    assert st["records"] == 500
    assert st["last_batch_size"] == len(log.batches[-1])
    assert st["cnt_fsynctime"] == len(log.batches)
    assert st["min_fsynctime"] <= st["avg_fsynctime"] <= st["max_fsynctime"]


def test_loop_not_blocked_during_append():
    log = FakeLog(delay=0.2)
    acked = []

    async def main():
        gc = GroupCommitter(log, acked.extend)
        gc.submit(1, b"a", 1)
        await asyncio.sleep(0.02)  # the first append_batch is now sleeping in its thread
        t0 = time.monotonic()
        for z in range(2, 12):
            gc.submit(z, b"a", z)  # accepted immediately while the fsync runs
            await asyncio.sleep(0)
        assert time.monotonic() - t0 < 0.1
        assert acked == []  # nothing is durable yet
        await gc.close()

    run(main())
    assert [len(b) for b in log.batches] == [1, 10]
    assert acked == list(range(1, 12))


def test_next_append_overlaps_on_durable():
    """The fsync of the next batch runs while on_durable handles the previous one (the core
    applies a batch meanwhile); acks stay in order and after their own append."""
    log = FakeLog(delay=0.05)
    seen = []   # (tokens, appends started when on_durable began, in flight then)

    def on_durable(tokens):
        assert all(t in log.done for t in tokens)
        time.sleep(0.03)   # the apply: holds the loop thread (the append's thread runs on)
        seen.append((list(tokens), len(log.started), log.in_flight))

    async def main():
        gc = GroupCommitter(log, on_durable)
        gc.submit(1, b"a", 1)
        await asyncio.sleep(0.01)        # append [1] is in its fsync
        for z in (2, 3):
            gc.submit(z, b"a", z)        # queued behind it
        await gc.flush()
        await gc.close()

    run(main())
    assert [b for b, _, _ in seen] == [[1], [2, 3]]
    # While on_durable([1]) ran, append [2, 3] started and was still in flight at its end.
    assert seen[0][1:] == (2, 1)
    assert log.started == [[1], [2, 3]]
    assert log.max_in_flight == 1


def test_max_count_and_max_bytes():
    log = FakeLog(delay=0.001)

    async def main():
        gc = GroupCommitter(log, lambda t: None, max_count=7, max_bytes=100)
        for z in range(1, 31):
            gc.submit(z, b"y" * 10, z)
        gc.submit(31, b"z" * 500, 31)  # larger than max_bytes: goes out alone
        gc.submit(32, b"z", 32)
        await gc.close()

    run(main())
    sizes = [len(b) for b in log.batches]
    assert all(s <= 7 for s in sizes)
    assert all(sum(len(p) for _, p in b) <= 100 or len(b) == 1 for b in log.batches)
    assert [z for b in log.batches for z, _ in b] == list(range(1, 33))
    assert [(31, b"z" * 500)] in log.batches


def test_max_delay_collects_more():
    log = FakeLog(delay=0.0)

    async def main():
        gc = GroupCommitter(log, lambda t: None, max_delay_ms=100)
        gc.submit(1, b"a", 1)
        await asyncio.sleep(0.01)
        gc.submit(2, b"a", 2)
        gc.submit(3, b"a", 3)
        await gc.flush()
        await gc.close()

    run(main())
    assert [len(b) for b in log.batches] == [3]


@pytest.mark.parametrize("delay, inline", [(0.001, False), (0.0, True)],
                         ids=["log-thread", "inline"])
def test_fatal_error_stops(caplog, delay, inline):
    """The second append fails: in the log thread (1 ms fsyncs), or in the loop thread (0 ms
    fsyncs: the small batch goes inline)."""
    log = FakeLog(delay=delay, fail_on_call=1)
    acked, fatal = [], []

    async def main():
        gc = GroupCommitter(log, acked.extend, on_fatal=fatal.append)
        gc.submit(1, b"a", 1)
        await gc.flush()
        gc.submit(2, b"a", 2)
        gc.submit(3, b"a", 3)
        with pytest.raises(OSError):
            await gc.flush()
        with pytest.raises(RuntimeError):
            gc.submit(4, b"a", 4)
        await gc.close()

    with caplog.at_level(logging.ERROR, logger="zkpy.storage.groupcommit"):
        run(main())
    assert acked == [1]  # records of the failed batch are never acknowledged
    assert len(fatal) == 1 and isinstance(fatal[0], OSError)
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert (log.thread_of[1] == threading.get_ident()) == inline


def test_with_real_txnlog(tmp_path):
    log = TxnLog(str(tmp_path), roll_bytes=2000)
    assert list(log.recover(0)) == []
    log.open_for_append()
    acked = []

    async def main():
        gc = GroupCommitter(log, acked.extend)
        for z in range(1, 201):
            gc.submit(z, b"p%d" % z, z)
            if z % 20 == 0:
                await asyncio.sleep(0)
        await gc.close()
        return gc

    gc = run(main())
    log.close()
    assert acked == list(range(1, 201))
    assert gc.stats()["cnt_fsynctime"] == gc.batches
    got = list(TxnLog(str(tmp_path)).recover(0))
    assert got == [(z, b"p%d" % z) for z in range(1, 201)]


def test_on_durable_error_is_fatal():
    log = FakeLog(delay=0.0)
    fatal = []

    def on_durable(tokens):
        raise KeyError("bug")

    async def main():
        gc = GroupCommitter(log, on_durable, on_fatal=fatal.append)
        gc.submit(1, b"a", 1)
        with pytest.raises(KeyError):
            await gc.flush()
        await gc.close()

    run(main())
    assert len(fatal) == 1


def test_close_idle():
    async def main():
        gc = GroupCommitter(FakeLog(), lambda t: None)
        await gc.flush()
        await gc.close()
        with pytest.raises(RuntimeError):
            gc.submit(1, b"a", 1)

    run(main())


def test_small_batches_go_inline_while_fsync_is_fast():
    """A small batch with no append in flight, after a fast fsync, is appended in the loop thread;
    still acknowledged only after its append returned, and in order."""
    log = FakeLog(delay=0.0)   # reports 0 ms fsyncs
    acked = []
    loop_thread = threading.get_ident()

    def on_durable(tokens):
        assert all(t in log.done for t in tokens)
        acked.extend(tokens)

    async def main():
        gc = GroupCommitter(log, on_durable)
        for z in range(1, 6):
            gc.submit(z, b"a", z)
            await gc.flush()
        await gc.close()
        return gc

    gc = run(main())
    assert acked == [1, 2, 3, 4, 5]
    # The first append knows nothing of the disk yet: the log thread; then inline.
    assert log.thread_of[0] != loop_thread
    assert log.thread_of[1:] == [loop_thread] * 4
    assert gc.inline_batches == 4 and gc.stats()["cnt_fsynctime"] == 5


def test_big_batches_and_slow_fsyncs_go_to_the_log_thread():
    log = FakeLog(delay=0.0)
    loop_thread = threading.get_ident()

    async def main():
        gc = GroupCommitter(log, lambda t: None, inline_max_records=8)
        gc.submit(1, b"a", 1)
        await gc.flush()                  # log thread (nothing known yet): 0 ms
        gc.submit(2, b"a", 2)
        await gc.flush()                  # inline
        for z in range(3, 13):
            gc.submit(z, b"a", z)         # 10 records > 8: the log thread
        await gc.flush()
        log.delay = 0.005                 # the disk slows down (5 ms fsyncs)
        gc.submit(13, b"a", 13)
        await gc.flush()                  # inline (the last fsync was fast), takes 5 ms
        gc.submit(14, b"a", 14)
        await gc.flush()                  # the log thread: the last fsync was slow
        log.delay = 0.0
        gc.submit(15, b"a", 15)
        await gc.flush()                  # the log thread, fast again
        gc.submit(16, b"a", 16)
        await gc.flush()                  # inline
        await gc.close()

    run(main())
    assert log.started == [[1], [2], list(range(3, 13)), [13], [14], [15], [16]]
    inline = [t == loop_thread for t in log.thread_of]
    assert inline == [False, True, False, True, False, False, True]


def test_never_inline_when_disabled():
    log = FakeLog(delay=0.0)
    loop_thread = threading.get_ident()

    async def main():
        gc = GroupCommitter(log, lambda t: None, inline_max_records=0)
        for z in range(1, 4):
            gc.submit(z, b"a", z)
            await gc.flush()
        await gc.close()

    run(main())
    assert loop_thread not in log.threads and len(log.batches) == 3



# --- a failed append the log cut back (LogAppendError) -------------------------------------------

@pytest.mark.parametrize("delay, inline", [(0.02, False), (0.0, True)],
                         ids=["log-thread", "inline"])
def test_failed_append_drops_batch_and_queue_then_goes_on(delay, inline):
    """The second append fails: its records and every record queued behind it go to on_failed
    (in order, after on_durable of the first batch); later submits are written and acked; a
    flush waiting meanwhile returns; nothing is fatal."""
    log = FakeLog(delay=delay, full_on_calls={1})
    events = []   # ("durable" | "failed", tokens)
    fatal = []

    def on_failed(tokens, exc):
        assert isinstance(exc, LogAppendError) and exc.error.errno == errno.ENOSPC
        events.append(("failed", list(tokens)))
        return True

    async def main():
        gc = GroupCommitter(log, lambda t: events.append(("durable", list(t))),
                            on_fatal=fatal.append, on_failed=on_failed)
        gc.submit(1, b"a", 1)
        await gc.flush()
        gc.submit(2, b"a", 2)
        gc.submit(3, b"a", 3)
        if not inline:
            await asyncio.sleep(0.005)   # 2 and 3 are in the append in flight (it will fail)...
            gc.submit(4, b"a", 4)        # ...and 4 waits behind it
            gc.submit(5, b"a", 5)
        await gc.flush()                 # returns: every record is durable or dropped
        assert gc.pending == 0
        gc.submit(6, b"a", 6)            # the next write tries the log again
        await gc.flush()
        await gc.close()
        return gc

    gc = run(main())
    failed = [2, 3, 4, 5] if not inline else [2, 3]
    assert events == [("durable", [1]), ("failed", failed), ("durable", [6])]
    assert fatal == []
    assert [z for b in log.batches for z, _ in b] == [1, 6]
    st = gc.stats()
    assert (st["failed_batches"], st["failed_records"]) == (1, len(failed))
    assert st["batches"] == 2 and st["records"] == 2
    assert (log.thread_of[1] == threading.get_ident()) == inline


def test_failed_append_without_on_failed_is_fatal():
    log = FakeLog(delay=0.0, full_on_calls={0})
    fatal = []

    async def main():
        gc = GroupCommitter(log, lambda t: None, on_fatal=fatal.append)
        gc.submit(1, b"a", 1)
        with pytest.raises(LogAppendError):
            await gc.flush()
        await gc.close()

    run(main())
    assert len(fatal) == 1


@pytest.mark.parametrize("answer", ["false", "raises"])
def test_on_failed_refusing_is_fatal(answer):
    """on_failed returns False (an ensemble member) or raises: fatal, as any log error was."""
    log = FakeLog(delay=0.0, full_on_calls={0})
    fatal = []

    def on_failed(tokens, exc):
        if answer == "raises":
            raise KeyError("bug")
        return False

    async def main():
        gc = GroupCommitter(log, lambda t: None, on_fatal=fatal.append, on_failed=on_failed)
        gc.submit(1, b"a", 1)
        with pytest.raises(Exception):
            await gc.flush()
        with pytest.raises(RuntimeError):
            gc.submit(2, b"a", 2)
        await gc.close()

    run(main())
    assert len(fatal) == 1


@pytest.mark.parametrize("delay, inline", [(0.02, False), (0.0, True)],
                         ids=["log-thread", "inline"])
def test_retry_mode_keeps_the_batch_and_retries_in_order(delay, inline):
    """retry_s (an ensemble member): a failed append drops nothing; on_stalled once per stall;
    the same records (and those submitted meanwhile, behind them) are appended again, in
    order, and acked only then."""
    log = FakeLog(delay=delay, full_on_calls={1, 2, 3})
    durable, stalls, failed = [], [], []

    async def main():
        gc = GroupCommitter(log, durable.extend, on_failed=lambda t, e: failed.append(t),
                            retry_s=0.01, on_stalled=stalls.append)
        gc.submit(1, b"a", 1)
        await gc.flush()
        gc.submit(2, b"a", 2)
        gc.submit(3, b"a", 3)
        while gc.stalled is None:        # the first try of [2, 3] fails: they wait...
            await asyncio.sleep(0.001)
        assert durable == [1]
        gc.submit(4, b"a", 4)            # ...and 4 queues behind them
        await gc.flush()                 # the fourth try succeeds
        assert gc.stalled is None and gc.pending == 0
        gc.submit(5, b"a", 5)
        await gc.flush()
        await gc.close()
        return gc

    gc = run(main())
    assert durable == [1, 2, 3, 4, 5]
    assert failed == [] and len(stalls) == 1
    assert isinstance(stalls[0], LogAppendError)
    assert [z for b in log.batches for z, _ in b] == [1, 2, 3, 4, 5]
    assert log.started[1][:2] == [2, 3] and log.started[2][:2] == [2, 3]
    assert gc.stats()["failed_batches"] == 3


def test_retry_mode_give_up_ends_a_stall_for_a_stop():
    """A stop while the log is being retried (the disk stays full): give_up() ends the wait,
    flush() raises the error, nothing is acked, close() returns."""
    log = FakeLog(delay=0.0, full_on_calls=set(range(1, 1000)))
    durable = []

    async def main():
        gc = GroupCommitter(log, durable.extend, retry_s=0.05)
        gc.submit(1, b"a", 1)
        await gc.flush()
        gc.submit(2, b"a", 2)
        waiter = asyncio.ensure_future(gc.flush())
        await asyncio.sleep(0.12)
        assert not waiter.done() and gc.stalled is not None
        gc.give_up()
        with pytest.raises(LogAppendError):
            await waiter
        await gc.close()

    run(main())
    assert durable == [1]


def test_retry_mode_close_while_stalled_does_not_wait():
    log = FakeLog(delay=0.0, full_on_calls=set(range(1, 1000)))

    async def main():
        gc = GroupCommitter(log, lambda t: None, retry_s=0.05)
        gc.submit(1, b"a", 1)
        await gc.flush()
        gc.submit(2, b"a", 2)
        await asyncio.sleep(0.02)
        await asyncio.wait_for(gc.close(), 2)

    run(main())


def test_submit_from_on_failed_goes_to_the_next_batch():
    """An answer to a failed request can bring the client's next write in at once (workers=0:
    the frontend calls the core back): it is not dropped with the failed ones."""
    log = FakeLog(delay=0.0, full_on_calls={0})
    durable, failed = [], []

    async def main():
        gc = GroupCommitter(log, durable.extend, on_failed=lambda t, e: (
            failed.extend(t), gc.submit(10, b"b", 10), True)[-1])
        gc.submit(1, b"a", 1)
        await gc.flush()
        await gc.flush()
        await gc.close()

    run(main())
    assert failed == [1] and durable == [10]


def test_real_txnlog_disk_full_then_space_again(tmp_path, monkeypatch):
    """A real TxnLog whose writes fail with ENOSPC for a while: the batches of that time fail,
    the log keeps only the acknowledged records, and appends go on once writes work."""
    log = TxnLog(str(tmp_path))
    list(log.recover(0))
    log.open_for_append()
    real_write = os.pwrite
    full = threading.Event()

    def write(fd, data, offset):
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", write)
    acked, failed = [], []

    async def main():
        gc = GroupCommitter(log, acked.extend, on_failed=lambda t, e: failed.extend(t) or True)
        for z in range(1, 11):
            gc.submit(z, b"p%d" % z, z)
        await gc.flush()
        full.set()
        for z in range(11, 16):
            gc.submit(z, b"p%d" % z, z)
            await gc.flush()   # each fails: the zxids are taken again below
            failed_upto = len(failed)
            assert failed_upto >= 1
            gc.submit(z, b"q%d" % z, z)
            await gc.flush()
        full.clear()
        for z in range(11, 21):
            gc.submit(z, b"p%d" % z, z)
        await gc.close()
        return gc

    gc = run(main())
    log.close()
    assert acked == list(range(1, 21))
    assert failed == [z for z in range(11, 16) for _ in (0, 1)]
    assert list(TxnLog(str(tmp_path)).recover(0)) == [(z, b"p%d" % z) for z in range(1, 21)]
    assert gc.stats()["fsync_threshold_exceed_count"] == 0


def test_stats_report_the_logs_fsync_threshold_count():
    log = FakeLog(delay=0.0)
    log.fsync_threshold_exceed_count = 3
    gc = GroupCommitter(log, lambda t: None)
    assert gc.stats()["fsync_threshold_exceed_count"] == 3
