"""Group commit: the asyncio shell that batches transaction-log appends and reports durability.

Owns the batching/fsync pipeline between the request pipeline and zkpy.storage.txnlog (ZooKeeper's
SyncRequestProcessor role). Imported by the server; it does no I/O itself -- the log's append_batch
runs in a log thread so the event loop keeps serving (and queueing the next batch) during fsync,
except for the small batches of a lightly loaded server (below).

Contract:
  * submit() is called from the event loop thread and never blocks.
  * One flusher task; at most one append_batch in flight; batches are taken in submission order.
    The next batch's append starts as soon as the previous one returns, before on_durable runs
    for it, so the fsync of batch k+1 overlaps the apply of batch k.
  * Where the append runs: in the log thread, except for a small batch (at most
    inline_max_records) that finds no append in flight while the log's last fsync was fast
    (under inline_max_fsync_ms, or the log does not sync): that one is written and synced in the
    loop thread. At low load the two thread handoffs of a threaded append (wake the log thread,
    then wake the loop) cost more than the overlap they buy -- nothing else is waiting -- and a
    write waits for them on every round trip. A big batch (high load) or a slow disk goes to the
    thread, so the loop never sits in a slow fsync more than once in a row.
  * on_durable(tokens) runs in the loop thread, in submission order, only after the append_batch
    (write + fsync) covering every one of those records has returned.
  * A failed append that the log cut back (LogAppendError: a full or failing disk, nothing of the
    batch is in the log) with an on_failed callback: every record of that batch and every record
    queued after it is dropped -- none is durable, and a later record may depend on an earlier
    one -- and on_failed(tokens, exc) gets their tokens in submission order (loop thread; after
    on_durable of every earlier batch). It returns True to go on: the next submit() tries the
    log again. Without on_failed, or when it returns False, the error is fatal.
  * With retry_s set (an ensemble member: its txns were proposed to, or by, other servers under
    their zxids, so they cannot be forgotten), a LogAppendError drops nothing: on_stalled(exc)
    is called, the batch goes back to the front of the queue and the append is tried again
    every retry_s seconds until it succeeds (then on_durable as usual). Records submitted
    meanwhile queue behind it. give_up() (a stop) ends the retrying: what is queued is dropped
    unacknowledged and flush() raises the error.
  * Any other write/fsync error is fatal: logged at ERROR, on_fatal(exc) is called, nothing more
    is written or acknowledged.
"""

import asyncio
import collections
import concurrent.futures
import logging
import time

from zkpy.errors import LogAppendError

_DEFAULT_LOGGER = logging.getLogger("zkpy.storage.groupcommit")

# A batch of at most this many records may be appended in the loop thread...
INLINE_MAX_RECORDS = 8
# ...while the log's last fsync took less than this (ms). An fsync on a local SSD or a VM's
# cached disk takes 0.1-1 ms; one that takes longer sends the next batches to the log thread.
INLINE_MAX_FSYNC_MS = 1.0


class GroupCommitter:
    def __init__(self, log, on_durable, max_count=1000, max_bytes=1024 * 1024, max_delay_ms=0,
                 executor=None, on_fatal=None, logger=None, inline_max_records=INLINE_MAX_RECORDS,
                 inline_max_fsync_ms=INLINE_MAX_FSYNC_MS, on_failed=None, retry_s=None,
                 on_stalled=None, before_append=None):
        """``log`` needs append_batch([(zxid, payload)]); optional attribute last_fsync_ms.

        ``executor``: where append_batch runs; by default a private one-thread pool, so log
        I/O never waits behind (or starves) other users of the loop's default executor.
        ``inline_max_records`` / ``inline_max_fsync_ms``: when a batch may be appended in the
        loop thread instead (see the module docstring); inline_max_records=0 never does.
        ``on_failed(tokens, exc)``: records dropped after a LogAppendError (module docstring).
        ``retry_s`` / ``on_stalled(exc)``: keep and retry instead (module docstring).
        ``before_append()``: called in the loop thread right before an inline append (which
        holds the loop for its fsync): what must be on its way before the log's fsync, an
        ensemble leader's proposals, goes now. It may submit() more records, which join the
        batch.
        """
        self.log = log
        self.on_durable = on_durable
        self.on_fatal = on_fatal
        self.on_failed = on_failed
        self.retry_s = retry_s
        self.on_stalled = on_stalled
        self.before_append = before_append
        self.stalled = None   # the LogAppendError of the append being retried
        self._give_up = False
        self.max_count = max(1, max_count)
        self.max_bytes = max(1, max_bytes)
        self.max_delay = max(0.0, max_delay_ms / 1000.0)
        self.inline_max_records = max(0, inline_max_records)
        self.inline_max_fsync_ms = inline_max_fsync_ms
        self._fast = False   # the last append's fsync was fast: a small batch may go inline
        self.inline_batches = 0   # appends done in the loop thread (the rest: log thread)
        self.logger = logger or _DEFAULT_LOGGER
        self._own_executor = executor is None
        self._executor = executor
        self._queue = collections.deque()  # (zxid, payload): what append_batch takes
        self._tokens = collections.deque()  # the token of each record in _queue
        self._queued_bytes = 0
        self._submitted = 0  # records ever submitted
        self._durable = 0  # records ever made durable (and reported)
        self._dropped = 0  # records ever dropped after a LogAppendError (on_failed)
        self._waiters = []  # (submitted count to reach, future) from flush()
        self._wakeup = None  # asyncio.Event, created in the loop
        self._stall_wakeup = None  # asyncio.Event: give_up() ends a retry wait
        self._task = None
        self._closing = False
        self._failed = None
        # Counters (mntr: zk_avg/min/max/cnt/sum_fsynctime come from the fsync_* ones).
        self.batches = 0
        self.records = 0
        self.bytes = 0
        self.last_batch_size = 0
        self.max_batch_size = 0
        self.fsync_count = 0
        self.fsync_total_ms = 0.0
        self.fsync_min_ms = None
        self.fsync_max_ms = 0.0
        self.last_fsync_ms = None
        self.failed_batches = 0   # appends that failed with a LogAppendError
        self.failed_records = 0   # records dropped with them (theirs and those queued after)

    # ------------------------------------------------------------------ public API

    def start(self):
        """Start the flusher task (submit() does this on first use). Must run in the loop thread."""
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._wakeup = asyncio.Event()
            self._stall_wakeup = asyncio.Event()
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="zkpy-txnlog-sync")
            self._task = loop.create_task(self._run(), name="zkpy-group-commit")

    def submit(self, zxid, payload, token):
        """Queue one record; on_durable will later receive ``token``. Non-blocking, loop thread only."""
        if self._failed is not None:
            raise RuntimeError("group commit stopped after a fatal log error: %r" % (self._failed,))
        if self._closing:
            raise RuntimeError("group commit is closed")
        if self._task is None:
            self.start()
        self._queue.append((zxid, payload))
        self._tokens.append(token)
        self._queued_bytes += len(payload)
        self._submitted += 1
        self._wakeup.set()

    @property
    def pending(self):
        """Records submitted but not yet reported durable (nor dropped)."""
        return self._submitted - self._durable - self._dropped

    async def flush(self):
        """Wait until everything submitted so far is durable or dropped (on_failed); raises the
        fatal error if any."""
        if self._failed is not None:
            raise self._failed
        target = self._submitted
        if self._durable + self._dropped >= target:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        await fut

    async def close(self):
        """Flush, then stop the flusher task. Does not close the log (its owner does)."""
        if self.stalled is not None:
            self.give_up()   # a stop does not wait for the disk to come back
        if self._task is not None and self._failed is None and not self._closing:
            try:
                await self.flush()
            except LogAppendError:
                if not self._give_up:
                    raise   # (given up: the stop drops the unwritten txns, as it said)
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def stats(self):
        """Counters for mntr/stat. fsync times in ms; the *_fsynctime keys follow ZooKeeper's names."""
        cnt = self.fsync_count
        return {
            "batches": self.batches,
            "records": self.records,
            "bytes": self.bytes,
            "last_batch_size": self.last_batch_size,
            "max_batch_size": self.max_batch_size,
            "pending": self.pending,
            "avg_fsynctime": (self.fsync_total_ms / cnt) if cnt else 0.0,
            "min_fsynctime": self.fsync_min_ms if self.fsync_min_ms is not None else 0.0,
            "max_fsynctime": self.fsync_max_ms,
            "cnt_fsynctime": cnt,
            "sum_fsynctime": self.fsync_total_ms,
            "last_fsynctime": self.last_fsync_ms,
            "fsync_threshold_exceed_count": getattr(self.log, "fsync_threshold_exceed_count", 0),
            "failed_batches": self.failed_batches,
            "failed_records": self.failed_records,
        }

    # ------------------------------------------------------------------ flusher

    def _take_batch(self):
        """(records, their tokens, their bytes) off the front of the queue."""
        q = self._queue
        tq = self._tokens
        if len(q) <= self.max_count and self._queued_bytes <= self.max_bytes:
            batch = list(q)   # all of it (the usual case)
            tokens = list(tq)
            nbytes = self._queued_bytes
            q.clear()
            tq.clear()
            self._queued_bytes = 0
            return batch, tokens, nbytes
        batch = []
        nbytes = 0
        while q and len(batch) < self.max_count:
            size = len(q[0][1])
            if batch and nbytes + size > self.max_bytes:
                break  # a single oversized record still goes out alone
            batch.append(q.popleft())
            nbytes += size
        tokens = [tq.popleft() for _ in batch]
        self._queued_bytes -= nbytes
        return batch, tokens, nbytes

    def _batch_full(self):
        return len(self._queue) >= self.max_count or self._queued_bytes >= self.max_bytes

    async def _run(self):
        loop = asyncio.get_running_loop()
        inflight = None   # (future of the append in flight, its batch, its bytes)
        while True:
            if inflight is None:
                if not self._queue:
                    if self._closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if self.max_delay > 0 and not self._batch_full():
                    await self._linger(loop)
                if self._fast and len(self._queue) <= self.inline_max_records:
                    inflight = self._inline()
                else:
                    inflight = self._start(loop)
            fut, batch, tokens, nbytes = inflight
            try:
                # The loop keeps running (and submit() keeps queueing the next batch) meanwhile.
                fsync_ms = await fut
            except Exception as exc:  # noqa: BLE001 - any other failure to persist is fatal
                # Nothing else is in flight: the next append starts only after this one returned.
                if isinstance(exc, LogAppendError) and self.retry_s is not None:
                    self._requeue(batch, tokens, nbytes)
                    if not await self._stall(exc):
                        return   # give_up(): stopping
                    inflight = None
                    continue
                if isinstance(exc, LogAppendError) and self.on_failed is not None:
                    handled = self._drop(tokens, exc)
                    if handled is None:
                        return   # on_failed raised: fatal already
                    if handled:
                        inflight = None
                        continue
                self._fatal(exc, "writing %d txn(s) to the transaction log" % len(batch))
                return
            self.stalled = None
            # The next batch's write + fsync starts now, so it overlaps on_durable's work (the
            # apply of this batch) instead of following it; still one append in flight.
            inflight = self._start(loop) if self._queue else None
            self._account(len(batch), nbytes, fsync_ms)
            self._fast = fsync_ms is None or fsync_ms < self.inline_max_fsync_ms
            # ORDERING: tokens are acknowledged only here, after append_batch -- and with it the
            # write and fsync of every record in this batch (and all earlier batches) -- returned.
            self._durable += len(batch)
            try:
                self.on_durable(tokens)
            except Exception as exc:  # noqa: BLE001 - the apply path is broken: stop, like ZK
                self._fatal(exc, "in the on_durable callback")
                if inflight is not None:   # let the append in flight end before returning
                    try:
                        await inflight[0]
                    except Exception:  # noqa: BLE001 - already fatal
                        pass
                return
            self._wake_waiters()

    def _requeue(self, batch, tokens, nbytes):
        """A failed batch back to the front of the queue (the log was cut back: none of it is
        there), ahead of what was submitted since."""
        self._queue.extendleft(reversed(batch))
        self._tokens.extendleft(reversed(tokens))
        self._queued_bytes += nbytes
        self.failed_batches += 1

    async def _stall(self, exc):
        """The append failed and is to be retried: tell on_stalled (at the first failure of a
        stall), wait retry_s. False once give_up() was called: the queue is dropped."""
        first = self.stalled is None
        self.stalled = exc
        if first and self.on_stalled is not None and not self._give_up:
            try:
                self.on_stalled(exc)
            except Exception:  # noqa: BLE001 - only a report
                self.logger.exception("on_stalled callback raised")
        deadline = asyncio.get_running_loop().time() + self.retry_s
        while not self._give_up:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return True
            self._stall_wakeup.clear()
            try:
                await asyncio.wait_for(self._stall_wakeup.wait(), left)
            except asyncio.TimeoutError:
                return True
        self._failed = exc
        self.logger.warning("stopping with %d txn(s) not written to the transaction log (%s); "
                            "none was acknowledged", self.pending, exc)
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._waiters = []
        return False

    def give_up(self):
        """A stop: an append that fails from now on (or is being retried) is not retried again;
        what is queued then is dropped unacknowledged (flush() raises)."""
        self._give_up = True
        if self._stall_wakeup is not None:
            self._stall_wakeup.set()

    def _drop(self, tokens, exc):
        """A LogAppendError for the batch of ``tokens``: drop it and everything queued after it,
        and tell on_failed. Returns on_failed's answer, or None if it raised (then fatal).

        The queue is emptied before on_failed runs: records it causes to be submitted (a reply
        can release a client's next write in the same process) belong to the next batch."""
        tokens = list(tokens)
        tokens.extend(self._tokens)
        self._queue.clear()
        self._tokens.clear()
        self._queued_bytes = 0
        self._dropped += len(tokens)
        self.failed_batches += 1
        self.failed_records += len(tokens)
        try:
            handled = self.on_failed(tokens, exc)
        except Exception as cb_exc:  # noqa: BLE001 - the pipeline is in an unknown state
            self._fatal(cb_exc, "in the on_failed callback")
            return None
        if handled:
            self._wake_waiters()
        return bool(handled)

    async def _linger(self, loop):
        """flushDelay: wait a little for more records to share the fsync."""
        deadline = loop.time() + self.max_delay
        while not self._batch_full() and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break

    def _inline(self):
        """Append the whole (small) queue in the loop thread: a done future, as _start's."""
        if self.before_append is not None:
            self.before_append()
        batch, tokens, nbytes = self._take_batch()
        fut = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(self._append(batch))
        except Exception as exc:  # noqa: BLE001 - _run treats it as the thread's failure
            fut.set_exception(exc)
        self.inline_batches += 1
        return fut, batch, tokens, nbytes

    def _start(self, loop):
        """Take the next batch off the queue and start its append in the executor (the loop
        goes on meanwhile: before_append is not needed)."""
        batch, tokens, nbytes = self._take_batch()
        return loop.run_in_executor(self._executor, self._append, batch), batch, tokens, nbytes

    def _append(self, records):
        """Runs in the log thread (or, from _inline, the loop thread); returns the fsync time in
        ms (None if none was done)."""
        t0 = time.monotonic()
        self.log.append_batch(records)
        if hasattr(self.log, "last_fsync_ms"):
            # Read here, in the same thread right after the call: only one append is in flight.
            return self.log.last_fsync_ms
        # A log that does not report fsync time: count the whole append.
        return (time.monotonic() - t0) * 1000.0

    def _account(self, count, nbytes, fsync_ms):
        self.batches += 1
        self.records += count
        self.bytes += nbytes
        self.last_batch_size = count
        if count > self.max_batch_size:
            self.max_batch_size = count
        if fsync_ms is not None:
            self.fsync_count += 1
            self.fsync_total_ms += fsync_ms
            self.last_fsync_ms = fsync_ms
            if self.fsync_min_ms is None or fsync_ms < self.fsync_min_ms:
                self.fsync_min_ms = fsync_ms
            if fsync_ms > self.fsync_max_ms:
                self.fsync_max_ms = fsync_ms

    def _wake_waiters(self):
        still = []
        done = self._durable + self._dropped
        for target, fut in self._waiters:
            if done >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((target, fut))
        self._waiters = still

    def _fatal(self, exc, what):
        self._failed = exc
        self.logger.error("Severe unrecoverable error %s; group commit stopped, %d txn(s) not "
                          "acknowledged", what, self.pending, exc_info=exc)
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._waiters = []
        if self.on_fatal is not None:
            try:
                self.on_fatal(exc)
            except Exception:  # noqa: BLE001
                self.logger.exception("on_fatal callback raised")
