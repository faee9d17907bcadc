"""A hostile server for agent tests: an HTTP proxy in front of the real gangliond that answers
/v1/tuf/image/ itself, with TUF metadata signed by keys the test holds (root, targets, snapshot,
timestamp). A test can serve what a thief of those keys, or a man in the middle, could: roots
with unusable roles, an endless root chain, floods of signatures, targets with wrong hashes,
snapshots that do not match their timestamp. Everything else (enrollment, check-in with the
director's metadata, the director's root, artifacts, samples) goes to gangliond, after hooks that
may act first (replace a file on the device while a request is held, count requests).

The agent enrolled through the proxy pins the test's image root (trust on first use), so the
image repository it trusts is the test's; the director stays the server's. The test's targets
copy the server's entries (paths, lengths, hashes, custom), so the director's choices match them."""

import copy
import hashlib
import http.client
import http.server
import json
import os
import re
import socketserver
import threading
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import serialization
from securesystemslib.formats import encode_canonical

from ganglion_harness import free_port, new_key

ROLES = ("root", "targets", "snapshot", "timestamp")


# --- TUF by hand ------------------------------------------------------------------------------
def canonical(obj):
    return encode_canonical(obj).encode()


def key_object(private_key):
    pub = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": pub.hex()}}


def keyid(private_key):
    return hashlib.sha256(canonical(key_object(private_key))).hexdigest()


def sign(signed, *keys):
    """An envelope of signed with one signature per key given."""
    return {"signed": signed, "signatures": [{"keyid": keyid(k), "sig": k.sign(canonical(signed)).hex()} for k in keys]}


def tuf_time(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_days(days):
    return tuf_time(datetime.now(timezone.utc) + timedelta(days=days))


def dumps(env):
    return json.dumps(env, separators=(",", ":"), sort_keys=True).encode()


def junk_signatures(kid, n, seed=1):
    """n signatures under key id kid that verify nothing, each costing a full Ed25519
    verification: R any 32 bytes, S below the group order (a verifier refuses a larger S at
    once, which would make the flood cheap on any client)."""
    out = []
    h = hashlib.sha512(str(seed).encode()).digest()
    for i in range(n):
        r = h[:28] + i.to_bytes(4, "big")
        s = h[32:63] + b"\x0f"  # little-endian: the top byte small keeps S < L
        out.append({"keyid": kid, "sig": (r + s).hex()})
    return out


# --- the repository ---------------------------------------------------------------------------
class HostileRepo:
    """An image repository whose four keys the test holds. files maps a name under
    /v1/tuf/image/ to the bytes served; publish() signs a new targets, snapshot and timestamp
    (all of one version) from the server's current targets; roots are added with add_root()."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.keys = {r: new_key() for r in ROLES}
        self.files = {}
        self.lock = threading.Lock()
        self.version = 0
        self.root_version = 0
        self.endless_roots = False
        self.add_root(self.root_signed(1))

    def root_signed(self, version):
        """The signed part of an ordinary root: each role has its own key, threshold 1."""
        return {
            "_type": "root", "spec_version": "1.0.0", "version": version, "expires": in_days(365),
            "consistent_snapshot": True,
            "keys": {keyid(k): key_object(k) for k in self.keys.values()},
            "roles": {r: {"keyids": [keyid(self.keys[r])], "threshold": 1} for r in ROLES},
        }

    def add_root(self, signed, *extra_signers):
        """Serves signed as VERSION.root.json (and root.json), signed by the root key."""
        body = dumps(sign(signed, self.keys["root"], *extra_signers))
        with self.lock:
            self.files[f"{signed['version']}.root.json"] = body
            self.files["root.json"] = body
            self.root_version = max(self.root_version, signed["version"])
        return body

    def drop_root(self, version):
        with self.lock:
            self.files.pop(f"{version}.root.json", None)
            self.root_version = max([int(n.split(".")[0]) for n in self.files if re.match(r"^\d+\.root\.json$", n)])

    def upstream_targets(self):
        """The entries of the server's image targets (path -> entry), as the server signed them."""
        r = self.upstream.api("GET", "/v1/tuf/image/targets.json")
        assert r.status_code == 200, r.text
        return r.json()["signed"]["targets"]

    def publish(self, edit=None, envelope=None):
        """Signs and serves targets, snapshot and timestamp, version self.version + 1, each listing
        the next with its version, length and SHA-256. edit[role](signed) may change a signed part
        before it is signed, envelope[role](env) the envelope after (before the next role lists
        its bytes). Returns {role: bytes}."""
        edit, envelope = edit or {}, envelope or {}
        with self.lock:
            self.version += 1
            v = self.version
        out = {}
        t = {"_type": "targets", "spec_version": "1.0.0", "version": v, "expires": in_days(30),
             "targets": copy.deepcopy(self.upstream_targets())}
        out["targets"] = self._finish("targets", t, edit, envelope)
        s = {"_type": "snapshot", "spec_version": "1.0.0", "version": v, "expires": in_days(30),
             "meta": {"targets.json": {"version": t["version"], "length": len(out["targets"]),
                                       "hashes": {"sha256": hashlib.sha256(out["targets"]).hexdigest()}}}}
        out["snapshot"] = self._finish("snapshot", s, edit, envelope)
        ts = {"_type": "timestamp", "spec_version": "1.0.0", "version": v, "expires": in_days(1),
              "meta": {"snapshot.json": {"version": s["version"], "length": len(out["snapshot"]),
                                         "hashes": {"sha256": hashlib.sha256(out["snapshot"]).hexdigest()}}}}
        out["timestamp"] = self._finish("timestamp", ts, edit, envelope)
        with self.lock:
            self.files[f"{t['version']}.targets.json"] = out["targets"]
            self.files[f"{s['version']}.snapshot.json"] = out["snapshot"]
            self.files["timestamp.json"] = out["timestamp"]
        return out

    def _finish(self, role, signed, edit, envelope):
        if role in edit:
            edit[role](signed)
        env = sign(signed, self.keys[role])
        if role in envelope:
            envelope[role](env)
        return dumps(env)

    def serve(self, name):
        """The bytes for /v1/tuf/image/NAME, or None (404). With endless_roots, any root version
        above the newest is made on demand, validly signed."""
        with self.lock:
            body = self.files.get(name)
            m = re.match(r"^(\d+)\.root\.json$", name)
            if body is not None or not (self.endless_roots and m and int(m.group(1)) > self.root_version):
                return body
        version = int(m.group(1))
        for v in range(self.root_version + 1, version + 1):
            self.add_root(self.root_signed(v))
        return self.serve(name)

    def trusted(self, agent, role):
        """The agent's trusted copy of an image role (bytes), or None."""
        p = agent.data_dir / "trust" / "image" / f"{role}.json"
        return p.read_bytes() if p.exists() else None


# --- the proxy --------------------------------------------------------------------------------
class HostileProxy:
    """HTTP server on 127.0.0.1: /v1/tuf/image/* from repo (unless repo is None), everything else
    forwarded to gangliond on upstream_port. hooks: (path prefix, fn(path)) pairs run before a
    request is answered. answer: fn(method, path, headers) -> (status, problem+json bytes) to
    answer a request here, or None to pass it on. log: (method, path, status) of every request,
    in order."""

    def __init__(self, upstream_port, repo):
        self.upstream_port = upstream_port
        self.repo = repo
        self.hooks = []
        self.answer = None
        self.log = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, body, ctype="application/json"):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the agent stopped reading: its cap

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                for prefix, fn in list(proxy.hooks):
                    if self.path.startswith(prefix):
                        fn(self.path)
                own = proxy.answer(self.command, self.path, self.headers) if proxy.answer else None
                if own:
                    self._send(own[0], own[1], "application/problem+json")
                    status = own[0]
                elif proxy.repo and self.path.startswith("/v1/tuf/image/"):
                    status = self._repo()
                else:
                    status = self._forward(body)
                with proxy.lock:
                    proxy.log.append((self.command, self.path, status))

            def _repo(self):
                data = proxy.repo.serve(self.path[len("/v1/tuf/image/"):].split("?")[0])
                if data is None:
                    self._send(404, b'{"title":"Not Found","status":404}', "application/problem+json")
                    return 404
                self._send(200, data)
                return 200

            def _forward(self, body):
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                up = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    up.request(self.command, self.path, body=body, headers=hdrs)
                    r = up.getresponse()
                    data = r.read()
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return r.status
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                    return None
                finally:
                    up.close()

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.httpd = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def requests(self, pattern):
        """(method, path, status) of the requests so far whose path matches the regex."""
        with self.lock:
            return [e for e in self.log if re.search(pattern, e[1])]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the agent's process ----------------------------------------------------------------------
def proc_usage(pid):
    """(CPU seconds used, VmRSS bytes, VmHWM bytes) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    mem = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                mem[k] = int(v.split()[0]) * 1024
    return cpu, mem["VmRSS"], mem["VmHWM"]


def sanitized(pid):
    """Whether the process runs under AddressSanitizer, whose allocator keeps freed memory in
    quarantine: its resident size says nothing about glibc's."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()
