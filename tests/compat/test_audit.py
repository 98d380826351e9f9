"""The audit log (`audit.enable=true`), side by side with Apache ZooKeeper 3.8: the same kazoo
session's writes -- creates of each kind, setData, a failed delete, setAcl, a multi that commits
and one that fails, ephemerals removed by the session's close -- give the same audit lines
(session, user, ip, operation, znode, znode_type, acl, result), and serverStart / serverStop.

Differences that are not the audit log's: the session id's value; the order of the users of a
connection (ZooKeeper keeps a connection's identities in a hash set) and of the ephemerals a
close deletes (a hash set too). zkpy logs to `zkpy.audit`, ZooKeeper to its
Slf4jAuditLogger; the line after the logger's prefix is compared.
"""

import re

import pytest

from compat import servers as zkservers
from crash.kazoo_clients import client, close

_LINE = re.compile(r"(?:zkpy\.audit\]|audit\.Slf4jAuditLogger) - (.*)$")


def _scenario(hosts):
    from kazoo.exceptions import NoNodeError
    from kazoo.security import make_acl, make_digest_acl
    zk = client(hosts)
    try:
        zk.add_auth("digest", "bob:secret")
        zk.create("/a", b"x")
        zk.create("/a/s-", b"x", sequence=True, ephemeral=True)
        zk.create("/c", b"")
        zk.set("/a", b"y")
        with pytest.raises(NoNodeError):
            zk.delete("/nonexist")
        zk.set_acls("/a", [make_digest_acl("bob", "secret", all=True),
                           make_acl("world", "anyone", read=True)])
        t = zk.transaction()
        t.create("/m1", b"")
        t.create("/m2-", b"", sequence=True)
        t.set_data("/c", b"q")
        t.delete("/m1")
        t.commit()
        t = zk.transaction()
        t.create("/m3", b"")
        t.delete("/nope")
        t.commit()
        zk.create("/t", b"", ephemeral=True)
        zk.delete("/c")
    finally:
        close(zk)


def _audit_lines(text):
    out = []
    for line in text.splitlines():
        m = _LINE.search(line)
        if m is None:
            continue
        fields = dict(kv.split("=", 1) for kv in m.group(1).split("\t"))
        if "session" in fields:
            fields["session"] = "S"
        fields["user"] = tuple(sorted(fields.get("user", "").split(",")))
        out.append(fields)
    # A close deletes its ephemerals in no particular order (a hash set in ZooKeeper).
    i = 0
    while i < len(out):
        j = i
        while j < len(out) and out[j]["operation"] == \
                "ephemeralZNodeDeletionOnSessionCloseOrExpire":
            j += 1
        out[i:j] = sorted(out[i:j], key=lambda f: f["znode"])
        i = j + 1
    return out


@pytest.mark.timeout(120)
def test_audit_log_side_by_side(tmp_path):
    got = {}
    for kind in ("zkpy", "apache"):
        reason = zkservers.UNAVAILABLE[kind]()
        if reason:
            pytest.skip(reason)
        srv = zkservers.make_server(kind, tmp_path / kind, {"audit.enable": "true"})
        srv.start()
        try:
            _scenario(srv.hosts)
        finally:
            srv.stop()
        got[kind] = _audit_lines(srv.log_text())
    zkpy, apache = got["zkpy"], got["apache"]
    ops = [f["operation"] for f in zkpy]
    assert ops[0] == "serverStart" and ops[-1] == "serverStop", ops
    assert "ephemeralZNodeDeletionOnSessionCloseOrExpire" in ops and "setAcl" in ops
    assert any(f["result"] == "failure" for f in zkpy)
    assert zkpy == apache


def test_no_audit_lines_unless_enabled(tmp_path):
    reason = zkservers.zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    srv = zkservers.make_server("zkpy", tmp_path / "zkpy", {})
    srv.start()
    try:
        _scenario(srv.hosts)
    finally:
        srv.stop()
    assert _audit_lines(srv.log_text()) == []
