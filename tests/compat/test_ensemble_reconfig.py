"""Dynamic reconfig side by side: the same steps against a zkpy and an Apache ZooKeeper 3.8
ensemble (kazoo's `client.reconfig` and zkCli.sh's `config` / `reconfig`), the same expected
results for both, computed from each ensemble's ports.

Parametrized over the selected targets like test_ensemble.py (`ens_kind`). Per kind:

- `rens`: 3 members with reconfigEnabled=true and skipACL=yes, one for the module; the tests run
  in file order and change its membership (remove/add server 3, add a 4th member, restart every
  member); each test starts from whatever membership /zookeeper/config holds.
- `sens`: 3 members with reconfigEnabled=true and a super digest (no skipACL): reconfig as super
  (kazoo and zkCli's `addauth digest super:...`), NOAUTH without it.
- standalone servers (servers.py) for RECONFIGDISABLED / UNIMPLEMENTED.

Both kinds rewrite zoo.cfg at start with reconfigEnabled (server.N lines moved to
zoo.cfg.dynamic.<version>, dynamicConfigFile=... added, zoo.cfg.bak kept), so every member
here restarts from its own files (keep_config), never from the ensemble's lines.

One difference is by design: an ensemble's first membership version. Apache's is
<epoch>00000000 (the zxid before any txn of the first epoch); zkpy writes its first membership
with a txn, so its version is that txn's zxid, <epoch>00000001. On both the version equals the
node's mzxid, which is what is asserted.
"""

import os
import re
import time
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (BadArgumentsError, BadVersionError, KazooException, MarshallingError,
                              NoAuthError,
                              ReconfigDisabledError, UnimplementedError)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import make_digest_acl_credential

from compat import servers as zkservers
from compat.ensemble import SESSION_TIMEOUT, Ensemble, KazooClients, restore, srvr_mode
from compat.test_zkcli import after_connect, zkcli
from conftest import selected_targets

pytestmark = pytest.mark.timeout(120)

RECONFIG_CFG = {"reconfigEnabled": "true", "skipACL": "yes"}
SUPER_PW = "r3config"
SUPER_CFG = {"reconfigEnabled": "true",
             "DigestAuthenticationProvider.superDigest":
                 make_digest_acl_credential("super", SUPER_PW)}


def pytest_generate_tests(metafunc):
    if "ens_kind" in metafunc.fixturenames:
        kinds = selected_targets(metafunc.config)
        metafunc.parametrize("ens_kind", [pytest.param(k, id=k) for k in kinds],
                             indirect=True, scope="module")


def _record(kind, what):
    print("%s: %s" % (kind, what))


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ens_kind(request):
    reason = zkservers.UNAVAILABLE[request.param]()
    if reason:
        pytest.skip(reason)
    return request.param


def _module_ensemble(kind, tmp_path_factory, name, cfg):
    ens = Ensemble(kind, tmp_path_factory.mktemp("%s-%s" % (kind, name)), servers=3,
                   extra_cfg=cfg)
    ens.start()
    for m in ens.members:
        m.keep_config = True      # the server rewrote its zoo.cfg: restarts use that
    return ens


@pytest.fixture(scope="module")
def rens_module(ens_kind, tmp_path_factory):
    ens = _module_ensemble(ens_kind, tmp_path_factory, "reconfig", RECONFIG_CFG)
    yield ens
    ens.stop()


@pytest.fixture(scope="module")
def sens_module(ens_kind, tmp_path_factory):
    ens = _module_ensemble(ens_kind, tmp_path_factory, "super", SUPER_CFG)
    yield ens
    ens.stop()


def _healthy(ens, request):
    return restore(ens, request, keep_config=True)


@pytest.fixture
def rens(rens_module, request):
    return _healthy(rens_module, request)


@pytest.fixture
def sens(sens_module, request):
    return _healthy(sens_module, request)


@pytest.fixture
def clients():
    """clients(hosts, **kw) -> a started KazooClient, stopped and closed after the test."""
    made = KazooClients(SESSION_TIMEOUT)
    yield made
    made.close()


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zkcli-reconfig")


# --- helpers ---------------------------------------------------------------------------------

def spec(m, client=False):
    """The server.N value of member m as both kinds render it in /zookeeper/config: the
    ensemble's zoo.cfg lines carry no client port; a joining spec `...;<port>` comes back as
    `;0.0.0.0:<port>` on both."""
    text = "127.0.0.1:%d:%d:participant" % (m.peer_port, m.election_port)
    return text + (";0.0.0.0:%d" % m.port if client else "")


def joining(m):
    return "server.%d=127.0.0.1:%d:%d:participant;%d" % (m.sid, m.peer_port, m.election_port,
                                                         m.port)


def split_config(data):
    """(membership lines, version int) of a /zookeeper/config text."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    lines = text.split("\n")
    assert lines[-1].startswith("version="), text
    version = int(lines[-1][len("version="):], 16)      # hex, on both kinds
    return lines[:-1], version


def members_of(data):
    """{sid: value} of the server lines."""
    out = {}
    for line in split_config(data)[0]:
        key, _, value = line.partition("=")
        out[int(key[len("server."):])] = value
    return out


def read_config(client):
    client.sync("/zookeeper/config")
    return client.get("/zookeeper/config")


def check_config_node(data, stat, expected_lines):
    lines, version = split_config(data)
    assert lines == expected_lines
    assert version == stat.mzxid, (hex(version), hex(stat.mzxid))
    assert stat.version == -1 and stat.aversion == -1, stat
    assert stat.dataLength == len(data)


def wait_member_config(ens, data, timeout=15.0):
    """Wait until every running member's /zookeeper/config (read through a client of its own)
    is `data`."""
    deadline = time.monotonic() + timeout
    for m in ens.members:
        if not m.running():
            continue
        c = KazooClient(hosts=m.hosts, timeout=SESSION_TIMEOUT)
        c.start(timeout=15)
        try:
            while True:
                got = read_config(c)[0]
                if got == data:
                    break
                if time.monotonic() >= deadline:
                    pytest.fail("member %d: /zookeeper/config %r, wanted %r" % (m.sid, got, data))
                time.sleep(0.1)
        finally:
            c.stop()
            c.close()


def write_works(client, timeout=10.0):
    path = "/rc-" + uuid.uuid4().hex[:8]
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create(path, b"x")
            assert client.get(path)[0] == b"x"
            return path
        except KazooException:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def pick_follower(ens, prefer=3):
    fs = [m for m in ens.members if m.mode() == "follower"]
    assert fs, ens.modes()
    for m in fs:
        if m.sid == prefer:
            return m
    return fs[-1]


def current_members(ens, client):
    """Members named in /zookeeper/config, in id order."""
    return [ens.member(sid) for sid in sorted(members_of(read_config(client)[0]))]


def restore_membership(ens, client, sids):
    """Make sure every member in sids is in the membership (a test that failed halfway)."""
    have = members_of(read_config(client)[0])
    missing = [ens.member(s) for s in sids if s not in have]
    if missing:
        client.reconfig(joining=",".join(joining(m) for m in missing), leaving=None,
                        new_members=None)


def super_client(clients, ens):
    return clients(ens.hosts(), auth_data=[("digest", "super:%s" % SUPER_PW)])


# --- (1) /zookeeper/config after start -------------------------------------------------------

def test_config_node_after_start(rens, clients, ens_kind):
    c = clients(rens.hosts())
    data, stat = read_config(c)
    check_config_node(data, stat, ["server.%d=%s" % (m.sid, spec(m)) for m in rens.members])
    lines, version = split_config(data)
    leader = rens.leader()
    epoch = version >> 32
    assert epoch >= 1
    # The difference by design (module docstring): the counter of the first version.
    assert version & 0xffffffff == (1 if ens_kind == "zkpy" else 0), hex(version)
    _record(ens_kind, "first config version %x, mzxid %x, leader %d"
            % (version, stat.mzxid, leader.sid))
    acl, _ = c.get_acls("/zookeeper/config")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acl] == [(1, "world", "anyone")]
    # Every member has the same node (as a client of that member alone sees it).
    wait_member_config(rens, data)
    # Both kinds moved the server lines to zoo.cfg.dynamic.<version> at start.
    for m in rens.members:
        check_config_files(m, version, lines)


def check_config_files(m, version, lines):
    dyn = os.path.join(str(m.root), "zoo.cfg.dynamic.%x" % version)
    assert os.path.exists(dyn), sorted(os.listdir(m.root))
    cfg = m.cfg_path.read_text().splitlines()
    assert "dynamicConfigFile=%s" % dyn in cfg, cfg
    assert not [ln for ln in cfg if ln.startswith("server.")], cfg
    assert os.path.exists(str(m.cfg_path) + ".bak")
    with open(dyn) as f:
        body = [ln for ln in f.read().splitlines() if ln]
    assert body == lines, (dyn, body)


# --- (3) error codes ---------------------------------------------------------------------------

def test_reconfig_error_codes(rens, clients, ens_kind):
    c = clients(rens.hosts())
    before, stat = read_config(c)
    _, version = split_config(before)
    with pytest.raises(BadVersionError):
        c.reconfig(joining=None, leaving="3", new_members=None, from_config=version + 7)
    with pytest.raises(BadArgumentsError):
        c.reconfig(joining="server.9=not-a-host-spec", leaving=None, new_members=None)
    voters = sorted(members_of(before))
    with pytest.raises(BadArgumentsError):       # 1 voter left: no reconfig to standalone
        c.reconfig(joining=None, leaving=",".join(str(s) for s in voters[1:]),
                   new_members=None)
    with pytest.raises(BadArgumentsError):
        c.reconfig(joining=None, leaving=None,
                   new_members="server.1=" + spec(rens.member(1)))
    after, stat2 = read_config(c)
    assert (after, stat2.mzxid) == (before, stat.mzxid)
    write_works(c)


def test_reconfig_non_numeric_server_id(rens, clients, ens_kind, request):
    c = clients(rens.hosts())
    before, stat = read_config(c)
    try:
        with pytest.raises(MarshallingError):
            c.reconfig(joining="server.x=127.0.0.1:1:2:participant", leaving=None,
                       new_members=None)
        with pytest.raises(MarshallingError):
            c.reconfig(joining=None, leaving="x", new_members=None)
    finally:
        after, stat2 = read_config(c)
        assert (after, stat2.mzxid) == (before, stat.mzxid)
        write_works(c)


def test_reconfig_disabled_and_standalone(server_factory, clients, ens_kind, request):
    plain = server_factory(ens_kind)
    c = clients(plain.hosts)
    with pytest.raises(ReconfigDisabledError):
        c.reconfig(joining=None, leaving="3", new_members=None)
    enabled = server_factory(ens_kind, {"reconfigEnabled": "true"})
    c = clients(enabled.hosts)
    # Apache: a standalone server (ZooKeeperServer, not a LeaderZooKeeperServer) answers
    # UNIMPLEMENTED, before any ACL check; zkpy the same.
    with pytest.raises(UnimplementedError):
        c.reconfig(joining=None, leaving="3", new_members=None)
    assert c.get("/zookeeper/config")[0] == b""


def test_noauth_without_super_then_super_reconfigs(sens, clients, ens_kind):
    anon = clients(sens.hosts())
    before, stat = read_config(anon)
    with pytest.raises(NoAuthError):
        anon.reconfig(joining=None, leaving="3", new_members=None)
    alice = clients(sens.hosts(), auth_data=[("digest", "alice:pw")])
    with pytest.raises(NoAuthError):
        alice.reconfig(joining=None, leaving="3", new_members=None)
    # ZooKeeper's PrepRequestProcessor checks the request before the ACL of /zookeeper/config:
    # a stale fromConfig is BADVERSION, a server line that does not parse BADARGUMENTS, for a
    # client that could not reconfigure anyway. Neither leaves a reconfig half-prepared.
    with pytest.raises(BadVersionError):
        anon.reconfig(joining=None, leaving="3", new_members=None, from_config=1)
    with pytest.raises(BadArgumentsError):
        anon.reconfig(joining="server.9=nonsense", leaving=None, new_members=None)
    with pytest.raises(NoAuthError):
        anon.reconfig(joining=None, leaving="3", new_members=None)
    assert read_config(anon)[0] == before
    root = super_client(clients, sens)
    f = pick_follower(sens)
    data, stat = root.reconfig(joining=None, leaving=str(f.sid), new_members=None)
    assert f.sid not in members_of(data)
    assert read_config(root) == (data, stat)
    data, stat = root.reconfig(joining=joining(f), leaving=None, new_members=None)
    assert members_of(data)[f.sid] == spec(f, client=True)
    wait_member_config(sens, data)


# --- (2) remove a follower and add it back ---------------------------------------------------

def _remove(ens, c, f, kind):
    before, _ = read_config(c)
    t0 = time.monotonic()
    data, stat = c.reconfig(joining=None, leaving=str(f.sid), new_members=None)
    _record(kind, "reconfig -remove %d: %.2f s" % (f.sid, time.monotonic() - t0))
    expected = {s: v for s, v in members_of(before).items() if s != f.sid}
    assert members_of(data) == expected
    _, version = split_config(data)
    assert version == stat.mzxid and version > split_config(before)[1]
    assert read_config(c) == (data, stat)
    wait_member_config(ens, data)
    return data, expected


def _add_back(ens, c, f, expected):
    data, stat = c.reconfig(joining=joining(f), leaving=None, new_members=None)
    want = dict(expected)
    want[f.sid] = spec(f, client=True)
    assert members_of(data) == want
    assert split_config(data)[1] == stat.mzxid
    assert read_config(c) == (data, stat)
    wait_member_config(ens, data)
    ens.wait_healthy(30)
    assert f.mode() in ("follower", "leader")
    write_works(c)


def test_remove_follower_and_add_back(rens, clients, ens_kind):
    c = clients(rens.hosts())
    restore_membership(rens, c, (1, 2, 3))
    f = pick_follower(rens)
    data, expected = _remove(rens, c, f, ens_kind)
    # The removed server keeps running and serving (a non-voting follower on both kinds).
    srvr = f.srvr()
    _record(ens_kind, "removed member %d srvr Mode: %s" % (f.sid, srvr_mode(srvr)))
    assert srvr_mode(srvr) == "follower", srvr
    fc = clients(f.hosts)
    assert read_config(fc)[0] == data
    write_works(c)
    p = write_works(fc)                 # forwarded by the non-voter
    assert c.get(p)[0] == b"x"
    _add_back(rens, c, f, expected)


def test_removed_server_is_not_a_voter(rens, clients, ens_kind, request):
    """With the removed server up and the other voting follower killed, the leader has no
    quorum of the new voters: no write commits. The voters re-elect when it is back; the
    removed server follows the new leader again, still a non-voter."""
    c = clients(rens.hosts())
    restore_membership(rens, c, (1, 2, 3))
    f = pick_follower(rens)
    data, expected = _remove(rens, c, f, ens_kind)
    leader = rens.leader()
    other = [m for m in rens.members if m.sid in expected and m is not leader][0]
    lc = clients(leader.hosts)
    other.kill()
    try:
        t = lc.create_async("/rc-noquorum-" + uuid.uuid4().hex[:6], b"x")
        with pytest.raises((KazooException, KazooTimeoutError)):
            t.get(timeout=4.0)
        _record(ens_kind, "no write with voter %d down; removed member %d mode %r"
                % (other.sid, f.sid, f.mode()))
    finally:
        other.start()
    try:
        rens.wait_healthy(20, members=[m for m in rens.members if m.sid in expected])
        t0 = time.monotonic()
        mode = f.wait_mode(("follower",), timeout=10)
        _record(ens_kind, "removed member %d back as %s %.2f s after the voters re-elected"
                % (f.sid, mode, time.monotonic() - t0))
        fc = clients(f.hosts)
        assert read_config(fc)[0] == data
    finally:
        # Back to 3 voters whatever happened (later tests start from there).
        c2 = clients(rens.hosts())
        _add_back(rens, c2, f, expected)


# --- (4) a brand-new 4th member -----------------------------------------------------------

def test_add_fourth_member_then_kill_a_follower(rens, clients, ens_kind, request):
    c = clients(rens.hosts())
    restore_membership(rens, c, (1, 2, 3))
    before, _ = read_config(c)
    assert 4 not in members_of(before)
    m4 = rens.add_member()
    try:
        t0 = time.monotonic()
        m4.start()                 # zoo.cfg: the 3 members + itself
        mode = m4.wait_mode(("follower",), timeout=15)
        _record(ens_kind, "member 4 serving as %s (not in the membership) after %.2f s"
                % (mode, time.monotonic() - t0))
        c4 = clients(m4.hosts)
        assert read_config(c4)[0] == before      # it synced the current membership
    except BaseException:
        # Not added: out of the ensemble again (later tests wait for every member).
        m4.stop()
        rens.members.remove(m4)
        raise
    m4.keep_config = True
    data, stat = c.reconfig(joining=joining(m4), leaving=None, new_members=None)
    want = members_of(before)
    want[4] = spec(m4, client=True)
    assert members_of(data) == want
    assert read_config(c) == (data, stat)
    wait_member_config(rens, data)
    # 3 of 4 voters alive: writes go on.
    leader = rens.leader()
    victim = [m for m in rens.members[:3] if m is not leader and m.mode() == "follower"][0]
    victim.kill()
    try:
        t0 = time.monotonic()
        write_works(clients(leader.hosts))
        write_works(c4)
        _record(ens_kind, "writes with member %d killed (3 of 4 voters): %.2f s"
                % (victim.sid, time.monotonic() - t0))
    finally:
        victim.start()
    rens.wait_healthy(30)


# --- (6) restart every member: the new membership holds ----------------------------------

def test_restart_all_keeps_membership(rens, clients, ens_kind, request):
    c = clients(rens.hosts())
    data, stat = read_config(c)
    lines, version = split_config(data)
    running = [m for m in rens.members if m.sid in members_of(data)]
    assert len(running) >= 3
    c.stop()
    for m in running:
        check_config_files(m, version, lines)
    for m in rens.members:
        m.kill()
    t0 = time.monotonic()
    for m in rens.members:
        m.start()
    rens.wait_healthy(30)
    _record(ens_kind, "restart of all %d members (kill -9, start): %.2f s"
            % (len(rens.members), time.monotonic() - t0))
    c2 = clients(rens.hosts())
    data2, stat2 = read_config(c2)
    assert split_config(data2)[0] == lines
    assert split_config(data2)[1] == version and stat2.mzxid == stat.mzxid
    wait_member_config(rens, data)
    for m in running:
        check_config_files(m, version, lines)
    write_works(c2)


# --- (5) zkCli.sh config / reconfig ------------------------------------------------------------

def _cli(member, script, cli_dir):
    if zkservers.zkcli_unavailable():
        pytest.skip(zkservers.zkcli_unavailable())
    rc, lines = zkcli(member, stdin=script, cwd=cli_dir)
    return after_connect(lines)


def _config_block(lines, start):
    """Lines from `start` up to and including the first version= line."""
    out = []
    for line in lines[start:]:
        m = re.search(r"(server\.\d+=\S+|version=[0-9a-f]+)$", line)
        if m:
            out.append(m.group(1))
            if m.group(1).startswith("version="):
                return out
    pytest.fail("no config block after line %d:\n%s" % (start, "\n".join(lines)))


def test_zkcli_config_and_reconfig(sens, clients, ens_kind, cli_dir):
    c = super_client(clients, sens)
    restore_membership(sens, c, (1, 2, 3))
    before, _ = read_config(c)
    f = pick_follower(sens)
    via = [m for m in sens.members if m is not f][0]
    script = "\n".join([
        "config",
        "reconfig -remove %d" % f.sid,             # NOAUTH: no addauth yet
        "addauth digest super:%s" % SUPER_PW,
        "reconfig -remove %d" % f.sid,
        "config",
        "reconfig -add %s" % joining(f),
        "config",
        "quit",
    ]) + "\n"
    t0 = time.monotonic()
    out = _cli(via, script, cli_dir)
    _record(ens_kind, "zkCli config/reconfig session: %.2f s" % (time.monotonic() - t0))
    text = "\n".join(out)
    first = _config_block(out, 0)
    assert "\n".join(first).encode() == before, text
    noauth = [ln for ln in out if "Insufficient permission" in ln or "NoAuth" in ln]
    assert noauth, text
    _record(ens_kind, "zkCli reconfig without auth: %r" % noauth[0])
    committed = [i for i, ln in enumerate(out) if ln.startswith("Committed new configuration")]
    assert len(committed) == 2, text
    removed = _config_block(out, committed[0])
    assert f.sid not in members_of("\n".join(removed))
    assert members_of("\n".join(removed)) == {s: v for s, v in members_of(before).items()
                                              if s != f.sid}
    removed_config = _config_block(out, committed[0] + 1 + len(removed))
    assert removed_config == removed
    added = _config_block(out, committed[1])
    assert members_of("\n".join(added))[f.sid] == spec(f, client=True)
    final = read_config(c)[0]
    assert "\n".join(added).encode() == final
    assert _config_block(out, committed[1] + 1 + len(added)) == added
    wait_member_config(sens, final)
    write_works(c)
