"""The AdminServer: ZooKeeper's HTTP command interface on admin.serverPort (default 8080).

    GET /commands            -> a JSON list of the command names
    GET /commands/<name>     -> {"command": name, "error": null, ...}  (aliases as in ZooKeeper)

Serves the commands zkpy has: ruok, configuration|conf|config, environment|env|envi,
is_read_only|isro, monitor|mntr, server_stats|srvr, stats|stat. A thin asyncio shell over the same
data as the four-letter words; read-only.
"""

import asyncio
import json
import logging

from zkpy import ZK_VERSION_STRING
from zkpy.admin import fourletter

log = logging.getLogger("zkpy.admin")

_ALIASES = {
    "ruok": "ruok",
    "configuration": "configuration", "conf": "configuration", "config": "configuration",
    "environment": "environment", "env": "environment", "envi": "environment",
    "is_read_only": "is_read_only", "isro": "is_read_only",
    "monitor": "monitor", "mntr": "monitor",
    "server_stats": "server_stats", "srvr": "server_stats",
    "stats": "stats", "stat": "stats",
}


def _number(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def _kv(text, sep="="):
    out = {}
    for line in text.splitlines():
        if sep in line:
            k, v = line.split(sep, 1)
            out[k.strip()] = _number(v.strip())
    return out


async def command(core, report_fn, name, peer):
    """Return (status, dict) for /commands/<name>."""
    canonical = _ALIASES.get(name)
    if canonical is None:
        return 404, {"command": name, "error": "Unknown command: %s" % name}
    body = {"command": canonical, "error": None}
    rep = await report_fn(peer)
    if canonical == "configuration":
        body.update(_kv(fourletter.conf(rep)))
    elif canonical == "environment":
        body.update(_kv(fourletter.envi(rep)))
    elif canonical == "is_read_only":
        body["read_only"] = bool(core.read_only)
    elif canonical == "monitor":
        body.update({k[3:]: v for k, v in _kv(fourletter.mntr(rep), "\t").items()})
    elif canonical in ("server_stats", "stats"):
        lo, avg, hi = rep.latency
        body.update({
            "version": ZK_VERSION_STRING,
            "read_only": bool(core.read_only),
            "server_stats": {
                "packets_sent": rep.packets_sent,
                "packets_received": rep.packets_received,
                "max_latency": hi, "min_latency": lo, "avg_latency": avg,
                "num_alive_client_connections": len(rep.connections),
                "outstanding_requests": core.committer.pending,
                "server_state": core.mode,
                "last_processed_zxid": core.last_zxid,
                "data_dir_size": fourletter._dir_size(core.config.data_dir),
                "log_dir_size": fourletter._dir_size(core.config.data_log_dir),
            },
            "node_count": core.view.node_count() + 1,
        })
        if canonical == "stats":
            body["connections"] = [{"remote_socket_address": c["peer"],
                                    "session_id": "0x%x" % c["session_id"],
                                    "packets_received": c["received"], "packets_sent": c["sent"]}
                                   for c in rep.connections]
    return 200, body


async def _handle(core, report_fn, reader, writer):
    try:
        request = await asyncio.wait_for(reader.readline(), 30)
        while True:  # skip the headers
            line = await asyncio.wait_for(reader.readline(), 30)
            if line in (b"\r\n", b"\n", b""):
                break
        parts = request.decode("latin-1").split()
        status, body = 400, {"error": "bad request"}
        if len(parts) >= 2 and parts[0] in ("GET", "HEAD"):
            path = parts[1].split("?", 1)[0].rstrip("/")
            if path == core.config.admin_command_url.rstrip("/"):
                status, body = 200, sorted(set(_ALIASES.values()))
            elif path.startswith(core.config.admin_command_url.rstrip("/") + "/"):
                peer = writer.get_extra_info("peername")
                peer = "%s:%s" % peer[:2] if peer else "?"
                status, body = await command(core, report_fn, path.rsplit("/", 1)[1], peer)
            else:
                status, body = 404, {"error": "not found: %s" % path}
        data = json.dumps(body, indent=2).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, reason.encode(),
                                                                        len(data)))
        if parts and parts[0] != "HEAD":
            writer.write(data)
        await writer.drain()
    except (asyncio.TimeoutError, ConnectionError, UnicodeDecodeError):
        pass
    except Exception:
        log.exception("admin request failed")
    finally:
        writer.close()


async def start(core, report_fn):
    cfg = core.config
    try:
        server = await asyncio.start_server(lambda r, w: _handle(core, report_fn, r, w),
                                            cfg.admin_server_address, cfg.admin_server_port,
                                            reuse_address=True)
    except OSError as e:
        # ZooKeeper logs and carries on when the AdminServer cannot bind.
        log.warning("AdminServer could not start on %s:%d: %s (set admin.enableServer=false or "
                    "admin.serverPort)", cfg.admin_server_address, cfg.admin_server_port, e)
        return None
    log.info("AdminServer on http://%s:%d%s", cfg.admin_server_address, cfg.admin_server_port,
             cfg.admin_command_url)
    return server
