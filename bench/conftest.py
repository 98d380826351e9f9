"""Shared helpers for the micro-benchmarks in bench/ (pytest-benchmark). Not part of the test suite.

Owns: locating the compiled node codec (zkpy.storage._nodecodec) for the pure-vs-compiled
parametrization, and temporary directories under /tmp for LMDB and the transaction log. Only the
files in bench/ import it. The default test run never collects bench/ (pyproject testpaths = tests).
"""

import glob
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_compiled_nodecodec():
    """The compiled node codec module, or None when it is not built.

    An editable install (`pip install -e .`) or `python setup.py build_ext --inplace` puts it next
    to the sources, where a plain import finds it. A non-inplace `python setup.py build_ext` leaves
    it under build/lib.*; we load it from there too, so the compiled codec can be measured without
    dropping a .so into a checkout others share (which would switch their test runs to it).
    """
    try:
        return importlib.import_module("zkpy.storage._nodecodec")
    except ImportError:
        pass
    name = "zkpy.storage._nodecodec"
    for so in sorted(glob.glob(os.path.join(REPO, "build", "lib.*", "zkpy", "storage",
                                            "_nodecodec.*.so"))):
        spec = importlib.util.spec_from_file_location(name, so)
        try:
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        except ImportError:
            continue
        # Don't register it in sys.modules: zkpy.storage.codec_impl must keep its own choice.
        sys.modules.pop(name, None)
        mod.BENCH_SOURCE = so
        return mod
    return None


COMPILED_NODECODEC = _load_compiled_nodecodec()


def pytest_generate_tests(metafunc):
    """A test that takes ``nodecodec`` runs against the pure codec, and the compiled one when it
    can be loaded (otherwise that case shows as skipped, so a missing build is visible)."""
    if "nodecodec" not in metafunc.fixturenames:
        return
    from zkpy.storage import nodecodec
    impls = [pytest.param(nodecodec, id="pure")]
    if COMPILED_NODECODEC is not None:
        impls.append(pytest.param(COMPILED_NODECODEC, id="compiled"))
    else:
        skip = pytest.mark.skip(reason="zkpy.storage._nodecodec not built")
        impls.append(pytest.param(None, id="compiled", marks=skip))
    metafunc.parametrize("nodecodec", impls)


@pytest.fixture(scope="module")
def bench_dir():
    """A private temporary directory under /tmp for one benchmark module, removed afterwards."""
    d = tempfile.mkdtemp(prefix="zkpy-bench-", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def pytest_report_header(config):
    from zkpy.storage import codec_impl, crc
    compiled = getattr(COMPILED_NODECODEC, "BENCH_SOURCE", None) or (
        COMPILED_NODECODEC.__file__ if COMPILED_NODECODEC else "not built")
    return ["zkpy bench: node codec used by LmdbTree = %s; compiled node codec: %s; crc32c = %s"
            % (codec_impl.IMPLEMENTATION, compiled, crc.IMPLEMENTATION),
            "zkpy bench: cpus = %d" % os.cpu_count()]
