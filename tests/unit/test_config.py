"""Tests for zkpy.config: zoo.cfg parsing, defaults, errors, server.N, conf text, load_config."""

import os

import pytest

from zkpy.config import (
    ALL_FOUR_LETTER_WORDS, Config, ServerSpec, load_config, parse_config, parse_properties,
    parse_server_spec,
)
from zkpy.errors import ConfigError

BASE = "dataDir=/tmp/zkpy-test\nclientPort=2181\n"


def cfg(extra="", **kw):
    return parse_config(BASE + extra, "conf/zoo.cfg", **kw)


def error_of(text, **kw):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "conf/zoo.cfg", **kw)
    return info.value


# --- defaults -----------------------------------------------------------------------------------

def test_defaults():
    c = cfg()
    assert isinstance(c, Config)
    assert c.tick_time_ms == 3000
    assert c.data_dir == "/tmp/zkpy-test"
    assert c.data_log_dir == "/tmp/zkpy-test"
    assert c.client_port == 2181
    assert c.client_port_address == "0.0.0.0"
    assert c.max_client_cnxns == 60
    assert c.session_timeout_bounds() == (6000, 60000)
    assert c.snap_count == 100000
    assert c.force_sync is True
    assert c.jute_maxbuffer == 0xFFFFF
    assert c.four_letter_words == frozenset(["srvr"])
    assert (c.admin_enable_server, c.admin_server_address, c.admin_server_port) == \
        (True, "0.0.0.0", 8080)
    assert (c.autopurge_snap_retain_count, c.autopurge_purge_interval_ms) == (3, 0)
    assert c.servers == {}
    assert c.peer_type == "participant"
    assert c.standalone_enabled is True and c.reconfig_enabled is False
    assert c.myid is None
    assert (c.max_batch_size, c.flush_delay_ms) == (1000, 0)
    assert c.workers == 1
    assert c.commit_max_bytes == 1 << 20
    assert c.lmdb_map_size == 1 << 36
    assert c.extended_types_enabled is False and c.enforce_quota is False
    assert c.super_digest is None and c.skip_acl is False
    assert (c.container_check_interval_ms, c.container_max_per_minute) == (60000, 10000)
    assert c.global_outstanding_limit == 1000
    assert c.max_cnxns == 0
    assert c.fsync_warning_threshold_ms == 1000
    assert c.readonly_mode_enabled is False
    assert c.local_sessions_enabled is False
    assert c.raw == {"dataDir": "/tmp/zkpy-test", "clientPort": "2181"}
    assert c.warnings == ()
    assert not c.is_distributed()


def test_default_workers_parameter():
    assert cfg(default_workers=7).workers == 7
    assert cfg("workers=3\n", default_workers=7).workers == 3


def test_config_is_frozen():
    with pytest.raises(Exception):
        cfg().client_port = 1


def test_values_parsed():
    c = cfg("tickTime=2000\ndataLogDir=/var/zk/log\nclientPortAddress=127.0.0.1\n"
            "maxClientCnxns=0\nforceSync=no\nsnapCount=5000\nadmin.serverPort=9090\n"
            "admin.enableServer=false\nskipACL=yes\nenforceQuota=true\nextendedTypesEnabled=true\n"
            "DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n"
            "commitMaxBytes=65536\nmaxBatchSize=10\nflushDelay=5\njute.maxbuffer=0x400000\n"
            "autopurge.purgeInterval=1\nautopurge.snapRetainCount=5\nlmdbMapSize=1048576\n")
    assert c.tick_time_ms == 2000
    assert c.session_timeout_bounds() == (4000, 40000)
    assert c.data_log_dir == "/var/zk/log"
    assert c.client_port_address == "127.0.0.1"
    assert c.max_client_cnxns == 0
    assert c.force_sync is False
    assert c.snap_count == 5000
    assert c.admin_server_port == 9090 and c.admin_enable_server is False
    assert c.skip_acl and c.enforce_quota and c.extended_types_enabled
    assert c.super_digest == "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
    assert (c.commit_max_bytes, c.max_batch_size, c.flush_delay_ms) == (65536, 10, 5)
    assert c.jute_maxbuffer == 0x400000
    assert (c.autopurge_purge_interval_ms, c.autopurge_snap_retain_count) == (3600000, 5)
    assert c.lmdb_map_size == 1 << 20


@pytest.mark.parametrize("value,ms", [
    ("0", 0), ("-1", 0), ("1", 3600000), ("24", 86400000),   # hours, as ZooKeeper reads it
    # ZooKeeper 3.10's unit suffixes
    ("500ms", 500), ("30s", 30000), ("5m", 300000), ("2h", 7200000), ("1d", 86400000),
    ("1D", 86400000), ("0ms", 0),
])
def test_purge_interval_units(value, ms):
    assert cfg("autopurge.purgeInterval=%s\n" % value).autopurge_purge_interval_ms == ms


def test_session_timeouts_explicit_and_minus_one():
    assert cfg("tickTime=1000\nminSessionTimeout=100\nmaxSessionTimeout=-1\n") \
        .session_timeout_bounds() == (100, 20000)
    assert cfg("minSessionTimeout=-1\nmaxSessionTimeout=90000\n") \
        .session_timeout_bounds() == (6000, 90000)


def test_snap_retain_count_clamped_with_warning():
    c = cfg("autopurge.snapRetainCount=1\n")
    assert c.autopurge_snap_retain_count == 3
    assert any("snapRetainCount" in w and ":3:" in w for w in c.warnings)


def test_relative_data_dir_resolved_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = parse_config("dataDir=data\nclientPort=2181\n", "zoo.cfg")
    assert c.data_dir == os.path.join(str(tmp_path), "data")
    assert any("is relative" in w for w in c.warnings)
    c = parse_config("dataDir=./data\nclientPort=2181\n", "zoo.cfg")
    assert c.data_dir == os.path.join(str(tmp_path), "data")
    assert c.warnings == ()


# --- properties syntax --------------------------------------------------------------------------

def test_comments_blanks_and_whitespace():
    text = ("# a comment\n"
            "   ! another comment\n"
            "\n"
            "   \t\n"
            "  dataDir  =  /tmp/zkpy-test   \n"
            "clientPort:2181\n"
            "tickTime 2500\n")
    c = parse_config(text, "z.cfg")
    assert (c.data_dir, c.client_port, c.tick_time_ms) == ("/tmp/zkpy-test", 2181, 2500)
    assert c.warnings == ()


def test_properties_line_numbers_continuation_and_escapes():
    text = "a=1\n# c\nb=x\\\n   y\nc=\\u0041\\tB\nd\ne=1\r\nf=2\r\n"
    assert parse_properties(text) == [
        ("a", "1", 1), ("b", "xy", 3), ("c", "A\tB", 5), ("d", "", 6), ("e", "1", 7),
        ("f", "2", 8)]


def test_duplicate_key_last_wins_with_warning():
    c = cfg("tickTime=1000\ntickTime=2000\n")
    assert c.tick_time_ms == 2000
    assert any("duplicate" in w and "conf/zoo.cfg:3:" in w for w in c.warnings)


def test_unknown_key_warns_with_line():
    c = cfg("# x\nnoSuchKey=1\n")
    assert c.raw["noSuchKey"] == "1"
    assert len(c.warnings) == 1
    assert c.warnings[0].startswith("conf/zoo.cfg:4:")
    assert "noSuchKey" in c.warnings[0]


def test_metrics_provider_accepted_silently():
    c = cfg("metricsProvider.className=x.Y\nmetricsProvider.httpPort=7000\n")
    assert c.warnings == ()


def test_unsupported_zookeeper_key_warns():
    c = cfg("oraclePath=/var/zk/oracle\n")
    assert len(c.warnings) == 1 and "oraclePath" in c.warnings[0]


# --- security keys fail closed (issue 15) -------------------------------------------------------

SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"

REFUSED = [
    # (line, key, what the message says is missing)
    # (TLS and SASL between servers are provided: tests/unit/test_quorum_security.py)
    ("ssl.quorum.unknownKey=1", "ssl.quorum.unknownKey", "ssl.quorum.* setting"),
    ("client.secure=true", "client.secure", "TLS"),
    ("admin.portUnification=true", "admin.portUnification", "HTTPS"),
    ("admin.forceHttps=true", "admin.forceHttps", "HTTPS"),
    ("admin.needClientAuth=true", "admin.needClientAuth", "HTTPS"),
    ("ssl.ocsp.responder=http://x", "ssl.ocsp.responder", "ssl.* setting"),
    ("X509AuthenticationProvider.foo=bar", "X509AuthenticationProvider.foo", "x509"),
    # a misspelt switch, which ZooKeeper would ignore and run without quorum SASL
    ("quorum.auth.enableSASL=true", "quorum.auth.enableSASL", "SASL"),
    ("kerberos.canonicalizeHostNames=true", "kerberos.canonicalizeHostNames", "Kerberos"),
    ("authProvider.1=com.example.MyProvider", "authProvider.1", "com.example.MyProvider"),
    ("authProvider=org.apache.zookeeper.server.auth.EnsembleAuthenticationProvider",
     "authProvider", "EnsembleAuthenticationProvider"),
    ("DigestAuthenticationProvider.enabled=false", "DigestAuthenticationProvider.enabled",
     "digest scheme off"),
    ("DigestAuthenticationProvider.digestAlg=SHA-256", "DigestAuthenticationProvider.digestAlg",
     "other than SHA1"),
    # zookeeper.K: the JVM property name; ZooKeeper ignores it in zoo.cfg, zkpy still refuses
    ("zookeeper.sessionRequireClientSASLAuth=true", "zookeeper.sessionRequireClientSASLAuth",
     "no effect in zoo.cfg"),
    ("zookeeper.ssl.quorum.keyStore.location=/k.jks", "zookeeper.ssl.quorum.keyStore.location",
     "no effect in zoo.cfg"),
    ("zookeeper.authProvider.1=com.example.P", "zookeeper.authProvider.1", "com.example.P"),
    # zkpy honours DigestAuthenticationProvider.superDigest; ZooKeeper ignores this spelling
    ("zookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=",
     "zookeeper.DigestAuthenticationProvider.superDigest", "no effect in zoo.cfg"),
]


@pytest.mark.parametrize("line,key,fragment", REFUSED, ids=[r[1] for r in REFUSED])
def test_security_key_zkpy_lacks_is_refused_naming_key_and_line(line, key, fragment):
    text = "# header\ndataDir=/tmp/zkpy-test\nclientPort=2181\n\n%s\ntickTime=2000\n" % line
    e = error_of(text)
    assert (e.key, e.line, e.path) == (key, 5, "conf/zoo.cfg")
    msg = str(e)
    assert msg.startswith("conf/zoo.cfg:5: %s: " % key)
    assert fragment in msg
    assert "\n" not in msg  # one line
    if not fragment.startswith("no effect"):
        assert "does not provide" in msg


def test_security_refusal_message_exact():
    e = error_of("dataDir=/d\nclientPort=2181\nadmin.forceHttps=true\n")
    assert str(e) == (
        "conf/zoo.cfg:3: admin.forceHttps: 'true' asks for HTTPS on the AdminServer, "
        "which zkpy does not provide yet; remove the key or set it to false")


def test_security_switch_with_a_bad_value_is_an_error():
    e = error_of(BASE + "sslQuorum=maybe\n")
    assert e.key == "sslQuorum" and "invalid option" in str(e)


@pytest.mark.parametrize("line", [
    # ZooKeeper's defaults: insecure values ask for nothing zkpy lacks
    "secureClientPort=0",
    "client.portUnification=false",
    "portUnification=false",
    "sslQuorum=false",
    "sslQuorumReloadCertFiles=false",
    "client.certReload=false",
    "client.secure=false",
    "admin.portUnification=false",
    "admin.forceHttps=false",
    "admin.needClientAuth=false",
    "quorum.auth.enableSasl=false",
    "quorum.auth.learnerRequireSasl=false",
    "quorum.auth.serverRequireSasl=FALSE",
    "kerberos.removeHostFromPrincipal=false",
    "kerberos.removeRealmFromPrincipal=false",
    "kerberos.canonicalizeHostNames=false",
    "sessionRequireClientSASLAuth=false",
    "zookeeper.sessionRequireClientSASLAuth=false",
    "enforce.auth.enabled=false",
    "audit.enable=false",
    "audit.enable=true",   # honoured: zkpy.server.audit
    "DigestAuthenticationProvider.enabled=true",
    "DigestAuthenticationProvider.digestAlg=SHA1",
    "DigestAuthenticationProvider.digestAlg=SHA-1",
    # inert unless a refused switch is on; SASL identities and switches zkpy honours
    "kerberos.removeHostFromPrincipal=true",
    "kerberos.removeRealmFromPrincipal=true",
    "allowSaslFailedClients=false",
    "zookeeper.allowSaslFailedClients=false",
    "quorum.auth.learner.saslLoginContext=QuorumLearner",
    "quorum.auth.server.saslLoginContext=QuorumServer",
    "quorum.auth.kerberos.servicePrincipal=zkquorum/localhost",
    "enforce.auth.schemes=sasl",
    "allowSaslFailedClients=true",
    "superUser=admin",
    "superUser.2=ops",
    # the providers zkpy has; SASL as ZooKeeper runs it without a JAAS Server section
    "authProvider.1=" + SASL_PROVIDER,
    "authProvider.sasl=" + SASL_PROVIDER,
    "authProvider.2=org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
    "authProvider.3=org.apache.zookeeper.server.auth.IPAuthenticationProvider",
    "zookeeper.authProvider.1=" + SASL_PROVIDER,
])
def test_insecure_or_provided_security_values_are_accepted_silently(line):
    c = cfg(line + "\n")
    assert c.warnings == ()


def test_super_digest_is_honoured_not_just_accepted():
    c = cfg("DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n")
    assert c.super_digest == "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
    from zkpy.tree import acl
    assert acl.authenticate("digest", b"super:test", c.super_digest)[0] == acl.SUPER
    assert acl.authenticate("digest", b"super:wrong", c.super_digest) == [
        ("digest", acl.digest("super:wrong"))]


def test_first_refused_key_in_file_order_is_named():
    e = error_of(BASE + "admin.forceHttps=true\nadmin.needClientAuth=true\n")
    assert (e.key, e.line) == ("admin.forceHttps", 3)


# --- errors name key and line -------------------------------------------------------------------

@pytest.mark.parametrize("line,key,fragment", [
    ("clientPort=abc", "clientPort", "'abc' is not an integer"),
    ("clientPort=0", "clientPort", "1..65535"),
    ("clientPort=65536", "clientPort", "1..65535"),
    ("admin.serverPort=x", "admin.serverPort", "not an integer"),
    ("tickTime=0", "tickTime", "must be > 0"),
    ("tickTime=-5", "tickTime", "must be > 0"),
    ("tickTime=1_000", "tickTime", "not an integer"),
    ("forceSync=maybe", "forceSync", "invalid option"),
    ("standaloneEnabled=1", "standaloneEnabled", "invalid option"),
    ("maxClientCnxns=-1", "maxClientCnxns", ">= 0"),
    ("workers=-1", "workers", ">= 0"),
    ("lmdbMapSize=1000", "lmdbMapSize", ">= 1048576"),
    ("lmdbMapSize=64G", "lmdbMapSize", "not an integer"),
    ("peerType=voter", "peerType", "peertype"),
    ("electionAlg=1", "electionAlg", "only 3"),
    ("autopurge.purgeInterval=1.5h", "autopurge.purgeInterval", "not an integer"),
    ("autopurge.purgeInterval=10w", "autopurge.purgeInterval", "not an integer"),
    ("minSessionTimeout=-7", "minSessionTimeout", "-1"),
    ("server.1=host:2888", "server.1", "does not have the form"),
    ("server.x=host:2888:3888", "server.x", "server id"),
    ("DigestAuthenticationProvider.superDigest=nocolon", "DigestAuthenticationProvider.superDigest",
     "user:base64digest"),
])
def test_bad_value_names_key_and_line(line, key, fragment):
    text = "# header\ndataDir=/tmp/zkpy-test\nclientPort=2181\n\n%s\n" % line
    e = error_of(text)
    assert e.key == key
    assert e.line == 5
    assert e.path == "conf/zoo.cfg"
    msg = str(e)
    assert msg.startswith("conf/zoo.cfg:5: ")
    assert key in msg and fragment in msg


def test_error_message_format_exact():
    e = error_of("dataDir=/d\n\n\n\n\n\nclientPort=abc\n")
    assert str(e) == "conf/zoo.cfg:7: clientPort: 'abc' is not an integer"


def test_data_dir_required():
    e = error_of("clientPort=2181\n")
    assert e.key == "dataDir" and "dataDir is not set" in str(e)


def test_client_port_required():
    e = error_of("dataDir=/d\n")
    assert e.key == "clientPort" and "clientPort is not set" in str(e)


def test_client_port_address_without_port():
    e = error_of("dataDir=/d\nclientPortAddress=1.2.3.4\n")
    assert e.key == "clientPortAddress" and e.line == 2


def test_min_greater_than_max_is_error():
    e = error_of(BASE + "minSessionTimeout=50000\nmaxSessionTimeout=40000\n")
    assert e.key == "minSessionTimeout" and e.line == 3
    assert "must not be larger" in str(e)
    # against a default: max defaults to 20 x tickTime = 20000
    e = error_of(BASE + "tickTime=1000\nminSessionTimeout=30000\n")
    assert e.key == "minSessionTimeout" and e.line == 4


def test_bad_unicode_escape_is_error():
    e = error_of(BASE + "a=\\u12\n")
    assert e.line == 3


# --- server.N -----------------------------------------------------------------------------------

def test_server_spec_variants():
    assert parse_server_spec(1, "zk1:2888:3888") == \
        ServerSpec(1, "zk1", 2888, 3888, "participant", None, None)
    assert parse_server_spec(2, "zk2:2888:3888:observer") == \
        ServerSpec(2, "zk2", 2888, 3888, "observer", None, None)
    assert parse_server_spec(3, "zk3:2888:3888:participant;2181") == \
        ServerSpec(3, "zk3", 2888, 3888, "participant", "0.0.0.0", 2181)
    assert parse_server_spec(4, "zk4:2888:3888;10.0.0.4:2181") == \
        ServerSpec(4, "zk4", 2888, 3888, "participant", "10.0.0.4", 2181)
    assert parse_server_spec(5, "[::1]:2888:3888:OBSERVER;[::1]:2181") == \
        ServerSpec(5, "::1", 2888, 3888, "observer", "::1", 2181)


@pytest.mark.parametrize("value", [
    "zk1:2888", "zk1:2888:3888:participant:x", "zk1:2888:3888:leader", "zk1:abc:3888",
    "zk1:2888:2888", "zk1:2888:3888;a:b:c", "zk1:2888:3888;x", "zk1:2888:3888;1;2",
    "zk1:2888:3888|zk1b:2889:3889", ":2888:3888", "zk1:2888:70000",
])
def test_server_spec_malformed(value):
    with pytest.raises(ConfigError) as info:
        parse_server_spec(1, value, line=9, path="z.cfg")
    assert info.value.key == "server.1" and info.value.line == 9


# --- multiAddress.enabled: several address pairs on a server line (ZooKeeper 3.6+) -------------

MULTI = ("tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/d\n"
         "server.1=10.0.1.1:2888:3888|10.0.0.1:2889:3889;2181\n"
         "server.2=10.0.0.2:2888:3888|10.0.1.2:2889:3889:observer;2181\n"
         "server.3=h3:2888:3888\n")


def test_multi_address_spec_keeps_every_pair():
    s = parse_server_spec(1, "a:1:2|b:3:4:observer|[::1]:5:6;2181", multi_address=True)
    assert (s.host, s.peer_port, s.election_port, s.role) == ("a", 1, 2, "observer")
    assert s.addresses() == (("a", 1, 2), ("b", 3, 4), ("::1", 5, 6))
    assert s.quorum_addresses() == [("a", 1), ("b", 3), ("::1", 5)]
    assert s.election_addresses() == [("a", 2), ("b", 4), ("::1", 6)]
    # QuorumServer.toString: quorum and election addresses each sorted by host, `|`-joined
    assert s.to_config_value() == "[::1]:5:6|a:1:2|b:3:4:observer;0.0.0.0:2181"
    again = parse_server_spec(1, s.to_config_value(), multi_address=True)
    assert set(again.addresses()) == set(s.addresses()) and again.role == s.role
    # a single pair prints as before
    assert parse_server_spec(2, "h:1:2", multi_address=True).to_config_value() == \
        "h:1:2:participant"


@pytest.mark.parametrize("value", [
    "a:1:2|b:3", "a:1:2|b:3:3", "a:1:2:observer|b:3:4:participant", "a:1:2|:3:4",
    "a:1:2|b:3:x",
])
def test_multi_address_spec_malformed(value):
    with pytest.raises(ConfigError) as info:
        parse_server_spec(1, value, line=9, path="z.cfg", multi_address=True)
    assert info.value.key == "server.1" and info.value.line == 9


def test_multi_address_disabled_is_zookeepers_error():
    e = error_of(MULTI.replace("dataDir=/d\n", "dataDir=/d\nmultiAddress.enabled=false\n"),
                 myid=1)
    assert (e.path, e.line, e.key) == ("conf/zoo.cfg", 6, "server.1")
    assert str(e).startswith("conf/zoo.cfg:6: server.1: Multiple address feature is disabled, "
                             "but multiple addresses were specified for sid 1")
    assert "multiAddress.enabled=true" in str(e)
    assert error_of(MULTI, myid=1).key == "server.1"   # the default is false


def test_multi_address_enabled_by_a_jvm_flag():
    # QuorumPeerConfig's multiAddressEnabled defaults to -Dzookeeper.multiAddress.enabled;
    # zoo.cfg's key replaces it.
    from zkpy.security import jvmflags
    flags = jvmflags.server_jvm_flags(
        {"SERVER_JVMFLAGS": "-Dzookeeper.multiAddress.enabled=true "
                            "-Dzookeeper.multiAddress.reachabilityCheckTimeoutMs=300"})
    c = parse_config(MULTI, "z.cfg", myid=1, jvm_flags=flags)
    assert c.multi_address_enabled and len(c.servers[1].addresses()) == 2
    assert c.multi_address_reachability_check_timeout_ms == 300
    e = error_of(MULTI.replace("dataDir=/d\n", "dataDir=/d\nmultiAddress.enabled=false\n"),
                 myid=1, jvm_flags=flags)
    assert e.key == "server.1"


def test_multi_address_enabled_anywhere_in_the_file():
    c = parse_config(MULTI + "multiAddress.enabled=true\n"
                     "multiAddress.reachabilityCheckEnabled=false\n"
                     "multiAddress.reachabilityCheckTimeoutMs=250\n", "z.cfg", myid=1)
    assert c.multi_address_enabled
    assert not c.multi_address_reachability_check_enabled
    assert c.multi_address_reachability_check_timeout_ms == 250
    assert not [w for w in c.warnings if "multiAddress" in w]
    assert c.servers[1].quorum_addresses() == [("10.0.1.1", 2888), ("10.0.0.1", 2889)]
    assert c.servers[2].role == "observer"
    conf = c.to_conf_text()
    assert "electionPort=3888\nquorumPort=2888\n" in conf
    assert ("server.1=10.0.0.1:2889:3889|10.0.1.1:2888:3888:participant;0.0.0.0:2181\n"
            "server.2=10.0.0.2:2888:3888|10.0.1.2:2889:3889:observer;0.0.0.0:2181\n"
            "server.3=h3:2888:3888:participant\nversion=0") in conf
    d = parse_config(BASE.replace("clientPort=2181\n", "") +
                     "initLimit=5\nsyncLimit=2\nmultiAddress.enabled=yes\n"
                     "dynamicConfigFile=/d/zoo.cfg.dynamic.100\n", "z.cfg", myid=1,
                     dynamic_text=MULTI.split("dataDir=/d\n")[1] + "version=100\n",
                     dynamic_path="/d/zoo.cfg.dynamic.100")
    assert d.servers[2].election_addresses() == [("10.0.0.2", 3888), ("10.0.1.2", 3889)]


@pytest.mark.parametrize("value", ["0", "-5", "x"])
def test_multi_address_timeout_must_be_positive(value):
    e = error_of(BASE + "multiAddress.reachabilityCheckTimeoutMs=%s\n" % value)
    assert e.key == "multiAddress.reachabilityCheckTimeoutMs" and e.line == 3


def test_ensemble_config_and_client_port_from_server_line():
    text = ("tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/d\n"
            "server.1=h1:2888:3888;2181\nserver.2=h2:2888:3888;2181\n"
            "server.3=h3:2888:3888:observer;127.0.0.1:2182\n")
    c = parse_config(text, "z.cfg", myid=3)
    assert c.is_distributed()
    assert sorted(c.servers) == [1, 2, 3]
    assert c.servers[3].role == "observer"
    assert (c.client_port, c.client_port_address) == (2182, "127.0.0.1")
    assert c.peer_type == "observer"
    assert c.myid == 3
    assert sorted(c.voting_members()) == [1, 2]
    assert any("no server failure will be tolerated" in w for w in c.warnings)


def test_quorum_needs_init_and_sync_limit():
    text = "dataDir=/d\nclientPort=2181\nserver.1=h1:1:2\nserver.2=h2:1:2\nserver.3=h3:1:2\n"
    assert error_of(text).key == "initLimit"
    assert error_of(text + "initLimit=5\n").key == "syncLimit"


def test_myid_not_in_servers_is_error():
    text = ("initLimit=5\nsyncLimit=2\ndataDir=/d\nclientPort=2181\n"
            "server.1=a:1:2\nserver.2=b:1:2\nserver.3=c:1:2\n")
    e = error_of(text, myid=4)
    assert "myid 4" in str(e)


def test_single_server_line_is_standalone():
    c = cfg("server.1=h1:2888:3888\n")
    assert not c.is_distributed()
    assert any("only one server" in w for w in c.warnings)


def test_observers_without_participants_is_error():
    e = error_of(BASE + "server.1=h1:2888:3888:observer\n")
    assert e.key == "server.1" and e.line == 3


def test_server_lines_forbidden_with_dynamic_file():
    e = error_of(BASE + "dynamicConfigFile=/x/zoo.cfg.dynamic\nserver.1=h:1:2\n")
    assert e.key == "server.1" and "dynamic" in str(e)


# --- four letter words --------------------------------------------------------------------------

def test_whitelist_list():
    c = cfg("4lw.commands.whitelist= ruok , stat,,conf\n")
    assert c.four_letter_words == frozenset(["ruok", "stat", "conf", "srvr"])


def test_whitelist_star_enables_all():
    assert cfg("4lw.commands.whitelist=*\n").four_letter_words == ALL_FOUR_LETTER_WORDS
    assert cfg("4lw.commands.whitelist=ruok, *\n").four_letter_words == ALL_FOUR_LETTER_WORDS


def test_whitelist_srvr_always_and_isro_with_readonly():
    assert cfg("4lw.commands.whitelist=ruok\n").four_letter_words == frozenset(["ruok", "srvr"])
    c = cfg("4lw.commands.whitelist=ruok\nreadonlymode.enabled=true\n")
    assert c.four_letter_words == frozenset(["ruok", "srvr", "isro"])


def test_whitelist_unknown_word_warns():
    c = cfg("4lw.commands.whitelist=ruok,blah\n")
    assert c.four_letter_words == frozenset(["ruok", "srvr"])
    assert any("blah" in w and ":3:" in w for w in c.warnings)


# --- conf 4lw text ------------------------------------------------------------------------------

def test_conf_text_standalone_matches_zookeeper():
    # Captured from ZooKeeper 3.8.0 standalone with the same settings.
    c = parse_config("tickTime=2000\ndataDir=/tmp/zkcfgprobe/data\nclientPort=22181\n", "z")
    assert c.to_conf_text(data_dir_size=457, data_log_size=457) == (
        "clientPort=22181\nsecureClientPort=-1\ndataDir=/tmp/zkcfgprobe/data/version-2\n"
        "dataDirSize=457\ndataLogDir=/tmp/zkcfgprobe/data/version-2\ndataLogSize=457\n"
        "tickTime=2000\nmaxClientCnxns=60\nminSessionTimeout=4000\nmaxSessionTimeout=40000\n"
        "clientPortListenBacklog=-1\nserverId=0\n")


def test_conf_text_quorum_appends_membership():
    text = ("initLimit=10\nsyncLimit=5\ndataDir=/d\nclientPort=2181\n"
            "server.2=h2:2888:3888\nserver.1=h1:2889:3889;2181\nserver.3=h3:2888:3888:observer\n")
    c = parse_config(text, "z", myid=1)
    out = c.to_conf_text(client_port=2181)
    assert out.endswith(
        "clientPortListenBacklog=-1\nserverId=1\ninitLimit=10\nsyncLimit=5\nelectionAlg=3\n"
        "electionPort=3889\nquorumPort=2889\npeerType=0\nmembership: \n"
        "server.1=h1:2889:3889:participant;0.0.0.0:2181\n"
        "server.2=h2:2888:3888:participant\n"
        "server.3=h3:2888:3888:observer\nversion=0")


# --- load_config --------------------------------------------------------------------------------

def test_load_config_reads_myid(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "myid").write_text("2\n")
    p = tmp_path / "zoo.cfg"
    p.write_text("initLimit=5\nsyncLimit=2\ndataDir=%s\nserver.1=a:1:2;2181\n"
                 "server.2=b:1:2;2182\nserver.3=c:1:2;2183\n" % data)
    c = load_config(str(p), default_workers=4)
    assert c.myid == 2 and c.client_port == 2182 and c.workers == 4
    assert c.path == str(p)


def test_load_config_standalone_without_myid(tmp_path):
    p = tmp_path / "zoo.cfg"
    p.write_text("dataDir=%s\nclientPort=2181\n" % tmp_path)
    c = load_config(p)
    assert c.myid is None and c.workers >= 1


def test_load_config_bad_myid_names_file(tmp_path):
    (tmp_path / "myid").write_text("one\n")
    p = tmp_path / "zoo.cfg"
    p.write_text("dataDir=%s\nclientPort=2181\n" % tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(str(p))
    assert str(tmp_path / "myid") in str(info.value)
    assert "'one'" in str(info.value)


def test_load_config_quorum_requires_myid(tmp_path):
    p = tmp_path / "zoo.cfg"
    p.write_text("initLimit=5\nsyncLimit=2\ndataDir=%s\nclientPort=2181\n"
                 "server.1=a:1:2\nserver.2=b:1:2\nserver.3=c:1:2\n" % tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(str(p))
    assert "myid" in str(info.value)


def test_load_config_dynamic_file(tmp_path):
    (tmp_path / "myid").write_text("1")
    dyn = tmp_path / "zoo.cfg.dynamic.100000000"
    dyn.write_text("server.1=a:1:2;2181\nserver.2=b:1:2;2181\nserver.3=c:1:2;2181\n")
    p = tmp_path / "zoo.cfg"
    p.write_text("initLimit=5\nsyncLimit=2\ndataDir=%s\ndynamicConfigFile=%s\n" % (tmp_path, dyn))
    c = load_config(str(p))
    assert sorted(c.servers) == [1, 2, 3]
    assert c.config_version == 0x100000000
    assert c.dynamic_config_file == str(dyn)
    assert c.client_port == 2181
    assert c.to_conf_text().endswith("version=100000000")


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.cfg"))
    assert "nope.cfg" in str(info.value)


def test_shipped_conf_parses():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "conf", "zoo.cfg")
    with open(path) as f:
        c = parse_config(f.read(), path)
    assert c.client_port == 2181 and c.tick_time_ms == 2000
    assert c.data_dir == "/tmp/zkpy/data"
    assert "ruok" in c.four_letter_words and "conf" in c.four_letter_words
    assert c.warnings == ()


def test_shipped_logging_conf_loads():
    # fileConfig closes every existing handler (pytest's too), so try it in a child process.
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "conf", "logging.conf")
    code = ("import logging, logging.config, sys\n"
            "logging.config.fileConfig(sys.argv[1], disable_existing_loggers=False)\n"
            "logging.getLogger('zkpy.test').info('hello')\n")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "INFO  [MainThread:zkpy.test@3] - hello" in out.stderr


# --- hierarchical quorums (group.N / weight.N) ---------------------------------------------------

_FIVE = "initLimit=5\nsyncLimit=2\n" + "".join(
    "server.%d=h%d:1:2\n" % (i, i) for i in range(1, 6))


def test_groups_and_weights_parsed():
    c = cfg(_FIVE + "group.1=1:2:3\ngroup.2=4\ngroup.3=5\nweight.1=2\nweight.9=7\n", myid=1)
    assert c.quorum_groups == {1: (1, 2, 3), 2: (4,), 3: (5,)}
    assert c.quorum_weights == {1: 2}   # weight.9: no grouped server 9
    assert "group.1=1:2:3\ngroup.2=4\ngroup.3=5\nweight.1=2\nweight.2=1\n" in c.to_conf_text()


@pytest.mark.parametrize("extra,key,what", [
    ("group.1=1:2:3\ngroup.2=3:4:5\n", "group.2", "two groups"),
    ("group.1=1:2:x\n", "group.1", "not a server id"),
    ("group.1=1:2:3\ngroup.2=4\n", "server.5", "in no group"),
    ("group.1=1:2:3\ngroup.2=4:5:6\n", "group.2", "no server.6 line"),
    ("group.1=1:2:3:4:5\nweight.2=-1\n", "weight.2", "0 or more"),
    ("group.x=1:2:3:4:5\n", "group.x", "not a group id"),
])
def test_bad_groups_name_key_and_line(extra, key, what):
    e = error_of(BASE + _FIVE + extra, myid=1)
    assert e.key == key and what in str(e), str(e)
    assert e.line is not None


def test_weights_without_groups_warn():
    c = cfg(_FIVE + "weight.1=3\n", myid=1)
    assert c.quorum_groups is None
    assert any("weight.N lines without group.N" in w for w in c.warnings)


# --- a Kerberos (Krb5LoginModule) JAAS Server section ---------------------------------------------

def _krb_jaas(options):
    return ("Server {\n  com.sun.security.auth.module.Krb5LoginModule required\n%s;\n};\n"
            % "\n".join("  %s" % o for o in options))


def test_kerberos_server_section(tmp_path):
    keytab = tmp_path / "zk.keytab"
    keytab.write_bytes(b"\x05\x02")
    c = parse_config(BASE + "authProvider.1=org.apache.zookeeper.server.auth."
                     "SASLAuthenticationProvider\n", "conf/zoo.cfg",
                     jaas_text=_krb_jaas(['useKeyTab=true', 'keyTab="%s"' % keytab,
                                          'principal="zookeeper/h@R"']),
                     jaas_path="/etc/jaas.conf")
    assert c.sasl_kerberos == ("zookeeper/h@R", str(keytab))
    assert c.sasl_users is None


@pytest.mark.parametrize("options,what", [
    (['useKeyTab=false', 'principal="zookeeper/h@R"'], "useKeyTab=true"),
    (['useKeyTab=true', 'keyTab="/nonexistent/zk.keytab"', 'principal="z/h@R"'], "not a file"),
    (['useKeyTab=true', 'keyTab="%(keytab)s"'], "principal"),
])
def test_kerberos_server_section_errors_name_the_jaas_file(tmp_path, options, what):
    keytab = tmp_path / "zk.keytab"
    keytab.write_bytes(b"\x05\x02")
    options = [o % {"keytab": keytab} for o in options]
    e = error_of(BASE, jaas_text=_krb_jaas(options), jaas_path="/etc/jaas.conf")
    assert e.path == "/etc/jaas.conf" and e.line == 2 and what in str(e), str(e)
