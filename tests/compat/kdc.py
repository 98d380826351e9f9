"""A real MIT Kerberos KDC for the GSSAPI tests (Debian's krb5-kdc), in a temp directory.

    kdc = Kdc(tmp_path / "kdc")          # realm EXAMPLE.COM, on a free port of 127.0.0.1
    kdc.start()
    keytab = kdc.add_principal("zookeeper/localhost")   # a keytab holding its key
    kdc.env                              # KRB5_CONFIG (+ KRB5_KDC_PROFILE) for any process
    kdc.kinit("client", keytab, ccache)  # a ticket cache for a client
    kdc.stop()

Nothing outside the directory is touched: the realm's database, krb5.conf and kdc.conf are
written there and every command gets them through the environment.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

REALM = "EXAMPLE.COM"
TOOLS = ("/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local", "/usr/bin/kinit")


def unavailable():
    """Why the KDC cannot run here, or None."""
    missing = [t for t in TOOLS if not os.path.exists(t)]
    if missing:
        return "MIT Kerberos is not installed (apt-get install krb5-kdc krb5-admin-server " \
               "krb5-user): missing %s" % ", ".join(missing)
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kdc:
    def __init__(self, root, realm=REALM):
        self.root = os.fspath(root)
        self.realm = realm
        self.port = _free_port()
        self.proc = None
        os.makedirs(self.root, exist_ok=True)
        self.krb5_conf = os.path.join(self.root, "krb5.conf")
        self.kdc_conf = os.path.join(self.root, "kdc.conf")
        with open(self.krb5_conf, "w") as f:
            f.write("[libdefaults]\n"
                    " default_realm = %(realm)s\n"
                    " dns_lookup_realm = false\n"
                    " dns_lookup_kdc = false\n"
                    " rdns = false\n"
                    " udp_preference_limit = 1\n"
                    " forwardable = true\n"
                    "[realms]\n"
                    " %(realm)s = {\n"
                    "  kdc = 127.0.0.1:%(port)d\n"
                    " }\n"
                    "[domain_realm]\n"
                    " localhost = %(realm)s\n"
                    " .localhost = %(realm)s\n" % dict(realm=realm, port=self.port))
        with open(self.kdc_conf, "w") as f:
            f.write("[kdcdefaults]\n"
                    " kdc_listen = 127.0.0.1:%(port)d\n"
                    " kdc_tcp_listen = 127.0.0.1:%(port)d\n"
                    "[realms]\n"
                    " %(realm)s = {\n"
                    "  database_name = %(root)s/principal\n"
                    "  key_stash_file = %(root)s/stash\n"
                    "  acl_file = %(root)s/kadm5.acl\n"
                    "  max_life = 1h\n"
                    "  supported_enctypes = aes256-cts-hmac-sha1-96:normal "
                    "aes128-cts-hmac-sha1-96:normal\n"
                    " }\n"
                    "[logging]\n"
                    " kdc = FILE:%(root)s/kdc.log\n" % dict(realm=realm, port=self.port,
                                                            root=self.root))
        open(os.path.join(self.root, "kadm5.acl"), "w").close()

    @property
    def env(self):
        env = dict(os.environ)
        env["KRB5_CONFIG"] = self.krb5_conf
        env["KRB5_KDC_PROFILE"] = self.kdc_conf
        env.pop("KRB5CCNAME", None)
        env.pop("KRB5_KTNAME", None)
        return env

    def _run(self, *cmd, **kw):
        return subprocess.run(list(cmd), env=self.env, check=True, capture_output=True,
                              timeout=60, **kw)

    def start(self):
        self._run("/usr/sbin/kdb5_util", "create", "-s", "-r", self.realm, "-P", "masterkey")
        self.proc = subprocess.Popen(["/usr/sbin/krb5kdc", "-n", "-r", self.realm],
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("krb5kdc exited with %s; %s" % (self.proc.returncode,
                                                                   self.log_tail()))
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("krb5kdc not listening on %d; %s" % (self.port, self.log_tail()))

    def log_tail(self):
        try:
            with open(os.path.join(self.root, "kdc.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def principal(self, name):
        return name if "@" in name else "%s@%s" % (name, self.realm)

    def add_principal(self, name, keytab=None, password=None):
        """Create `name` with a random key exported to `keytab` (a new file beside the database
        unless given; returns its path), or with `password` (returns None)."""
        if password is not None:   # (ktadd would give it a new random key)
            self._run("/usr/sbin/kadmin.local", "-r", self.realm, "-q",
                      "addprinc -pw %s %s" % (password, self.principal(name)))
            return None
        self._run("/usr/sbin/kadmin.local", "-r", self.realm, "-q",
                  "addprinc -randkey %s" % self.principal(name))
        if keytab is None:
            keytab = os.path.join(self.root, name.replace("/", "_") + ".keytab")
        self._run("/usr/sbin/kadmin.local", "-r", self.realm, "-q",
                  "ktadd -k %s %s" % (keytab, self.principal(name)))
        return keytab

    def kinit(self, name, keytab, ccache):
        """A ticket cache `ccache` (a file path) for `name`, from its keytab."""
        self._run("/usr/bin/kinit", "-kt", keytab, "-c", "FILE:" + os.fspath(ccache),
                  self.principal(name))
        return "FILE:" + os.fspath(ccache)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def remove(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
