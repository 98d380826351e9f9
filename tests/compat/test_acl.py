"""ACLs and authentication, the same script against zkpy and Apache ZooKeeper 3.8.

Schemes world, auth, digest and ip; CREATE/READ/WRITE/DELETE/ADMIN checks; setACL with aversion;
INVALIDACL; getACL masking without ADMIN. One known difference is intended: `exists` on an
existing node needs READ in ZooKeeper 3.8.4+ / 3.9.2+ (CVE-2024-23944), while Debian's 3.8.0
still answers it.
"""

import pytest
from kazoo.security import OPEN_ACL_UNSAFE, make_acl, make_digest_acl

from zkpy.tree import acl as acls


def transcript(server, make_client):
    a = make_client(server, auth_data=[("digest", "alice:pw")])
    b = make_client(server)
    out = {}

    def t(label, fn):
        try:
            r = fn()
            out[label] = ("ok", "stat" if hasattr(r, "czxid") else r)
        except Exception as e:  # the error class is the outcome
            out[label] = (type(e).__name__,)

    t("create alice-only", lambda: a.create("/acl-a", b"secret",
                                             acl=[make_digest_acl("alice", "pw", all=True)]))
    t("b get", lambda: b.get("/acl-a")[0])
    t("b exists", lambda: b.exists("/acl-a"))
    t("b children", lambda: b.get_children("/acl-a"))
    t("b set", lambda: b.set("/acl-a", b"x"))
    t("b create child", lambda: b.create("/acl-a/c"))
    t("a create child", lambda: a.create("/acl-a/c"))
    t("b delete child", lambda: b.delete("/acl-a/c"))
    t("b getacl", lambda: b.get_acls("/acl-a")[0])
    t("a getacl", lambda: a.get_acls("/acl-a")[0])
    t("a get", lambda: a.get("/acl-a")[0])
    t("read-only acl", lambda: a.create("/acl-r", b"r",
                                        acl=[make_acl("world", "anyone", read=True)]))
    t("b read r", lambda: b.get("/acl-r")[0])
    t("b set r", lambda: b.set("/acl-r", b"y"))
    t("b getacl r", lambda: b.get_acls("/acl-r")[0])
    t("setacl without admin", lambda: b.set_acls("/acl-r", OPEN_ACL_UNSAFE))
    t("digest id without colon", lambda: a.create("/acl-x", acl=[make_acl("digest", "x",
                                                                          all=True)]))
    t("world id not anyone", lambda: a.create("/acl-x", acl=[make_acl("world", "bob",
                                                                      all=True)]))
    t("unknown scheme", lambda: a.create("/acl-x", acl=[make_acl("nosuch", "x", all=True)]))
    t("auth scheme, no identity", lambda: b.create("/acl-x", acl=[make_acl("auth", "",
                                                                           all=True)]))
    t("auth scheme", lambda: a.create("/acl-c", acl=[make_acl("auth", "", all=True)]))
    t("auth scheme expands", lambda: a.get_acls("/acl-c")[0])
    t("ip acl", lambda: a.create("/acl-ip", acl=[make_acl("ip", "127.0.0.0/8", all=True)]))
    t("b reads ip", lambda: b.get("/acl-ip")[0])
    t("ip acl other net", lambda: a.create("/acl-ip2", b"", acl=[make_acl("ip", "10.0.0.0/8",
                                                                        all=True)]))
    t("b reads ip other net", lambda: b.get("/acl-ip2")[0])
    t("setacl bad aversion", lambda: a.set_acls("/acl-a", OPEN_ACL_UNSAFE, version=5))
    t("setacl", lambda: a.set_acls("/acl-a", OPEN_ACL_UNSAFE, version=0).aversion)
    t("b get after setacl", lambda: b.get("/acl-a")[0])
    t("aversion", lambda: b.exists("/acl-a").aversion)
    t("multi without write", lambda: [type(r).__name__ for r in
                                      b.transaction().set_data("/acl-r", b"z").commit()])
    t("b delete ip", lambda: b.delete("/acl-ip"))
    return out


def test_acl_outcomes_match_apache(zk_targets, server_factory, make_client):
    results = {}
    for kind in zk_targets:
        results[kind] = transcript(server_factory(kind), make_client)
    for kind, out in results.items():
        # Facts of ZooKeeper's ACL model, whichever server.
        assert out["b get"] == ("NoAuthError",)
        assert out["a get"] == ("ok", b"secret")
        assert out["b set r"] == ("NoAuthError",)
        assert out["digest id without colon"] == ("InvalidACLError",)
        assert out["auth scheme, no identity"] == ("InvalidACLError",)
        assert out["auth scheme expands"][1][0].id.scheme == "digest"
        assert out["b reads ip"] == ("ok", b"")
        assert out["b reads ip other net"] == ("NoAuthError",)
        assert out["setacl bad aversion"] == ("BadVersionError",)
        assert out["setacl"] == ("ok", 1)
        assert out["b get after setacl"] == ("ok", b"secret")
    if len(results) == 2:
        z, a = dict(results["zkpy"]), dict(results["apache"])
        # 3.8.4+: exists needs READ; Debian's 3.8.0 predates it.
        assert z.pop("b exists") == ("NoAuthError",)
        assert a.pop("b exists") == ("ok", "stat")
        assert z == a


def test_super_digest_passes_every_check(server_factory, make_client):
    super_id = acls.digest("super:secret")
    srv = server_factory("zkpy", {"DigestAuthenticationProvider.superDigest": super_id})
    alice = make_client(srv, auth_data=[("digest", "alice:pw")])
    alice.create("/locked", b"x", acl=[make_digest_acl("alice", "pw", read=True)])
    root = make_client(srv, auth_data=[("digest", "super:secret")])
    assert root.get("/locked")[0] == b"x"
    root.set("/locked", b"y")
    assert root.get_acls("/locked")[0][0].id.id.startswith("alice:")
    root.delete("/locked")


def test_bad_auth_scheme_fails_and_closes(server_factory, make_client):
    from kazoo.exceptions import AuthFailedError
    srv = server_factory("zkpy")
    client = make_client(srv)
    with pytest.raises(AuthFailedError):
        client.add_auth("nosuch", "x")


def test_digest_matches_zookeeper_generate_digest():
    # Printed by DigestAuthenticationProvider.generateDigest of the Debian 3.8.0 jar:
    #   java -cp .:zookeeper.jar:slf4j-api.jar:slf4j-nop.jar D "super:secret"   (D calls it)
    assert acls.digest("super:secret") == "super:lK75jTNcA+U9vtVEw5vB51mj/w4="
    assert acls.digest("alice:pw") == "alice:V55/p2T0OpjQ+low3NVAH4aLvm0="


def test_watch_events_need_read_permission(server_factory, make_client):
    """ZooKeeper 3.8.4+ / 3.9.2+ (CVE-2024-23944) send no event to a watcher that may not read
    the node; Debian's 3.8.0 predates the fix, so this runs against zkpy only."""
    import threading
    srv = server_factory("zkpy")
    alice = make_client(srv, auth_data=[("digest", "alice:pw")])
    bob = make_client(srv)
    alice.create("/sec", b"v0", acl=[make_acl("world", "anyone", read=True),
                                      make_digest_acl("alice", "pw", all=True)])
    got = {"alice": threading.Event(), "bob": threading.Event()}
    bob.get("/sec", watch=lambda e: got["bob"].set())
    alice.get("/sec", watch=lambda e: got["alice"].set())
    alice.set_acls("/sec", [make_digest_acl("alice", "pw", all=True)])
    alice.set("/sec", b"v1")
    assert got["alice"].wait(5)
    alice.sync("/sec")
    bob.sync("/")
    assert not got["bob"].wait(0.5), "bob may not read /sec but was told it changed"
