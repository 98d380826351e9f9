"""Container and TTL nodes, against zkpy and Apache ZooKeeper 3.8 (same config).

ZooKeeper's ContainerManager deletes a container once it has had a child and has none, and a
TTL node once it is childless and unmodified for its ttl; both at znode.container.checkIntervalMs.
TTL nodes need extendedTypesEnabled (a system property for ZooKeeper, which zoo.cfg sets).
kazoo has no container/TTL create, so these tests speak jute directly.
"""

import time

import pytest

from compat.test_bad_input import RawZk
from zkpy import errors
from zkpy.proto import codec, consts
from zkpy.proto import records as r

OPEN = [r.ACL(31, r.Id("world", "anyone"))]
CFG = {"znode.container.checkIntervalMs": "200", "extendedTypesEnabled": "true"}


def create(zk, path, flags=0, ttl=None, data=b""):
    if ttl is None:
        op = consts.OP_CREATE_CONTAINER if flags == consts.CREATE_CONTAINER else \
            consts.OP_CREATE2
        body = codec.encode(r.CreateRequest(path, data, OPEN, flags))
    else:
        op = consts.OP_CREATE_TTL
        body = codec.encode(r.CreateTTLRequest(path, data, OPEN, flags, ttl))
    reply = zk.call(op, body)
    if reply.err:
        return reply.err, None
    resp, _ = codec.decode(r.Create2Response, reply.body)
    return 0, resp


def exists(zk, path):
    reply = zk.call(consts.OP_EXISTS, codec.encode(r.ExistsRequest(path, False)))
    return reply.err == 0


def delete(zk, path):
    return zk.call(consts.OP_DELETE, codec.encode(r.DeleteRequest(path, -1))).err


def wait_gone(zk, path, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not exists(zk, path):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def raw(zk_kind, server_factory):
    server = server_factory(zk_kind, CFG)
    with RawZk(server.port) as zk:
        zk.connect()
        yield zk


def test_container_is_reaped_after_its_last_child_goes(raw):
    err, resp = create(raw, "/ctr", consts.CREATE_CONTAINER)
    assert err == 0
    # Stored with EphemeralType's CONTAINER marker, shown to clients as 0.
    assert resp.stat.ephemeralOwner == 0
    assert create(raw, "/ctr/kid")[0] == 0
    # A container is not an ephemeral: it may have children.
    assert delete(raw, "/ctr/kid") == 0
    assert wait_gone(raw, "/ctr")


def test_container_never_used_stays(raw):
    assert create(raw, "/unused", consts.CREATE_CONTAINER)[0] == 0
    time.sleep(1.0)  # five check intervals
    assert exists(raw, "/unused")


def test_container_with_children_stays(raw):
    assert create(raw, "/busy", consts.CREATE_CONTAINER)[0] == 0
    assert create(raw, "/busy/kid")[0] == 0
    time.sleep(0.8)
    assert exists(raw, "/busy") and exists(raw, "/busy/kid")


def test_ttl_node_expires_when_unmodified(raw):
    err, resp = create(raw, "/ttl", consts.CREATE_PERSISTENT_WITH_TTL, ttl=400)
    assert err == 0
    assert resp.stat.ephemeralOwner == 0  # the TTL marker is not shown to clients
    assert exists(raw, "/ttl")
    assert wait_gone(raw, "/ttl")


def test_sequential_ttl_node(raw):
    err, resp = create(raw, "/seqttl-", consts.CREATE_PERSISTENT_SEQUENTIAL_WITH_TTL, ttl=60000)
    assert err == 0 and resp.path.startswith("/seqttl-") and len(resp.path) == len("/seqttl-") + 10


def test_ttl_out_of_range_and_ttl_on_plain_mode_are_bad_arguments(raw):
    assert create(raw, "/bad", consts.CREATE_PERSISTENT_WITH_TTL, ttl=0)[0] == errors.BADARGUMENTS
    assert create(raw, "/bad", consts.CREATE_PERSISTENT, ttl=1000)[0] == errors.BADARGUMENTS


def test_ttl_disabled_is_unimplemented(zk_kind, server_factory):
    server = server_factory(zk_kind, {"znode.container.checkIntervalMs": "200"})
    with RawZk(server.port) as zk:
        zk.connect()
        assert create(zk, "/t", consts.CREATE_PERSISTENT_WITH_TTL, ttl=1000)[0] == \
            errors.UNIMPLEMENTED
