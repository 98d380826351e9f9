"""Large results and large sessions (issue 5, "Large results stay within jute.maxbuffer").

ZooKeeper users hit sessions that cannot close because the closeSession txn listing their
ephemerals outgrows jute.maxbuffer; zkpy logs that txn in its own format with no such bound.
"""

import pytest


def test_session_with_over_a_megabyte_of_ephemeral_paths_closes(zkpy_server, make_client):
    owner = make_client(zkpy_server)
    observer = make_client(zkpy_server)
    owner.create("/many")
    name = "e" * 200
    count = 6000  # 6000 x ~210 bytes of paths: > 1 MiB (jute.maxbuffer)
    pending = [owner.create_async("/many/%s%05d" % (name, i), ephemeral=True)
               for i in range(count)]
    for p in pending:
        p.get(timeout=60)
    assert observer.exists("/many").numChildren == count
    owner.stop()
    assert observer.exists("/many").numChildren == 0
    assert "Traceback" not in zkpy_server.log_text()


def test_a_reply_over_jute_maxbuffer_fails_cleanly(server_factory, make_client):
    """A getChildren reply larger than jute.maxbuffer is answered with MARSHALLINGERROR on a live
    connection, instead of a frame a client with the same limit cannot read (the reconnect loop
    ZooKeeper users hit); raising jute.maxbuffer lets it through."""
    from kazoo.exceptions import MarshallingError
    srv = server_factory("zkpy", {"jute.maxbuffer": 200000})
    zk = make_client(srv)
    zk.create("/wide")
    pending = [zk.create_async("/wide/" + "w" * 180 + "%05d" % i) for i in range(2000)]
    for p in pending:
        p.get(timeout=60)
    with pytest.raises(MarshallingError):
        zk.get_children("/wide")
    assert zk.connected and zk.exists("/wide").numChildren == 2000
    assert "exceeds jute.maxbuffer=200000" in srv.log_text()
    big = server_factory("zkpy", {"jute.maxbuffer": 4000000})
    zk2 = make_client(big)
    zk2.create("/wide")
    for p in [zk2.create_async("/wide/" + "w" * 180 + "%05d" % i) for i in range(2000)]:
        p.get(timeout=60)
    assert len(zk2.get_children("/wide")) == 2000
