"""Shared helpers for the gangliond integration tests: a throwaway PostgreSQL cluster, the real
gangliond and ganglion binaries, an HTTP helper, device keys, and a small OpenAPI response
checker. Fixtures that use them live in conftest.py; tests import from here."""

import hashlib
import hmac
import http.client
import itertools
import json as jsonlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TEST_DIR = Path(__file__).resolve().parent
SRCDIR = Path(os.environ.get("GANGLION_SRCDIR") or TEST_DIR.parent.parent).resolve()
BUILDDIR = Path(os.environ.get("GANGLION_BUILDDIR") or SRCDIR / "build").resolve()
GANGLIOND = BUILDDIR / "server" / "gangliond"
GANGLION_CLI = BUILDDIR / "cli" / "ganglion"
OPENAPI = SRCDIR / "api" / "openapi.yaml"
PG_BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))

IS_ROOT = os.geteuid() == 0
# PostgreSQL refuses to run as root, so as root the clusters belong to this user.
PG_USER = "postgres" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name

# Generous deadlines: they bound a broken run, and a loaded 2-core machine under ASan is slow.
READY_TIMEOUT = 90
STOP_TIMEOUT = 30
SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# Pass as token= to send no Authorization header; the default is the server's admin token.
NO_TOKEN = None
ADMIN = object()

_seq = itertools.count(1)


def child_env(**extra):
    """Returns the environment for gangliond, ganglion and PostgreSQL tools: without our own
    GANGLION_*/GANGLIOND_* variables (the programs treat unknown prefixed variables as errors),
    without PG* connection defaults and without proxies (all traffic is loopback)."""
    env = {}
    for k, v in os.environ.items():
        if k.startswith(("GANGLION_", "GANGLIOND_", "PG")):
            continue
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            continue
        env[k] = v
    env.setdefault("LC_ALL", "C.UTF-8")
    env.update(extra)
    return env


def free_port():
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_dir(path, mode=0o711, owner=None):
    """Creates path with mode (not subject to umask) and, as root, hands it to owner."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner and IS_ROOT:
        shutil.chown(path, owner, owner)
    return path


def as_pg_user(cmd):
    """Prefixes a command so that it runs as the cluster owner (runuser when we are root)."""
    cmd = [str(c) for c in cmd]
    if IS_ROOT:
        return ["runuser", "-u", PG_USER, "--"] + cmd
    return cmd


def run(cmd, check=True, timeout=120, **kw):
    """Runs a command, capturing its output; on failure the output is in the exception text."""
    p = subprocess.run(
        [str(c) for c in cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        env=kw.pop("env", child_env()),
        **kw,
    )
    if check and p.returncode != 0:
        raise RuntimeError(
            f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n"
            f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        )
    return p


def postgres_pids_for(datadir):
    """Returns pids of live processes whose command line or cwd names datadir (a postmaster
    and its children), so a test can check that nothing is left behind."""
    datadir = str(Path(datadir).resolve())
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            comm = (d / "comm").read_text().strip()
        except OSError:
            continue
        if not comm.startswith("postgres") and "postgres" not in cmdline.split(" ")[0]:
            continue
        try:
            cwd = os.readlink(d / "cwd")
        except OSError:
            cwd = ""
        if datadir in cmdline or cwd == datadir or cwd.startswith(datadir + "/"):
            pids.append(int(d.name))
    return pids


class Postgres:
    """A throwaway PostgreSQL 15 cluster listening only on a Unix socket in a temp dir."""

    def __init__(self, base):
        self.base = make_dir(Path(base), 0o711, PG_USER)
        self.datadir = self.base / "data"
        self.sockdir = make_dir(self.base / "sock", 0o755, PG_USER)
        self.logfile = self.base / "postgres.log"
        self.port = 5432  # only names the socket file; there is no TCP listener
        self.user = PG_USER
        self.started = False

    def initdb(self):
        run(
            as_pg_user(
                [
                    PG_BINDIR / "initdb",
                    "-D", self.datadir,
                    "-U", self.user,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            cwd=self.base,
        )
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write(
                "\n# ganglion integration tests\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                f"port = {self.port}\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 200\n"
            )

    def start(self):
        if IS_ROOT:
            # The log file must be writable by the cluster owner.
            self.logfile.touch()
            shutil.chown(self.logfile, PG_USER, PG_USER)
        run(
            as_pg_user([PG_BINDIR / "pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "-t", "60", "start"]),
            cwd=self.base,
        )
        self.started = True

    def stop(self):
        if not self.started:
            return
        run(
            as_pg_user([PG_BINDIR / "pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "stop"]),
            cwd=self.base,
            check=False,
        )
        self.started = False

    def dsn(self, dbname):
        """Returns a libpq keyword/value connection string for dbname."""
        return f"host={self.sockdir} port={self.port} dbname={dbname} user={self.user}"

    def psql(self, sql, dbname="postgres", check=True):
        """Runs sql through psql (unaligned, tuples only) and returns the CompletedProcess."""
        return run(
            [
                PG_BINDIR / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", self.sockdir, "-p", self.port, "-U", self.user, "-d", dbname,
                "-c", sql,
            ],
            check=check,
            timeout=60,
        )

    def sql(self, sql, dbname="postgres"):
        """Runs sql and returns its output, stripped."""
        return self.psql(sql, dbname).stdout.strip()

    def create_database(self):
        name = f"t_{next(_seq)}"
        self.sql(f"CREATE DATABASE {name}")
        return name

    def log_tail(self, n=50):
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class ServerError(AssertionError):
    pass


class Gangliond:
    """One gangliond process on 127.0.0.1:<free port> with its own data dir."""

    def __init__(self, workdir, database_url=None, data_dir=None, extra_args=(), admin_token=None, tls_ca=None):
        self.workdir = make_dir(workdir, 0o711)
        # 0711: in private-cluster mode postgres (another user) must reach DATA_DIR/pg.
        self.data_dir = make_dir(Path(data_dir) if data_dir else self.workdir / "data", 0o711)
        self.database_url = database_url
        self.extra_args = list(extra_args)
        self.port = free_port()
        # tls_ca: the server serves HTTPS (its --tls-* flags in extra_args); clients trust this CA.
        self.tls_ca = tls_ca
        self.url = f"{'https' if tls_ca else 'http'}://127.0.0.1:{self.port}"
        self.proc = None
        self.logfile = None
        self.admin_token = admin_token
        self.returncode = None
        self.start_failed = False  # set when the start was already reported as a failure
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies, no .netrc
        if tls_ca:
            self.session.verify = str(tls_ca)

    # --- process ------------------------------------------------------------------------
    def command(self):
        cmd = [str(GANGLIOND), "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port}"]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        return cmd + self.extra_args

    def start(self, wait=True, timeout=READY_TIMEOUT):
        if not GANGLIOND.exists():
            raise ServerError(f"{GANGLIOND} not built (set GANGLION_BUILDDIR)")
        self.logfile = self.workdir / f"gangliond-{next(_seq)}.log"
        with open(self.logfile, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=child_env(),
                start_new_session=True,
            )
        self.returncode = None
        self.start_failed = False
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Polls GET /readyz until 200; fails with the server log if it exits or times out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.start_failed = True  # reported here; stop() need not say it again
                raise ServerError(
                    f"gangliond exited with status {self.proc.returncode} before it was ready; "
                    f"command: {' '.join(self.command())}\n--- log ---\n{self.log()}"
                )
            try:
                r = self.session.get(self.url + "/readyz", timeout=2)
                if r.status_code == 200:
                    break
                last = f"{r.status_code} {r.text[:200]}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        else:
            self.start_failed = True
            raise ServerError(
                f"gangliond not ready after {timeout} s (last: {last})\n--- log ---\n{self.log()}"
            )
        tokfile = self.data_dir / "admin.token"
        if self.admin_token is None and tokfile.exists():
            self.admin_token = tokfile.read_text().strip()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True, sig=signal.SIGTERM):
        """Sends SIGTERM (or sig) and waits; with check, fails unless the process exits 0 within
        STOP_TIMEOUT seconds with no sanitizer report in its log (under ASan a leak makes the
        exit status non-zero)."""
        if self.proc is None:
            return
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"did not exit within {STOP_TIMEOUT} s of {signal.Signals(sig).name} (killed)")
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        elif not self.start_failed:
            problems.append(f"had already exited (status {self.proc.returncode}) before SIGTERM")
        self.returncode = self.proc.returncode
        self.proc = None
        self.session.close()
        if self.returncode != 0 and not problems and not self.start_failed:
            problems.append(f"exited with status {self.returncode} after SIGTERM")
        log = self.log()
        bad = [l for l in log.splitlines() if any(p in l for p in SANITIZER_PATTERNS)]
        if bad:
            problems.append("sanitizer report in log:\n  " + "\n  ".join(bad[:20]))
        if problems and check:
            raise ServerError(
                f"gangliond on port {self.port}: " + "; ".join(problems) + f"\n--- log ---\n{log}"
            )
        return problems

    def log(self, limit=20000):
        if not self.logfile:
            return ""
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return ""
        return text if len(text) <= limit else "...\n" + text[-limit:]

    # --- HTTP ----------------------------------------------------------------------------
    def api(self, method, path, token=ADMIN, json=None, data=None, headers=None, params=None, timeout=30):
        """Sends a request and returns the requests.Response. token=ADMIN (default) uses the
        admin token, NO_TOKEN sends none, anything else is sent as the bearer token."""
        h = dict(headers or {})
        if token is ADMIN:
            token = self.admin_token
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if data is not None and "Content-Type" not in h:
            h["Content-Type"] = "application/json"
        return self.session.request(
            method, self.url + path, json=json, data=data, headers=h, params=params, timeout=timeout
        )

    def raw_request(self, method, path, body=b"", headers=None, chunked=False, timeout=30):
        """Sends a request over a fresh connection (with Content-Length, or chunked), tolerating
        a server that answers before reading the whole body; returns (status, headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, path)
            h = {"Content-Type": "application/json"}
            if chunked:
                h["Transfer-Encoding"] = "chunked"
            else:
                h["Content-Length"] = str(len(body))
            h.update(headers or {})
            for k, v in h.items():
                conn.putheader(k, v)
            conn.endheaders()
            try:
                for i in range(0, len(body), 65536):
                    piece = body[i : i + 65536]
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                if chunked:
                    conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may stop reading once it has decided; its answer is still due
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def make_token(self, scopes, name=None, expires_in=None, token=ADMIN):
        """Creates an API token; returns the 201 body (with "token" and "id")."""
        body = {"name": name or f"t{next(_seq)}", "scopes": list(scopes)}
        if expires_in is not None:
            body["expires_in"] = expires_in
        r = self.api("POST", "/v1/tokens", token=token, json=body)
        assert r.status_code == 201, f"POST /v1/tokens {body} -> {r.status_code} {r.text}"
        return r.json()

    def make_enroll_token(self, labels=None, max_uses=None, expires_in=None, name=None, token=ADMIN):
        """Creates an enrollment token; returns the 201 body (with "token" and "id")."""
        body = {}
        if labels is not None:
            body["labels"] = labels
        if max_uses is not None:
            body["max_uses"] = max_uses
        if expires_in is not None:
            body["expires_in"] = expires_in
        if name is not None:
            body["name"] = name
        r = self.api("POST", "/v1/enroll-tokens", token=token, json=body)
        assert r.status_code == 201, f"POST /v1/enroll-tokens {body} -> {r.status_code} {r.text}"
        return r.json()

    def cli(self, *args, token=ADMIN, output=None, url=None, timeout=30, ca_file=None):
        """Runs the ganglion CLI against this server (trusting its tls_ca, or ca_file); returns the
        CompletedProcess."""
        if not GANGLION_CLI.exists():
            raise ServerError(f"{GANGLION_CLI} not built (set GANGLION_BUILDDIR)")
        if token is ADMIN:
            token = self.admin_token
        cmd = [str(GANGLION_CLI), "--url", url or self.url]
        if token is not None:
            cmd += ["--token", token]
        if output:
            cmd += ["-o", output]
        if ca_file or self.tls_ca:
            cmd += ["--ca-file", str(ca_file or self.tls_ca)]
        cmd += [str(a) for a in args]
        # An empty config home, so that no user config file takes part.
        xdg = make_dir(self.workdir / "xdg", 0o700)
        return subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
            env=child_env(XDG_CONFIG_HOME=str(xdg), HOME=str(xdg)), stdin=subprocess.DEVNULL,
        )


class Device:
    """An enrolled device: its Ed25519 key and what the server answered."""

    def __init__(self, key, device_id, name, labels):
        self.key = key
        self.id = device_id
        self.name = name
        self.labels = labels

    @property
    def public_hex(self):
        return public_hex(self.key)

    def sign(self, nonce, device_id=None, key=None):
        """Returns the hex signature over ganglion-device-auth:v1:{device_id}:{nonce}."""
        msg = f"ganglion-device-auth:v1:{device_id or self.id}:{nonce}".encode("ascii")
        return (key or self.key).sign(msg).hex()

    def challenge(self, server):
        """Asks for a nonce; returns the Response."""
        return server.api("POST", "/v1/agent/auth/challenge", token=NO_TOKEN, json={"device_id": self.id})

    def exchange(self, server, nonce, signature=None, device_id=None):
        """Presents a signed nonce; returns the Response."""
        body = {
            "device_id": device_id or self.id,
            "nonce": nonce,
            "signature": signature if signature is not None else self.sign(nonce),
        }
        return server.api("POST", "/v1/agent/auth/token", token=NO_TOKEN, json=body)

    def authenticate(self, server):
        """Does the whole challenge-response and returns the device token."""
        r = self.challenge(server)
        assert r.status_code == 200, f"challenge -> {r.status_code} {r.text}"
        r = self.exchange(server, r.json()["nonce"])
        assert r.status_code == 200, f"token -> {r.status_code} {r.text}"
        return r.json()["token"]


def new_key():
    return Ed25519PrivateKey.generate()


def public_hex(key):
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def enroll_device(server, labels=None, name=None, facts=None, enroll_token=None, key=None):
    """Enrolls a new device with a fresh Ed25519 key (and, unless given, a fresh single-use
    enrollment token carrying labels); returns a Device."""
    key = key or new_key()
    if enroll_token is None:
        enroll_token = server.make_enroll_token(labels=labels or {})["token"]
    body = {"token": enroll_token, "public_key": public_hex(key)}
    if name is not None:
        body["name"] = name
    if facts is not None:
        body["facts"] = facts
    r = server.api("POST", "/v1/enroll", token=NO_TOKEN, json=body)
    assert r.status_code == 201, f"POST /v1/enroll -> {r.status_code} {r.text}"
    b = r.json()
    return Device(key, b["device_id"], b.get("name"), b.get("labels"))


def sign_device_token(pg, db, device_id, generation, expires, key_id=None, secret=None):
    """Forges a signed device token (server/device_tokens.c) with a key the replicas share
    (device_token_keys: key_id, else the newest that has its secret; or secret, the hex of a key
    taken earlier, as key_id), for a token the server would not issue: an expired or an old one.
    Key 1 signs in the gnd_v2 form, without its id, as servers before key ids did."""
    if secret is None:
        where = f"id = {int(key_id)}" if key_id else "secret IS NOT NULL ORDER BY id DESC LIMIT 1"
        key_id, secret = pg.sql(f"SELECT id || ' ' || secret FROM device_token_keys WHERE {where}", db).split()
    key_id = int(key_id or 1)
    tail = f"{device_id}.{generation}.{int(expires)}"
    body = f"gnd_v2.{tail}" if key_id == 1 else f"gnd_v3.{key_id}.{tail}"
    return body + "." + hmac.new(bytes.fromhex(secret), body.encode(), hashlib.sha256).hexdigest()[:32]


# --- models and artifacts -------------------------------------------------------------------
def model_meta(version="1.0.0", **fields):
    """Returns publish metadata for version: a float32 [1,4] input, a [1,2] output, a sample and
    a reference profile. Keyword arguments add or replace fields; None removes one."""
    meta = {
        "version": version,
        "format": "onnx",
        "requirements": {"runtime": "onnx", "accelerators": ["cpu"], "min_memory_mb": 64},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 2]}],
        "sample": {"inputs": {"x": [0.1, 0.2, 0.3, 0.4]}, "outputs": {"y": [0.5, 0.6]}, "tolerance": 0.0001},
        "reference_profile": {"features": [{"name": "x0", "edges": [0, 0.5, 1], "proportions": [0.4, 0.6]}]},
        "provenance": {"commit": "abc123", "dataset": "ds-7", "metrics": {"accuracy": 0.93}},
    }
    for k, v in fields.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    return meta


def multipart(meta, artifact, filename="model.bin", boundary=None):
    """Returns (body, content_type) of a publish request: the metadata part (a dict, or bytes
    sent as they are), then the artifact part."""
    boundary = boundary or f"gnboundary{next(_seq)}x{os.getpid()}"
    meta_bytes = meta if isinstance(meta, bytes) else jsonlib.dumps(meta).encode()
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n"
        f"Content-Type: application/json\r\n\r\n"
    ).encode() + meta_bytes + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"{filename}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + artifact + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def publish(server, name, artifact, meta=None, token=ADMIN, timeout=60):
    """POSTs artifact (bytes) with meta (default model_meta()) to /v1/models/{name}/versions;
    returns the Response."""
    body, ctype = multipart(model_meta() if meta is None else meta, artifact)
    return server.api("POST", f"/v1/models/{name}/versions", token=token, data=body,
                      headers={"Content-Type": ctype}, timeout=timeout)


def artifact_files(data_dir):
    """Returns (stored, temporary): sorted file paths under DATA_DIR/artifacts/sha256 and
    DATA_DIR/artifacts/tmp, relative to those directories."""
    base = Path(data_dir) / "artifacts"
    return tuple(
        sorted(str(p.relative_to(base / d)) for p in (base / d).rglob("*") if p.is_file())
        for d in ("sha256", "tmp")
    )


def wait_for(predicate, timeout=30.0, interval=0.05):
    """Polls predicate until it returns something true or timeout passes; returns its last value.
    The default deadline only bounds a broken run: under ASan on a loaded machine a few seconds
    are not enough for what takes milliseconds otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def assert_problem(r, status, detail_contains=None):
    """Checks that r is an application/problem+json error with this status and a detail;
    returns the parsed body."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    ctype = r.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip() == "application/problem+json", f"Content-Type {ctype!r}: {r.text[:300]}"
    body = r.json()
    assert body.get("status") == status, body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert isinstance(body.get("type"), str) and body["type"], body
    assert isinstance(body.get("detail"), str) and body["detail"], f"problem without detail: {body}"
    if detail_contains is not None:
        assert detail_contains.lower() in body["detail"].lower(), f"detail {body['detail']!r} lacks {detail_contains!r}"
    return body


def list_all(server, path, params=None, token=ADMIN, limit=None):
    """Follows next_cursor through every page; returns (items, number of pages)."""
    params = dict(params or {})
    if limit:
        params["limit"] = limit
    items, pages = [], 0
    while True:
        r = server.api("GET", path, token=token, params=params)
        assert r.status_code == 200, f"GET {path} {params} -> {r.status_code} {r.text}"
        b = r.json()
        items += b["items"]
        pages += 1
        assert pages < 1000, "pagination does not end"
        if not b["next_cursor"]:
            return items, pages
        params["cursor"] = b["next_cursor"]


def nested(depth, leaf=1):
    """Returns a JSON object nested depth levels deep: {"a":{"a":...leaf}}."""
    v = leaf
    for _ in range(depth):
        v = {"a": v}
    return v


# --- ganglion-agent -------------------------------------------------------------------------
AGENT = BUILDDIR / "agents" / "ganglion-agent"
RUNTIME_PLUGIN = BUILDDIR / "agents" / "runtimes" / "ganglion-runtime-opencv.so"
# The runtime plugins by name: opencv (always built), onnxruntime (configure --with-onnxruntime).
RUNTIME_PLUGINS = {name: BUILDDIR / "agents" / "runtimes" / f"ganglion-runtime-{name}.so"
                   for name in ("opencv", "onnxruntime")}
TEST_MODELS = BUILDDIR / "tests" / "models"  # `make tests/models/stamp`: v1, v2, bad, conv (.onnx + .json)


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket (the agent's local inference endpoint)."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Agent:
    """One ganglion-agent: its own data dir, socket and log. enroll() runs `enroll` once;
    start() runs `run` in the background, stop() sends SIGTERM (it must exit 0), kill() sends
    SIGKILL. Every option but the command goes on the command line (command())."""

    def __init__(self, workdir, server_url, target="cpu", extra_args=(), env=None, plugin="opencv"):
        # Short paths: the socket's must fit in sun_path (107 bytes).
        self.workdir = make_dir(workdir, 0o700)
        self.data_dir = self.workdir / "data"
        self.socket_path = self.workdir / "infer.sock"
        self.server_url = server_url
        self.target = target
        self.plugin = RUNTIME_PLUGINS[plugin]
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.proc = None
        self.logfile = self.workdir / "agent.log"
        self.device_id = None

    def command(self, *cmd, server_url=None, extra_args=None):
        return [str(c) for c in [
            AGENT, "--server-url", server_url or self.server_url, "--data-dir", self.data_dir,
            "--runtime-plugin", self.plugin, "--runtime-target", self.target,
            "--socket-path", self.socket_path, "--poll-min", "1s",
            *(self.extra_args if extra_args is None else extra_args), *cmd]]

    def enroll(self, token, name=None, timeout=60):
        """Enrolls with an enrollment token; returns the device id."""
        cmd = self.command("enroll", "--token", token, *(["--name", name] if name else []))
        p = run(cmd, timeout=timeout, env=child_env(**self.env))
        self.device_id = jsonlib.loads((self.data_dir / "identity" / "device.json").read_text())["device_id"]
        assert self.device_id in p.stdout, p.stdout
        return self.device_id

    def start(self, wait=True, timeout=90, server_url=None, extra_args=None):
        """Starts `run` (appending to the log); with wait, returns once the socket answers."""
        if not AGENT.exists():
            raise ServerError(f"{AGENT} not built (set GANGLION_BUILDDIR)")
        with open(self.logfile, "ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command("run", server_url=server_url, extra_args=extra_args),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                env=child_env(**self.env), start_new_session=True,
            )
        if wait:
            ok = wait_for(lambda: self.proc.poll() is not None or self.healthz() is not None, timeout, 0.05)
            if self.proc.poll() is not None or not ok:
                raise ServerError(f"ganglion-agent did not start serving (status {self.proc.poll()})\n"
                                  f"--- log ---\n{self.log()}")
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, check=True):
        """SIGTERM; with check, fails unless it exits 0 within STOP_TIMEOUT with no sanitizer
        report in its log."""
        if self.proc is None:
            return []
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"did not exit within {STOP_TIMEOUT} s of SIGTERM (killed)")
                self.proc.kill()
                self.proc.wait()
        else:
            problems.append(f"had already exited (status {self.proc.returncode}) before SIGTERM")
        if self.proc.returncode != 0 and not problems:
            problems.append(f"exited with status {self.proc.returncode} after SIGTERM")
        self.proc = None
        bad = [l for l in self.log().splitlines() if any(p in l for p in SANITIZER_PATTERNS)]
        if bad:
            problems.append("sanitizer report in log:\n  " + "\n  ".join(bad[:20]))
        if problems and check:
            raise ServerError("ganglion-agent: " + "; ".join(problems) + f"\n--- log ---\n{self.log()}")
        return problems

    def kill(self):
        """kill -9, as a power cut would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def log(self, limit=20000):
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return ""
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def state(self):
        """The agent's state.json (current and previous model), or None."""
        try:
            return jsonlib.loads((self.data_dir / "state.json").read_text())
        except FileNotFoundError:
            return None

    # --- the local inference endpoint ---------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=30):
        """One request on a fresh connection to the socket; returns (status, headers, body bytes)."""
        conn = UnixHTTPConnection(self.socket_path, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = jsonlib.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def healthz(self):
        """GET /healthz as a dict, or None when the socket does not answer."""
        try:
            status, _, body = self.request("GET", "/healthz", timeout=2)
        except OSError:
            return None
        return jsonlib.loads(body) if status == 200 else None

    def models(self):
        """GET /v1/models: the items (what serves, its version and real target)."""
        status, _, body = self.request("GET", "/v1/models")
        assert status == 200, f"GET /v1/models on the socket -> {status} {body[:300]!r}"
        return jsonlib.loads(body)["items"]

    def serving(self):
        """(version, target) of the model that serves now, or None."""
        items = self.models()
        return (items[0]["version"], items[0]["target"]) if items else None

    def infer(self, model, inputs, timeout=30):
        """POSTs JSON inputs; returns the parsed 200 answer (asserting the status)."""
        status, _, body = self.request("POST", f"/v1/models/{model}/infer", {"inputs": inputs}, timeout=timeout)
        assert status == 200, f"infer {model} -> {status} {body[:300]!r}"
        return jsonlib.loads(body)


def device_reported(server, device_id):
    """GET /v1/devices/{id} as a dict."""
    r = server.api("GET", f"/v1/devices/{device_id}")
    assert r.status_code == 200, f"GET /v1/devices/{device_id} -> {r.status_code} {r.text[:300]}"
    return r.json()


def wait_operation(server, device_id, predicate, timeout=90.0, what="the expected operation"):
    """Polls GET /v1/devices/{id} until predicate(reported.last_operation) holds; returns that
    operation, or fails with the last one seen."""
    seen = [None]
    # The agent pushes progress as it goes, so a state can be replaced within milliseconds:
    # look at the event history recorded since the call too, not only the latest report.
    since = max([i for i, _ in device_events(server, device_id, limit=1, with_ids=True)], default=0)

    def check():
        op = (device_reported(server, device_id).get("reported") or {}).get("last_operation")
        seen[0] = op
        if op and predicate(op):
            return op
        for i, e in device_events(server, device_id, limit=50, with_ids=True):
            if i > since and predicate(e):
                return e
        return None

    op = wait_for(check, timeout, 0.2)
    assert op, f"device {device_id}: no {what} reported within {timeout} s; last_operation: {seen[0]}"
    return op


def device_events(server, device_id, limit=100, with_ids=False):
    """The device's update events, oldest first: their operation objects, or (id, operation)."""
    r = server.api("GET", f"/v1/devices/{device_id}/events", params={"limit": limit})
    assert r.status_code == 200, f"GET /v1/devices/{device_id}/events -> {r.status_code} {r.text[:300]}"
    items = list(reversed(r.json()["items"]))
    return [(int(e["id"]), e["operation"]) if with_ids else e["operation"] for e in items]


def last_event_id(server, device_id):
    ev = device_events(server, device_id, limit=1, with_ids=True)
    return ev[-1][0] if ev else 0


def wait_event(server, device_id, predicate, after_id=0, timeout=90.0, what="the expected event"):
    """Polls the device's events until one newer than after_id satisfies predicate(operation);
    returns that operation, or fails with the newest events seen."""
    seen = [[]]

    def check():
        ev = [(i, op) for i, op in device_events(server, device_id, limit=20, with_ids=True) if i > after_id]
        seen[0] = ev
        return next((op for _, op in ev if predicate(op)), None)

    op = wait_for(check, timeout, 0.2)
    assert op, f"device {device_id}: no {what} within {timeout} s; newer events: {[o for _, o in seen[0]][-5:]}"
    return op


# --- Prometheus text ------------------------------------------------------------------------
_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Parses Prometheus text exposition into a list of (name, labels dict, float value)."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line.strip())
        assert m, f"unparsable metrics line: {line!r}"
        labels = {k: re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], v)
                  for k, v in _LABEL_RE.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def metric_value(samples, name, **labels):
    """Sums the samples called name whose labels include the given ones."""
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == str(x) for k, x in labels.items()))


# --- the OpenAPI contract -------------------------------------------------------------------
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Contract:
    """api/openapi.yaml, with the subset of schema validation the contract uses."""

    def __init__(self, path=OPENAPI):
        with open(path) as f:
            self.doc = yaml.safe_load(f)

    def routes(self):
        """Returns the set of ("METHOD", "/path/{param}") the contract defines."""
        methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
        return {(m.upper(), p) for p, item in self.doc["paths"].items() for m in item if m in methods}

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part]
        return node

    def response_schema(self, method, path, status):
        op = self.doc["paths"][path][method.lower()]
        resp = op["responses"].get(str(status))
        assert resp is not None, f"{method} {path}: status {status} is not in the contract"
        resp = self.resolve(resp)
        content = resp.get("content")
        if not content:
            return None
        return self.resolve(next(iter(content.values())).get("schema"))

    def check_response(self, method, path, r, status):
        """Asserts that Response r (to METHOD on the route template path) has the status the test
        expects, that the contract lists that status for the route, and that the body matches its
        schema. Returns r."""
        assert r.status_code == status, (
            f"{method} {path}: expected {status}, got {r.status_code}: {r.text[:300]}")
        schema = self.response_schema(method, path, r.status_code)
        assert r.headers.get("X-Request-Id"), f"{method} {path}: no X-Request-Id"
        if schema is None:
            assert r.content == b"", f"{method} {path} {r.status_code}: unexpected body {r.text[:200]}"
            return r
        if schema.get("type") == "string" and "properties" not in schema:
            return r  # text (metrics)
        errors = []
        self.validate(r.json(), schema, "$", errors)
        assert not errors, f"{method} {path} {r.status_code} breaks the contract:\n  " + "\n  ".join(errors)
        return r

    def validate(self, value, schema, where, errors):
        schema = self.resolve(schema)
        if value is None:
            if not schema.get("nullable"):
                errors.append(f"{where}: null is not allowed")
            return
        for sub in schema.get("allOf", []):
            self.validate(value, sub, where, errors)
        if "oneOf" in schema:
            ok = 0
            for sub in schema["oneOf"]:
                e = []
                self.validate(value, sub, where, e)
                ok += not e
            if ok != 1:
                errors.append(f"{where}: matches {ok} of oneOf")
        t = schema.get("type")
        types = {
            "object": dict, "array": list, "string": str, "boolean": bool,
            "integer": int, "number": (int, float),
        }
        if t:
            if not isinstance(value, types[t]) or (t in ("integer", "number") and isinstance(value, bool)):
                errors.append(f"{where}: expected {t}, got {type(value).__name__} {value!r}"[:300])
                return
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{where}: {value!r} not in {schema['enum']}")
        if isinstance(value, str):
            fmt = schema.get("format")
            if fmt == "date-time" and not _RFC3339.match(value):
                errors.append(f"{where}: {value!r} is not an RFC 3339 time")
            if fmt == "uuid" and not _UUID.match(value):
                errors.append(f"{where}: {value!r} is not a UUID")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
            if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1 << 62):
                errors.append(f"{where}: length {len(value)} out of range")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                errors.append(f"{where}: {value} < {schema['minimum']}")
            if "maximum" in schema and value > schema["maximum"]:
                errors.append(f"{where}: {value} > {schema['maximum']}")
        if isinstance(value, list):
            if len(value) < schema.get("minItems", 0):
                errors.append(f"{where}: fewer than {schema['minItems']} items")
            for i, v in enumerate(value):
                if "items" in schema:
                    self.validate(v, schema["items"], f"{where}[{i}]", errors)
        if isinstance(value, dict):
            props = schema.get("properties", {})
            for k in schema.get("required", []):
                if k not in value:
                    errors.append(f"{where}: missing required {k!r}")
            extra = schema.get("additionalProperties", True)
            for k, v in value.items():
                if k in props:
                    self.validate(v, props[k], f"{where}.{k}", errors)
                elif extra is False:
                    errors.append(f"{where}: unexpected property {k!r}")
                elif isinstance(extra, dict):
                    self.validate(v, extra, f"{where}.{k}", errors)


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def new_tmp_base():
    """Creates the session's scratch directory: short (Unix socket paths are limited to 107
    bytes) and traversable by the PostgreSQL user."""
    base = Path(tempfile.mkdtemp(prefix="gn-it-", dir=os.environ.get("GANGLION_TEST_TMPDIR", "/tmp")))
    os.chmod(base, 0o711)
    return base


def dumps(obj):
    return jsonlib.dumps(obj, separators=(",", ":"))
