"""zkpy.storage.epochs: acceptedEpoch / currentEpoch files as ZooKeeper writes and reads them."""

import os
import stat

import pytest

from zkpy.errors import StorageCorruptError
from zkpy.storage.epochs import ACCEPTED_EPOCH, CURRENT_EPOCH, read_epoch, write_epoch


def test_missing_file_gives_default(tmp_path):
    assert read_epoch(str(tmp_path), CURRENT_EPOCH) == 0
    assert read_epoch(str(tmp_path), ACCEPTED_EPOCH, default=None) is None


def test_round_trip_and_format(tmp_path):
    d = str(tmp_path)
    write_epoch(d, ACCEPTED_EPOCH, 7)
    write_epoch(d, CURRENT_EPOCH, 6)
    assert read_epoch(d, ACCEPTED_EPOCH) == 7 and read_epoch(d, CURRENT_EPOCH) == 6
    with open(os.path.join(d, ACCEPTED_EPOCH), "rb") as f:
        assert f.read() == b"7"  # Long.toString(value), as QuorumPeer.writeLongToFile
    write_epoch(d, ACCEPTED_EPOCH, (1 << 32) - 1)
    assert read_epoch(d, ACCEPTED_EPOCH) == (1 << 32) - 1
    assert sorted(os.listdir(d)) == [ACCEPTED_EPOCH, CURRENT_EPOCH]  # no .tmp left


@pytest.mark.parametrize("content,value", [(b"12\n", 12), (b"0", 0), (b"3\r\n", 3)])
def test_reads_what_zookeeper_or_an_editor_wrote(tmp_path, content, value):
    (tmp_path / CURRENT_EPOCH).write_bytes(content)
    assert read_epoch(str(tmp_path), CURRENT_EPOCH) == value


@pytest.mark.parametrize("content", [b"", b"\n", b"abc", b"-1", b"1 2", b"12\n13\n", b"12\n\n",
                                     b" 5",
                                     b"\x00\x00", b"9" * 30])
def test_damaged_file_raises_naming_it(tmp_path, content):
    (tmp_path / ACCEPTED_EPOCH).write_bytes(content)
    with pytest.raises(StorageCorruptError, match=ACCEPTED_EPOCH):
        read_epoch(str(tmp_path), ACCEPTED_EPOCH)


def test_bad_values_refused(tmp_path):
    for v in (-1, 1 << 63, "3", 2.0, True):
        with pytest.raises(ValueError):
            write_epoch(str(tmp_path), CURRENT_EPOCH, v)
    assert not os.path.exists(tmp_path / CURRENT_EPOCH)


def test_write_is_tmp_fsync_rename_fsync_dir(tmp_path, monkeypatch):
    ops = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        ops.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(a, b):
        ops.append(("replace", os.path.basename(a), os.path.basename(b)))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_epoch(str(tmp_path), CURRENT_EPOCH, 4)
    assert ops == ["fsync-file", ("replace", CURRENT_EPOCH + ".tmp", CURRENT_EPOCH), "fsync-dir"]


def test_crash_before_rename_keeps_old_value(tmp_path, monkeypatch):
    d = str(tmp_path)
    write_epoch(d, CURRENT_EPOCH, 4)

    def crash(a, b):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_epoch(d, CURRENT_EPOCH, 5)
    monkeypatch.undo()
    assert read_epoch(d, CURRENT_EPOCH) == 4  # the leftover .tmp is ignored...
    write_epoch(d, CURRENT_EPOCH, 6)  # ...and overwritten
    assert read_epoch(d, CURRENT_EPOCH) == 6
