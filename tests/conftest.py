"""Shared pytest fixtures: which servers to test against, server processes, kazoo clients.

Owns the test-target selection (`--zk-targets` / env `ZKPY_TEST_TARGETS`, default "zkpy,apache"),
the server fixtures built on tests/compat/servers.py and the kazoo client factory. Every test
directory may use these fixtures; nothing outside tests/ imports this file.

Fixtures:
  zk_kind           "zkpy" or "apache"; every test that uses a zk_server* fixture is parametrized
                    over the selected targets (module-scoped parameter).
  zk_server         a fresh server of kind zk_kind for one test (isolation: node counts, zxids).
  shared_zk_server  one server of kind zk_kind per test module (tests that only add unique paths).
  zkpy_server / apache_server   a fresh server of that kind; skipped when the kind isn't selected.
  server_factory    server_factory(kind, extra_cfg=None, start=True) for custom zoo.cfg keys.
  make_client       make_client(server_or_hosts, **KazooClient_kwargs): a started kazoo client,
                    stopped and closed after the test.
  zk_targets        the selected kinds, e.g. ["zkpy", "apache"].

Missing software (java, the Debian jars, zkpy.cli.server) turns into pytest.skip with the reason.
When a test fails, the tail of each server log it used is attached to the failure report.
"""

import os
import signal
import sys
from pathlib import Path

import pytest

# tests/ is not a package: make `compat.servers` importable whatever pytest's import mode is.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from compat import servers as zkservers  # noqa: E402

KINDS = ("zkpy", "apache")
DEFAULT_TARGETS = "zkpy,apache"
# Applied to tests under tests/compat that carry no timeout marker of their own.
DEFAULT_COMPAT_TIMEOUT = 120



def _have_timeout_plugin(config):
    # pytest-timeout is preferred; a SIGALRM fallback below covers runs without it.
    return config.pluginmanager.hasplugin("timeout")


def pytest_addoption(parser):
    parser.addoption(
        "--zk-targets",
        default=None,
        help="comma-separated servers to test against: zkpy,apache "
        "(default: env ZKPY_TEST_TARGETS or 'zkpy,apache')",
    )


# -- skips CI allows (ZKPY_STRICT_SKIPS=1, set by scripts/test.sh): tests/allowed_skips.txt
# (ZKPY_ALLOWED_SKIPS names another file: tests/unit/test_skip_policy.py)
_ALLOWED_SKIPS = Path(os.environ.get("ZKPY_ALLOWED_SKIPS")
                      or Path(_TESTS_DIR) / "allowed_skips.txt")
_skipped = []   # (nodeid, reason)


def allowed_skip_rules(pure):
    """The reason substrings tests/allowed_skips.txt allows (the `pure: ` ones only if pure)."""
    rules = []
    for line in _ALLOWED_SKIPS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("pure: "):
            if pure:
                rules.append(line[len("pure: "):])
        else:
            rules.append(line)
    return rules


def pytest_runtest_logreport(report):
    # (an xfail reports as skipped too: it is a known failure the test asserts, not a skip)
    if report.skipped and not hasattr(report, "wasxfail") \
            and os.environ.get("ZKPY_STRICT_SKIPS") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("ZKPY_STRICT_SKIPS") != "1" or not _skipped:
        return
    rules = allowed_skip_rules(os.environ.get("ZKPY_PURE") == "1")
    bad = [(nodeid, reason) for nodeid, reason in _skipped
           if not any(rule in reason for rule in rules)]
    if bad:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        write = tr.write_line if tr is not None else print
        write("ZKPY_STRICT_SKIPS: %d skip(s) not allowed by tests/allowed_skips.txt:" % len(bad))
        for nodeid, reason in bad:
            write("  %s: %s" % (nodeid, reason))
        session.exitstatus = 1


def pytest_configure(config):
    if not _have_timeout_plugin(config):
        config.addinivalue_line("markers", "timeout(seconds): fail the test after this long")


def selected_targets(config):
    raw = config.getoption("--zk-targets") or os.environ.get("ZKPY_TEST_TARGETS") or DEFAULT_TARGETS
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise pytest.UsageError(f"ZKPY_TEST_TARGETS / --zk-targets: unknown {bad}, use {KINDS}")
    return kinds


def pytest_generate_tests(metafunc):
    if "zk_kind" in metafunc.fixturenames:
        metafunc.parametrize(
            "zk_kind", selected_targets(metafunc.config), indirect=True, scope="module"
        )


def pytest_collection_modifyitems(config, items):
    compat_dir = Path(_TESTS_DIR) / "compat"
    for item in items:
        if item.get_closest_marker("timeout") is None and compat_dir in Path(item.path).parents:
            item.add_marker(pytest.mark.timeout(DEFAULT_COMPAT_TIMEOUT))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Without pytest-timeout: a SIGALRM alarm over setup+call+teardown."""
    marker = item.get_closest_marker("timeout")
    if _have_timeout_plugin(item.config) or marker is None or not marker.args or not hasattr(signal, "SIGALRM"):
        yield
        return
    seconds = max(1, int(marker.args[0]))

    def on_alarm(signum, frame):
        raise TimeoutError(f"test exceeded its {seconds}s timeout")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for server in getattr(item, "_zk_servers", ()):
            rep.sections.append(
                (f"{server.kind} server log tail ({server.log_path})", server.log_tail(60))
            )


def _remember(request, server):
    node = request.node
    if not hasattr(node, "_zk_servers"):
        node._zk_servers = []
    node._zk_servers.append(server)


def _skip_if_unavailable(kind):
    reason = zkservers.UNAVAILABLE[kind]()
    if reason:
        pytest.skip(reason)


def _skip_if_unselected(config, kind):
    if kind not in selected_targets(config):
        pytest.skip(f"{kind} not in ZKPY_TEST_TARGETS ({','.join(selected_targets(config))})")


def _started(kind, tmp_path_factory, extra_cfg=None):
    server = zkservers.make_server(kind, tmp_path_factory.mktemp(f"{kind}-srv"), extra_cfg)
    server.start()
    return server


@pytest.fixture(scope="session")
def zk_targets(request):
    return selected_targets(request.config)


@pytest.fixture(scope="module")
def zk_kind(request):
    kind = request.param
    _skip_if_unavailable(kind)
    return kind


@pytest.fixture
def zk_server(zk_kind, tmp_path_factory, request):
    server = _started(zk_kind, tmp_path_factory)
    _remember(request, server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_zk_server(zk_kind, tmp_path_factory):
    server = _started(zk_kind, tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture
def zkpy_server(tmp_path_factory, request):
    _skip_if_unselected(request.config, "zkpy")
    _skip_if_unavailable("zkpy")
    server = _started("zkpy", tmp_path_factory)
    _remember(request, server)
    yield server
    server.stop()


@pytest.fixture
def apache_server(tmp_path_factory, request):
    _skip_if_unselected(request.config, "apache")
    _skip_if_unavailable("apache")
    server = _started("apache", tmp_path_factory)
    _remember(request, server)
    yield server
    server.stop()


@pytest.fixture
def server_factory(tmp_path_factory, request):
    """server_factory(kind, extra_cfg=None, start=True) -> server, stopped after the test."""
    made = []

    def factory(kind, extra_cfg=None, start=True):
        _skip_if_unavailable(kind)
        server = zkservers.make_server(kind, tmp_path_factory.mktemp(f"{kind}-srv"), extra_cfg)
        made.append(server)
        _remember(request, server)
        if start:
            server.start()
        return server

    yield factory
    for server in made:
        server.stop()


@pytest.fixture
def make_client():
    """make_client(server_or_hosts, **kw) -> started KazooClient; stopped after the test."""
    from kazoo.client import KazooClient

    clients = []

    def factory(server, start_timeout=15.0, **kw):
        hosts = server if isinstance(server, str) else server.hosts
        kw.setdefault("timeout", 10.0)  # session timeout (s)
        client = KazooClient(hosts=hosts, **kw)
        clients.append(client)
        client.start(timeout=start_timeout)
        return client

    yield factory
    for client in clients:
        try:
            client.stop()
        finally:
            client.close()
