"""Selects the compiled node codec, or the pure one when ZKPY_PURE=1 or the build failed."""

import os

IMPLEMENTATION = "pure"
if os.environ.get("ZKPY_PURE") != "1":
    try:
        from zkpy.storage._nodecodec import pack_node, unpack_node  # noqa: F401
        IMPLEMENTATION = "cython"
    except ImportError:
        pass
if IMPLEMENTATION == "pure":
    from zkpy.storage.nodecodec import pack_node, unpack_node  # noqa: F401,F811
