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
    assert observer.get_children("/many", include_data=True)[1].numChildren == count
    owner.stop()
    assert observer.get_children("/many", include_data=True)[1].numChildren == 0
    assert "Traceback" not in zkpy_server.log_text()


@pytest.mark.parametrize("kind", ["zkpy"])
def test_server_survives_a_get_children_reply_larger_than_the_client_accepts(
        kind, server_factory, make_client):
    """A getChildren reply over 1 MiB goes out whole, as ZooKeeper sends it (a Java client with
    the default jute.maxbuffer then drops the connection, against either server); kazoo reads it,
    and the server keeps serving."""
    srv = server_factory(kind)
    zk = make_client(srv)
    zk.create("/wide")
    pending = [zk.create_async("/wide/" + "w" * 180 + "%05d" % i) for i in range(6000)]
    for p in pending:
        p.get(timeout=60)
    kids = zk.get_children("/wide")  # kazoo reads frames of any size
    assert len(kids) == 6000
    other = make_client(srv)
    assert other.exists("/wide").numChildren == 6000
