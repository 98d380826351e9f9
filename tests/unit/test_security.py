"""zkpy.security (pure): JVM flags and java.env, JAAS files, DIGEST-MD5's server side, SASL ids,
and how zkpy.config applies them (issue 15)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from zkpy.config import load_config, load_script_variables, parse_config
from zkpy.errors import ConfigError
from zkpy.security import digest_md5, jaas, jvmflags, sasl
from zkpy.security.digest_md5 import DigestMD5Server, SaslError, parse_directives
from zkpy.tree import acl

JAVA_VECTOR = Path(__file__).resolve().parent / "java" / "DigestClientVector.java"
NONCE = b"abcdefghijabcdefghijabcdefghijabcdefghij"
BASE = "dataDir=/tmp/zkpy-test\nclientPort=2181\n"
SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
JAAS = """// users of the DIGEST-MD5 server
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_bob="bobsecret"      /* a comment */
    user_super='adminsecret';
};
Client {
  org.apache.zookeeper.server.auth.DigestLoginModule required username="bob" password="bobsecret";
};
"""


# ---------------------------------------------------------------------------------------------
# JVM flags

def test_flags_from_environment_in_command_line_order():
    flags = jvmflags.server_jvm_flags({
        "SERVER_JVMFLAGS": "-Xmx1g -Dzookeeper.a=1 -Dzookeeper.b=x=y",
        "JVMFLAGS": "-Dzookeeper.a=2 -XX:+UseG1GC -cp /x.jar -Dflag"})
    props = flags.system_properties()
    assert props["zookeeper.a"].value == "2" and props["zookeeper.a"].var == "JVMFLAGS"
    assert props["zookeeper.b"].value == "x=y"
    assert props["flag"].value == ""
    assert props["zookeeper.a"].where() == "environment variable JVMFLAGS"
    assert [p.name for p in flags.properties] == ["zookeeper.a", "zookeeper.b", "zookeeper.a",
                                                  "flag"]
    assert len(flags.notes) == 3   # -Xmx1g, -XX:+UseG1GC, -cp (with its argument)
    assert flags.warnings == ()


def test_words_split_at_whitespace_without_quote_removal():
    # zkServer.sh expands $JVMFLAGS unquoted: no quote removal, only splitting
    flags = jvmflags.server_jvm_flags({"SERVER_JVMFLAGS": '-Dzookeeper.x="a b"'})
    assert flags.system_properties()["zookeeper.x"].value == '"a'
    assert flags.warnings == ("SERVER_JVMFLAGS: 'b\"' is not a JVM option; ignored",)


def test_java_env_assignments_expand_and_keep_their_line():
    text = ("# java.env\n"
            "export SERVER_JVMFLAGS=\"-Djava.security.auth.login.config=$CONF/jaas.conf "
            "$SERVER_JVMFLAGS\"\n"
            "\n"
            "JVMFLAGS='-Dzookeeper.superUser=admin'\n"
            "ZK_SERVER_HEAP=512 OTHER=${ZK_SERVER_HEAP}m\n"
            "SERVER_JVMFLAGS=\"$SERVER_JVMFLAGS \\\n"
            "  -Dzookeeper.sessionRequireClientSASLAuth=true\"\n")
    flags = jvmflags.server_jvm_flags(
        {"CONF": "/etc/zk", "SERVER_JVMFLAGS": "-Dzookeeper.fromenv=1"}, text, "/c/java.env")
    props = flags.system_properties()
    jaas_prop = props["java.security.auth.login.config"]
    assert jaas_prop.value == "/etc/zk/jaas.conf"
    assert (jaas_prop.path, jaas_prop.line, jaas_prop.var) == ("/c/java.env", 2,
                                                               "SERVER_JVMFLAGS")
    assert props["zookeeper.fromenv"].where() == "environment variable SERVER_JVMFLAGS"
    assert props["zookeeper.superUser"].where() == "/c/java.env:4 (JVMFLAGS)"
    assert props["zookeeper.sessionRequireClientSASLAuth"].line == 6
    assert flags.warnings == ()


@pytest.mark.parametrize("line", [
    "SERVER_JVMFLAGS=$(cat /etc/flags)",
    "export JVMFLAGS=`cat /etc/flags`",
    "source /etc/zookeeper/more.env",
    ". /etc/zookeeper/more.env",
    "if true; then SERVER_JVMFLAGS=-Dzookeeper.x=1; fi",
    "echo -Dzookeeper.x=1",
])
def test_java_env_line_that_could_change_the_flags_stops_naming_it(line):
    with pytest.raises(ConfigError) as info:
        jvmflags.server_jvm_flags({}, "# ok\n" + line + "\n", "/c/java.env")
    assert str(info.value).startswith("/c/java.env:2: cannot read this line without running it")


ZOOKEEPER_ENV = ("ZOO_LOG_DIR=/var/log/zookeeper\n"
                 "export SERVER_JVMFLAGS=\"$SERVER_JVMFLAGS -Dzookeeper.a=zkenv "
                 "-Dzookeeper.b=zkenv\"\n"
                 "JVMFLAGS=-Dzookeeper.c=zkenv\n")


def test_zookeeper_env_then_java_env_over_the_environment():
    """zkEnv.sh sources $ZOOCFGDIR/zookeeper-env.sh, then $ZOOCFGDIR/java.env, in the shell that
    holds the environment: each assignment replaces the value before it, and $VAR reads it.
    (What bash prints for `. zookeeper-env.sh; . java.env; echo $SERVER_JVMFLAGS $JVMFLAGS`.)"""
    java_env = ('SERVER_JVMFLAGS="$SERVER_JVMFLAGS -Dzookeeper.b=javaenv"\n'
                "LOGS=$ZOO_LOG_DIR\n")
    flags = jvmflags.server_jvm_flags(
        {"SERVER_JVMFLAGS": "-Dzookeeper.a=env", "JVMFLAGS": "-Dzookeeper.c=env"},
        java_env, "/c/java.env", ZOOKEEPER_ENV, "/c/zookeeper-env.sh")
    assert [(p.name, p.value) for p in flags.properties] == [
        ("zookeeper.a", "env"), ("zookeeper.a", "zkenv"), ("zookeeper.b", "zkenv"),
        ("zookeeper.b", "javaenv"), ("zookeeper.c", "zkenv")]
    props = flags.system_properties()
    assert props["zookeeper.a"].where() == "/c/zookeeper-env.sh:2 (SERVER_JVMFLAGS)"
    assert props["zookeeper.b"].where() == "/c/java.env:1 (SERVER_JVMFLAGS)"
    assert props["zookeeper.c"].where() == "/c/zookeeper-env.sh:3 (JVMFLAGS)"
    assert flags.warnings == ()
    # java.env's plain assignment replaces what zookeeper-env.sh set (the shell's rule)
    flags = jvmflags.server_jvm_flags({}, "JVMFLAGS=-Dzookeeper.d=1\n", "/c/java.env",
                                      ZOOKEEPER_ENV, "/c/zookeeper-env.sh")
    assert "zookeeper.c" not in flags.system_properties()
    assert "zookeeper.a" in flags.system_properties()
    # zookeeper-env.sh alone
    flags = jvmflags.server_jvm_flags({}, None, None, ZOOKEEPER_ENV, "/c/zookeeper-env.sh")
    assert sorted(flags.system_properties()) == ["zookeeper.a", "zookeeper.b", "zookeeper.c"]


def test_zookeeper_env_unreadable_line_names_the_file():
    with pytest.raises(ConfigError) as info:
        jvmflags.server_jvm_flags({}, None, None, "SERVER_JVMFLAGS=$(cat /etc/flags)\n",
                                  "/c/zookeeper-env.sh")
    assert str(info.value).startswith(
        "/c/zookeeper-env.sh:1: cannot read this line without running it (command substitution)"
        "; zkpy reads zookeeper-env.sh's NAME=value assignments only")
    flags = jvmflags.server_jvm_flags({}, None, None, "ulimit -n 4096\n", "/c/zookeeper-env.sh")
    assert flags.warnings[0].startswith("/c/zookeeper-env.sh:1: ")


def test_java_env_other_unreadable_lines_are_warnings():
    flags = jvmflags.server_jvm_flags({}, "echo hello\nulimit -n 4096\nJVMFLAGS=-Dzookeeper.y=2\n",
                                      "/c/java.env")
    assert len(flags.warnings) == 2 and flags.warnings[0].startswith("/c/java.env:1: ")
    assert flags.system_properties()["zookeeper.y"].value == "2"


# ---------------------------------------------------------------------------------------------
# JAAS

def test_jaas_sections_modules_flags_options():
    sections = jaas.parse_jaas(JAAS, "/c/jaas.conf")
    assert sorted(sections) == ["Client", "Server"]
    (entry,) = sections["Server"].entries
    assert entry.module == sasl.DIGEST_LOGIN_MODULE and entry.flag == "REQUIRED"
    assert entry.options == {"user_bob": "bobsecret", "user_super": "adminsecret"}
    assert entry.line == 3
    assert sasl.users_from_section(sections["Server"], "override") == {
        "bob": "bobsecret", "super": "override"}


def test_jaas_quoting_escapes_comments_and_expansion():
    text = ('S { a.B optional k1="x\\"y" k2=word-with.dots // comment\n'
            ' k3="${user}:${/}" k4="unterminated\n'
            ' ; c.D Sufficient; };')
    sections = jaas.parse_jaas(text, "j", {"user": "bob"})
    first, second = sections["S"].entries
    assert first.options == {"k1": 'x"y', "k2": "word-with.dots", "k3": "bob:/",
                             "k4": "unterminated"}
    assert (second.module, second.flag, second.options) == ("c.D", "SUFFICIENT", {})


@pytest.mark.parametrize("text,line,fragment", [
    ("Server {\n a.B required\n user_bob=123;\n};", 3, "expected [option value]"),
    ("Server {\n a.B mandatory;\n};", 2, "Invalid control flag, MANDATORY"),
    ("Server {\n a.B required k=\"${nope}\";\n};", 2, "unable to expand property nope"),
    ("Server {\n a.B required;\n}", 3, "expected [;], found [end of file]"),
    ("S { a.B required; };\nS { a.B required; };", 2, "multiple entries for S"),
    ("Server {\n a.B required user_bob @ \"x\";\n};", 2, "expected [=]"),
])
def test_jaas_errors_name_the_line(text, line, fragment):
    with pytest.raises(ConfigError) as info:
        jaas.parse_jaas(text, "/c/jaas.conf")
    assert info.value.line == line and fragment in str(info.value), str(info.value)
    assert str(info.value).startswith("/c/jaas.conf:%d: " % line)


def test_empty_jaas_file_has_no_sections():
    assert jaas.parse_jaas("  // nothing\n", "j") == {}


# ---------------------------------------------------------------------------------------------
# DIGEST-MD5

RFC_RESPONSE = (b'charset=utf-8,username="chris",realm="elwood.innosoft.com",'
                b'nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
                b'digest-uri="imap/elwood.innosoft.com",'
                b'response=d388dad90d4bbd760a152321f2143af7,qop=auth')

# One exchange with the JDK's DigestMD5Client (tests/unit/java/DigestClientVector.java).
JAVA_RESPONSE = (b'charset=utf-8,username="bob",realm="zk-sasl-md5",'
                 b'nonce="abcdefghijabcdefghijabcdefghijabcdefghij",nc=00000001,'
                 b'cnonce="cHg1Rvl966iZ/YP50SOl8E5i7l08LGZ6IJUknN1r",'
                 b'digest-uri="zookeeper/zk-sasl-md5",maxbuf=65536,'
                 b'response=382f92e63a413aafa967f477e8cd94e6,qop=auth')
JAVA_RSPAUTH = b"rspauth=66487a094c7069dc488dbf16c4311856"


def _server(users=None, nonce=NONCE):
    return DigestMD5Server((users or {"bob": "bobsecret"}).get, nonce)


def test_rfc2831_example():
    server = DigestMD5Server({"chris": "secret"}.get, b"OA6MG9tEQGm2hh",
                             realm="elwood.innosoft.com", protocol="imap",
                             server_name="elwood.innosoft.com")
    assert server.evaluate(b"") == (b'realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",'
                                    b'charset=utf-8,algorithm=md5-sess')
    assert server.evaluate(RFC_RESPONSE) == b"rspauth=ea40f60335c427b5527b84dbabcdfffd"
    assert server.complete and server.username == "chris"


def test_challenge_as_zookeeper_sends_it():
    assert _server().evaluate(b"ignored initial response") == (
        b'realm="zk-sasl-md5",nonce="' + NONCE + b'",charset=utf-8,algorithm=md5-sess')


def test_recorded_java_client_exchange():
    server = _server()
    server.evaluate(b"")
    assert server.evaluate(JAVA_RESPONSE) == JAVA_RSPAUTH
    assert server.username == "bob" and server.authzid is None


def test_pure_sasl_client_exchange():
    puresasl = pytest.importorskip("puresasl.client")
    client = puresasl.SASLClient("zk-sasl-md5", service="zookeeper", mechanism="DIGEST-MD5",
                                 username="bob", password="bobsecret")
    server = _server()
    challenge = server.evaluate(client.process(None) or b"")
    final = server.evaluate(client.process(challenge))
    assert client.process(final) is None and client.complete   # pure-sasl checked rspauth
    assert server.complete and server.username == "bob"


@pytest.mark.parametrize("authzid", [None, "someone-else"])
def test_live_java_client_exchange(tmp_path, authzid):
    if shutil.which("java") is None:
        pytest.skip("needs java")
    server = _server()
    challenge = server.evaluate(b"").decode()
    args = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", str(JAVA_VECTOR), "bob",
            "bobsecret", challenge] + ([authzid] if authzid else [])
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    response = proc.stdout.readline().strip().encode()
    answer = server.evaluate(response)
    out, _ = proc.communicate(answer.decode() + "\n", timeout=60)
    assert out.strip() == "complete"
    assert server.username == "bob" and server.authzid == authzid


def _response(**changes):
    d = parse_directives(JAVA_RESPONSE)
    d.update({k.replace("_", "-"): v for k, v in changes.items()})
    return b",".join(k.encode() + b'="' + v + b'"' for k, v in d.items() if v is not None)


@pytest.mark.parametrize("token,fragment", [
    (_response(response=b"00" * 16), "mismatched response"),
    (_response(nonce=b"x" * 40), "mismatched nonce"),
    (_response(realm=b"other"), "nonexistent realm"),
    (_response(realm=None), "nonexistent realm"),
    (_response(digest_uri=b"ldap/zk-sasl-md5"), "mismatched URI"),
    (_response(digest_uri=None), "mismatched URI"),
    # (the JDK reads the count from a "nonce-count" directive and ignores RFC 2831's "nc")
    (_response(nonce_count=b"00000002"), "nonce count does not match"),
    (_response(nonce_count=b"zz"), "bad nonce count"),
    (_response(qop=b"auth-conf"), "does not support qop"),
    (_response(qop=b"bogus"), "invalid qop"),
    (_response(charset=b"iso-8859-1"), "charset"),
    (_response(username=b"eve"), "cannot acquire password for eve"),
    (_response(username=None), "missing username"),
    (_response(cnonce=None), "missing cnonce"),
    (JAVA_RESPONSE + b',username="bob"', "more than one username"),
    (b'username="bob', "unmatched quote"),
    (b"=x", "empty directive key"),
    (b"\xff\x00garbage", ""),
    (b"x" * 4097, "invalid digest response length"),
])
def test_bad_responses_fail(token, fragment):
    server = _server()
    server.evaluate(b"")
    with pytest.raises(SaslError) as info:
        server.evaluate(token)
    assert fragment in str(info.value)
    assert not server.complete
    if len(token) <= digest_md5.MAX_RESPONSE_LENGTH:
        # one response per nonce: the right one now fails too (ZooKeeper closes the
        # connection after any failure anyway)
        with pytest.raises(SaslError, match="illegal state"):
            server.evaluate(JAVA_RESPONSE)


def test_replayed_response_fails():
    server = _server()
    server.evaluate(b"")
    server.evaluate(JAVA_RESPONSE)
    with pytest.raises(SaslError, match="illegal state"):
        server.evaluate(JAVA_RESPONSE)
    other = _server(nonce=b"B" * 40)   # a new connection, a new nonce
    other.evaluate(b"")
    with pytest.raises(SaslError, match="mismatched nonce"):
        other.evaluate(JAVA_RESPONSE)


def test_oversized_first_token_fails():
    with pytest.raises(SaslError):
        _server().evaluate(b"\0" * (digest_md5.MAX_RESPONSE_LENGTH + 1))


def test_non_latin1_password_hashes_as_utf8():
    value = digest_md5.response_value("AUTHENTICATE", "zookeeper/zk-sasl-md5", "auth", "bob",
                                      "zk-sasl-md5", "p\u20ac", NONCE, b"c")
    latin = digest_md5.response_value("AUTHENTICATE", "zookeeper/zk-sasl-md5", "auth", "bob",
                                      "zk-sasl-md5", "p\u00e9", NONCE, b"c")
    assert len(value) == len(latin) == 32 and value != latin


# ---------------------------------------------------------------------------------------------
# SASL identities

def test_login_gains_sasl_id_and_super():
    login = sasl.SaslLogin({"bob": "bobsecret"}, b"\0" * 30, super_users={"bob"})
    assert login.server.nonce == b"A" * 40
    login.evaluate(b"")
    login.server.nonce = NONCE
    assert login.evaluate(JAVA_RESPONSE) == JAVA_RSPAUTH
    assert login.ids == [("sasl", "bob"), ("super", "")]


@pytest.mark.parametrize("name,host,realm,expected", [
    ("bob", False, False, "bob"),
    ("bob/h.example.com@EXAMPLE.COM", False, False, "bob/h.example.com@EXAMPLE.COM"),
    ("bob/h.example.com@EXAMPLE.COM", True, False, "bob@EXAMPLE.COM"),
    ("bob/h.example.com@EXAMPLE.COM", True, True, "bob"),
    ("bob@EXAMPLE.COM", False, True, "bob"),
    ("bob/h", True, True, "bob/h"),   # no realm: not a Kerberos name, kept
])
def test_authorized_id(name, host, realm, expected):
    assert sasl.authorized_id(name, host, realm) == expected


@pytest.mark.parametrize("ident,valid", [
    ("bob", True), ("bob/h", True), ("bob@R", True), ("bob/h@R", True), ("a@b@c", False),
    ("a/b/c@R", False), ("a@R/x", False), ("", True)])
def test_sasl_acl_ids(ident, valid):
    assert sasl.valid_sasl_id(ident) is valid

    class C:
        sasl_provider = True
        let_any_sasl_user_do_x = None
    acl.configure(C)
    try:
        assert acl._valid("sasl", ident) is valid
    finally:
        acl.configure(None)
    assert acl._valid("sasl", ident) is False   # no provider: INVALIDACL


def test_sasl_acl_matching():
    class C:
        sasl_provider = True
        let_any_sasl_user_do_x = "anyone-sasl"
    entries = ((acl.READ, "sasl", "bob"),)
    acl.configure(C)
    try:
        assert acl.allowed(entries, acl.READ, [("sasl", "bob")])
        assert not acl.allowed(entries, acl.READ, [("sasl", "alice")])
        assert acl.allowed(entries, acl.READ, [("sasl", "super")])
        assert acl.allowed(((acl.READ, "sasl", "anyone-sasl"),), acl.READ, [("sasl", "eve")])
        assert acl.fixup(((acl.READ, "auth", ""),), [("ip", "1"), ("sasl", "bob")]) == (
            (acl.READ, "sasl", "bob"),)
    finally:
        acl.configure(None)
    assert not acl.allowed(entries, acl.READ, [("sasl", "bob")])


# ---------------------------------------------------------------------------------------------
# zkpy.config: flags as zoo.cfg keys, JAAS, enforcement

def _flags(server="", jvm="", java_env=None):
    return jvmflags.server_jvm_flags({"SERVER_JVMFLAGS": server, "JVMFLAGS": jvm}, java_env,
                                     "/c/java.env" if java_env is not None else None)


def test_flags_set_zoo_cfg_keys_and_zoo_cfg_wins():
    c = parse_config(BASE + "snapCount=500\n", "zoo.cfg", jvm_flags=_flags(
        "-Dzookeeper.snapCount=7 -Dzookeeper.4lw.commands.whitelist=ruok "
        "-Dzookeeper.superUser=admin -Dzookeeper.superUser.2=ops -Djute.maxbuffer=0x200000 "
        "-Dzookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU= "
        "-Dfile.encoding=UTF-8 -Xmx1g"))
    assert c.snap_count == 500                      # zoo.cfg replaces the property
    assert c.four_letter_words == {"ruok", "srvr"}
    assert c.sasl_super_users == {"admin", "ops"}
    assert c.jute_maxbuffer == 0x200000
    assert c.super_digest == "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
    assert c.warnings == ()
    assert any("file.encoding" in n for n in c.notes) and any("-Xmx1g" in n for n in c.notes)
    assert any("zoo.cfg's snapCount (line 3) replaces it" in n for n in c.notes)


def test_plain_property_flag_wins_over_zoo_cfg():
    c = parse_config(BASE + "jute.maxbuffer=1000\n", "zoo.cfg",
                     jvm_flags=_flags("-Djute.maxbuffer=2000"))
    assert c.jute_maxbuffer == 2000


def test_flag_for_a_zoo_cfg_only_key_is_a_warning():
    c = parse_config(BASE, "zoo.cfg", jvm_flags=_flags("-Dzookeeper.clientPort=3000"))
    assert c.client_port == 2181
    assert c.warnings == ("environment variable SERVER_JVMFLAGS: -Dzookeeper.clientPort=3000: "
                          "no effect: ZooKeeper reads clientPort only from zoo.cfg; ignored",)


@pytest.mark.parametrize("flag,fragment", [
    ("-Dzookeeper.quorum.auth.enableSasl=true",
     "quorum.auth.enableSasl: 'true' has no effect as a JVM flag"),
    ("-Dzookeeper.authProvider.1=com.example.P", "authProvider.1: 'com.example.P' is an auth"),
    ("-Dzookeeper.sslQuorum=true", "sslQuorum: 'true' has no effect as a JVM flag"),
    ("-Dzookeeper.ssl.quorum.context.supplier.class=x",
     "ssl.quorum.context.supplier.class: an SSLContext from a Java class"),
    ("-Dzookeeper.snapCount=many", "snapCount: 'many' is not an integer"),
])
def test_refused_flag_names_flag_and_variable(flag, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(BASE, "zoo.cfg", jvm_flags=_flags(jvm=flag))
    assert str(info.value).startswith("environment variable JVMFLAGS: %s: %s" % (flag, fragment))


def test_refused_flag_from_java_env_names_the_line():
    env = "# flags\nSERVER_JVMFLAGS=\"-Xmx1g -Dzookeeper.authProvider.9=com.example.P\"\n"
    with pytest.raises(ConfigError) as info:
        parse_config(BASE, "zoo.cfg", jvm_flags=_flags(java_env=env))
    assert str(info.value).startswith(
        "/c/java.env:2 (SERVER_JVMFLAGS): -Dzookeeper.authProvider.9=com.example.P: "
        "authProvider.9: 'com.example.P' is an authentication provider zkpy does not provide")


def test_refused_flag_overridden_by_zoo_cfg_still_stops():
    with pytest.raises(ConfigError):
        parse_config(BASE + "authProvider.9=%s\n" % SASL_PROVIDER, "zoo.cfg",
                     jvm_flags=_flags("-Dzookeeper.authProvider.9=com.example.P"))


def test_audit_enable_from_a_flag():
    assert parse_config(BASE, "zoo.cfg", jvm_flags=_flags(
        "-Dzookeeper.audit.enable=true")).audit_enable is True


def test_enforcement_settings():
    c = parse_config(BASE + "authProvider.1=%s\nsessionRequireClientSASLAuth=true\n"
                     "enforce.auth.enabled=true\nenforce.auth.schemes=digest\n" % SASL_PROVIDER,
                     "zoo.cfg")
    assert c.required_auth_schemes() == ("sasl",) and c.sasl_auth_required()
    c = parse_config(BASE + "enforce.auth.enabled=true\nenforce.auth.schemes=digest, ip\n",
                     "zoo.cfg")
    assert c.required_auth_schemes() == ("digest", "ip") and not c.sasl_auth_required()
    c = parse_config(BASE + "enforce.auth.schemes=digest\n", "zoo.cfg")
    assert c.required_auth_schemes() == ()


@pytest.mark.parametrize("lines,key,line,fragment", [
    ("sessionRequireClientSASLAuth=true\n", "sessionRequireClientSASLAuth", 3,
     "authentication scheme 'sasl' is not available"),
    ("enforce.auth.enabled=true\n", "enforce.auth.enabled", 3, "enforce.auth.schemes must be"),
    ("enforce.auth.enabled=true\nenforce.auth.schemes=digest,x509\n", "enforce.auth.schemes", 4,
     "'x509' is not available"),
])
def test_enforcement_without_provider_stops(lines, key, line, fragment):
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + lines, "zoo.cfg")
    assert (info.value.key, info.value.line) == (key, line) and fragment in str(info.value)


def test_jaas_server_section_gives_users():
    c = parse_config(BASE + "authProvider.1=%s\nSASLAuthenticationProvider.superPassword=pw\n"
                     % SASL_PROVIDER, "zoo.cfg", jaas_text=JAAS, jaas_path="/c/jaas.conf")
    assert c.sasl_provider and c.jaas_path == "/c/jaas.conf"
    assert c.sasl_users == {"bob": "bobsecret", "super": "pw"}
    assert "bobsecret" not in repr(c)


@pytest.mark.parametrize("text", ["", "Client { a.B required; };",
                                  "Other { %s required user_x=\"y\"; };" % sasl.DIGEST_LOGIN_MODULE])
def test_no_server_section_no_sasl_server(text):
    c = parse_config(BASE, "zoo.cfg", jaas_text=text, jaas_path="j")
    assert c.sasl_users is None


def test_server_section_name_from_sasl_serverconfig():
    text = "ZkServer { %s required user_x=\"y\"; };" % sasl.DIGEST_LOGIN_MODULE
    c = parse_config(BASE, "zoo.cfg", jaas_text=text, jaas_path="j",
                     jvm_flags=_flags("-Dzookeeper.sasl.serverconfig=ZkServer"))
    assert c.sasl_users == {"x": "y"}


@pytest.mark.parametrize("module,fragment", [
    # (Krb5LoginModule is served: SASL GSSAPI, tests/unit/test_config.py's Kerberos tests)
    ("org.example.MyLoginModule", "the login module org.example.MyLoginModule"),
])
def test_jaas_module_zkpy_lacks_stops_naming_file_and_section(module, fragment):
    text = "Server {\n  %s required\n  useKeyTab=true;\n};\n" % module
    with pytest.raises(ConfigError) as info:
        parse_config(BASE, "zoo.cfg", jaas_text=text, jaas_path="/c/jaas.conf")
    msg = str(info.value)
    assert msg.startswith("/c/jaas.conf:2: section Server: %s asks for " % module)
    assert fragment in msg and "does not provide" in msg


def test_load_config_reads_environment_java_env_and_jaas(tmp_path):
    (tmp_path / "zoo.cfg").write_text("dataDir=%s\nclientPort=2181\nauthProvider.1=%s\n"
                                      % (tmp_path / "data", SASL_PROVIDER))
    (tmp_path / "jaas.conf").write_text(JAAS)
    (tmp_path / "java.env").write_text(
        'export SERVER_JVMFLAGS="$SERVER_JVMFLAGS -Dzookeeper.sessionRequireClientSASLAuth=true"\n')
    c = load_config(tmp_path / "zoo.cfg", environ={
        "SERVER_JVMFLAGS": "-Djava.security.auth.login.config==file:%s" % (tmp_path / "jaas.conf")})
    assert c.sasl_users["bob"] == "bobsecret" and c.sasl_auth_required()
    assert load_config(tmp_path / "zoo.cfg").sasl_users is None   # java.env alone: no JAAS
    # ZOOCFGDIR moves java.env, as zkEnv.sh
    assert not load_config(tmp_path / "zoo.cfg", environ={"ZOOCFGDIR": "/nonexistent"}) \
        .sasl_auth_required()


def test_load_config_reads_zookeeper_env_before_java_env(tmp_path):
    (tmp_path / "zoo.cfg").write_text("dataDir=%s\nclientPort=2181\n" % (tmp_path / "data"))
    (tmp_path / "zookeeper-env.sh").write_text(
        'SERVER_JVMFLAGS="-Dzookeeper.4lw.commands.whitelist=ruok,conf -Dzookeeper.snapCount=7"\n')
    c = load_config(tmp_path / "zoo.cfg")
    assert c.four_letter_words == frozenset(["ruok", "conf", "srvr"]) and c.snap_count == 7
    (tmp_path / "java.env").write_text(
        'SERVER_JVMFLAGS="$SERVER_JVMFLAGS -Dzookeeper.snapCount=9"\n')
    c = load_config(tmp_path / "zoo.cfg")
    assert "conf" in c.four_letter_words and c.snap_count == 9
    # ZOOCFGDIR moves it, as zkEnv.sh
    c = load_config(tmp_path / "zoo.cfg", environ={"ZOOCFGDIR": "/nonexistent"})
    assert "conf" not in c.four_letter_words


def test_load_script_variables_sources_both_files_in_order(tmp_path):
    (tmp_path / "zookeeper-env.sh").write_text(ZOOKEEPER_ENV)
    (tmp_path / "java.env").write_text("ZOOPIDFILE=$ZOO_LOG_DIR/zk.pid\n")
    got = load_script_variables(tmp_path / "zoo.cfg", {"ZOO_LOG_DIR": "/env"})
    assert got["ZOO_LOG_DIR"] == "/var/log/zookeeper"
    assert got["ZOOPIDFILE"] == "/var/log/zookeeper/zk.pid"
    assert load_script_variables(tmp_path / "zoo.cfg", {"ZOOCFGDIR": "/nonexistent"}) == {}


def test_load_config_missing_jaas_file_stops(tmp_path):
    (tmp_path / "zoo.cfg").write_text("dataDir=%s\nclientPort=2181\n" % (tmp_path / "data"))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "zoo.cfg", environ={
            "JVMFLAGS": "-Djava.security.auth.login.config=/nonexistent/jaas.conf"})
    assert str(info.value).startswith(
        "environment variable JVMFLAGS: -Djava.security.auth.login.config=/nonexistent/jaas.conf:"
        " cannot read the JAAS file '/nonexistent/jaas.conf'")
