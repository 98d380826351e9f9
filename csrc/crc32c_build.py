"""cffi (API mode) builder for the CRC32C extension: produces the module ``zkpy._crc32c``.

Used by setup.py via ``cffi_modules=["csrc/crc32c_build.py:ffibuilder"]``; for development build it
in place with ``python csrc/crc32c_build.py`` (run from the repository root), which leaves
zkpy/_crc32c*.so next to the package. Only zkpy/storage/crc.py imports the result, and it falls back
to pure Python when the module is missing.
"""

import os
import shutil
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CDEF = """
uint32_t zkpy_crc32c(uint32_t crc, const uint8_t *buf, size_t len);
uint32_t zkpy_crc32c_sw(uint32_t crc, const uint8_t *buf, size_t len);
int zkpy_crc32c_hw(void);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)


def _set_source(builder, base):
    builder.set_source(
        "zkpy._crc32c",
        '#include "crc32c.h"',
        sources=[os.path.join(base, "csrc", "crc32c.c")],
        include_dirs=[os.path.join(base, "csrc")],
        extra_compile_args=["-O2"],
    )


# setuptools runs builders from the setup.py directory and wants relative source paths.
_set_source(ffibuilder, "")

if __name__ == "__main__":
    # cffi's compile() chdirs into tmpdir, so the in-place build needs absolute paths.
    ffibuilder = FFI()
    ffibuilder.cdef(CDEF)
    _set_source(ffibuilder, ROOT)
    # A throwaway tmpdir keeps the generated .c/.o out of the source tree; only the .so lands in zkpy/.
    build_dir = tempfile.mkdtemp(prefix="zkpy-crc32c-")
    try:
        lib = ffibuilder.compile(tmpdir=build_dir, verbose=False)
        target = os.path.join(ROOT, "zkpy", os.path.basename(lib))
        shutil.move(lib, target)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    print(target)
