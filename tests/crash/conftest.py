"""Fixtures for tests/crash.

  _quiet_kazoo  (autouse) kazoo's connection-loss warnings silenced.
  crashfs   a mounted crashfs.CrashFS over tmp_path/"crashfs-backing" at tmp_path/"crashfs-mnt",
            unmounted after the test (whatever happened); skipped with the reason when FUSE
            can't be used here (no /dev/fuse, no fusermount3, no mfusepy, mount not permitted).
"""

import logging

import pytest

from crash.crashfs import CrashFS, crashfs_unavailable


@pytest.fixture
def crashfs(tmp_path):
    reason = crashfs_unavailable()
    if reason:
        pytest.skip(reason)
    with CrashFS(tmp_path / "crashfs-backing", tmp_path / "crashfs-mnt") as fs:
        yield fs


@pytest.fixture(autouse=True)
def _quiet_kazoo():
    """kazoo logs every lost connection and refused reconnect at WARNING: here that is the
    point (servers killed, disks full), not news."""
    logger = logging.getLogger("kazoo")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(old)
