"""zkpy.server.audit's formatting: ZooKeeper's audit line (AuditEvent.toString) field for field."""

from zkpy.proto import consts
from zkpy.proto import codec
from zkpy.proto import records as r
from zkpy.server import audit
from zkpy.tree import txns


def test_format_event_order_and_missing_fields():
    line = audit.format_event("success", acl="world:anyone:r", znode="/a", operation="setAcl",
                              ip="1.2.3.4", user="bob", session="0x1")
    assert line == ("session=0x1\tuser=bob\tip=1.2.3.4\toperation=setAcl\tznode=/a\t"
                    "acl=world:anyone:r\tresult=success")
    assert audit.format_event("invoked", user="root", operation="serverStop") == \
        "user=root\toperation=serverStop\tresult=invoked"


def test_acl_string_runs_entries_together_as_zookeeper_prints_them():
    acl = [r.ACL(31, r.Id("digest", "bob:xyz=")), r.ACL(1, r.Id("world", "anyone")),
           r.ACL(2 | 16, r.Id("ip", "10.0.0.1"))]
    assert audit.acl_string(acl) == "digest:bob:xyz=:cdrwaworld:anyone:rip:10.0.0.1:wa"


def test_users_and_modes():
    assert audit.users([("ip", "127.0.0.1"), ("digest", "bob:hash="), ("x509", "CN=c")]) == \
        "127.0.0.1,bob,CN=c"
    assert audit.users([]) is None
    assert [audit.create_mode(f) for f in range(7)] == [
        "persistent", "ephemeral", "persistent_sequential", "ephemeral_sequential",
        "container", "persistent_with_ttl", "persistent_sequential_with_ttl"]
    assert audit.session_hex(-1) == "0xffffffffffffffff"


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, line):
        self.lines.append(("INFO", line))

    def error(self, line):
        self.lines.append(("ERROR", line))


def test_request_info_and_done():
    log = _Log()
    a = audit.AuditLog(logger=log, server_user="zk")
    body = codec.encode(r.CreateRequest("/q-", b"", [], 3))
    info = a.request_info(consts.OP_CREATE, body, [("ip", "1.1.1.1")])
    assert info == ("create", "/q-", "ephemeral_sequential", None, "1.1.1.1", "1.1.1.1")
    a.done(5, info, txns.Txn(txns.CREATE, 5, 1, 0, path="/q-0000000001"))
    a.done(5, info, txns.Txn(txns.ERROR, 5, 1, 0, err=-110))
    assert log.lines == [
        ("INFO", "session=0x5\tuser=1.1.1.1\tip=1.1.1.1\toperation=create\t"
                 "znode=/q-0000000001\tznode_type=ephemeral_sequential\tresult=success"),
        ("ERROR", "session=0x5\tuser=1.1.1.1\tip=1.1.1.1\toperation=create\tznode=/q-\t"
                  "znode_type=ephemeral_sequential\tresult=failure")]
    assert a.request_info(consts.OP_CLOSE_SESSION, b"", ()) is None
