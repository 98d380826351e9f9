"""Micro-benchmarks of the transaction log (zkpy.storage.txnlog) and its checksum (storage.crc).

append_batch is measured as GroupCommitter calls it: one list of (zxid, payload) per batch, one
os.write, then fdatasync when force_sync. Logs live in a private directory under /tmp (the same
filesystem as a default dataDir on this machine); each benchmark gets its own log.
"""

import itertools
import os

import pytest

from zkpy.storage import crc
from zkpy.storage.txnlog import TxnLog

PAYLOAD_100 = bytes(range(100))


def _open_log(directory, force_sync):
    log = TxnLog(directory, force_sync=force_sync)
    for _ in log.recover():
        pass
    log.open_for_append()
    return log


@pytest.mark.benchmark(group="txnlog-fsync")
@pytest.mark.parametrize("n", [1, 10, 100])
def test_append_batch_fsync(benchmark, bench_dir, n):
    """append_batch of n x 100 B records with force_sync=True (write + fdatasync)."""
    log = _open_log(os.path.join(bench_dir, "fsync-%d" % n), force_sync=True)
    zxids = itertools.count(1)

    def run():
        log.append_batch([(next(zxids), PAYLOAD_100) for _ in range(n)])

    try:
        # fdatasync dominates and is noisy on a shared disk: a fixed round count keeps the
        # suite's run time bounded whatever the disk does.
        benchmark.pedantic(run, rounds=100 if n < 100 else 60, warmup_rounds=2)
        assert log.last_fsync_ms is not None
    finally:
        log.close()
    assert sum(1 for _ in _open_log(log.dir, True).recover()) == log.last_zxid


@pytest.mark.benchmark(group="txnlog-nosync")
@pytest.mark.parametrize("n", [1, 10, 100])
def test_append_batch_nosync(benchmark, bench_dir, n):
    """append_batch of n x 100 B records with force_sync=False (record encoding + one write)."""
    log = _open_log(os.path.join(bench_dir, "nosync-%d" % n), force_sync=False)
    zxids = itertools.count(1)

    def run():
        log.append_batch([(next(zxids), PAYLOAD_100) for _ in range(n)])

    try:
        benchmark(run)
        assert log.last_fsync_ms is None
    finally:
        log.close()


@pytest.mark.benchmark(group="crc32c")
@pytest.mark.parametrize("impl", ["pure", "native"])
def test_crc32c_1k(benchmark, impl):
    fn = crc.crc32c_pure if impl == "pure" else crc.crc32c_native
    if fn is None:
        pytest.skip("native crc32c unavailable (zkpy._crc32c not built, or ZKPY_PURE=1)")
    data = bytes(range(256)) * 4
    benchmark.extra_info["implementation"] = "python" if impl == "pure" else crc.IMPLEMENTATION
    out = benchmark(fn, data)
    assert out == crc.crc32c_pure(data)
