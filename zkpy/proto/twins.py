"""Install a compiled twin (zkpy.proto._fastcodec) in place of its pure function. Pure.

    encode = compiled_twin("log_records", encode_pure)

returns the compiled function, after registering `encode_pure` with the compiled module so it
can hand anything but the common case back (see _fastcodec's docstring) -- or `encode_pure`
itself when the module is not built, is older than the function, or ZKPY_PURE=1 is set
(zkpy.compiled decides and records which).
"""

from zkpy import compiled


def compiled_twin(name, pure):
    _fastcodec = compiled.load("_fastcodec")
    fn = getattr(_fastcodec, name, None)
    if fn is None:
        return pure
    _fastcodec.register(name, pure)
    return fn
