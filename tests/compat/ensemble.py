"""The ensemble tests' ensembles (issue 6): zkpy.testing.ensemble's Ensemble with the tests'
settings, and what the ensemble test files share beside it.

`Ensemble(kind, tmpdir, servers=3, observers=0, extra_cfg=None, proxies=False, ...)` is
zkpy.testing.ensemble.Ensemble (members, ports, proxies and partitions, start / stop / leader;
its docstring has the whole interface) with tickTime 500 ms (ENSEMBLE_TICK_MS) and the tests'
zoo.cfg defaults (compat.servers.cfg_defaults: ZKPY_TEST_WORKERS). `restore` (the state every
test starts from, for pytest fixtures) and `KazooClients` (kazoo) stay here: the harness
imports neither pytest nor kazoo.
"""

from compat import servers as zkservers
from zkpy.testing import ensemble
from zkpy.testing.ensemble import EnsembleError  # noqa: F401 (re-exported for the tests)
from zkpy.testing.harness import srvr_mode  # noqa: F401 (re-exported for the tests)
from zkpy.testing.proxy import listening_ports  # noqa: F401 (re-exported for the tests)

ENSEMBLE_TICK_MS = 500


class Ensemble(ensemble.Ensemble):
    """zkpy.testing.ensemble.Ensemble with the tests' tickTime and zoo.cfg defaults."""

    def __init__(self, kind, tmpdir, tick_ms=ENSEMBLE_TICK_MS, **kw):
        kw.setdefault("defaults", zkservers.cfg_defaults(kind))
        super().__init__(kind, tmpdir, tick_ms=tick_ms, **kw)


# --- shared by the ensemble test files ---------------------------------------------------------

SESSION_TIMEOUT = 8.0           # s; Apache caps it at 20 ticks (of ENSEMBLE_TICK_MS) = 10 s


def restore(ens, request, keep_config=False):
    """The state every test starts from: all members running and unpaused, links healed, one
    leader. Tells conftest whose logs to attach when the test fails."""
    request.node._zk_servers = list(ens.members)
    ens.heal()
    for m in ens.members:
        if keep_config:
            m.keep_config = True
        if m.paused:
            m.resume()
        if not m.running():
            m.start()
    ens.wait_healthy(30)
    return ens


class KazooClients(object):
    """clients(hosts, **kw) -> a started KazooClient; close() stops and closes them all."""

    def __init__(self, session_timeout=SESSION_TIMEOUT):
        self.session_timeout = session_timeout
        self.made = []

    def __call__(self, hosts, start_timeout=15.0, **kw):
        from kazoo.client import KazooClient
        kw.setdefault("timeout", self.session_timeout)
        c = KazooClient(hosts=hosts, **kw)
        self.made.append(c)
        c.start(timeout=start_timeout)
        return c

    def close(self):
        for c in self.made:
            try:
                c.stop()
            except Exception:  # noqa: BLE001 - a client of a killed member
                pass
            c.close()
