"""Selects the compiled node codec, or the pure one (zkpy.compiled: ZKPY_PURE=1 or the build
failed)."""

from zkpy import compiled
from zkpy.storage import nodecodec as _pure

_nodecodec = compiled.load("_nodecodec")
IMPLEMENTATION = "cython" if _nodecodec is not None else "pure"
pack_node = (_nodecodec or _pure).pack_node
unpack_node = (_nodecodec or _pure).unpack_node
