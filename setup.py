"""zkpy: a ZooKeeper-compatible coordination service.

Builds optional accelerators; each has a pure-Python twin, so a failed build only costs speed:
  - zkpy.storage._nodecodec (Cython): the znode byte codec on LMDB's hot path;
  - zkpy.proto._fastcodec (Cython, with csrc/crc32c.c): txn, request, reply, IPC and log-record
    codecs of the core's write path;
  - zkpy.tree._fastpath (Cython): the core's fused delete and setData on its pending overlay;
  - zkpy._crc32c (cffi, csrc/crc32c.c): CRC32C for transaction-log records.
"""

import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build each extension if possible; warn and fall back to pure Python if not."""

    def run(self):
        try:
            super().run()
        except Exception as e:  # compiler missing, etc.
            sys.stderr.write("WARNING: zkpy accelerators not built (%s); using pure Python\n" % e)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:
            sys.stderr.write("WARNING: %s not built (%s); using its pure-Python twin\n"
                             % (ext.name, e))


def _extensions():
    exts = []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
        exts += cythonize([
            "zkpy/storage/_nodecodec.pyx",
            "zkpy/tree/_fastpath.pyx",
            # with csrc/crc32c.c: the log records' CRC32C without a call through cffi
            Extension("zkpy.proto._fastcodec", ["zkpy/proto/_fastcodec.pyx", "csrc/crc32c.c"],
                      include_dirs=["csrc"]),
        ], language_level=3, quiet=True)
    except Exception as e:
        sys.stderr.write("WARNING: Cython unavailable (%s); node codec stays pure Python\n" % e)
    return exts


setup_kwargs = dict(
    name="zkpy",
    version="0.1.0",
    description="A ZooKeeper-compatible coordination service (jute protocol, LMDB storage)",
    packages=find_packages(include=["zkpy", "zkpy.*"]),
    python_requires=">=3.9",
    # cryptography: TLS key/trust stores (PKCS12, PEM) and client certificate subjects;
    # pyjks: JKS key/trust stores (zkpy.security.tls)
    install_requires=["lmdb>=1.4", "cffi>=1.15", "cryptography>=38", "pyjks>=20"],
    extras_require={
        # mfusepy: tests/crash/crashfs.py, a FUSE filesystem that simulates power cuts;
        # pure-sasl: kazoo's sasl_options (tests/compat/test_security_failclosed.py)
        "test": ["kazoo>=2.9", "pytest>=7", "pytest-timeout>=2", "hypothesis>=6",
                 "pytest-benchmark>=4", "mfusepy>=3", "pure-sasl>=0.6"],
        "bench": ["matplotlib>=3"],
        # SASL GSSAPI (Kerberos) logins: a JAAS Server section with Krb5LoginModule. Builds
        # against MIT Kerberos (Debian libkrb5-dev); scripts/test.sh installs it with pykerberos.
        "kerberos": ["gssapi>=1.8"],
    },
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    entry_points={"console_scripts": ["zkpy-server=zkpy.cli.server:main",
                                      "zkpy-bench=zkpy.bench.command:main",
                                      "zkpy-cluster=zkpy.cli.cluster:main"]},
    zip_safe=False,
)

try:
    import cffi  # noqa: F401
    setup_kwargs["cffi_modules"] = ["csrc/crc32c_build.py:ffibuilder"]
    setup_kwargs["setup_requires"] = ["cffi>=1.15"]
except ImportError:
    sys.stderr.write("WARNING: cffi unavailable at build time; CRC32C stays pure Python\n")

setup(**setup_kwargs)
