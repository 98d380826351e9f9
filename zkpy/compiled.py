"""The one place that chooses between each compiled module and its pure twin.

zkpy runs with or without its compiled parts: every compiled module has a pure Python twin
giving the same results (tests run both). A module that wants its compiled twin asks here:

    _fastcodec = compiled.load("_fastcodec")     # the module, or None: use the pure code

and the choice is recorded, so the server can say at start-up which it runs (a log line, and
`envi`'s zkpy.compiled.* lines). ZKPY_PURE=1 in the environment takes the pure twin of every
one (the tests' pure run); a module that is not built (no compiler at install time) falls
back by itself. No I/O but reading ZKPY_PURE and importing.
"""

import importlib
import os

# name -> (the module, what it runs)
MODULES = {
    "_fastcodec": ("zkpy.proto._fastcodec",
                   "Cython: the jute codec's common records, framing, the IPC, txn encoding"),
    "_fastpath": ("zkpy.tree._fastpath",
                  "Cython: the core's prep and apply of create / setData / delete"),
    "_nodecodec": ("zkpy.storage._nodecodec", "Cython: znode records in LMDB"),
    "_crc32c": ("zkpy._crc32c", "C through cffi: the log's CRC32C"),
}

_loaded = {}   # name -> module or None
_choice = {}   # name -> "compiled" or "pure (why)"


def load(name):
    """The compiled module `name` (a key of MODULES), or None when the pure twin runs."""
    if name in _loaded:
        return _loaded[name]
    path = MODULES[name][0]
    mod = None
    if os.environ.get("ZKPY_PURE") == "1":
        why = "pure (ZKPY_PURE=1)"
    else:
        try:
            mod = importlib.import_module(path)
            why = "compiled"
        except ImportError as e:
            why = "pure (not built: %s)" % e
    _loaded[name] = mod
    _choice[name] = why
    return mod


def choices():
    """[(name, "compiled" | "pure (...)")] for every compiled module, in MODULES order."""
    for name in MODULES:
        load(name)
    return [(name, _choice[name]) for name in MODULES]


def summary():
    """One line: which twin of each module runs."""
    return ", ".join("%s %s" % (name, choice) for name, choice in choices())
