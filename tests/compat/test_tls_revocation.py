"""Revoked client certificates (ssl.crl, ssl.ocsp), side by side with Apache ZooKeeper 3.8.

Both servers get the same zoo.cfg (secureClientPort, PEM stores, ssl.crl=true or ssl.ocsp=true)
and the same certificates, made here: a CA, the server's certificate, and client certificates
whose CRL Distribution Point is a small http.server run by the test (or a file:// URL), or whose
Authority Information Access names an `openssl ocsp` responder run by the test. kazoo with
use_ssl and a good certificate is served; with a revoked one, or one whose status cannot be
had (the CRL is missing: the JDK fails hard), it gets no session. The log line is zkpy's alone.
"""

import functools
import http.server
import shutil
import subprocess
import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

from . import tlsstores as ts
from .servers import free_port

pytestmark = pytest.mark.timeout(120)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def crl_server(tmp_path_factory):
    """An http server of a directory: (directory, base URL, hits by path)."""
    d = tmp_path_factory.mktemp("crl-www")
    hits = []

    class Handler(_Quiet):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Handler, directory=str(d)))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield d, "http://127.0.0.1:%d" % httpd.server_address[1], hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory, crl_server):
    www, base, _ = crl_server
    d = tmp_path_factory.mktemp("revocation")
    ca = ts.make_ca()
    ocsp_port = free_port()
    ocsp_url = "http://127.0.0.1:%d/" % ocsp_port
    file_crl = d / "file.crl"
    idents = {
        "server": ts.make_cert(ca, "localhost", server=True),
        "good": ts.make_cert(ca, "good", crl_urls=[base + "/ca.crl"]),
        "revoked": ts.make_cert(ca, "revoked", crl_urls=[base + "/ca.crl"]),
        "missing": ts.make_cert(ca, "missing", crl_urls=[base + "/missing.crl"]),
        "good-file": ts.make_cert(ca, "good-file", crl_urls=[file_crl.as_uri()]),
        "revoked-file": ts.make_cert(ca, "revoked-file", crl_urls=[file_crl.as_uri()]),
        "good-ocsp": ts.make_cert(ca, "good-ocsp", ocsp_urls=[ocsp_url]),
        "revoked-ocsp": ts.make_cert(ca, "revoked-ocsp", ocsp_urls=[ocsp_url]),
    }
    crl = ts.make_crl(ca, [idents[k].cert for k in ("revoked", "revoked-file")])
    ts.write_crl(www / "ca.crl", crl)
    ts.write_crl(file_crl, crl, pem=True)
    files = {k: ts.write_pem_files(d, k, v)[:2] for k, v in idents.items()}
    index = ts.write_ocsp_index(d / "index.txt", good=[idents["good-ocsp"].cert],
                                revoked=[idents["revoked-ocsp"].cert])
    ca_crt, ca_key, _ = ts.write_pem_files(d, "ca", ca)
    return dict(ca=ca, idents=idents, files=files, ca_pem=ts.write_pem_trust(d / "ca.pem", ca),
                keystore=ts.write_pem_files(d, "server", idents["server"])[2],
                ocsp=dict(port=ocsp_port, index=index, ca_crt=ca_crt, ca_key=ca_key, dir=d))


@pytest.fixture(scope="module")
def ocsp_responder(pki):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found")
    o = pki["ocsp"]
    log = open(o["dir"] / "ocsp.log", "w")
    proc = subprocess.Popen(
        ["openssl", "ocsp", "-index", o["index"], "-port", str(o["port"]),
         "-rsigner", o["ca_crt"], "-rkey", o["ca_key"], "-CA", o["ca_crt"]],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(o["dir"]))
    deadline = time.monotonic() + 10
    # (not a probe connection: openssl ocsp serves one connection at a time, and would wait
    # on a probe that sends nothing)
    while "ACCEPT" not in (o["dir"] / "ocsp.log").read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("openssl ocsp did not start: %s" % (o["dir"] / "ocsp.log").read_text())
        time.sleep(0.05)
    yield proc
    proc.terminate()
    proc.wait(5)
    log.close()


def start(server_factory, kind, pki, **extra):
    port = free_port()
    cfg = ts.tls_cfg(pki["keystore"], pki["ca_pem"], password=None,
                     secureClientPort=port, secureClientPortAddress="127.0.0.1", **extra)
    server = server_factory(kind, cfg)
    server.secure_port = port
    return server


@pytest.fixture
def connect(pki):
    made = []

    def connect(server, who, timeout):
        crt, key = pki["files"][who]
        c = KazooClient(hosts="127.0.0.1:%d" % server.secure_port, use_ssl=True,
                        ca=pki["ca_pem"], verify_certs=True, certfile=crt, keyfile=key,
                        timeout=10.0,
                        connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 0.3})
        made.append(c)
        c.start(timeout=timeout)
        return c

    yield connect
    for c in made:
        try:
            c.stop()
        finally:
            c.close()


def served(connect, server, who):
    """True when `who` gets a session; False when the server keeps closing its connection."""
    try:
        c = connect(server, who, timeout=1.5)
    except KazooTimeoutError:
        return False
    c.exists("/zookeeper")
    return True


def wait_for_log(server, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        assert time.monotonic() < deadline, "no %r in the log" % text
        time.sleep(0.05)
    return [ln for ln in server.log_text().splitlines() if text in ln]


def test_crl(server_factory, zk_kind, pki, connect, crl_server):
    """ssl.crl=true: the CRL from the certificate's distribution point (http or file) decides;
    a distribution point without a CRL (404) refuses the certificate (the JDK fails hard)."""
    server = start(server_factory, zk_kind, pki, **{"ssl.crl": "true"})
    hits = crl_server[2]
    del hits[:]
    assert served(connect, server, "good")
    assert "/ca.crl" in hits   # it asked
    assert not served(connect, server, "revoked")
    assert not served(connect, server, "missing")
    assert served(connect, server, "good-file")
    assert not served(connect, server, "revoked-file")
    assert served(connect, server, "good")   # the server goes on serving the others
    if zk_kind == "zkpy":
        lines = wait_for_log(server, "TLS connection")
        text = server.log_text()
        assert "Traceback" not in text
        revoked = [ln for ln in lines if "'CN=revoked' is revoked" in ln]
        assert revoked and "keyCompromise" in revoked[0], lines
        missing = [ln for ln in lines if "'CN=missing' could not be determined" in ln]
        assert missing and "/missing.crl" in missing[0] and "404" in missing[0], lines
        assert any("'CN=revoked-file' is revoked" in ln for ln in lines), lines
    else:   # the JDK's reasons, for the record
        text = server.log_text()
        assert "Certificate has been revoked, reason: KEY_COMPROMISE" in text
        assert "Could not determine revocation status" in text


def test_ocsp(server_factory, zk_kind, pki, connect, ocsp_responder):
    """ssl.ocsp=true: the responder of the certificate's AIA extension decides."""
    server = start(server_factory, zk_kind, pki, **{"ssl.ocsp": "true"})
    assert served(connect, server, "good-ocsp")
    assert not served(connect, server, "revoked-ocsp")
    # no OCSP responder named: the CRL distribution point decides (ZooKeeper 3.8 turns
    # enableCRLDP on with ssl.ocsp too)
    assert served(connect, server, "good")
    assert not served(connect, server, "revoked")
    assert served(connect, server, "good-ocsp")
    if zk_kind == "zkpy":
        lines = wait_for_log(server, "'CN=revoked-ocsp' is revoked")
        assert "(OCSP)" in lines[0] and "keyCompromise" in lines[0], lines
        assert "Traceback" not in server.log_text()
    else:
        assert "Certificate has been revoked, reason: KEY_COMPROMISE" in server.log_text()


@pytest.mark.parametrize("workers", [0, 2])
def test_port_unification(server_factory, pki, connect, workers):
    """client.portUnification: TLS connections on the client port are checked the same way,
    in the workers and in the in-process frontend (workers=0); plaintext clients are not."""
    cfg = ts.tls_cfg(pki["keystore"], pki["ca_pem"], password=None,
                     **{"client.portUnification": "true", "ssl.crl": "true",
                        "workers": workers})
    server = server_factory("zkpy", cfg)
    server.secure_port = server.port
    assert served(connect, server, "good")
    assert not served(connect, server, "revoked")
    plain = KazooClient(hosts=server.hosts, timeout=10.0)
    plain.start(timeout=5)
    try:
        assert plain.exists("/zookeeper")
    finally:
        plain.stop()
        plain.close()
    assert served(connect, server, "good")
    wait_for_log(server, "'CN=revoked' is revoked")
    assert "Traceback" not in server.log_text()


def test_no_revocation_keys_no_checks(server_factory, pki, connect, crl_server):
    """Without ssl.crl / ssl.ocsp nothing is fetched: the revoked certificate is served."""
    server = start(server_factory, "zkpy", pki, **{"ssl.crl": "false"})
    hits = crl_server[2]
    del hits[:]
    assert served(connect, server, "revoked")
    assert hits == []
