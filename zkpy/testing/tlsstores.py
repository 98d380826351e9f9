"""Certificates, keys and key/trust stores for the TLS tests and benchmarks, made the way users
make them.

Owns: a small CA and the certificates it signs (`cryptography`), PEM files, PKCS12 stores, and
JKS stores made with the JDK's `keytool` (as ZooKeeper's admin guide makes them; each keytool
run starts a JVM, so tests build their stores once per module). Imported by the tests (through
tests/compat/tlsstores.py) and by zkpy.bench.servers for the benchmark's tls topology; nothing
in the server imports it. It does I/O (files, keytool).
"""

import datetime
import ipaddress
import shutil
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

__all__ = [
    "PASSWORD", "keytool_unavailable", "name", "Identity", "make_ca", "make_cert",
    "write_pem_files", "write_pem_trust", "write_p12", "keytool_keystore", "keytool_truststore",
    "keytool_genkeypair", "keytool_import_cert", "tls_cfg", "make_crl", "write_crl",
    "write_ocsp_index",
]

PASSWORD = "testpass"


def keytool_unavailable():
    if shutil.which("keytool") is None:
        return "keytool (a JDK) not found: apt-get install default-jdk-headless"
    return None


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def name(cn, ou=None, o=None, c=None):
    attrs = []
    if c:
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, c))
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class Identity:
    """A key and its certificate chain (leaf first)."""

    def __init__(self, key, chain):
        self.key = key
        self.chain = chain

    @property
    def cert(self):
        return self.chain[0]

    def key_pem(self, password=None):
        enc = (serialization.BestAvailableEncryption(password.encode()) if password
               else serialization.NoEncryption())
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8, enc)

    def chain_pem(self):
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)


def _key(kind):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(cn="zkpy test CA", kind="ec"):
    key = _key(kind)
    subject = name(cn, o="zkpy tests")
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return Identity(key, [cert])


def make_cert(ca, subject, server=False, kind="ec", expired=False, crl_urls=(),
              ocsp_urls=(), ca_cert=False):
    """A certificate for `subject` (an x509.Name or a CN) signed by `ca`; server=True adds
    localhost / 127.0.0.1 as names. expired=True: valid until yesterday. crl_urls: its CRL
    Distribution Points; ocsp_urls: its OCSP responders (Authority Information Access);
    ca_cert=True: an intermediate CA."""
    key = _key(kind)
    if isinstance(subject, str):
        subject = name(subject)
    start = _now() - datetime.timedelta(days=10 if expired else 1)
    end = _now() - datetime.timedelta(days=1) if expired else _now() + datetime.timedelta(days=30)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=ca_cert, path_length=None), critical=True))
    if ca_cert:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                          False), critical=True)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
    if crl_urls:
        b = b.add_extension(x509.CRLDistributionPoints([
            x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None)
            for u in crl_urls]), critical=False)
    if ocsp_urls:
        b = b.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(u)) for u in ocsp_urls]),
            critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return Identity(key, [b.sign(ca.key, hashes.SHA256())] + ca.chain)


def make_crl(ca, revoked=(), next_update_s=3600, this_update_s=-60,
             reason=x509.ReasonFlags.key_compromise):
    """A CRL signed by `ca` listing the certificates `revoked` (certificates or serials);
    next_update_s=None: no nextUpdate."""
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
         .last_update(_now() + datetime.timedelta(seconds=this_update_s)))
    if next_update_s is not None:
        b = b.next_update(_now() + datetime.timedelta(seconds=next_update_s))
    for r in revoked:
        serial = r if isinstance(r, int) else r.serial_number
        entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                 .revocation_date(_now() - datetime.timedelta(hours=1)))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        b = b.add_revoked_certificate(entry.build())
    return b.sign(ca.key, hashes.SHA256())


def write_crl(path, crl, pem=False):
    enc = serialization.Encoding.PEM if pem else serialization.Encoding.DER
    Path(path).write_bytes(crl.public_bytes(enc))
    return str(path)


def write_ocsp_index(path, good=(), revoked=()):
    """An `openssl ca` index file (what `openssl ocsp -index` answers from): V lines for the
    good certificates, R lines for the revoked ones (keyCompromise, an hour ago)."""
    def when(dt):
        return dt.astimezone(datetime.timezone.utc).strftime("%y%m%d%H%M%SZ")

    def dn(cert):
        return "".join("/%s=%s" % (a.rfc4514_attribute_name, a.value) for a in cert.subject)

    def serial(cert):
        text = "%X" % cert.serial_number
        return "0" * (len(text) % 2) + text

    lines = []
    for cert in good:
        lines.append("V\t%s\t\t%s\tunknown\t%s" % (when(cert.not_valid_after_utc),
                                                     serial(cert), dn(cert)))
    for cert in revoked:
        lines.append("R\t%s\t%s,keyCompromise\t%s\tunknown\t%s" % (
            when(cert.not_valid_after_utc), when(_now() - datetime.timedelta(hours=1)),
            serial(cert), dn(cert)))
    Path(path).write_text("".join(line + "\n" for line in lines))
    Path(str(path) + ".attr").write_text("unique_subject = no\n")
    return str(path)


# ---------------------------------------------------------------------------------------------
# files and stores

def write_pem_files(directory, stem, ident, password=None):
    """<stem>.key (PKCS8, encrypted with password if given), <stem>.crt (the chain), and
    <stem>.pem (both: a ZooKeeper PEM key store). Returns (crt, key, pem) paths."""
    directory = Path(directory)
    key_path = directory / (stem + ".key")
    crt_path = directory / (stem + ".crt")
    pem_path = directory / (stem + ".pem")
    key_path.write_bytes(ident.key_pem(password))
    crt_path.write_bytes(ident.chain_pem())
    pem_path.write_bytes(ident.key_pem(password) + ident.chain_pem())
    return str(crt_path), str(key_path), str(pem_path)


def write_pem_trust(path, *cas):
    Path(path).write_bytes(b"".join(c.cert.public_bytes(serialization.Encoding.PEM)
                                    for c in cas))
    return str(path)


def write_p12(path, ident, password=PASSWORD, alias="key"):
    data = pkcs12.serialize_key_and_certificates(
        alias.encode(), ident.key, ident.cert, ident.chain[1:] or None,
        serialization.BestAvailableEncryption(password.encode()))
    Path(path).write_bytes(data)
    return str(path)


def _keytool(*args, cwd=None):
    proc = subprocess.run(["keytool", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("keytool %s failed: %s%s" % (" ".join(args), proc.stdout,
                                                        proc.stderr))
    return proc.stdout


def keytool_keystore(path, ident, password=PASSWORD, storetype="JKS"):
    """A key store of `ident` made by keytool (importing a PKCS12 made here)."""
    path = Path(path)
    p12 = write_p12(path.with_suffix(".tmp.p12"), ident, password)
    if path.exists():
        path.unlink()
    _keytool("-importkeystore", "-noprompt", "-srckeystore", p12, "-srcstoretype", "PKCS12",
             "-srcstorepass", password, "-destkeystore", str(path), "-deststoretype", storetype,
             "-deststorepass", password, "-destkeypass", password)
    Path(p12).unlink()
    return str(path)


def keytool_truststore(path, *cas, password=PASSWORD, storetype="JKS"):
    """A trust store of the CA certificates, by `keytool -importcert` as the admin guide does."""
    path = Path(path)
    if path.exists():
        path.unlink()
    for i, ca in enumerate(cas):
        pem = path.with_suffix(".ca%d.pem" % i)
        pem.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
        _keytool("-importcert", "-noprompt", "-alias", "ca%d" % i, "-file", str(pem),
                 "-keystore", str(path), "-storetype", storetype, "-storepass", password)
        pem.unlink()
    return str(path)


def keytool_genkeypair(path, dname, password=PASSWORD, alias="zk"):
    """The admin guide's way: `keytool -genkeypair -keyalg RSA ... -keystore keystore.jks` (on a
    JDK 9+ the file is PKCS12 inside, whatever its name), then its certificate exported."""
    path = Path(path)
    _keytool("-genkeypair", "-alias", alias, "-keyalg", "RSA", "-keysize", "2048", "-dname",
             dname, "-ext", "SAN=dns:localhost,ip:127.0.0.1", "-keypass", password,
             "-keystore", str(path), "-storepass", password, "-validity", "30")
    cer = path.with_suffix(".cer")
    _keytool("-exportcert", "-rfc", "-alias", alias, "-keystore", str(path), "-storepass",
             password, "-file", str(cer))
    return str(path), str(cer)


def keytool_import_cert(truststore, cert_file, alias, password=PASSWORD, storetype="JKS"):
    _keytool("-importcert", "-noprompt", "-alias", alias, "-file", str(cert_file), "-keystore",
             str(truststore), "-storetype", storetype, "-storepass", password)
    return str(truststore)


def tls_cfg(keystore, truststore, password=PASSWORD, **extra):
    """zoo.cfg keys for TLS on a secure client port (the port itself: see the tests)."""
    cfg = {
        "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
        "ssl.keyStore.location": keystore,
        "ssl.trustStore.location": truststore,
    }
    if password is not None:
        cfg["ssl.keyStore.password"] = password
        cfg["ssl.trustStore.password"] = password
    cfg.update(extra)
    return cfg
