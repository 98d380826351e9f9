"""zoo.cfg parsing: the Config value and ZooKeeper's rules for reading it.

Owns the Java-properties reader, the key table (names, defaults, checks), server.N parsing and the
text the `conf` four-letter word prints. parse_config / parse_properties / parse_server_spec are pure
(no file or socket I/O; relative paths are resolved against the current directory, as the JVM does);
load_config is the one helper that reads files (zoo.cfg, dataDir/myid, dynamicConfigFile).
Imports only zkpy.errors; anyone may import it.

Rules follow ZooKeeper 3.8/3.9 QuorumPeerConfig.parseProperties. Where ZooKeeper routes a key to a
JVM system property (`zookeeper.<key>`: snapCount, 4lw.commands.whitelist, admin.*, ...) zkpy reads
the same key from zoo.cfg, so a real zoo.cfg works unchanged. Two deliberate differences: Python
has no -D flags, so `jute.maxbuffer` and `readonlymode.enabled` are also accepted from zoo.cfg; and
a bad value is always an error naming key and line, where ZooKeeper sometimes silently uses a default.
"""

import dataclasses
import os
import re
from dataclasses import dataclass, field

from zkpy.errors import ConfigError

# FourLetterCommands.java (3.8.0 = 3.9.5 list).
ALL_FOUR_LETTER_WORDS = frozenset([
    "conf", "cons", "crst", "dump", "envi", "ruok", "srst", "srvr", "stat",
    "wchs", "wchc", "wchp", "dirs", "mntr", "isro", "hash", "gtmk", "stmk",
])

MIN_SNAP_RETAIN_COUNT = 3  # PurgeTxnLog refuses to keep fewer snapshots
DEFAULT_TICK_TIME_MS = 3000  # ZooKeeperServer.DEFAULT_TICK_TIME (zoo_sample.cfg uses 2000)
DEFAULT_LMDB_MAP_SIZE = 1 << 36  # lmdbMapSize: 64 GiB of address space for the znode database
MIN_LMDB_MAP_SIZE = 1 << 20

ROLE_PARTICIPANT = "participant"
ROLE_OBSERVER = "observer"


@dataclass(frozen=True)
class ServerSpec:
    """One `server.N=host:peer:election[:role][;[addr:]port]` line."""
    id: int
    host: str
    peer_port: int
    election_port: int
    role: str = ROLE_PARTICIPANT
    client_address: str = None  # None: no client part on the line
    client_port: int = None

    def to_config_value(self):
        """The value as ZooKeeper's QuorumServer.toString writes it (membership, /zookeeper/config)."""
        text = "%s:%d:%d:%s" % (_bracket(self.host), self.peer_port, self.election_port, self.role)
        if self.client_port is not None:
            text += ";%s:%d" % (_bracket(self.client_address or "0.0.0.0"), self.client_port)
        return text


@dataclass(frozen=True)
class Config:
    """A parsed zoo.cfg. Times are milliseconds unless the name says otherwise."""
    data_dir: str
    client_port: int
    path: str = "<string>"
    tick_time_ms: int = DEFAULT_TICK_TIME_MS
    data_log_dir: str = None
    client_port_address: str = "0.0.0.0"
    client_port_listen_backlog: int = -1
    max_client_cnxns: int = 60
    max_cnxns: int = 0
    min_session_timeout_ms: int = 2 * DEFAULT_TICK_TIME_MS
    max_session_timeout_ms: int = 20 * DEFAULT_TICK_TIME_MS
    init_limit: int = 0
    sync_limit: int = 0
    connect_to_learner_master_limit: int = 0
    election_alg: int = 3
    snap_count: int = 100000
    snap_size_limit_kb: int = 4194304
    txn_log_size_limit_kb: int = -1
    pre_alloc_size_kb: int = 65536
    force_sync: bool = True
    fsync_warning_threshold_ms: int = 1000
    jute_maxbuffer: int = 0xFFFFF
    four_letter_words: frozenset = frozenset(["srvr"])
    admin_enable_server: bool = True
    admin_server_address: str = "0.0.0.0"
    admin_server_port: int = 8080
    admin_command_url: str = "/commands"
    admin_idle_timeout_ms: int = 30000
    autopurge_snap_retain_count: int = 3
    autopurge_purge_interval_ms: int = 0   # 0: no autopurge
    servers: dict = field(default_factory=dict)
    peer_type: str = ROLE_PARTICIPANT
    standalone_enabled: bool = True
    reconfig_enabled: bool = False
    dynamic_config_file: str = None
    config_version: int = 0  # from the dynamic file name / `version` key; printed in hex
    sync_enabled: bool = True
    local_sessions_enabled: bool = False
    local_sessions_upgrading_enabled: bool = False
    myid: int = None
    max_batch_size: int = 1000
    flush_delay_ms: int = 0
    global_outstanding_limit: int = 1000
    extended_types_enabled: bool = False
    enforce_quota: bool = False
    super_digest: str = None
    skip_acl: bool = False
    digest_enabled: bool = True
    container_check_interval_ms: int = 60000
    container_max_per_minute: int = 10000
    container_max_never_used_interval_ms: int = 0
    readonly_mode_enabled: bool = False
    # zkpy-specific
    workers: int = 1
    commit_max_bytes: int = 1 << 20
    checkpoint_interval_ms: int = 2000
    lmdb_map_size: int = DEFAULT_LMDB_MAP_SIZE
    # bookkeeping
    raw: dict = field(default_factory=dict)
    warnings: tuple = ()

    def session_timeout_bounds(self):
        """(min, max) session timeout in ms that a connect request's timeout is clamped to."""
        return self.min_session_timeout_ms, self.max_session_timeout_ms

    def voting_members(self):
        return {sid: s for sid, s in self.servers.items() if s.role == ROLE_PARTICIPANT}

    def is_distributed(self):
        """QuorumPeerConfig.isDistributed: a quorum, not a standalone server."""
        if not self.servers:
            return False
        return (not self.standalone_enabled) or len(self.voting_members()) > 1

    def to_conf_text(self, data_dir_size=0, data_log_size=0, client_port=None):
        """The exact text the `conf` 4lw answers (ZooKeeperServer / QuorumZooKeeperServer.dumpConf).

        Directory sizes need I/O, so the caller passes them; client_port overrides the configured
        one when the server bound an ephemeral port.
        """
        port = self.client_port if client_port is None else client_port
        distributed = self.is_distributed()
        lines = [
            "clientPort=%d" % port,
            "secureClientPort=-1",  # zkpy has no TLS listener; ZooKeeper prints -1 when unset
            # FileTxnSnapLog keeps its files in <dir>/version-2 and dumpConf prints that path.
            "dataDir=%s" % os.path.join(self.data_dir, "version-2"),
            "dataDirSize=%d" % data_dir_size,
            "dataLogDir=%s" % os.path.join(self.data_log_dir, "version-2"),
            "dataLogSize=%d" % data_log_size,
            "tickTime=%d" % self.tick_time_ms,
            "maxClientCnxns=%d" % self.max_client_cnxns,
            "minSessionTimeout=%d" % self.min_session_timeout_ms,
            "maxSessionTimeout=%d" % self.max_session_timeout_ms,
            "clientPortListenBacklog=%d" % self.client_port_listen_backlog,
            # A standalone ZooKeeperServer reports serverId 0 even when myid exists.
            "serverId=%d" % (self.myid if distributed and self.myid is not None else 0),
        ]
        if not distributed:
            return "\n".join(lines) + "\n"
        me = self.servers.get(self.myid)
        lines += [
            "initLimit=%d" % self.init_limit,
            "syncLimit=%d" % self.sync_limit,
            "electionAlg=%d" % self.election_alg,
            "electionPort=%s" % (me.election_port if me else ""),
            "quorumPort=%s" % (me.peer_port if me else ""),
            # LearnerType ordinal: PARTICIPANT=0, OBSERVER=1
            "peerType=%d" % (1 if self.peer_type == ROLE_OBSERVER else 0),
            "membership: ",
        ]
        # QuorumMaj.toString: server lines then "version=<hex>" with no final newline.
        membership = "".join("server.%d=%s\n" % (sid, self.servers[sid].to_config_value())
                             for sid in sorted(self.servers))
        membership += "version=%x" % self.config_version
        return "\n".join(lines) + "\n" + membership


# ---------------------------------------------------------------------------------------------
# Java properties reader

_WS = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(text, path="<string>"):
    """Read java.util.Properties text into [(key, value, line_number)], in file order.

    Follows Properties.load: `#`/`!` comment lines, key ends at the first unescaped `=`, `:` or
    whitespace, a line ending in an odd number of backslashes continues on the next line, and
    backslash escapes (\\t, \\uXXXX, ...). Key and value are then trimmed, as ZooKeeper does.
    Duplicates are all returned; the caller keeps the last, like Properties.
    """
    physical = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    entries = []
    i = 0
    while i < len(physical):
        start = i
        line = physical[i].lstrip(_WS)
        i += 1
        if not line or line[0] in "#!":
            continue
        # Join continuation lines; a continued line loses its leading whitespace.
        while _ends_with_continuation(line):
            line = line[:-1]  # at end of input the dangling backslash is dropped
            if i >= len(physical):
                break
            line += physical[i].lstrip(_WS)
            i += 1
        key, value = _split_key_value(line)
        try:
            key = _unescape(key).strip()
            value = _unescape(value).strip()
        except ValueError as e:
            raise ConfigError(str(e), line=start + 1, path=path)
        entries.append((key, value, start + 1))
    return entries


def _ends_with_continuation(line):
    n = len(line) - len(line.rstrip("\\"))
    return n % 2 == 1


def _split_key_value(line):
    j = 0
    n = len(line)
    while j < n:
        c = line[j]
        if c == "\\":
            j += 2
            continue
        if c in "=:" or c in _WS:
            break
        j += 1
    key = line[:j]
    k = j
    while k < n and line[k] in _WS:
        k += 1
    if k < n and line[k] in "=:":
        k += 1
    return key, line[k:]


def _unescape(s):
    if "\\" not in s:
        return s
    out = []
    j = 0
    while j < len(s):
        c = s[j]
        if c != "\\":
            out.append(c)
            j += 1
            continue
        if j + 1 >= len(s):
            j += 1
            continue
        e = s[j + 1]
        if e == "u":
            digits = s[j + 2:j + 6]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError("malformed \\uxxxx escape")
            out.append(chr(int(digits, 16)))
            j += 6
        else:
            out.append(_ESCAPES.get(e, e))
            j += 2
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# value converters: each takes (key, value, ctx) and raises ConfigError naming key and line

class _Ctx:
    def __init__(self, path):
        self.path = path
        self.warnings = []
        self.line = None

    def error(self, key, message, line=None):
        return ConfigError("%s: %s" % (key, message) if key else message, key=key,
                           line=self.line if line is None else line, path=self.path)

    def warn(self, message, line=None):
        line = self.line if line is None else line
        where = self.path + (":%d" % line if line is not None else "")
        self.warnings.append("%s: %s" % (where, message))


_INT_RE = re.compile(r"^[+-]?[0-9]+$")


def _int(key, value, ctx):
    # Integer.parseInt: decimal only, optional sign, no underscores or spaces.
    if not _INT_RE.match(value):
        raise ctx.error(key, "%r is not an integer" % value)
    n = int(value)
    if not -2 ** 63 <= n < 2 ** 63:
        raise ctx.error(key, "%r is out of range" % value)
    return n


_DECODE_RE = re.compile(r"^([+-]?)(?:0[xX]([0-9a-fA-F]+)|#([0-9a-fA-F]+)|0([0-7]+)|([0-9]+))$")


def _decode_int(key, value, ctx):
    # Integer.getInteger -> Integer.decode: decimal, 0x/0X/# hex, leading-0 octal.
    m = _DECODE_RE.match(value)
    if not m:
        raise ctx.error(key, "%r is not an integer" % value)
    sign, hex1, hex2, octal, dec = m.groups()
    if hex1 or hex2:
        n = int(hex1 or hex2, 16)
    elif octal:
        n = int(octal, 8)
    else:
        n = int(dec)
    return -n if sign == "-" else n


def _at_least(minimum):
    def conv(key, value, ctx):
        n = _int(key, value, ctx)
        if n < minimum:
            raise ctx.error(key, "%r must be >= %d" % (value, minimum))
        return n
    return conv


_INTERVAL_UNITS_MS = (("ms", 1), ("s", 1000), ("m", 60 * 1000), ("h", 3600 * 1000),
                     ("d", 24 * 3600 * 1000))


def _purge_interval(key, value, ctx):
    # In hours, as in ZooKeeper; ZooKeeper 3.10 (ZOOKEEPER-4829) also takes a unit suffix:
    # ms, s, m, h or d ("30m", "500ms"). Milliseconds here; 0 or less: no autopurge.
    text = value.strip().lower()
    unit_ms = 3600 * 1000
    for suffix, ms in _INTERVAL_UNITS_MS:
        if text.endswith(suffix) and _INT_RE.match(text[:-len(suffix)]):
            text, unit_ms = text[:-len(suffix)], ms
            break
    return max(_int(key, text, ctx), 0) * unit_ms


def _positive(key, value, ctx):
    return _at_least(1)(key, value, ctx)


def _nonneg(key, value, ctx):
    return _at_least(0)(key, value, ctx)


def _map_size(key, value, ctx):
    # LMDB's map: the most the database may hold, in bytes (address space, not disk).
    n = _int(key, value, ctx)
    if n < MIN_LMDB_MAP_SIZE:
        raise ctx.error(key, "%r must be >= %d (bytes)" % (value, MIN_LMDB_MAP_SIZE))
    return n


def _port(key, value, ctx):
    n = _int(key, value, ctx)
    if not 1 <= n <= 65535:
        raise ctx.error(key, "%r is not a port in 1..65535" % value)
    return n


def _session_timeout(key, value, ctx):
    n = _int(key, value, ctx)
    if n < -1:
        raise ctx.error(key, "%r must be -1 (default) or >= 0" % value)
    return n


_TRUE = ("true", "yes")
_FALSE = ("false", "no")


def _bool(key, value, ctx):
    # ZooKeeper's own keys take true/false; its system properties mix in yes/no (forceSync,
    # skipACL). Accept both spellings everywhere, reject anything else rather than guess.
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ctx.error(key, "invalid option %r; choose 'true' or 'false'" % value)


def _str(key, value, ctx):
    return value


def _nonempty(key, value, ctx):
    if not value:
        raise ctx.error(key, "value is empty")
    return value


def _dir(key, value, ctx):
    if not value:
        raise ctx.error(key, "value is empty")
    # VerifyingFileFactory.warnForRelativePath
    if not os.path.isabs(value) and not value.startswith("./"):
        ctx.warn("%s: %s is relative. Prepend ./ to indicate that you're sure!" % (key, value))
    return os.path.abspath(value)


def _peer_type(key, value, ctx):
    v = value.lower()
    if v not in (ROLE_PARTICIPANT, ROLE_OBSERVER):
        raise ctx.error(key, "unrecognised peertype %r" % value)
    return v


def _election_alg(key, value, ctx):
    n = _int(key, value, ctx)
    if n != 3:
        raise ctx.error(key, "invalid electionAlg value %r; only 3 is supported" % value)
    return n


def _super_digest(key, value, ctx):
    # "super:<base64 sha1>" as DigestAuthenticationProvider.generateDigest prints it.
    if ":" not in value or not value.split(":", 1)[1]:
        raise ctx.error(key, "%r is not of the form user:base64digest" % value)
    return value


# key -> (Config attribute, converter)
_KEYS = {
    "tickTime": ("tick_time_ms", _int),
    "dataDir": ("data_dir", _dir),
    "dataLogDir": ("data_log_dir", _dir),
    "clientPort": ("client_port", _port),
    "clientPortAddress": ("client_port_address", _nonempty),
    "clientPortListenBacklog": ("client_port_listen_backlog", _int),
    "maxClientCnxns": ("max_client_cnxns", _nonneg),
    "maxCnxns": ("max_cnxns", _nonneg),
    "minSessionTimeout": ("min_session_timeout_ms", _session_timeout),
    "maxSessionTimeout": ("max_session_timeout_ms", _session_timeout),
    "initLimit": ("init_limit", _nonneg),
    "syncLimit": ("sync_limit", _nonneg),
    "connectToLearnerMasterLimit": ("connect_to_learner_master_limit", _nonneg),
    "electionAlg": ("election_alg", _election_alg),
    "snapCount": ("snap_count", _int),
    "snapSizeLimitInKb": ("snap_size_limit_kb", _int),
    "txnLogSizeLimitInKb": ("txn_log_size_limit_kb", _int),
    "preAllocSize": ("pre_alloc_size_kb", _positive),
    "forceSync": ("force_sync", _bool),
    "fsync.warningthresholdms": ("fsync_warning_threshold_ms", _nonneg),
    "jute.maxbuffer": ("jute_maxbuffer", _decode_int),
    "admin.enableServer": ("admin_enable_server", _bool),
    "admin.serverAddress": ("admin_server_address", _nonempty),
    "admin.serverPort": ("admin_server_port", _port),
    "admin.commandURL": ("admin_command_url", _nonempty),
    "admin.idleTimeout": ("admin_idle_timeout_ms", _nonneg),
    "autopurge.snapRetainCount": ("autopurge_snap_retain_count", _int),
    "autopurge.purgeInterval": ("autopurge_purge_interval_ms", _purge_interval),
    "peerType": ("peer_type", _peer_type),
    "standaloneEnabled": ("standalone_enabled", _bool),
    "reconfigEnabled": ("reconfig_enabled", _bool),
    "dynamicConfigFile": ("dynamic_config_file", _nonempty),
    "syncEnabled": ("sync_enabled", _bool),
    "localSessionsEnabled": ("local_sessions_enabled", _bool),
    "localSessionsUpgradingEnabled": ("local_sessions_upgrading_enabled", _bool),
    "maxBatchSize": ("max_batch_size", _positive),
    "flushDelay": ("flush_delay_ms", _nonneg),
    "globalOutstandingLimit": ("global_outstanding_limit", _positive),
    "extendedTypesEnabled": ("extended_types_enabled", _bool),
    "enforceQuota": ("enforce_quota", _bool),
    "DigestAuthenticationProvider.superDigest": ("super_digest", _super_digest),
    "skipACL": ("skip_acl", _bool),
    "digest.enabled": ("digest_enabled", _bool),
    "znode.container.checkIntervalMs": ("container_check_interval_ms", _positive),
    "znode.container.maxPerMinute": ("container_max_per_minute", _positive),
    "znode.container.maxNeverUsedIntervalMs": ("container_max_never_used_interval_ms", _nonneg),
    "readonlymode.enabled": ("readonly_mode_enabled", _bool),
    # workers=0 serves clients inside the core process (no worker processes).
    "workers": ("workers", _nonneg),
    "commitMaxBytes": ("commit_max_bytes", _positive),
    # LMDB checkpoints (zkpy.storage.lmdb_checkpoint): a power cut replays the log from the last.
    "checkpointIntervalMs": ("checkpoint_interval_ms", _positive),
    "lmdbMapSize": ("lmdb_map_size", _map_size),
}

# ZooKeeper keys that are valid but tune machinery zkpy does not have: accepted without a warning.
_ACCEPTED_KEYS = frozenset([
    "quorumListenOnAllIPs", "leaderServes", "cnxTimeout", "quorumCnxnTimeoutMs", "tcpKeepAlive",
    "clientTcpKeepAlive", "electionPortBindRetry", "maxTimeToWaitForEpoch", "commitLogCount",
    "snapshot.compression.method", "serverCnxnFactory", "observerMasterPort",
    "quorum.cnxn.threads.size", "admin.snapshot.enabled", "admin.restore.enabled",
    "admin.rateLimiterIntervalInMS", "audit.enable", "emulate353TTLNodes",
    "multiAddress.reachabilityCheckTimeoutMs", "multiAddress.reachabilityCheckEnabled",
    "requestThrottleLimit", "requestThrottleStallTime", "requestThrottleDropStale",
    "requestStaleLatencyCheck", "requestStaleConnectionCheck", "throttledOpWaitTime",
    "maxResponseCacheSize", "maxGetChildrenResponseCacheSize", "largeRequestMaxBytes",
    "largeRequestThreshold", "maxWriteQueuePollTime", "closeSessionTxn.enabled",
    "enableEagerACLCheck", "intBufferStartingSizeBytes", "sessionRequireClientSASLAuth",
    "allowSaslFailedClients", "version",
])
_ACCEPTED_PREFIXES = ("metricsProvider.", "jvm.pause.", "authProvider.", "connection",
                      "nio.", "netty.", "commitProcessor.", "learner.", "leader.", "follower.",
                      "superUser", "zookeeper.")

# Valid ZooKeeper keys whose feature zkpy lacks: the user expects an effect, so say it is ignored.
_UNSUPPORTED_KEYS = frozenset([
    "secureClientPort", "secureClientPortAddress", "sslQuorum", "portUnification",
    "client.portUnification", "sslQuorumReloadCertFiles", "oraclePath", "multiAddress.enabled",
])
_UNSUPPORTED_PREFIXES = ("ssl.", "quorum.auth.", "kerberos.", "group.", "weight.", "client.secure")


# ---------------------------------------------------------------------------------------------
# server.N

def parse_server_spec(sid, value, key=None, line=None, path="<string>"):
    """Parse the value of `server.<sid>`; QuorumPeer.QuorumServer(long, String) rules."""
    key = key or "server.%d" % sid

    def fail(message):
        return ConfigError("%s: %s" % (key, message), key=key, line=line, path=path)

    wrong_format = ("%r does not have the form host:port:port[:participant|:observer]"
                    "[;[host:]port]" % value)
    parts = value.split(";")
    if len(parts) > 2:
        raise fail(wrong_format)
    if "|" in parts[0]:
        # ZooKeeper needs multiAddress.enabled=true for this, which is off by default.
        raise fail("multiple addresses are not supported: %r" % value)
    server = _host_and_ports(parts[0])
    if server is None or not 3 <= len(server) <= 4:
        raise fail(wrong_format)
    host = server[0]
    if not host:
        raise fail(wrong_format)
    peer_port = _spec_port(server[1], fail, host)
    election_port = _spec_port(server[2], fail, host)
    if peer_port == election_port:
        raise fail("quorum and election port must be different (both %d)" % peer_port)
    role = ROLE_PARTICIPANT
    if len(server) == 4:
        role = server[3].strip().lower()
        if role not in (ROLE_PARTICIPANT, ROLE_OBSERVER):
            raise fail("unrecognised peertype %r" % server[3])
    client_address = client_port = None
    if len(parts) == 2:
        client = _host_and_ports(parts[1].strip())
        if client is None or not 1 <= len(client) <= 2 or not client[-1]:
            raise fail(wrong_format)
        client_address = client[0] if len(client) == 2 else "0.0.0.0"
        if not client_address:
            raise fail(wrong_format)
        client_port = _spec_port(client[-1], fail, client_address)
    return ServerSpec(sid, host, peer_port, election_port, role, client_address, client_port)


def _host_and_ports(s):
    # ConfigUtils.getHostAndPort: "[v6addr]:p:p" keeps the bracketed host whole.
    s = s.strip()
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            return None
        rest = s[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        return [s[1:end]] + (rest[1:].split(":") if rest else [])
    return s.split(":")


def _spec_port(text, fail, host):
    text = text.strip()
    if not _INT_RE.match(text):
        raise fail("address unresolved: %s:%s" % (host, text))
    n = int(text)
    if not 1 <= n <= 65535:
        raise fail("port %d is not in 1..65535" % n)
    return n


def _bracket(host):
    return "[%s]" % host if ":" in host else host


# ---------------------------------------------------------------------------------------------
# the parser

def parse_config(text, path="<string>", default_workers=1, myid=None, dynamic_text=None,
                 dynamic_path=None):
    """Parse zoo.cfg text into a Config; raises ConfigError naming path, line and key.

    myid is the content of dataDir/myid when the caller read it (load_config does); it picks this
    server's client port and role from its server.N line. dynamic_text is the content of the
    dynamicConfigFile, if any (server.N and version lines only).
    """
    ctx = _Ctx(path)
    entries = parse_properties(text, path)
    last = {}
    for key, value, line in entries:
        if key in last:
            ctx.warn("duplicate key %r; the value on line %d is used" % (key, line),
                     line=last[key][1])
        last[key] = (value, line)
    raw = {k: v for k, (v, _) in last.items()}
    lines = {k: ln for k, (_, ln) in last.items()}

    values = {"workers": default_workers}
    servers = {}
    server_lines = {}
    has_dynamic_file = "dynamicConfigFile" in last
    for key, (value, line) in last.items():
        ctx.line = line
        if key.startswith("server."):
            if has_dynamic_file:
                raise ctx.error(key, "must be in a separate dynamic config file")
            sid = _server_id(key, ctx)
            servers[sid] = parse_server_spec(sid, value, key, line, path)
            server_lines[sid] = line
        elif key in _KEYS:
            attr, conv = _KEYS[key]
            values[attr] = conv(key, value, ctx)
        elif key == "4lw.commands.whitelist":
            values["four_letter_words"] = _whitelist(key, value, ctx)
        elif key in _UNSUPPORTED_KEYS or key.startswith(_UNSUPPORTED_PREFIXES):
            ctx.warn("%s is not supported by zkpy; ignored" % key)
        elif key in _ACCEPTED_KEYS or key.startswith(_ACCEPTED_PREFIXES):
            pass
        else:
            ctx.warn("unknown key %r ignored" % key)
    ctx.line = None

    if dynamic_text is not None:
        version, dyn_servers = parse_dynamic_config(dynamic_text, dynamic_path or "<dynamic>")
        servers.update(dyn_servers)
        if version is not None:
            values["config_version"] = version

    def err(key, message):
        return ConfigError(message, key=key, line=lines.get(key), path=path)

    tick = values.get("tick_time_ms", DEFAULT_TICK_TIME_MS)
    if tick <= 0:
        raise err("tickTime", "tickTime: %d must be > 0" % tick)

    if values.get("snap_count", 100000) < 2:
        ctx.warn("snapCount should be 2 or more; using 2", line=lines.get("snapCount"))
        values["snap_count"] = 2

    retain = values.get("autopurge_snap_retain_count", MIN_SNAP_RETAIN_COUNT)
    if retain < MIN_SNAP_RETAIN_COUNT:
        ctx.warn("invalid autopurge.snapRetainCount: %d; defaulting to %d"
                 % (retain, MIN_SNAP_RETAIN_COUNT), line=lines.get("autopurge.snapRetainCount"))
        values["autopurge_snap_retain_count"] = MIN_SNAP_RETAIN_COUNT

    if "data_dir" not in values:
        raise ConfigError("dataDir is not set", key="dataDir", path=path)
    values.setdefault("data_log_dir", values["data_dir"])

    # Ensemble shape (QuorumPeerConfig.parseDynamicConfig).
    voting = [s for s in servers.values() if s.role == ROLE_PARTICIPANT]
    observers = [s for s in servers.values() if s.role == ROLE_OBSERVER]
    standalone_enabled = values.get("standalone_enabled", True)
    if servers:
        if not voting:
            if not standalone_enabled:
                raise err("standaloneEnabled",
                          "standaloneEnabled=false needs at least one participant server")
            if observers:
                raise ConfigError("observers without participants is an invalid configuration",
                                  key="server.%d" % observers[0].id,
                                  line=server_lines.get(observers[0].id), path=path)
        elif len(voting) == 1 and standalone_enabled:
            if observers:
                raise ConfigError("observers without a quorum is an invalid configuration",
                                  key="server.%d" % observers[0].id,
                                  line=server_lines.get(observers[0].id), path=path)
            ctx.warn("only one server specified; running standalone (server line ignored)",
                     line=server_lines.get(voting[0].id))
        elif len(voting) == 2:
            ctx.warn("no server failure will be tolerated; you need at least 3 servers")
        elif len(voting) % 2 == 0:
            ctx.warn("non-optimal configuration; consider an odd number of servers")
    distributed = bool(servers) and (not standalone_enabled or len(voting) > 1)

    # Client port: the static clientPort, or this server's `;port` client part.
    me = servers.get(myid) if myid is not None else None
    if "client_port" in values:
        if me is not None and me.client_port is not None:
            if me.client_port != values["client_port"] or (
                    "client_port_address" in values
                    and values["client_port_address"] not in ("0.0.0.0", me.client_address)):
                raise err("clientPort",
                          "clientPort: client address for this server (id = %d) in the static "
                          "config differs from its server line: %s:%d"
                          % (myid, me.client_address, me.client_port))
    elif me is not None and me.client_port is not None:
        values["client_port"] = me.client_port
        values.setdefault("client_port_address", me.client_address)
    elif "client_port_address" in values:
        raise err("clientPortAddress", "clientPortAddress is set but clientPort is not set")
    else:
        raise ConfigError("clientPort is not set", key="clientPort", path=path)

    mn = values.get("min_session_timeout_ms", -1)
    mx = values.get("max_session_timeout_ms", -1)
    mn = tick * 2 if mn == -1 else mn
    mx = tick * 20 if mx == -1 else mx
    if mn > mx:
        key = "minSessionTimeout" if "minSessionTimeout" in lines else "maxSessionTimeout"
        raise err(key, "minSessionTimeout (%d) must not be larger than maxSessionTimeout (%d)"
                  % (mn, mx))
    values["min_session_timeout_ms"] = mn
    values["max_session_timeout_ms"] = mx

    if distributed:
        if myid is not None and myid not in servers:
            raise ConfigError("myid %d is not in the servers list (%s)"
                              % (myid, ", ".join("server.%d" % i for i in sorted(servers))),
                              path=path)
        if not values.get("init_limit"):
            raise err("initLimit", "initLimit is not set")
        if not values.get("sync_limit"):
            raise err("syncLimit", "syncLimit is not set")
    if not values.get("connect_to_learner_master_limit"):
        values["connect_to_learner_master_limit"] = values.get("init_limit", 0)

    # The servers list decides this server's role (QuorumPeerConfig.setupPeerType).
    if me is not None:
        if values.get("peer_type", ROLE_PARTICIPANT) != me.role and "peer_type" in values:
            ctx.warn("peerType %s does not match the servers list (%s); using the servers list"
                     % (values["peer_type"], me.role), line=lines.get("peerType"))
        values["peer_type"] = me.role

    words = set(values.get("four_letter_words", ()))
    if values.get("readonly_mode_enabled"):
        words.add("isro")
    words.add("srvr")  # zkServer.sh status depends on it, so ZooKeeper always enables it
    values["four_letter_words"] = frozenset(words)

    return Config(path=path, servers=servers, myid=myid, raw=raw, warnings=tuple(ctx.warnings),
                  **values)


def _server_id(key, ctx):
    text = key[len("server."):]
    if not _INT_RE.match(text) or text.startswith(("+", "-")):
        raise ctx.error(key, "server id %r is not a non-negative integer" % text)
    return int(text)


def _whitelist(key, value, ctx):
    words = set()
    for item in value.split(","):
        item = item.strip()
        if item == "*":
            return set(ALL_FOUR_LETTER_WORDS)
        if not item:
            continue
        if item not in ALL_FOUR_LETTER_WORDS:
            ctx.warn("%s: unknown four letter word %r ignored" % (key, item))
            continue
        words.add(item)
    return words


def parse_dynamic_config(text, path="<dynamic>"):
    """Parse a dynamic config file: returns (version or None, {id: ServerSpec}).

    Only server.N, version and (unsupported, warned nowhere) group/weight lines are allowed, as in
    QuorumPeerConfig.parseDynamicConfig.
    """
    ctx = _Ctx(path)
    version = None
    servers = {}
    for key, value, line in parse_properties(text, path):
        ctx.line = line
        if key.startswith("server."):
            sid = _server_id(key, ctx)
            servers[sid] = parse_server_spec(sid, value, key, line, path)
        elif key == "version":
            try:
                version = int(value, 16)
            except ValueError:
                raise ctx.error(key, "%r is not a hex number" % value)
        elif key.startswith(("group", "weight")):
            continue
        else:
            raise ctx.error(key, "unrecognised parameter in a dynamic config file")
    return version, servers


def version_from_filename(filename):
    """QuorumPeerConfig.getVersionFromFilename: zoo.cfg.dynamic.1001 -> 0x1001; None if absent."""
    suffix = filename.rsplit(".", 1)[-1] if "." in filename else ""
    try:
        return int(suffix, 16)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# the one I/O helper

def _read_text(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # what Properties.load(InputStream) assumes


def load_config(path, default_workers=None):
    """Read zoo.cfg at path, plus dataDir/myid and the dynamicConfigFile when present."""
    path = os.fspath(path)
    try:
        text = _read_text(path)
    except OSError as e:
        raise ConfigError("cannot read config file: %s" % (e.strerror or e), path=path)
    if default_workers is None:
        default_workers = os.cpu_count() or 1

    entries = {k: (v, ln) for k, v, ln in parse_properties(text, path)}
    myid = None
    if entries.get("dataDir", ("",))[0]:
        myid_path = os.path.join(os.path.abspath(entries["dataDir"][0]), "myid")
        if os.path.isfile(myid_path):
            try:
                first = _read_text(myid_path).split("\n", 1)[0].strip()
            except OSError as e:
                raise ConfigError("cannot read myid: %s" % (e.strerror or e), path=myid_path)
            if not _INT_RE.match(first):
                raise ConfigError("serverid %r is not a number" % first, path=myid_path)
            myid = int(first)

    dynamic_text = dynamic_path = None
    if entries.get("dynamicConfigFile", ("",))[0]:
        dynamic_path, line = entries["dynamicConfigFile"]
        try:
            dynamic_text = _read_text(dynamic_path)
        except OSError as e:
            raise ConfigError("dynamicConfigFile: cannot read %s: %s"
                              % (dynamic_path, e.strerror or e),
                              key="dynamicConfigFile", line=line, path=path)
        file_version = version_from_filename(dynamic_path)
        if "version" in {k for k, _, _ in parse_properties(dynamic_text, dynamic_path)}:
            raise ConfigError("dynamic file shouldn't have version inside", path=dynamic_path)
        if file_version is not None:
            dynamic_text += "\nversion=%x\n" % file_version

    config = parse_config(text, path, default_workers=default_workers, myid=myid,
                          dynamic_text=dynamic_text, dynamic_path=dynamic_path)
    if config.is_distributed() and myid is None:
        raise ConfigError("myid file is missing (expected %s)"
                          % os.path.join(config.data_dir, "myid"), path=path)
    return config


def replace(config, **changes):
    """A copy of config with some attributes changed (tests, command-line overrides)."""
    return dataclasses.replace(config, **changes)
