"""CRC32C (Castagnoli) checksums for the transaction log.

Owns the one checksum function the storage layer uses. Anyone may import it; it does no I/O.
``crc32c`` is backed by the cffi extension ``zkpy._crc32c`` (csrc/crc32c.c: SSE4.2 or slice-by-8)
when it is built, and by the pure-Python table below otherwise, or when the environment variable
``ZKPY_PURE=1`` is set at import time. Both give identical results; tests check the parity.
"""

from zkpy import compiled

_POLY = 0x82F63B78  # reflected Castagnoli polynomial


def _make_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_TABLE = _make_table()


def crc32c_pure(data, crc=0):
    """CRC32C of ``data`` (bytes-like), continuing from ``crc`` (the result of a previous call)."""
    table = _TABLE
    c = crc ^ 0xFFFFFFFF
    for b in memoryview(data).cast("B"):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


_crc_mod = compiled.load("_crc32c")   # (results are the same without it)
_lib = getattr(_crc_mod, "lib", None)
_ffi = getattr(_crc_mod, "ffi", None)


if _lib is not None:
    _c_crc = _lib.zkpy_crc32c
    _from_buffer = _ffi.from_buffer

    def crc32c_native(data, crc=0):
        """CRC32C via the C extension; same contract as crc32c_pure."""
        if isinstance(data, bytes):
            # cffi passes bytes as a char* without a copy.
            return _c_crc(crc, data, len(data))
        buf = _from_buffer(data)
        return _c_crc(crc, buf, len(buf))

    crc32c = crc32c_native
    IMPLEMENTATION = "sse4.2" if _lib.zkpy_crc32c_hw() else "c-table"
    _lib.zkpy_crc32c(0, b"", 0)  # warm up: probe the CPU and build the table on the import thread
else:
    crc32c_native = None
    crc32c = crc32c_pure
    IMPLEMENTATION = "python"

__all__ = ["crc32c", "crc32c_pure", "crc32c_native", "IMPLEMENTATION"]
