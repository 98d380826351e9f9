"""ZooKeeper's ``acceptedEpoch`` and ``currentEpoch`` files (Zab's persistent epochs).

Owns the files ``<dir>/acceptedEpoch``, ``<dir>/currentEpoch`` and their ``<name>.tmp`` twins,
nothing else. Used by the quorum code (zkpy.quorum); does file I/O, so no pure layer imports it.

Format, as Apache ZooKeeper's QuorumPeer.writeLongToFile writes it: the epoch as a decimal number
(Long.toString) and nothing else -- ZooKeeper writes no newline. readLongFromFile reads the first
line, so a trailing newline is accepted here as it is there; ZooKeeper can read what this module
writes and the other way round.

Durability: write_epoch writes ``<name>.tmp``, fsyncs it, renames it over ``<name>`` and fsyncs
the directory, so a crash (kill -9, power loss) at any point leaves the old value or the new one.
A leftover ``.tmp`` is simply overwritten by the next write.
"""

import os
import re

from zkpy.errors import StorageCorruptError

ACCEPTED_EPOCH = "acceptedEpoch"
CURRENT_EPOCH = "currentEpoch"
_NUMBER = re.compile(rb"\A[0-9]+\r?\n?\Z")
_MAX = (1 << 63) - 1  # a Java long


def epoch_path(data_dir, name):
    return os.path.join(data_dir, name)


def read_epoch(data_dir, name, default=0):
    """The epoch stored in ``<data_dir>/<name>``, or ``default`` if the file does not exist.

    A file that is not a non-negative decimal number (optionally followed by a newline), e.g.
    empty or holding garbage, raises StorageCorruptError naming the file.
    """
    path = epoch_path(data_dir, name)
    try:
        with open(path, "rb") as f:
            data = f.read(64)
    except FileNotFoundError:
        return default
    if not _NUMBER.match(data):
        raise StorageCorruptError("%s: not an epoch number: %r" % (path, data[:32]))
    value = int(data.strip())
    if value > _MAX:
        raise StorageCorruptError("%s: epoch %d out of range" % (path, value))
    return value


def write_epoch(data_dir, name, value):
    """Durably replace ``<data_dir>/<name>`` with ``value``: temp file, fsync, rename, fsync dir."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX:
        raise ValueError("epoch must be an int in 0..2**63-1, not %r" % (value,))
    path = epoch_path(data_dir, name)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        data = str(value).encode("ascii")
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(data_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
