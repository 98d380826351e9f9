"""Fixtures for tests/crash.

  crashfs   a mounted crashfs.CrashFS over tmp_path/"crashfs-backing" at tmp_path/"crashfs-mnt",
            unmounted after the test (whatever happened); skipped with the reason when FUSE
            can't be used here (no /dev/fuse, no fusermount3, no mfusepy, mount not permitted).
"""

import pytest

from crash.crashfs import CrashFS, crashfs_unavailable


@pytest.fixture
def crashfs(tmp_path):
    reason = crashfs_unavailable()
    if reason:
        pytest.skip(reason)
    with CrashFS(tmp_path / "crashfs-backing", tmp_path / "crashfs-mnt") as fs:
        yield fs
