"""The TLS tests' certificates and stores: zkpy.testing.tlsstores (shared with the benchmark's
tls topology, zkpy.bench.servers), re-exported here under the name the tests import."""

from zkpy.testing.tlsstores import *  # noqa: F401,F403
from zkpy.testing.tlsstores import __all__  # noqa: F401
