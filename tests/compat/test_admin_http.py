"""The AdminServer (admin.enableServer / admin.serverPort / admin.commandURL) over real HTTP.

zkpy only: Debian's ZooKeeper 3.8 package ships without the Jetty jars its AdminServer needs, so
there is no Apache server to compare with here; the JSON keys follow ZooKeeper's commands.
"""

import json
import urllib.error
import urllib.request

import pytest

from compat.servers import free_port


def _get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.status, json.loads(r.read().decode())


@pytest.fixture
def admin(server_factory, make_client):
    port = free_port()
    server = server_factory("zkpy", {"admin.enableServer": "true",
                                     "admin.serverAddress": "127.0.0.1",
                                     "admin.serverPort": str(port)})
    client = make_client(server)
    client.create("/adm", b"x")
    return port, server


def test_commands_ruok_stats_and_unknown(admin):
    port, _ = admin
    status, body = _get(port, "/commands/ruok")
    assert status == 200 and body["command"] == "ruok" and body["error"] is None
    status, body = _get(port, "/commands/stats")
    assert status == 200
    stats = body["server_stats"]
    assert stats["server_state"] == "standalone"
    assert stats["last_processed_zxid"] >= 2       # session + create
    assert body["node_count"] >= 5
    assert body["read_only"] is False
    assert any(c["session_id"].startswith("0x") for c in body["connections"])
    status, body = _get(port, "/commands/is_read_only")
    assert body["read_only"] is False
    listing = _get(port, "/commands")[1]
    assert "stats" in json.dumps(listing)
    with pytest.raises(urllib.error.HTTPError) as e:
        _get(port, "/commands/nosuchcommand")
    assert e.value.code == 404
