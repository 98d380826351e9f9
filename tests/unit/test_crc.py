"""CRC32C: known vectors, and parity between the C extension (both paths) and pure Python."""

import os
import random
import subprocess
import sys

import pytest

from zkpy.storage import crc

VECTORS = [
    (b"", 0x00000000),
    (b"a", 0xC1D04330),
    (b"123456789", 0xE3069283),
    (b"\x00" * 32, 0x8A9136AA),  # RFC 3720 B.4
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]


def _impls():
    impls = [("pure", crc.crc32c_pure)]
    if crc.crc32c_native is not None:
        from zkpy._crc32c import lib

        impls.append(("native", crc.crc32c_native))
        impls.append(("native-sw", lambda d, c=0: lib.zkpy_crc32c_sw(c, bytes(d), len(d))))
    return impls


IMPLS = _impls()


@pytest.mark.parametrize("name,fn", IMPLS, ids=[n for n, _ in IMPLS])
@pytest.mark.parametrize("data,expected", VECTORS)
def test_vectors(name, fn, data, expected):
    assert fn(data) == expected


def test_default_known_vector():
    assert crc.crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("name,fn", IMPLS, ids=[n for n, _ in IMPLS])
def test_incremental(name, fn):
    data = bytes(random.Random(1).getrandbits(8) for _ in range(1000))
    for cut in (0, 1, 7, 8, 9, 500, 999, 1000):
        assert fn(data[cut:], fn(data[:cut])) == fn(data)


def test_parity_random():
    rnd = random.Random(42)
    for n in list(range(0, 70)) + [255, 256, 1023, 4096 + 3]:
        data = bytes(rnd.getrandbits(8) for _ in range(n))
        want = crc.crc32c_pure(data)
        for _, fn in IMPLS:
            assert fn(data) == want, n
        # Unaligned starts exercise the C alignment prologue.
        for off in range(1, 8):
            if off <= n:
                want_off = crc.crc32c_pure(data[off:])
                for _, fn in IMPLS:
                    assert fn(memoryview(data)[off:]) == want_off


def test_buffer_types():
    for data in (bytearray(b"123456789"), memoryview(b"123456789")):
        assert crc.crc32c(data) == 0xE3069283
        assert crc.crc32c_pure(data) == 0xE3069283


def test_native_is_built():
    # The in-place build (python csrc/crc32c_build.py) is part of the dev setup; say so if missing.
    if crc.crc32c_native is None and os.environ.get("ZKPY_PURE") != "1":
        pytest.skip("zkpy._crc32c not built; run: python csrc/crc32c_build.py")
    assert crc.IMPLEMENTATION in ("sse4.2", "c-table", "python")


def test_env_forces_pure():
    out = subprocess.run(
        [sys.executable, "-c", "from zkpy.storage import crc; print(crc.IMPLEMENTATION, crc.crc32c(b'123456789'))"],
        env=dict(os.environ, ZKPY_PURE="1"), capture_output=True, text=True, check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert out.stdout.split() == ["python", str(0xE3069283)]
