"""Four-letter words on the client port, as Apache ZooKeeper 3.8 answers them.

Owns the 4lw compatibility checks (ruok, srvr, stat, conf, mntr, envi, isro, wchs, dirs, the
whitelist refusal text). Runs on every selected server kind via the zk_kind fixtures.
"""

import os
import re

NOT_WHITELISTED = "{} is not executed because it is not in the whitelist.\n"


def _kv(text, sep):
    out = {}
    for line in text.splitlines():
        if sep in line:
            k, v = line.split(sep, 1)
            out[k.strip()] = v.strip()
    return out


def test_ruok(shared_zk_server):
    assert shared_zk_server.four_letter("ruok") == "imok"


def test_srvr(zk_server, make_client):
    text = zk_server.four_letter("srvr")
    assert text.startswith("Zookeeper version: "), text
    for line in ("Latency min/avg/max: ", "Received: ", "Sent: ", "Connections: ",
                 "Outstanding: ", "Zxid: 0x", "Mode: standalone\n", "Node count: "):
        assert line in text, (line, text)
    fields = _kv(text, ": ")
    assert re.fullmatch(r"\d+/[\d.]+/\d+", fields["Latency min/avg/max"]), text
    assert re.fullmatch(r"0x[0-9a-f]+", fields["Zxid"]), text
    before = int(fields["Node count"])
    assert before >= 4  # /, /zookeeper, /zookeeper/quota, /zookeeper/config at least

    client = make_client(zk_server)
    client.create("/fourletter-a")
    client.create("/fourletter-b", ephemeral=True)
    after = _kv(zk_server.four_letter("srvr"), ": ")
    assert int(after["Node count"]) == before + 2
    assert int(after["Zxid"], 16) > int(fields["Zxid"], 16)
    assert int(after["Connections"]) >= 1


def test_stat_lists_clients(shared_zk_server, make_client):
    client = make_client(shared_zk_server)
    local_port = client._connection._socket.getsockname()[1]
    text = shared_zk_server.four_letter("stat")
    assert text.startswith("Zookeeper version: "), text
    assert "Clients:\n" in text
    assert "Mode: standalone\n" in text and "Node count: " in text
    # " /127.0.0.1:PORT[1](queued=0,recved=...,sent=...)" for the kazoo connection
    assert re.search(rf"^ /127\.0\.0\.1:{local_port}\[\d+\]\(queued=\d+,recved=\d+,sent=\d+",
                     text, re.M), text


def test_conf(shared_zk_server):
    text = shared_zk_server.four_letter("conf")
    fields = _kv(text, "=")
    assert f"clientPort={shared_zk_server.port}\n" in text, text
    assert fields["tickTime"] == "2000"
    assert fields["maxClientCnxns"] == "60"
    # Defaults derived from tickTime: 2 and 20 ticks.
    assert fields["minSessionTimeout"] == "4000"
    assert fields["maxSessionTimeout"] == "40000"
    # Apache prints the versioned snapshot dir: <dataDir>/version-2
    assert fields["dataDir"].startswith(str(shared_zk_server.data_dir)), text


def test_conf_session_timeouts_from_cfg(server_factory, zk_kind):
    server = server_factory(zk_kind, {"minSessionTimeout": "5000", "maxSessionTimeout": "9000"})
    fields = _kv(server.four_letter("conf"), "=")
    assert fields["minSessionTimeout"] == "5000"
    assert fields["maxSessionTimeout"] == "9000"


def test_mntr(zk_server, make_client):
    text = zk_server.four_letter("mntr")
    lines = [line for line in text.split("\n") if line]
    assert lines, text
    for line in lines:
        assert line.count("\t") == 1, f"not key<TAB>value: {line!r}"
    fields = dict(line.split("\t") for line in lines)
    for key in ("zk_version", "zk_server_state", "zk_znode_count", "zk_ephemerals_count",
                "zk_num_alive_connections", "zk_watch_count", "zk_outstanding_requests",
                "zk_avg_latency", "zk_packets_received", "zk_packets_sent"):
        assert key in fields, key
    assert lines[0].startswith("zk_version\t")
    assert fields["zk_server_state"] == "standalone"
    nodes = int(fields["zk_znode_count"])
    ephemerals = int(fields["zk_ephemerals_count"])

    client = make_client(zk_server)
    client.create("/mntr-e", ephemeral=True)
    client.exists("/mntr-e", watch=lambda event: None)
    after = dict(line.split("\t") for line in zk_server.four_letter("mntr").split("\n") if line)
    assert int(after["zk_znode_count"]) == nodes + 1
    assert int(after["zk_ephemerals_count"]) == ephemerals + 1
    assert int(after["zk_watch_count"]) >= 1
    assert int(after["zk_num_alive_connections"]) >= 1


def test_envi(shared_zk_server):
    text = shared_zk_server.four_letter("envi")
    assert text.startswith("Environment:\n"), text
    fields = _kv(text, "=")
    assert "zookeeper.version" in fields
    assert "host.name" in fields


def test_envi_says_which_compiled_twins_run(zkpy_server):
    """zkpy's envi names each compiled module and which twin runs (the server's ZKPY_PURE or
    build decides: zkpy.compiled), and so does the start-up log line."""
    from zkpy import compiled
    fields = _kv(zkpy_server.four_letter("envi"), "=")
    want = "pure" if os.environ.get("ZKPY_PURE") == "1" else "compiled"
    for name in compiled.MODULES:
        assert fields["zkpy.compiled.%s" % name].startswith(want), fields
    line = [ln for ln in zkpy_server.log_text().splitlines() if "compiled twins:" in ln]
    assert len(line) == 1 and all(name in line[0] for name in compiled.MODULES), line


def test_isro(shared_zk_server):
    assert shared_zk_server.four_letter("isro") == "rw"


def test_wchs_wchp_wchc(zk_server, make_client):
    assert zk_server.four_letter("wchs") == "0 connections watching 0 paths\nTotal watches:0\n"
    client = make_client(zk_server)
    sid = f"0x{client.client_id[0]:x}"
    client.create("/wchs")
    client.get_children("/wchs", watch=lambda event: None)
    # 3.8 counts data watches only: a child watch alone shows nothing.
    assert zk_server.four_letter("wchs") == "0 connections watching 0 paths\nTotal watches:0\n"
    client.get("/wchs", watch=lambda event: None)
    assert zk_server.four_letter("wchs") == "1 connections watching 1 paths\nTotal watches:1\n"
    assert zk_server.four_letter("wchp") == f"/wchs\n\t{sid}\n\n"
    assert zk_server.four_letter("wchc") == f"{sid}\n\t/wchs\n\n"
    client.exists("/wchs-missing", watch=lambda event: None)  # exists on a missing node watches
    assert zk_server.four_letter("wchs") == "1 connections watching 2 paths\nTotal watches:2\n"


def test_dirs(shared_zk_server):
    fields = _kv(shared_zk_server.four_letter("dirs"), ": ")
    assert set(fields) >= {"datadir_size", "logdir_size"}
    assert int(fields["datadir_size"]) >= 0


def test_unknown_word_closes_without_answer(shared_zk_server):
    # Not a 4lw: the 4 bytes are read as a (huge) frame length and the connection is dropped.
    assert shared_zk_server.four_letter("xxxx") == ""
    assert shared_zk_server.four_letter("ruok") == "imok"


def test_whitelist(server_factory, zk_kind):
    server = server_factory(zk_kind, {"4lw.commands.whitelist": "ruok, conf"})
    assert server.four_letter("ruok") == "imok"
    assert f"clientPort={server.port}\n" in server.four_letter("conf")
    # srvr is always allowed (zkServer.sh status needs it).
    assert server.four_letter("srvr").startswith("Zookeeper version: ")
    for cmd in ("mntr", "stat", "envi", "isro", "wchs", "dump", "cons"):
        assert server.four_letter(cmd) == NOT_WHITELISTED.format(cmd), cmd


def test_default_whitelist_is_srvr_only(server_factory, zk_kind):
    """Without the key only srvr answers; even ruok gets the refusal text."""
    server = server_factory(zk_kind, {"4lw.commands.whitelist": None})
    assert server.four_letter("ruok") == NOT_WHITELISTED.format("ruok")
    assert server.four_letter("srvr").startswith("Zookeeper version: ")
    assert server.four_letter("mntr") == NOT_WHITELISTED.format("mntr")
