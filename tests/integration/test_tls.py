"""HTTPS in gangliond and the clients' verification of it: a throwaway CA, server and client
certificates made with the openssl command; the agent enrolling and updating over HTTPS; plain
HTTP, old TLS versions and weak ciphers refused; a wrong CA refused by the agent and the CLI; the
certificate re-read on SIGHUP; client certificates (mTLS) required when configured."""
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest
import requests

from ganglion_harness import (
    NO_TOKEN,
    TEST_MODELS,
    Agent,
    assert_problem,
    make_dir,
    publish,
    wait_for,
)

MODEL = "det"


# --- certificates -----------------------------------------------------------------------------
def openssl(*args, cwd):
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"openssl {' '.join(map(str, args))}: {p.stderr}"


class Pki:
    """A CA (P-256) under dir, and certificates it signs."""

    def __init__(self, dir, name):
        self.dir = make_dir(dir, 0o755)
        self.name = name
        self.ca = self.dir / f"{name}-ca.pem"
        self.ca_key = self.dir / f"{name}-ca.key"
        self.serial = 100
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.ca_key, "-out", self.ca, "-days", "2", "-subj", f"/CN={name} test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)

    def issue(self, cn, server=True, rsa=False):
        """Signs a new key's certificate (P-256, or RSA-2048); returns (cert, key) paths. Server
        certificates name 127.0.0.1 and localhost."""
        self.serial += 1
        base = self.dir / f"{cn}-{self.serial}"
        ext = self.dir / f"{cn}-{self.serial}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + (
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n" if server
            else "extendedKeyUsage=clientAuth\n"))
        key, csr, cert = (base.with_suffix(s) for s in (".key", ".csr", ".pem"))
        newkey = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        openssl("req", *newkey, "-nodes", "-keyout", key,
                "-out", csr, "-subj", f"/CN={cn}", cwd=self.dir)
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-set_serial",
                self.serial, "-days", "2", "-extfile", ext, "-out", cert, cwd=self.dir)
        return cert, key


@pytest.fixture(scope="module")
def pki(tmp_base):
    """The fleet's CA with a server and a client certificate; another CA nobody trusts."""
    d = tmp_base / "tls-pki"
    good, other = Pki(d, "fleet"), Pki(d, "other")
    good.server = good.issue("gangliond")
    good.client = good.issue("device-1", server=False)
    other.server = other.issue("impostor")
    other.client = other.issue("device-x", server=False)
    return good, other


def tls_args(cert, key, *more):
    return ["--tls-cert-file", str(cert), "--tls-key-file", str(key), *map(str, more)]


def served_cert_der(port):
    """The DER certificate the server on port presents (not verified)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def file_der(pem_path):
    return ssl.PEM_cert_to_DER_cert(pem_path.read_text())


def s_client(port, *args):
    """Runs `openssl s_client` against port; returns (handshake succeeded, output)."""
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                        *args], input="", capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    return p.returncode == 0 and "Cipher is (NONE)" not in out and "Cipher    : 0000" not in out, out


def _meta(name):
    return json.loads((TEST_MODELS / f"{name}.json").read_text())


def push(server, version, like):
    artifact = (TEST_MODELS / f"{like}.onnx").read_bytes()
    r = publish(server, MODEL, artifact, meta=dict(_meta(like), version=version))
    assert r.status_code == 201, r.text
    return hashlib.sha256(artifact).hexdigest()


# --- tests ----------------------------------------------------------------------------------------
def test_agent_enrolls_and_updates_over_https_and_refuses_a_wrong_ca(gangliond, pki, workdir):
    good, other = pki
    srv = gangliond(extra_args=tls_args(*good.server, "--agent-poll-interval", "1s"), tls_ca=good.ca)
    assert srv.url.startswith("https://")
    assert "scheme=https" in srv.log()
    push(srv, "1.0.0", "v1")
    push(srv, "2.0.0", "v2")

    # An agent that trusts another CA cannot enroll, and says why.
    wrong = Agent(workdir / "ag-wrong", srv.url, extra_args=["--ca-file", other.ca])
    p = subprocess.run(wrong.command("enroll", "--token", srv.make_enroll_token()["token"]),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "not trusted" in p.stderr and "ca-file" in p.stderr, p.stderr

    # With the fleet's CA it enrolls, installs 1.0.0, then updates to 2.0.0, all over HTTPS.
    a = Agent(workdir / "ag", srv.url, extra_args=["--ca-file", good.ca])
    a.enroll(srv.make_enroll_token()["token"])
    a.start()
    try:
        for version in ("1.0.0", "2.0.0"):
            r = srv.api("PUT", f"/v1/devices/{a.device_id}/desired", json={"model": MODEL, "version": version})
            assert r.status_code == 200, r.text
            assert wait_for(lambda: (a.serving() or [None])[0] == version, 60, 0.2), a.log()[-3000:]
        a.stop()
        # Restarted trusting the wrong CA: it keeps serving what it has, and its log says why
        # it cannot check in.
        a.start(extra_args=["--ca-file", other.ca])
        assert wait_for(lambda: "not trusted" in a.log(), 60, 0.2), a.log()[-3000:]
        assert (a.serving() or [None])[0] == "2.0.0"
    finally:
        a.stop()


def test_plain_http_old_tls_and_weak_ciphers_are_refused(gangliond, pki, workdir):
    good, _ = pki
    srv = gangliond(extra_args=tls_args(*good.server, "--tls-required"), tls_ca=good.ca)
    assert srv.api("GET", "/healthz").status_code == 200
    plain = f"http://127.0.0.1:{srv.port}/healthz"
    with pytest.raises(requests.ConnectionError):
        requests.get(plain, timeout=5)
    # The server still answers HTTPS after the plain attempt.
    assert srv.api("GET", "/healthz").status_code == 200
    # TLS 1.3 and 1.2 with an AEAD cipher: yes. TLS 1.1, 1.0, and CBC ciphers in 1.2: no (the
    # client is told to allow them all, so the refusal is the server's).
    ca = ["-CAfile", str(good.ca), "-verify_return_error"]
    ok, out = s_client(srv.port, "-tls1_3", *ca)
    assert ok, out
    ok, out = s_client(srv.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", *ca)
    assert ok, out
    weak = "DEFAULT:@SECLEVEL=0"
    for args in (["-tls1_1", "-cipher", weak], ["-tls1", "-cipher", weak],
                 ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0"]):
        ok, out = s_client(srv.port, *args, *ca)
        # Refused by the server (the client offered it: it did not refuse on its own).
        assert not ok and "CONNECTED" in out and "no protocols available" not in out, (args, out)
        assert "no ciphers available" not in out, (args, out)

    # Settings that would not do what they say: gangliond refuses to start, saying why.
    cert, key = map(str, good.server)
    for args, why in ((["--tls-required"], "tls-required is true"),
                      (["--tls-cert-file", cert], "tls-cert-file and tls-key-file go together"),
                      (["--tls-client-ca-file", str(good.ca)], "tls-client-ca-file needs HTTPS"),
                      ([*tls_args(cert, key), "--tls-priorities", "SECURE128:+NOPE"], "tls-priorities")):
        p = subprocess.run([str(srv.command()[0]), "--data-dir", str(workdir / "d2"), *args],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and why in p.stderr, (args, p.stderr)
    # A key that is not the certificate's: refused at start, named.
    p = subprocess.run([str(srv.command()[0]), "--data-dir", str(workdir / "d3"),
                        *tls_args(good.server[0], good.client[1])], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "is not the key of the certificate" in p.stdout + p.stderr, p.stdout + p.stderr


def _cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def test_a_stalled_handshake_costs_no_cpu_and_is_cut(gangliond, pki):
    """A client that connects and sends nothing (or half a ClientHello) waits without a busy loop
    (libmicrohttpd 0.9.75's epoll loop spun on it: a fifth of a core per connection here) and is
    cut after request-header-timeout like any slow client."""
    good, _ = pki
    srv = gangliond(extra_args=tls_args(*good.server, "--request-header-timeout", "2s"), tls_ca=good.ca)
    silent = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(4)]
    silent[0].sendall(b"\x16\x03\x01\x02\x00")  # a record header, then nothing
    before = _cpu_s(srv.proc.pid)
    time.sleep(1.0)
    used = _cpu_s(srv.proc.pid) - before
    assert used < 0.1, f"gangliond used {used:.2f} s of CPU in 1 s with 4 stalled handshakes"
    for s in silent:  # closed by the server within the timeout (recv returns b"" or resets)
        try:
            assert s.recv(16) == b""
        except ConnectionResetError:
            pass
        s.close()
    assert srv.api("GET", "/healthz").status_code == 200


def test_cli_verifies_the_server(gangliond, pki):
    good, other = pki
    srv = gangliond(extra_args=tls_args(*good.server), tls_ca=good.ca)
    p = srv.cli("devices", "list")
    assert p.returncode == 0, p.stderr
    p = srv.cli("devices", "list", ca_file=other.ca)
    assert p.returncode == 6, (p.returncode, p.stderr)
    assert "not trusted" in p.stderr and "ca-file" in p.stderr, p.stderr
    # The system's CAs (no --ca-file) do not know the throwaway CA either.
    srv.tls_ca = None
    p = srv.cli("devices", "list")
    assert p.returncode == 6 and "not trusted" in p.stderr, p.stderr
    # A CA file given for a plain http:// URL would do nothing: a usage error.
    p = srv.cli("devices", "list", url=f"http://127.0.0.1:{srv.port}", ca_file=good.ca)
    assert p.returncode == 2 and "plain http://" in p.stderr, p.stderr


def test_sighup_reloads_the_certificate_without_closing_the_listener(gangliond, pki, workdir):
    good, _ = pki
    d = make_dir(workdir / "live", 0o755)
    cert, key = d / "server.pem", d / "server.key"
    first = good.issue("gangliond")
    cert.write_bytes(first[0].read_bytes())
    key.write_bytes(first[1].read_bytes())
    conf = d / "gangliond.conf"
    conf.write_text(f"tls-cert-file = {cert}\ntls-key-file = {key}\n")
    srv = gangliond(extra_args=["--config", conf], tls_ca=good.ca)
    assert served_cert_der(srv.port) == file_der(first[0])
    kept = socket.create_connection(("127.0.0.1", srv.port), timeout=10)

    # A key that does not match: the reload fails, the running certificate stays.
    second = good.issue("gangliond", rsa=True)  # an RSA key this time
    cert.write_bytes(second[0].read_bytes())
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=reload_failed" in srv.log(), 30)
    assert "is not the key of the certificate" in srv.log()
    assert served_cert_der(srv.port) == file_der(first[0])

    key.write_bytes(second[1].read_bytes())
    second_serial = good.serial
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=tls_certificate_reloaded" in srv.log(), 30), srv.log()
    assert served_cert_der(srv.port) == file_der(second[0])
    assert f"serial={second_serial:02x}" in srv.log()
    assert srv.api("GET", "/healthz").status_code == 200
    # A connection accepted before the reloads is served, with the new certificate.
    ctx = ssl.create_default_context(cafile=str(good.ca))
    with ctx.wrap_socket(kept, server_hostname="127.0.0.1") as t:
        assert t.getpeercert(binary_form=True) == file_der(second[0])
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert t.recv(64).startswith(b"HTTP/1.1 200")

    # Turning HTTPS off takes a restart: that reload fails whole. A new cipher policy is named in a
    # warning and waits for the restart.
    conf.write_text("tls-cert-file =\ntls-key-file =\n")
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "turning HTTPS off needs a restart" in srv.log(), 30), srv.log()
    conf.write_text(f"tls-cert-file = {cert}\ntls-key-file = {key}\ntls-priorities = NORMAL\n")
    srv.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "key=tls-priorities" in srv.log(), 30), srv.log()
    assert served_cert_der(srv.port) == file_der(second[0])
    assert srv.api("GET", "/healthz").status_code == 200


def test_client_certificate_required_with_a_client_ca(gangliond, pki, workdir):
    good, other = pki
    srv = gangliond(extra_args=tls_args(*good.server, "--tls-client-ca-file", good.ca), tls_ca=good.ca,
                    wait=False)
    srv.session.cert = tuple(map(str, good.client))
    srv.wait_ready()
    # Without a certificate, or with one another CA signed: 403, before the token is looked at.
    def get(cert):
        with requests.Session() as s:  # a new connection each time
            s.trust_env = False  # or REQUESTS_CA_BUNDLE would override verify
            s.verify, s.cert = str(good.ca), cert and tuple(map(str, cert))
            return s.get(srv.url + "/v1/devices", headers={"Authorization": f"Bearer {srv.admin_token}"},
                         timeout=10)

    assert_problem(get(None), 403, "client certificate is required")
    assert_problem(get(other.client), 403, "not accepted")
    assert "event=client_certificate_refused" in srv.log()
    # With the fleet's client certificate: the token still decides.
    assert srv.api("GET", "/v1/devices").status_code == 200
    assert srv.api("GET", "/v1/devices", token=NO_TOKEN).status_code == 401

    # The CLI and the agent present theirs.
    p = srv.cli("devices", "list")
    assert p.returncode != 0, p.stderr
    assert "client certificate is required" in p.stderr, p.stderr
    p = srv.cli("--client-cert", good.client[0], "--client-key", good.client[1], "devices", "list")
    assert p.returncode == 0, p.stderr
    p = srv.cli("--client-cert", good.client[0], "devices", "list")
    assert p.returncode == 2 and "client-key" in p.stderr, p.stderr
    a = Agent(workdir / "ag", srv.url, extra_args=["--ca-file", good.ca, "--client-cert", good.client[0],
                                                   "--client-key", good.client[1]])
    assert a.enroll(srv.make_enroll_token()["token"])
    no_cert = Agent(workdir / "ag2", srv.url, extra_args=["--ca-file", good.ca])
    p = subprocess.run(no_cert.command("enroll", "--token", srv.make_enroll_token()["token"]),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "client certificate is required" in p.stderr, p.stderr
