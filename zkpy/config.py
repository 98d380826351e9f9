"""zoo.cfg parsing: the Config value and ZooKeeper's rules for reading it.

Owns the Java-properties reader, the key table (names, defaults, checks), server.N parsing and the
text the `conf` four-letter word prints. parse_config / parse_properties / parse_server_spec are pure
(no file or socket I/O; relative paths are resolved against the current directory, as the JVM does);
load_config is the one helper that reads files (zoo.cfg, dataDir/myid, dynamicConfigFile,
zookeeper-env.sh, java.env and the JAAS file). Imports only zkpy.errors and the pure
zkpy.security; anyone may import it.

Rules follow ZooKeeper 3.8/3.9 QuorumPeerConfig.parseProperties. Where ZooKeeper routes a key to a
JVM system property (`zookeeper.<key>`: snapCount, 4lw.commands.whitelist, admin.*, ...) zkpy reads
the same key from zoo.cfg, so a real zoo.cfg works unchanged, and from the -D flags ZooKeeper would
run with (SERVER_JVMFLAGS / JVMFLAGS / zookeeper-env.sh / java.env: _apply_jvm_flags). Two
deliberate differences: `jute.maxbuffer` and `readonlymode.enabled` are also accepted from
zoo.cfg; and a bad value is always an error naming key and line, where ZooKeeper sometimes
silently uses a default.

Security fails closed: a key asking for security zkpy does not provide yet (an ssl.* or
ssl.quorum.* setting it lacks, Kerberos between servers, an authentication provider it lacks) is such an error too, never a warning; the same key
at ZooKeeper's default, insecure value is accepted (_check_security). Client SASL (DIGEST-MD5 with
a JAAS Server section) and enforced authentication are honoured (_client_auth); so are TLS
between servers (_QUORUM_TLS_KEYS) and quorum SASL (_QUORUM_SASL_KEYS, _quorum_auth).
"""

import dataclasses
import os
import re
from dataclasses import dataclass, field

from zkpy.errors import ConfigError
from zkpy.security import jaas as _jaas
from zkpy.security import jvmflags as _jvmflags
from zkpy.security import sasl as _sasl

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
    """One `server.N=host:peer:election[|host:peer:election...][:role][;[addr:]port]` line.

    host / peer_port / election_port are the first address pair; more_addresses the others, as
    (host, peer_port, election_port), when multiAddress.enabled allows them."""
    id: int
    host: str
    peer_port: int
    election_port: int
    role: str = ROLE_PARTICIPANT
    client_address: str = None  # None: no client part on the line
    client_port: int = None
    more_addresses: tuple = ()

    def addresses(self):
        """Every (host, peer_port, election_port) pair, in the order of the line."""
        return ((self.host, self.peer_port, self.election_port),) + tuple(self.more_addresses)

    def quorum_addresses(self):
        return [(h, p) for h, p, _ in self.addresses()]

    def election_addresses(self):
        return [(h, e) for h, _, e in self.addresses()]

    def to_config_value(self):
        """The value as ZooKeeper's QuorumServer.toString writes it (membership, /zookeeper/config):
        the pairs `|`-joined, the quorum and the election addresses each sorted by host."""
        pairs = self.addresses()
        quorum = sorted(((h, p) for h, p, _ in pairs), key=lambda a: a[0])
        election = sorted(((h, e) for h, _, e in pairs), key=lambda a: a[0])
        text = "|".join("%s:%d:%d" % (_bracket(q[0]), q[1], e[1])
                        for q, e in zip(quorum, election))
        text += ":" + self.role
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
    # txns a leader keeps in memory to sync learners by DIFF (zookeeper.commitLogCount; zkpy's
    # default is larger than ZooKeeper's 500: it reads no older log files at sync time)
    commit_log_count: int = 100000
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
    quorum_groups: dict = None    # group.N: {gid: (sids)} -- hierarchical quorums, or None
    quorum_weights: dict = None   # weight.N: {sid: weight} of grouped servers
    audit_enable: bool = False
    digest_enabled: bool = True
    container_check_interval_ms: int = 60000
    container_max_per_minute: int = 10000
    container_max_never_used_interval_ms: int = 0
    readonly_mode_enabled: bool = False
    # multiAddress.*: server lines with several `|`-joined address pairs (ZooKeeper 3.6+)
    multi_address_enabled: bool = False
    multi_address_reachability_check_enabled: bool = True
    multi_address_reachability_check_timeout_ms: int = 1000   # MultipleAddresses.DEFAULT_TIMEOUT
    # client authentication (issue 15; zkpy.security)
    sasl_provider: bool = False          # authProvider.N=...SASLAuthenticationProvider
    jaas_path: str = None                # -Djava.security.auth.login.config
    sasl_server_section: str = "Server"  # sasl.serverconfig
    sasl_users: dict = field(default=None, repr=False)  # None: no SASL server (no section)
    # A Krb5LoginModule Server section: SASL GSSAPI, (service principal, keytab path).
    sasl_kerberos: tuple = None
    krb5_conf: str = None                # -Djava.security.krb5.conf: KRB5_CONFIG of the server
    sasl_super_password: str = field(default=None, repr=False)
    sasl_super_users: frozenset = frozenset()
    allow_sasl_failed_clients: bool = False
    session_require_client_sasl_auth: bool = False
    enforce_auth_enabled: bool = False
    enforce_auth_schemes: tuple = ()     # as configured (enforce.auth.schemes)
    kerberos_remove_host: bool = False
    kerberos_remove_realm: bool = False
    let_any_sasl_user_do_x: str = None
    # zkpy-specific
    workers: int = 1
    commit_max_bytes: int = 1 << 20
    checkpoint_interval_ms: int = 2000
    lmdb_map_size: int = DEFAULT_LMDB_MAP_SIZE
    # TLS on client ports and x509 identities (_TLS_KEYS; zkpy.server.tls)
    secure_client_port: int = 0
    secure_client_port_address: str = None
    client_port_unification: bool = False
    client_cert_reload: bool = False
    ssl_key_store_location: str = None
    ssl_key_store_password: str = ""
    ssl_key_store_password_path: str = None
    ssl_key_store_type: str = None
    ssl_trust_store_location: str = None
    ssl_trust_store_password: str = ""
    ssl_trust_store_password_path: str = None
    ssl_trust_store_type: str = None
    ssl_client_auth: str = "need"
    ssl_protocol: str = "TLSv1.2"
    ssl_enabled_protocols: tuple = None
    ssl_ciphersuites: tuple = None
    ssl_hostname_verification: bool = True
    ssl_client_hostname_verification: bool = False
    ssl_allow_reverse_dns_lookup: bool = False
    ssl_handshake_detection_timeout_ms: int = 5000
    ssl_crl: bool = False        # revocation checks (X509Util: either key turns them on)
    ssl_ocsp: bool = False
    ssl_auth_provider: str = "x509"
    # TLS between servers (sslQuorum, portUnification, ssl.quorum.*: zkpy.quorum.secure)
    ssl_quorum: bool = False
    quorum_port_unification: bool = False
    ssl_quorum_reload_cert_files: bool = False
    ssl_quorum_key_store_location: str = None
    ssl_quorum_key_store_password: str = ""
    ssl_quorum_key_store_password_path: str = None
    ssl_quorum_key_store_type: str = None
    ssl_quorum_trust_store_location: str = None
    ssl_quorum_trust_store_password: str = ""
    ssl_quorum_trust_store_password_path: str = None
    ssl_quorum_trust_store_type: str = None
    ssl_quorum_client_auth: str = "need"
    ssl_quorum_protocol: str = "TLSv1.2"
    ssl_quorum_enabled_protocols: tuple = None
    ssl_quorum_ciphersuites: tuple = None
    ssl_quorum_hostname_verification: bool = True
    ssl_quorum_allow_reverse_dns_lookup: bool = True   # QuorumX509Util: true by default
    ssl_quorum_handshake_detection_timeout_ms: int = 5000
    ssl_quorum_crl: bool = False
    ssl_quorum_ocsp: bool = False
    # SASL between servers (quorum.auth.*, the JAAS QuorumServer / QuorumLearner sections)
    quorum_auth_enable_sasl: bool = False
    quorum_auth_learner_require_sasl: bool = False
    quorum_auth_server_require_sasl: bool = False
    quorum_auth_learner_login_context: str = "QuorumLearner"
    quorum_auth_server_login_context: str = "QuorumServer"
    quorum_sasl_users: dict = None       # QuorumServer section: {user: password}
    quorum_sasl_login: tuple = None      # QuorumLearner section: (username, password)
    x509_super_user: str = None
    x509_provider: bool = False   # an authProvider.N names X509AuthenticationProvider
    # bookkeeping
    raw: dict = field(default_factory=dict)
    key_lines: dict = field(default_factory=dict)   # key -> line number in the file
    warnings: tuple = ()
    notes: tuple = ()  # DEBUG lines (JVM options zkpy ignores)

    def required_auth_schemes(self):
        """The schemes one of which a session must have authenticated with before any request
        but auth and sasl is served (AuthenticationHelper); () when nothing is enforced."""
        if self.session_require_client_sasl_auth:
            return ("sasl",)
        if self.enforce_auth_enabled:
            return self.enforce_auth_schemes
        return ()

    def sasl_auth_required(self):
        return "sasl" in self.required_auth_schemes()

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
        membership = membership_text(self.servers, self.config_version, self.quorum_groups,
                                     self.quorum_weights)
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
    "commitLogCount": ("commit_log_count", _positive),
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
    # The audit log (zkpy.server.audit): ZooKeeper's zookeeper.audit.enable, as zoo.cfg key.
    "audit.enable": ("audit_enable", _bool),
    "digest.enabled": ("digest_enabled", _bool),
    "znode.container.checkIntervalMs": ("container_check_interval_ms", _positive),
    "znode.container.maxPerMinute": ("container_max_per_minute", _positive),
    "znode.container.maxNeverUsedIntervalMs": ("container_max_never_used_interval_ms", _nonneg),
    "readonlymode.enabled": ("readonly_mode_enabled", _bool),
    "multiAddress.enabled": ("multi_address_enabled", _bool),
    "multiAddress.reachabilityCheckEnabled": ("multi_address_reachability_check_enabled", _bool),
    "multiAddress.reachabilityCheckTimeoutMs": ("multi_address_reachability_check_timeout_ms",
                                                _positive),
    # workers=0 serves clients inside the core process (no worker processes).
    "workers": ("workers", _nonneg),
    "commitMaxBytes": ("commit_max_bytes", _positive),
    # LMDB checkpoints (zkpy.storage.lmdb_checkpoint): a power cut replays the log from the last.
    "checkpointIntervalMs": ("checkpoint_interval_ms", _positive),
    "lmdbMapSize": ("lmdb_map_size", _map_size),
}

# Client authentication keys zkpy honours (zkpy.security; ZooKeeper reads each as the system
# property zookeeper.<key>). superUser and superUser.N are handled in _apply_key.
_SASL_KEYS = {
    "sessionRequireClientSASLAuth": ("session_require_client_sasl_auth", _bool),
    "enforce.auth.enabled": ("enforce_auth_enabled", _bool),
    "enforce.auth.schemes": ("enforce_auth_schemes", lambda k, v, c: tuple(
        s.strip() for s in v.split(","))),
    "allowSaslFailedClients": ("allow_sasl_failed_clients", _bool),
    "kerberos.removeHostFromPrincipal": ("kerberos_remove_host", _bool),
    "kerberos.removeRealmFromPrincipal": ("kerberos_remove_realm", _bool),
    "sasl.serverconfig": ("sasl_server_section", _str),
    "letAnySaslUserDoX": ("let_any_sasl_user_do_x", _str),
    "SASLAuthenticationProvider.superPassword": ("sasl_super_password", _str),
}
_KEYS.update(_SASL_KEYS)

# ---------------------------------------------------------------------------------------------
# TLS on client ports and x509 identities (zkpy.server.tls builds the context and checks the
# stores: zkpy.server.tls.check raises a ConfigError naming the key and line of a bad store). The keys are
# ZooKeeper 3.8's (X509Util, ClientX509Util, QuorumPeerConfig, NettyServerCnxnFactory);
# ssl.quorum.* (TLS between servers) is not among them.

X509_PROVIDER = "org.apache.zookeeper.server.auth.X509AuthenticationProvider"
_SSL_PROTOCOLS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def _secure_port(key, value, ctx):
    n = _int(key, value, ctx)
    if n == 0:
        return 0   # QuorumPeerConfig: 0 is "not set"
    if not 1 <= n <= 65535:
        raise ctx.error(key, "%r is not a port in 1..65535" % value)
    return n


def _file(key, value, ctx):
    if not value:
        raise ctx.error(key, "value is empty")
    return os.path.abspath(value)


def _store_type(key, value, ctx):
    # KeyStoreFileType.fromPropertyValue: empty means "from the file name".
    if not value:
        return None
    t = value.upper()
    if t == "BCFKS":
        raise ctx.error(key, "BCFKS (Bouncy Castle FIPS) stores are not supported by zkpy; "
                        "convert the store to PKCS12 or PEM")
    if t not in ("JKS", "PEM", "PKCS12"):
        raise ctx.error(key, "unknown store type %r; choose JKS, PEM or PKCS12" % value)
    return t


def _ssl_client_auth(key, value, ctx):
    # X509Util.ClientAuth.fromPropertyValue: empty is NEED.
    v = value.lower() or "need"
    if v not in ("none", "want", "need"):
        raise ctx.error(key, "%r is not one of none, want, need" % value)
    return v


def _ssl_protocol(key, value, ctx):
    if value not in _SSL_PROTOCOLS + ("TLS",):
        raise ctx.error(key, "%r is not a protocol zkpy knows (%s)"
                        % (value, ", ".join(_SSL_PROTOCOLS + ("TLS",))))
    return value


def _ssl_protocols(key, value, ctx):
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise ctx.error(key, "value is empty")
    for name in names:
        if name not in _SSL_PROTOCOLS:
            raise ctx.error(key, "%r is not a protocol version zkpy can enable (%s)"
                            % (name, ", ".join(_SSL_PROTOCOLS)))
    return names


def _list(key, value, ctx):
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise ctx.error(key, "value is empty")
    return items


def _not_provided(feature):
    def conv(key, value, ctx):
        if _bool(key, value, ctx):
            raise ctx.error(key, "%s is not provided by zkpy; remove the key or set it to "
                            "false" % feature)
        return False
    return conv


def _refused(feature):
    def conv(key, value, ctx):
        raise ctx.error(key, "%s is not provided by zkpy; remove the key" % feature)
    return conv


_TLS_KEYS = {
    "secureClientPort": ("secure_client_port", _secure_port),
    "secureClientPortAddress": ("secure_client_port_address", _nonempty),
    "client.portUnification": ("client_port_unification", _bool),
    "client.certReload": ("client_cert_reload", _bool),
    "ssl.keyStore.location": ("ssl_key_store_location", _file),
    "ssl.keyStore.password": ("ssl_key_store_password", _str),
    "ssl.keyStore.passwordPath": ("ssl_key_store_password_path", _file),
    "ssl.keyStore.type": ("ssl_key_store_type", _store_type),
    "ssl.trustStore.location": ("ssl_trust_store_location", _file),
    "ssl.trustStore.password": ("ssl_trust_store_password", _str),
    "ssl.trustStore.passwordPath": ("ssl_trust_store_password_path", _file),
    "ssl.trustStore.type": ("ssl_trust_store_type", _store_type),
    "ssl.clientAuth": ("ssl_client_auth", _ssl_client_auth),
    "ssl.protocol": ("ssl_protocol", _ssl_protocol),
    "ssl.enabledProtocols": ("ssl_enabled_protocols", _ssl_protocols),
    "ssl.ciphersuites": ("ssl_ciphersuites", _list),
    "ssl.hostnameVerification": ("ssl_hostname_verification", _bool),
    # (ZooKeeper 3.9's: the server checks a client certificate's names against its address)
    "ssl.clientHostnameVerification": ("ssl_client_hostname_verification", _not_provided(
        "checking client certificates against the client's address "
        "(ssl.clientHostnameVerification, ZooKeeper 3.9)")),
    "ssl.allowReverseDnsLookup": ("ssl_allow_reverse_dns_lookup", _bool),
    "ssl.handshakeDetectionTimeoutMillis": ("ssl_handshake_detection_timeout_ms", _positive),
    "ssl.authProvider": ("ssl_auth_provider", _nonempty),
    "X509AuthenticationProvider.superUser": ("x509_super_user", _str),
    # Revocation checks of the peer's certificates (X509Util: either turns them on;
    # zkpy.security.revocation, zkpy.server.revocation).
    "ssl.crl": ("ssl_crl", _bool),
    "ssl.ocsp": ("ssl_ocsp", _bool),
    # Asked for, not provided: refused rather than ignored.
    "ssl.context.supplier.class": (None, _refused("an SSLContext from a Java class")),
}

# TLS between servers (QuorumX509Util: the same keys under ssl.quorum., and QuorumPeerConfig's
# sslQuorum / portUnification / sslQuorumReloadCertFiles).
_QUORUM_TLS_KEYS = {
    "sslQuorum": ("ssl_quorum", _bool),
    "portUnification": ("quorum_port_unification", _bool),
    "sslQuorumReloadCertFiles": ("ssl_quorum_reload_cert_files", _bool),
}
for _k, (_attr, _conv) in list(_TLS_KEYS.items()):
    if _k.startswith("ssl.") and _k not in ("ssl.authProvider",
                                           "ssl.clientHostnameVerification"):
        _QUORUM_TLS_KEYS["ssl.quorum." + _k[4:]] = (
            _attr and "ssl_quorum_" + _attr[4:], _conv)
_QUORUM_TLS_KEYS["ssl.quorum.allowReverseDnsLookup"] = ("ssl_quorum_allow_reverse_dns_lookup",
                                                        _bool)
_TLS_KEYS.update(_QUORUM_TLS_KEYS)


def _login_context(key, value, ctx):
    if not value.strip():
        raise ctx.error(key, "value is empty (the name of a JAAS section)")
    return value.strip()


# SASL between servers (QuorumAuth): honoured from zoo.cfg (_apply_key).
_QUORUM_SASL_KEYS = {
    "quorum.auth.enableSasl": ("quorum_auth_enable_sasl", _bool),
    "quorum.auth.learnerRequireSasl": ("quorum_auth_learner_require_sasl", _bool),
    "quorum.auth.serverRequireSasl": ("quorum_auth_server_require_sasl", _bool),
    "quorum.auth.learner.saslLoginContext": ("quorum_auth_learner_login_context",
                                             _login_context),
    "quorum.auth.server.saslLoginContext": ("quorum_auth_server_login_context",
                                            _login_context),
}


# ZooKeeper keys that are valid but tune machinery zkpy does not have: accepted without a warning.
# (Keys about security are not here: see _check_security below.)
_ACCEPTED_KEYS = frozenset([
    "quorumListenOnAllIPs", "leaderServes", "cnxTimeout", "quorumCnxnTimeoutMs", "tcpKeepAlive",
    "clientTcpKeepAlive", "electionPortBindRetry", "maxTimeToWaitForEpoch",
    "snapshot.compression.method", "serverCnxnFactory", "observerMasterPort",
    "quorum.cnxn.threads.size", "admin.snapshot.enabled", "admin.restore.enabled",
    "admin.rateLimiterIntervalInMS", "emulate353TTLNodes",
    "requestThrottleLimit", "requestThrottleStallTime", "requestThrottleDropStale",
    "requestStaleLatencyCheck", "requestStaleConnectionCheck", "throttledOpWaitTime",
    "maxResponseCacheSize", "maxGetChildrenResponseCacheSize", "largeRequestMaxBytes",
    "largeRequestThreshold", "maxWriteQueuePollTime", "closeSessionTxn.enabled",
    "enableEagerACLCheck", "intBufferStartingSizeBytes", "version",
])
_ACCEPTED_PREFIXES = ("metricsProvider.", "jvm.pause.", "connection", "nio.", "netty.",
                      "commitProcessor.", "learner.", "leader.", "follower.", "zookeeper.")

# Valid ZooKeeper keys whose feature zkpy lacks: the user expects an effect, so say it is ignored.
# None of them is about security (those stop the server: _check_security).
_UNSUPPORTED_KEYS = frozenset(["oraclePath"])
_UNSUPPORTED_PREFIXES = ()


# ---------------------------------------------------------------------------------------------
# security keys: fail closed
#
# A key that asks for security zkpy does not provide stops the server, naming the key and the
# line: never a warning, never silently accepted (issue 15). The same key set to ZooKeeper's
# default, insecure value (sslQuorum=false, sessionRequireClientSASLAuth=false, ...) is accepted.

_TLS_CLIENT = "TLS for client connections"
_TLS_QUORUM = "TLS between servers"
_TLS_ADMIN = "HTTPS on the AdminServer"
_QUORUM_SASL = "SASL authentication between servers"
_KERBEROS = "Kerberos (SASL GSSAPI) authentication"

# Boolean keys: true asks for the feature (refused), false is ZooKeeper's default (accepted).
_SECURITY_SWITCHES = {
    "client.secure": _TLS_CLIENT,
    "admin.portUnification": _TLS_ADMIN,
    "admin.forceHttps": _TLS_ADMIN,
    "admin.needClientAuth": _TLS_ADMIN,
    "kerberos.canonicalizeHostNames": _KERBEROS,
}

# Keys (and prefixes) refused whatever their value: each only configures a feature zkpy lacks.
# (TLS on client ports is provided: _TLS_KEYS are handled before these checks.)
_SECURITY_KEYS = {}
_SECURITY_PREFIXES = (
    ("ssl.quorum.", "an ssl.quorum.* setting zkpy does not have"),
    ("ssl.", "an ssl.* setting zkpy does not have"),
    ("X509AuthenticationProvider.", "x509 (client certificate) authentication"),
    # Unknown keys of these families: ZooKeeper would ignore a misspelt switch and run open.
    ("quorum.auth.", "a quorum.auth.* setting zkpy does not have"),
    ("kerberos.", _KERBEROS),
)

# Accepted: they do nothing unless a refused switch is on.
_SECURITY_INERT_KEYS = frozenset([
    "quorum.auth.kerberos.servicePrincipal",   # Kerberos between servers: refused (JAAS)
])
_SECURITY_INERT_PREFIXES = ()

# authProvider.N (ProviderRegistry): the providers zkpy has. SASLAuthenticationProvider serves
# DIGEST-MD5 logins with the users of a JAAS Server section (-Djava.security.auth.login.config,
# zkpy.security); without one the server serves and SASL logins never complete, as ZooKeeper
# (connection.Connection._sasl). `addauth sasl` answers AUTHFAILED in both.
_AUTH_PROVIDERS = frozenset([
    "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
    "org.apache.zookeeper.server.auth.IPAuthenticationProvider",
    "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
    "org.apache.zookeeper.server.auth.X509AuthenticationProvider",
])
_DIGEST_ALGS = frozenset(["SHA1", "SHA-1", "SHA"])  # Java MessageDigest names of SHA-1
# Keys zkpy honours from zoo.cfg that a `zookeeper.` prefix would make ZooKeeper ignore.
_HONOURED_SECURITY_KEYS = frozenset(["DigestAuthenticationProvider.superDigest"])


def _refuse(key, value, ctx, feature, fix="remove the key"):
    return ctx.error(key, "%r asks for %s, which zkpy does not provide yet; %s"
                     % (value, feature, fix))


def _check_security(key, value, ctx):
    """Raise ConfigError for a key that asks for security zkpy lacks; True when `key` is a
    security key that is accepted here (no further handling), False when it is none."""
    name = key
    if key.startswith("zookeeper."):
        # ZooKeeper reads zoo.cfg key K as the JVM property zookeeper.K, so `zookeeper.K` in
        # zoo.cfg has no effect there; asking for security that way still stops zkpy.
        name = key[len("zookeeper."):]
        if name in _HONOURED_SECURITY_KEYS:
            raise ctx.error(key, "has no effect in zoo.cfg (ZooKeeper would read it as the "
                            "property zookeeper.%s); write %s=..." % (key, name))
    if name == key and name in _QUORUM_SASL_KEYS:
        return False   # honoured (_apply_key)
    if name != key and (name in _TLS_KEYS or name in _QUORUM_SASL_KEYS):
        if value.strip().lower() in _FALSE:
            return True   # asks for nothing
        raise ctx.error(key, "has no effect in zoo.cfg (ZooKeeper would read it as the "
                        "property zookeeper.%s); write %s=..." % (key, name))
    if name in _SASL_KEYS or name == "superUser" or name.startswith("superUser."):
        if name != key:
            if value.strip().lower() in _FALSE and name in _SASL_KEYS \
                    and _SASL_KEYS[name][1] is _bool:
                return True   # asks for nothing
            raise ctx.error(key, "has no effect in zoo.cfg (ZooKeeper would read it as the "
                            "property zookeeper.%s); write %s=..." % (key, name))
        return False   # honoured: _KEYS / _apply_key
    if name in _SECURITY_SWITCHES:
        if _bool(key, value, ctx):
            raise _refuse(key, value, ctx, _SECURITY_SWITCHES[name],
                          "remove the key or set it to false")
        return True
    if name in _SECURITY_KEYS:
        raise _refuse(key, value, ctx, _SECURITY_KEYS[name])
    if name in _SECURITY_INERT_KEYS or name.startswith(_SECURITY_INERT_PREFIXES):
        return True
    if name == "authProvider" or name.startswith("authProvider."):
        if value not in _AUTH_PROVIDERS:
            raise ctx.error(key, "%r is an authentication provider zkpy does not provide yet "
                            "(it has DigestAuthenticationProvider, IPAuthenticationProvider, "
                            "X509AuthenticationProvider and SASLAuthenticationProvider with "
                            "DIGEST-MD5 or GSSAPI); remove the key"
                            % value)
        return True
    if name == "DigestAuthenticationProvider.enabled":
        if not _bool(key, value, ctx):
            raise _refuse(key, value, ctx, "turning the digest scheme off",
                          "remove the key or set it to true")
        return True
    if name == "DigestAuthenticationProvider.digestAlg":
        if value.upper() not in _DIGEST_ALGS:
            raise _refuse(key, value, ctx, "a digest algorithm other than SHA1",
                          "remove the key or set it to SHA1")
        return True
    for prefix, feature in _SECURITY_PREFIXES:
        if name.startswith(prefix):
            raise _refuse(key, value, ctx, feature)
    return False


# ---------------------------------------------------------------------------------------------
# server.N

MULTI_ADDRESS_KEY = "multiAddress.enabled"


def parse_server_spec(sid, value, key=None, line=None, path="<string>", multi_address=False):
    """Parse the value of `server.<sid>`; QuorumPeer.QuorumServer(long, String) rules.

    With multi_address (multiAddress.enabled=true) the server part may list several
    `|`-separated host:port:port[:type] pairs; without it such a line is refused."""
    key = key or "server.%d" % sid

    def fail(message):
        return ConfigError("%s: %s" % (key, message), key=key, line=line, path=path)

    wrong_format = ("%r does not have the form host:port:port[:participant|:observer]"
                    "[|host:port:port...][;[host:]port]" % value)
    parts = value.split(";")
    if len(parts) > 2:
        raise fail(wrong_format)
    texts = parts[0].split("|")
    if len(texts) > 1 and not multi_address:
        raise fail("Multiple address feature is disabled, but multiple addresses were "
                   "specified for sid %d (set %s=true to allow them)" % (sid, MULTI_ADDRESS_KEY))
    pairs = []
    role = None
    for text in texts:
        server = _host_and_ports(text)
        if server is None or not 3 <= len(server) <= 4:
            raise fail(wrong_format)
        host = server[0].strip()
        if not host:
            raise fail(wrong_format)
        peer_port = _spec_port(server[1], fail, host)
        election_port = _spec_port(server[2], fail, host)
        if peer_port == election_port:
            raise fail("quorum and election port must be different (both %d)" % peer_port)
        if len(server) == 4:
            this_role = server[3].strip().lower()
            if this_role not in (ROLE_PARTICIPANT, ROLE_OBSERVER):
                raise fail("unrecognised peertype %r" % server[3])
            if role is not None and this_role != role:
                raise fail("Multiple addresses should have similar roles: %s vs %s"
                           % (role, this_role))
            role = this_role
        pair = (host, peer_port, election_port)
        if pair not in pairs:   # MultipleAddresses is a set
            pairs.append(pair)
    client_address = client_port = None
    if len(parts) == 2:
        client = _host_and_ports(parts[1].strip())
        if client is None or not 1 <= len(client) <= 2 or not client[-1]:
            raise fail(wrong_format)
        client_address = client[0] if len(client) == 2 else "0.0.0.0"
        if not client_address:
            raise fail(wrong_format)
        client_port = _spec_port(client[-1], fail, client_address)
    host, peer_port, election_port = pairs[0]
    return ServerSpec(sid, host, peer_port, election_port, role or ROLE_PARTICIPANT,
                      client_address, client_port, tuple(pairs[1:]))


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
                 dynamic_path=None, jvm_flags=None, jaas_text=None, jaas_path=None):
    """Parse zoo.cfg text into a Config; raises ConfigError naming path, line and key.

    myid is the content of dataDir/myid when the caller read it (load_config does); it picks this
    server's client port and role from its server.N line. dynamic_text is the content of the
    dynamicConfigFile, if any (server.N and version lines only). jvm_flags is a
    zkpy.security.jvmflags.JvmFlags (SERVER_JVMFLAGS, JVMFLAGS, java.env: _apply_jvm_flags);
    jaas_text the JAAS file its -Djava.security.auth.login.config names (jaas_path).
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
    groups = {}        # group.N: gid -> (sids), hierarchical quorums
    weights = {}       # weight.N: sid -> weight
    has_dynamic_file = "dynamicConfigFile" in last
    # read before the server lines, wherever it is in the file
    multi_address = False
    flag = jvm_flags.system_properties().get("zookeeper." + MULTI_ADDRESS_KEY) \
        if jvm_flags is not None else None
    if flag is not None:
        # QuorumPeerConfig's default is the system property; zoo.cfg's key replaces it
        saved = ctx.path, ctx.line
        ctx.path, ctx.line = "%s: %s" % (flag.where(), flag.flag), None
        multi_address = _bool(MULTI_ADDRESS_KEY, flag.value, ctx)
        ctx.path, ctx.line = saved
    if MULTI_ADDRESS_KEY in last:
        ctx.line = last[MULTI_ADDRESS_KEY][1]
        multi_address = _bool(MULTI_ADDRESS_KEY, last[MULTI_ADDRESS_KEY][0], ctx)
    for key, (value, line) in last.items():
        ctx.line = line
        if key.startswith("server."):
            if has_dynamic_file:
                raise ctx.error(key, "must be in a separate dynamic config file")
            sid = _server_id(key, ctx)
            servers[sid] = parse_server_spec(sid, value, key, line, path, multi_address)
            server_lines[sid] = line
        elif key.startswith(("group.", "weight.")):
            _quorum_group_or_weight(key, value, ctx, groups, weights, lines)
        else:
            _apply_key(key, value, ctx, values)
    ctx.line = None
    if jvm_flags is not None:
        _apply_jvm_flags(jvm_flags, last, ctx, values, raw)
    _client_auth(values, ctx, jaas_text, jaas_path, jvm_flags, lines)

    if dynamic_text is not None:
        version, dyn_servers = parse_dynamic_config(dynamic_text, dynamic_path or "<dynamic>",
                                                    multi_address)
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
    if groups:
        _check_groups(groups, weights, servers, lines, path)
        values["quorum_groups"] = groups
        values["quorum_weights"] = {sid: w for sid, w in weights.items()
                                    if any(sid in g for g in groups.values())}
    elif weights:
        ctx.warn("weight.N lines without group.N lines do nothing (a majority quorum)",
                 line=min(lines[k] for k in lines if k.startswith("weight.")))

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
    elif values.get("secure_client_port"):
        values["client_port"] = None   # TLS clients only (secureClientPort)
    else:
        raise ConfigError("clientPort is not set", key="clientPort", path=path)
    if "secure_client_port_address" in values and not values.get("secure_client_port"):
        raise err("secureClientPortAddress",
                  "secureClientPortAddress is set but secureClientPort is not set")
    if values.get("client_port_unification") and values.get("client_port") is None:
        raise err("client.portUnification", "client.portUnification needs a clientPort")

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

    notes = tuple(values.pop("_notes", ()))
    return Config(path=path, servers=servers, myid=myid, raw=raw, warnings=tuple(ctx.warnings),
                  notes=notes, key_lines=lines, **values)


def _apply_key(key, value, ctx, values):
    """One zoo.cfg key (or -Dzookeeper.<key> flag) other than server.N, into `values`."""
    if key == "authProvider" or key.startswith("authProvider."):
        values.setdefault("_providers", []).append(value)   # _check_security validates it
    if key in _QUORUM_SASL_KEYS:
        attr, conv = _QUORUM_SASL_KEYS[key]
        values[attr] = conv(key, value, ctx)
        return
    if key in _TLS_KEYS:   # TLS (zkpy.server.tls, zkpy.quorum.secure): provided, not refused
        attr, conv = _TLS_KEYS[key]
        v = conv(key, value, ctx)
        if attr is not None:
            values[attr] = v
        return
    if _check_security(key, value, ctx):
        return
    if key in _KEYS:
        attr, conv = _KEYS[key]
        values[attr] = conv(key, value, ctx)
    elif key == "superUser" or key.startswith("superUser."):
        # ZooKeeperServer.isSaslSuperUser: zookeeper.superUser and zookeeper.superUser.*
        values.setdefault("_super_users", {})[key] = value
    elif key == "4lw.commands.whitelist":
        values["four_letter_words"] = _whitelist(key, value, ctx)
    elif key in _UNSUPPORTED_KEYS or key.startswith(_UNSUPPORTED_PREFIXES):
        ctx.warn("%s is not supported by zkpy; ignored" % key)
    elif key in _ACCEPTED_KEYS or key.startswith(_ACCEPTED_PREFIXES):
        pass
    else:
        ctx.warn("unknown key %r ignored" % key)


# ---------------------------------------------------------------------------------------------
# JVM flags (zkpy.security.jvmflags): -Dzookeeper.K=V is zoo.cfg's key K, as ZooKeeper reads it

JAAS_PROPERTY = "java.security.auth.login.config"
# Keys QuorumPeerConfig.parseProperties reads itself: only zoo.cfg sets them, a
# -Dzookeeper.<key> flag does nothing in ZooKeeper (multiAddress.* are not here: their defaults
# are the system properties) (every other zoo.cfg key K becomes the system
# property zookeeper.K, so a flag sets it too, and zoo.cfg's value replaces the flag's).
_ZOO_CFG_ONLY_KEYS = frozenset([
    "dataDir", "dataLogDir", "clientPort", "localSessionsEnabled",
    "localSessionsUpgradingEnabled", "clientPortAddress", "secureClientPort",
    "secureClientPortAddress", "observerMasterPort", "clientPortListenBacklog", "tickTime",
    "maxClientCnxns", "minSessionTimeout", "maxSessionTimeout", "initLimit", "syncLimit",
    "connectToLearnerMasterLimit", "electionAlg", "quorumListenOnAllIPs", "peerType",
    "syncEnabled", "dynamicConfigFile", "autopurge.snapRetainCount", "autopurge.purgeInterval",
    "standaloneEnabled", "reconfigEnabled", "sslQuorum", "portUnification",
    "sslQuorumReloadCertFiles", "quorum.auth.enableSasl", "quorum.auth.serverRequireSasl",
    "quorum.auth.learnerRequireSasl", "quorum.auth.learner.saslLoginContext",
    "quorum.auth.server.saslLoginContext", "quorum.auth.kerberos.servicePrincipal",
    "quorum.cnxn.threads.size", "jvm.pause.info-threshold.ms", "jvm.pause.warn-threshold.ms",
    "jvm.pause.sleep.time.ms", "jvm.pause.monitor", "oraclePath", "version",
])
_ZOO_CFG_ONLY_PREFIXES = ("server.", "group", "weight", "metricsProvider.")
# Properties ZooKeeper reads without the zookeeper. prefix, as flags only (zkpy also takes them
# from zoo.cfg): the flag wins.
_PLAIN_PROPERTIES = frozenset(["jute.maxbuffer", "readonlymode.enabled"])


def _apply_jvm_flags(flags, cfg_keys, ctx, values, raw):
    """Apply the -D flags in force: each `zookeeper.K` as the zoo.cfg key K, with the same
    checks (a refused one stops the server naming the flag and where it came from)."""
    notes = values.setdefault("_notes", [])
    for w in flags.warnings:
        ctx.warn(w)
    notes.extend(flags.notes)
    saved = ctx.path, ctx.line
    try:
        for name, prop in flags.system_properties().items():
            if name == JAAS_PROPERTY:
                continue   # load_config read the file
            if name.startswith("zookeeper."):
                key = name[len("zookeeper."):]
            elif name in _PLAIN_PROPERTIES:
                key = name
            else:
                notes.append("%s: system property %s ignored (zkpy does not read it)"
                             % (prop.where(), name))
                continue
            # errors and warnings name the flag and where it came from
            ctx.path, ctx.line = "%s: %s" % (prop.where(), prop.flag), None
            if key in _ZOO_CFG_ONLY_KEYS or key.startswith(_ZOO_CFG_ONLY_PREFIXES):
                _check_security(key, prop.value, ctx)   # a refused ask still stops zkpy
                if (key in _QUORUM_TLS_KEYS or key in _QUORUM_SASL_KEYS) and \
                        prop.value.strip().lower() not in _FALSE:
                    # ZooKeeper would ignore it and run without that security: refused
                    raise ctx.error(key, "%r has no effect as a JVM flag: ZooKeeper reads it "
                                    "only from zoo.cfg (and would run without it); set it "
                                    "in zoo.cfg" % prop.value)
                ctx.warn("no effect: ZooKeeper reads %s only from zoo.cfg; ignored" % key)
            elif key in cfg_keys and key not in _PLAIN_PROPERTIES:
                _check_security(key, prop.value, ctx)
                notes.append("%s: zoo.cfg's %s (line %d) replaces it, as in ZooKeeper"
                             % (ctx.path, key, cfg_keys[key][1]))
            else:
                _apply_key(key, prop.value, ctx, values)
                raw[key] = prop.value
    finally:
        ctx.path, ctx.line = saved


# ---------------------------------------------------------------------------------------------
# client authentication: SASL (zkpy.security) and enforcement

_BUILTIN_SCHEMES = ("ip", "digest")   # ProviderRegistry.initialize (digest is always enabled)


def _client_auth(values, ctx, jaas_text, jaas_path, jvm_flags, lines):
    providers = values.pop("_providers", [])
    values["sasl_provider"] = _sasl.SASL_PROVIDER in providers
    values["x509_provider"] = X509_PROVIDER in [p.strip() for p in providers]
    supers = values.pop("_super_users", {})
    values["sasl_super_users"] = frozenset(v for v in supers.values() if v)
    # AuthenticationHelper: every enforced scheme must have a provider, or the server stops.
    schemes = values.get("enforce_auth_schemes", ())
    if values.get("session_require_client_sasl_auth"):
        schemes = ("sasl",)
    elif not values.get("enforce_auth_enabled"):
        schemes = ()
    elif not [s for s in schemes if s]:
        raise ConfigError("enforce.auth.enabled is true: enforce.auth.schemes must be set",
                          key="enforce.auth.enabled", line=lines.get("enforce.auth.enabled"),
                          path=ctx.path)
    available = _BUILTIN_SCHEMES + (("sasl",) if values["sasl_provider"] else ())
    for scheme in schemes:
        if scheme not in available:
            key = ("sessionRequireClientSASLAuth"
                   if values.get("session_require_client_sasl_auth") else "enforce.auth.schemes")
            raise ConfigError(
                "%s: authentication scheme %r is not available (providers: %s)%s"
                % (key, scheme, ", ".join(available),
                   "; add authProvider.1=" + _sasl.SASL_PROVIDER if scheme == "sasl" else ""),
                key=key, line=lines.get(key), path=ctx.path)
    krb5 = jvm_flags.system_properties().get("java.security.krb5.conf") \
        if jvm_flags is not None else None
    if krb5 is not None:
        values["krb5_conf"] = krb5.value
    sections = None
    if jaas_text is not None:
        values["jaas_path"] = jaas_path
        properties = {n: p.value for n, p in jvm_flags.system_properties().items()} \
            if jvm_flags is not None else {}
        sections = _jaas.parse_jaas(jaas_text, jaas_path, properties)
    _quorum_auth(values, ctx, sections, jaas_path, lines)
    if sections is None:
        return
    section_name = values.get("sasl_server_section") or "Server"
    section = sections.get(section_name)
    if section is None:
        # ServerCnxnFactory.configureSaslLogin: no section, no SASL server (logins never end)
        return
    krb5 = [e for e in section.entries if e.module == _sasl.KRB5_LOGIN_MODULE]
    if krb5:
        # A Kerberos login: ZooKeeperSaslServer serves GSSAPI (zkpy.server.sasl_gssapi).
        values["sasl_kerberos"] = _kerberos_login(section_name, section, krb5[0], jaas_path)
        return
    for entry in section.entries:
        if entry.module != _sasl.DIGEST_LOGIN_MODULE:
            what = ("Kerberos (SASL GSSAPI) authentication" if entry.module.endswith(
                "Krb5LoginModule") else "the login module %s" % entry.module)
            raise ConfigError(
                "section %s: %s asks for %s, which zkpy does not provide; zkpy serves SASL "
                "DIGEST-MD5 with %s" % (section_name, entry.module, what,
                                        _sasl.DIGEST_LOGIN_MODULE),
                path=jaas_path, line=entry.line)
    values["sasl_users"] = _sasl.users_from_section(section, values.get("sasl_super_password"))


def _quorum_auth(values, ctx, sections, jaas_path, lines):
    """quorum.auth.*: the switches as QuorumPeerConfig checks them, and with enableSasl the
    QuorumServer (users) and QuorumLearner (username, password) JAAS sections, DIGEST-MD5 only
    (SaslQuorumAuthServer / SaslQuorumAuthLearner stop ZooKeeper without them)."""
    enable = values.get("quorum_auth_enable_sasl", False)
    learner = values.get("quorum_auth_learner_require_sasl", False)
    server = values.get("quorum_auth_server_require_sasl", False)

    def err(key, message):
        return ConfigError(message, key=key, line=lines.get(key), path=ctx.path)
    for key, on in (("quorum.auth.serverRequireSasl", server),
                    ("quorum.auth.learnerRequireSasl", learner)):
        if on and not enable:
            raise err(key, "If %s is true, quorum.auth.enableSasl should be true" % key)
    if server and not learner:
        raise err("quorum.auth.serverRequireSasl", "If quorum.auth.serverRequireSasl is true, "
                  "quorum.auth.learnerRequireSasl should be true")
    if not enable:
        return
    if sections is None:
        raise err("quorum.auth.enableSasl", "quorum.auth.enableSasl=true needs a JAAS file "
                  "(-Djava.security.auth.login.config=... in SERVER_JVMFLAGS or java.env) with "
                  "the QuorumServer and QuorumLearner sections")
    for key, attr in (("quorum.auth.server.saslLoginContext", "quorum_auth_server_login_context"),
                      ("quorum.auth.learner.saslLoginContext",
                       "quorum_auth_learner_login_context")):
        name = values.get(attr) or getattr(Config, attr)
        section = sections.get(name)
        if section is None or not section.entries:
            raise err(key if key in lines else "quorum.auth.enableSasl",
                      "quorum.auth.enableSasl=true: the JAAS file %s has no section %r (%s)"
                      % (jaas_path, name, key))
        for entry in section.entries:
            if entry.module != _sasl.DIGEST_LOGIN_MODULE:
                what = ("Kerberos (GSSAPI) between servers" if entry.module.endswith(
                    "Krb5LoginModule") else "the login module %s" % entry.module)
                raise ConfigError(
                    "section %s: %s asks for %s, which zkpy does not provide; zkpy "
                    "authenticates servers with DIGEST-MD5 (%s)"
                    % (name, entry.module, what, _sasl.DIGEST_LOGIN_MODULE),
                    path=jaas_path, line=entry.line)
        if attr == "quorum_auth_server_login_context":
            users = _sasl.users_from_section(section)
            if not users:
                raise ConfigError("section %s: no user_<name>=\"<password>\" option: no "
                                  "server could authenticate to this one" % name,
                                  path=jaas_path, line=section.entries[0].line)
            values["quorum_sasl_users"] = users
        else:
            opts = {}
            for entry in section.entries:
                opts.update(entry.options)
            if not opts.get("username") or "password" not in opts:
                raise ConfigError("section %s: username=\"...\" and password=\"...\" are "
                                  "needed (what this server authenticates with)" % name,
                                  path=jaas_path, line=section.entries[0].line)
            values["quorum_sasl_login"] = (opts["username"], opts["password"])


def _kerberos_login(section_name, section, entry, jaas_path):
    """(principal, keytab) of a Krb5LoginModule Server section: the acceptor reads its key
    from the keytab (useKeyTab=true keyTab=... principal=..., as ZooKeeper's docs set it up)."""
    def bad(message):
        return ConfigError("section %s: %s" % (section_name, message), path=jaas_path,
                           line=entry.line)
    if len(section.entries) > 1:
        raise bad("a Krb5LoginModule beside other login modules; zkpy takes one")
    opts = {k: v for k, v in entry.options.items()}
    if str(opts.get("useKeyTab", "false")).lower() != "true" or not opts.get("keyTab"):
        raise bad("zkpy's Kerberos (GSSAPI) server reads its key from a keytab: set "
                  "useKeyTab=true and keyTab=\"/path/to/zookeeper.keytab\"")
    if not opts.get("principal"):
        raise bad("principal=\"zookeeper/host@REALM\" is missing")
    keytab = opts["keyTab"]
    if keytab.startswith("file:"):
        keytab = keytab[len("file:"):]
    if not os.path.isfile(keytab):
        raise bad("keyTab %r is not a file" % keytab)
    return opts["principal"], keytab


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


def membership_text(servers, version, groups=None, weights=None):
    """QuorumMaj.toString: server lines then "version=<hex>", no final newline; with
    hierarchical quorums (QuorumHierarchical.toString) the group lines (members in id order)
    and a weight line per grouped server come between."""
    out = ["server.%d=%s" % (sid, servers[sid].to_config_value()) for sid in sorted(servers)]
    for gid in sorted(groups or ()):
        out.append("group.%d=%s" % (gid, ":".join(str(sid) for sid in sorted(groups[gid]))))
    grouped = sorted(sid for sids in (groups or {}).values() for sid in sids)
    out.extend("weight.%d=%d" % (sid, (weights or {}).get(sid, 1)) for sid in grouped)
    out.append("version=%x" % version)
    return "\n".join(out)


def _quorum_group_or_weight(key, value, ctx, groups, weights, lines):
    """group.N=a:b:c (server ids) or weight.N=w (QuorumHierarchical.parse)."""
    prefix, _, n = key.partition(".")
    if not _INT_RE.match(n):
        raise ctx.error(key, "%r is not a %s id" % (n, prefix))
    n = int(n)
    if prefix == "weight":
        w = _int(key, value, ctx)
        if w < 0:
            raise ctx.error(key, "a weight must be 0 or more, not %d" % w)
        weights[n] = w
        return
    sids = []
    for part in value.split(":"):
        part = part.strip()
        if not _INT_RE.match(part):
            raise ctx.error(key, "%r is not a server id (group.N=id:id:...)" % part)
        sid = int(part)
        for gid, members in groups.items():
            if sid in members:
                raise ctx.error(key, "server %d is in two groups (group.%d too)" % (sid, gid))
        sids.append(sid)
    groups[n] = tuple(sids)


def _check_groups(groups, weights, servers, lines, path):
    """Every participant in a group, every group member a server (QuorumHierarchical)."""
    grouped = {sid: gid for gid, sids in groups.items() for sid in sids}
    for sid, gid in grouped.items():
        if sid not in servers:
            key = "group.%d" % gid
            raise ConfigError("%s: server %d has no server.%d line" % (key, sid, sid),
                              key=key, line=lines.get(key), path=path)
    for sid, spec in sorted(servers.items()):
        if spec.role == ROLE_PARTICIPANT and sid not in grouped:
            key = "server.%d" % sid
            raise ConfigError("%s: a participant in no group (with group.N lines every "
                              "participant must be in one)" % key, key=key,
                              line=lines.get(key), path=path)


def parse_dynamic_config(text, path="<dynamic>", multi_address=False):
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
            servers[sid] = parse_server_spec(sid, value, key, line, path, multi_address)
        elif key == "version":
            try:
                version = int(value, 16)
            except ValueError:
                raise ctx.error(key, "%r is not a hex number" % value)
        elif key.startswith(("group", "weight")):
            # zkpy reads hierarchical quorums from zoo.cfg only (it never writes them into a
            # dynamic file: it does not reconfigure them); ignoring them would change the quorum.
            raise ctx.error(key, "group/weight lines are read from zoo.cfg, not from a dynamic "
                            "config file, by zkpy")
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


def _env_files(path, environ):
    """(text, path) of $ZOOCFGDIR/zookeeper-env.sh and $ZOOCFGDIR/java.env (ZOOCFGDIR defaults to
    zoo.cfg's directory), in the order zkEnv.sh sources them; (None, None) for one not there."""
    conf_dir = environ.get("ZOOCFGDIR") or os.path.dirname(os.path.abspath(path))
    found = []
    for name in _jvmflags.ENV_FILES:
        env_path = os.path.join(conf_dir, name)
        if not os.path.isfile(env_path):
            found.append((None, None))
            continue
        try:
            found.append((_read_text(env_path), env_path))
        except OSError as e:
            raise ConfigError("cannot read %s: %s" % (name, e.strerror or e), path=env_path)
    return found


def load_script_variables(path, environ):
    """The variables zookeeper-env.sh and java.env set (ZOO_LOG_DIR, ZOOPIDFILE...), as
    zkServer.sh sees them after zkEnv.sh sourced both: name -> value."""
    return _jvmflags.sourced_variables(environ, _env_files(os.fspath(path), environ))


def load_config(path, default_workers=None, environ=None):
    """Read zoo.cfg at path, plus dataDir/myid and the dynamicConfigFile when present.

    environ: the environment zkpy-server runs in (None: none). Its SERVER_JVMFLAGS / JVMFLAGS,
    with zookeeper-env.sh and java.env in $ZOOCFGDIR (default: zoo.cfg's directory) as zkEnv.sh
    sources them, give the
    -D flags ZooKeeper would run with (zkpy.security.jvmflags); the JAAS file that
    -Djava.security.auth.login.config names is read too.
    """
    path = os.fspath(path)
    try:
        text = _read_text(path)
    except OSError as e:
        raise ConfigError("cannot read config file: %s" % (e.strerror or e), path=path)
    environ = environ if environ is not None else {}
    zookeeper_env, java_env = _env_files(path, environ)
    jvm_flags = _jvmflags.server_jvm_flags(environ, java_env[0], java_env[1], zookeeper_env[0],
                                           zookeeper_env[1])
    jaas_text = jaas_path = None
    jaas_prop = jvm_flags.system_properties().get(JAAS_PROPERTY)
    if jaas_prop is not None:
        # "==file" uses only that file (the JVM's other login configs are not read); a
        # file: URL names a file too.
        jaas_path = jaas_prop.value.lstrip("=")
        if jaas_path.startswith("file:"):
            jaas_path = jaas_path[len("file:"):]
            while jaas_path.startswith("//"):
                jaas_path = jaas_path[1:]
        try:
            jaas_text = _read_text(jaas_path)
        except OSError as e:
            # ZooKeeper stops too ("No JAAS configuration section named 'Server' was found")
            raise ConfigError("cannot read the JAAS file %r: %s" % (jaas_path, e.strerror or e),
                              path="%s: %s" % (jaas_prop.where(), jaas_prop.flag))
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
                          dynamic_text=dynamic_text, dynamic_path=dynamic_path,
                          jvm_flags=jvm_flags, jaas_text=jaas_text, jaas_path=jaas_path)
    if config.is_distributed() and myid is None:
        raise ConfigError("myid file is missing (expected %s)"
                          % os.path.join(config.data_dir, "myid"), path=path)
    return config


def replace(config, **changes):
    """A copy of config with some attributes changed (tests, command-line overrides)."""
    return dataclasses.replace(config, **changes)
