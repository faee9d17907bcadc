"""`ganglion-agent tuf-client` (init, refresh, download) against static TUF repositories made by a
third-party implementation: python-securesystemslib writes the canonical JSON and the Ed25519
signatures, and a plain HTTP file server serves the files, as a CDN or a TUF test suite would.
Each refusal must exit 1 and leave the metadata the client trusts as it was. And the other way
round: tuf-js, the sigstore project's TUF client, against gangliond's image repository."""

import hashlib
import http.server
import json
import os
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import pytest
import securesystemslib.keys as sslkeys
from securesystemslib.formats import encode_canonical

from ganglion_harness import AGENT, SRCDIR, enroll_device, publish

TARGET = "models/det/1.0.0/model.onnx"


def key_object(k):
    return {"keytype": k["keytype"], "scheme": k["scheme"], "keyval": {"public": k["keyval"]["public"]}}


def keyid(k):
    return hashlib.sha256(encode_canonical(key_object(k)).encode()).hexdigest()


def expires(days):
    return (datetime.now(timezone.utc) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(signed, *keys):
    data = encode_canonical(signed).encode()
    return {"signed": signed,
            "signatures": [{"keyid": keyid(k), "sig": sslkeys.create_signature(k, data)["sig"]} for k in keys]}


class Repo:
    """A static TUF repository in dir (metadata/, targets/), signed with securesystemslib keys;
    publish() writes the next timestamp, snapshot and targets, rotate_root() the next root."""

    def __init__(self, dir, consistent=True):
        self.dir, self.consistent = dir, consistent
        os.makedirs(dir / "metadata")
        os.makedirs(dir / "targets")
        self.keys = {r: sslkeys.generate_ed25519_key() for r in ("root", "targets", "snapshot", "timestamp")}
        self.root_version, self.version = 0, 0
        self.targets = {}
        self.rotate_root()

    def write(self, name, env):
        data = json.dumps(env, indent=1, sort_keys=True).encode()
        (self.dir / "metadata" / name).write_bytes(data)
        return data

    def rotate_root(self, signers=None, **new_keys):
        """Writes root version+1 with the given roles' keys replaced, signed by the old root key
        and the new one (or by signers)."""
        old = self.keys["root"]
        self.keys.update(new_keys)
        self.root_version += 1
        signed = {"_type": "root", "spec_version": "1.0.0", "version": self.root_version,
                  "expires": expires(365), "consistent_snapshot": self.consistent,
                  "keys": {keyid(k): key_object(k) for k in self.keys.values()},
                  "roles": {r: {"keyids": [keyid(k)], "threshold": 1} for r, k in self.keys.items()}}
        env = sign(signed, *(signers or {keyid(k): k for k in (old, self.keys["root"])}.values()))
        data = self.write(f"{self.root_version}.root.json", env)
        self.write("root.json", env)
        return data

    def add_target(self, path, content):
        entry = {"length": len(content), "hashes": {"sha256": hashlib.sha256(content).hexdigest()}}
        d, _, base = path.rpartition("/")
        name = f"{entry['hashes']['sha256']}.{base}" if self.consistent else base
        (self.dir / "targets" / d).mkdir(parents=True, exist_ok=True)
        (self.dir / "targets" / d / name).write_bytes(content)
        self.targets[path] = entry

    def publish(self, ts_expires=7, ts_key=None):
        """Signs targets, snapshot and timestamp of the next version; returns the timestamp's bytes."""
        self.version += 1
        v = self.version
        common = {"spec_version": "1.0.0", "version": v, "expires": expires(30)}
        tg = self.write(f"{v}.targets.json" if self.consistent else "targets.json",
                        sign({"_type": "targets", **common, "targets": self.targets}, self.keys["targets"]))
        sn = self.write(f"{v}.snapshot.json" if self.consistent else "snapshot.json",
                        sign({"_type": "snapshot", **common,
                              "meta": {"targets.json": {"version": v, "length": len(tg),
                                                        "hashes": {"sha256": hashlib.sha256(tg).hexdigest()}}}},
                             self.keys["snapshot"]))
        ts = {"_type": "timestamp", **common, "expires": expires(ts_expires),
              "meta": {"snapshot.json": {"version": v, "length": len(sn),
                                         "hashes": {"sha256": hashlib.sha256(sn).hexdigest()}}}}
        return self.write("timestamp.json", sign(ts, ts_key or self.keys["timestamp"]))


class Server:
    """A plain static file server over dir, remembering the paths asked for."""

    def __init__(self, dir):
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(dir), **kw)

            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def env(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.add_target(TARGET, b"model bytes v1")
    repo.publish()
    srv = Server(tmp_path / "repo")
    yield repo, srv, tmp_path
    srv.close()


def client(srv, tmp, *args):
    cmd = [str(AGENT), "tuf-client", "--metadata-dir", str(tmp / "meta")]
    if args and args[0] != "init":
        cmd += ["--metadata-url", f"{srv.url}/metadata"]
    if args and args[0] == "download":
        cmd += ["--target-name", args[1], "--target-dir", str(tmp / "dl"), "--target-base-url", f"{srv.url}/targets"]
        args = ("download",)
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


def trusted(tmp):
    return {p.name: p.read_bytes() for p in sorted((tmp / "meta").iterdir())}


def ok(r):
    assert r.returncode == 0, r.stderr
    return r


def refused(r, words):
    assert r.returncode == 1 and words in r.stderr, (r.returncode, r.stderr)


def initialized(repo, srv, tmp):
    (tmp / "dl").mkdir(exist_ok=True)
    ok(client(srv, tmp, "init", str(repo.dir / "metadata" / "1.root.json")))
    assert srv.requests == []  # init reads no network
    return ok(client(srv, tmp, "refresh"))


def test_init_refresh_download_and_cache(env):
    repo, srv, tmp = env
    initialized(repo, srv, tmp)
    meta = repo.dir / "metadata"
    assert trusted(tmp) == {"root.json": (meta / "1.root.json").read_bytes(),
                            "snapshot.json": (meta / "1.snapshot.json").read_bytes(),
                            "targets.json": (meta / "1.targets.json").read_bytes(),
                            "timestamp.json": (meta / "timestamp.json").read_bytes()}
    assert srv.requests == ["/metadata/2.root.json", "/metadata/timestamp.json", "/metadata/1.snapshot.json",
                            "/metadata/1.targets.json"]
    ok(client(srv, tmp, "download", TARGET))
    local = tmp / "dl" / "models%2Fdet%2F1.0.0%2Fmodel.onnx"
    assert local.read_bytes() == b"model bytes v1"
    sha = hashlib.sha256(b"model bytes v1").hexdigest()
    assert f"/targets/models/det/1.0.0/{sha}.model.onnx" in srv.requests
    # A copy that still matches is not fetched again; a new release of the same path is.
    n = len([p for p in srv.requests if p.startswith("/targets/")])
    ok(client(srv, tmp, "download", TARGET))
    assert len([p for p in srv.requests if p.startswith("/targets/")]) == n
    repo.add_target(TARGET, b"model bytes v2")
    repo.publish()
    ok(client(srv, tmp, "download", TARGET))
    assert local.read_bytes() == b"model bytes v2"
    refused(client(srv, tmp, "download", "models/none"), "lists no target 'models/none'")


def test_root_rotation_and_key_changes(env):
    repo, srv, tmp = env
    initialized(repo, srv, tmp)
    # Root 2 replaces the root and timestamp keys; root 3 the snapshot key.
    repo.rotate_root(root=sslkeys.generate_ed25519_key(), timestamp=sslkeys.generate_ed25519_key())
    repo.rotate_root(snapshot=sslkeys.generate_ed25519_key())
    repo.publish()
    ok(client(srv, tmp, "refresh"))
    assert json.loads(trusted(tmp)["root.json"])["signed"]["version"] == 3
    assert json.loads(trusted(tmp)["timestamp.json"])["signed"]["version"] == 2
    # A timestamp signed with the old timestamp key no longer passes.
    old_ts_key = repo.keys["timestamp"]
    repo.rotate_root(timestamp=sslkeys.generate_ed25519_key())
    before = trusted(tmp)
    repo.publish(ts_key=old_ts_key)
    refused(client(srv, tmp, "refresh"), "timestamp metadata has 0 valid signature(s)")
    assert json.loads(trusted(tmp)["root.json"])["signed"]["version"] == 4
    # Root 4 changed the timestamp key: the trusted timestamp and snapshot are forgotten (TUF 5.3.11).
    assert set(trusted(tmp)) == {"root.json", "targets.json"}
    assert trusted(tmp)["targets.json"] == before["targets.json"]


@pytest.mark.parametrize("attack", ["rollback", "freeze", "bad-signature", "mix-and-match", "endless-data",
                                    "root-without-old-keys", "tampered-target"])
def test_refusals_keep_what_was_trusted(env, attack):
    repo, srv, tmp = env
    initialized(repo, srv, tmp)
    meta = repo.dir / "metadata"
    old_ts = (meta / "timestamp.json").read_bytes()
    repo.publish()
    ok(client(srv, tmp, "refresh"))
    before = trusted(tmp)
    if attack == "rollback":
        (meta / "timestamp.json").write_bytes(old_ts)
        words = "older than the trusted version"
    elif attack == "freeze":
        repo.publish(ts_expires=-1)
        words = "expired"
    elif attack == "bad-signature":
        repo.publish(ts_key=sslkeys.generate_ed25519_key())
        words = "valid signature(s)"
    elif attack == "mix-and-match":
        repo.publish()
        # The snapshot the timestamp lists, replaced by the previous one under the new name.
        (meta / f"{repo.version}.snapshot.json").write_bytes((meta / f"{repo.version - 1}.snapshot.json").read_bytes())
        words = "the timestamp lists"
    elif attack == "endless-data":
        ts = json.loads(repo.publish())
        ts["signed"]["padding"] = "x" * 20000
        (meta / "timestamp.json").write_bytes(json.dumps(sign(ts["signed"], repo.keys["timestamp"])).encode())
        words = "larger than"
    elif attack == "root-without-old-keys":
        new = sslkeys.generate_ed25519_key()
        repo.rotate_root(signers=[new], root=new)
        words = "root metadata has 0 valid signature(s)"
    elif attack == "tampered-target":
        sha = repo.targets[TARGET]["hashes"]["sha256"]
        (repo.dir / "targets" / "models/det/1.0.0" / f"{sha}.model.onnx").write_bytes(b"model bytes v!")
        refused(client(srv, tmp, "download", TARGET), "differs from the one its metadata lists")
        assert list((tmp / "dl").iterdir()) == []
        assert trusted(tmp) == before
        return
    refused(client(srv, tmp, "refresh"), words)
    if attack == "mix-and-match":  # the timestamp itself is valid: trusted once checked (TUF 5.4.5)
        before["timestamp.json"] = (meta / "timestamp.json").read_bytes()
    assert trusted(tmp) == before, attack


def test_without_consistent_snapshots(tmp_path):
    repo = Repo(tmp_path / "repo", consistent=False)
    repo.add_target("a.txt", b"plain")
    repo.publish()
    srv = Server(tmp_path / "repo")
    try:
        initialized(repo, srv, tmp_path)
        ok(client(srv, tmp_path, "download", "a.txt"))
        assert (tmp_path / "dl" / "a.txt").read_bytes() == b"plain"
        assert "/metadata/snapshot.json" in srv.requests and "/targets/a.txt" in srv.requests
    finally:
        srv.close()


def test_command_line_refusals(env):
    repo, srv, tmp = env
    for args in ([], ["refresh"], ["frobnicate"], ["--metadata-dir"], ["--bogus", "x", "refresh"],
                 ["--metadata-dir", str(tmp / "m"), "init"], ["--metadata-dir", str(tmp / "m"), "refresh"]):
        r = subprocess.run([str(AGENT), "tuf-client"] + args, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "usage: ganglion-agent tuf-client" in r.stderr, (args, r.stderr)
    refused(client(srv, tmp, "refresh"), "run init first")
    (tmp / "bad.json").write_text(json.dumps(sign({"_type": "targets", "version": 1}, repo.keys["targets"])))
    refused(client(srv, tmp, "init", str(tmp / "bad.json")), "is not root metadata")
    refused(client(srv, tmp, "init", str(tmp / "missing.json")), "cannot read")


# --- the other way round: a stock TUF client against gangliond --------------------------------
TUFJS = SRCDIR / "scripts" / "tufjs" / "node_modules"


def _tufjs(server, tmp, cmd, target=""):
    """Runs tuf-js (scripts/tufjs, pinned; installed by scripts/deps.sh) against the server's image
    repository with a metadata dir holding its current root; returns the CompletedProcess."""
    assert (TUFJS / "tuf-js").is_dir(), f"tuf-js is not installed in {TUFJS}: run scripts/deps.sh test"
    meta, dl = tmp / f"js-{cmd}-meta", tmp / f"js-{cmd}-dl"
    meta.mkdir()
    dl.mkdir()
    (meta / "root.json").write_bytes(server.api("GET", "/v1/tuf/image/root.json").content)
    base = f"{server.url}/v1/tuf/image"
    return subprocess.run(["node", str(SRCDIR / "tests" / "integration" / "tufjs_client.js"), cmd, base, str(meta),
                           str(dl), f"{base}/targets", server.admin_token, target],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NODE_PATH": str(TUFJS)})


def test_tuf_js_refreshes_gangliond_image_metadata(server, tmp_path):
    assert publish(server, "det", b"model bytes for tuf-js").status_code == 201
    r = _tufjs(server, tmp_path, "refresh")
    assert r.returncode == 0 and "refresh: ok" in r.stdout, r.stdout + r.stderr
    for role in ("timestamp", "snapshot", "targets"):
        mine = json.loads((tmp_path / "js-refresh-meta" / f"{role}.json").read_bytes())
        assert mine == server.api("GET", f"/v1/tuf/image/{role}.json").json(), role


def test_tuf_js_downloads_a_target_from_gangliond(server, tmp_path):
    data = b"model bytes for tuf-js"
    assert publish(server, "det", data).status_code == 201
    r = _tufjs(server, tmp_path, "download", "models/det/1.0.0/model.onnx")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "js-download-dl" / "target").read_bytes() == data


def test_agent_tuf_client_reads_gangliond_without_a_token(gangliond, tmp_path):
    """With tuf-anonymous-read, a mirror or a stock client reads the image repository (metadata
    and targets) with no token: `ganglion-agent tuf-client` verifies it and downloads a target
    at its TUF path. Nothing else opens: the director, artifacts by digest and the API still
    need their tokens, and a token that is sent is still checked."""
    server = gangliond(extra_args=["--tuf-anonymous-read"])
    data = b"model bytes for an anonymous mirror"
    assert publish(server, "det", data).status_code == 201
    sha = hashlib.sha256(data).hexdigest()
    for path in ("/v1/tuf/image/root.json", "/v1/tuf/image/timestamp.json", "/v1/tuf/image/1.targets.json",
                 f"/v1/tuf/image/targets/models/det/1.0.0/{sha}.model.onnx"):
        assert server.api("GET", path, token=None).status_code == 200, path
    for path in ("/v1/tuf/director/root.json", "/v1/tuf/director/targets.json", f"/v1/artifacts/sha256/{sha}",
                 "/v1/models", "/v1/tuf/image/root/draft"):
        assert server.api("GET", path, token=None).status_code == 401, path
    assert server.api("GET", "/v1/tuf/image/root.json", token="gna_" + "0" * 40).status_code == 401

    (tmp_path / "dl").mkdir()
    (tmp_path / "root.json").write_bytes(server.api("GET", "/v1/tuf/image/1.root.json").content)
    base = f"{server.url}/v1/tuf/image"
    tc = [str(AGENT), "tuf-client", "--metadata-dir", str(tmp_path / "meta")]
    ok(subprocess.run(tc + ["init", str(tmp_path / "root.json")], capture_output=True, text=True, timeout=60))
    ok(subprocess.run(tc + ["--metadata-url", base, "refresh"], capture_output=True, text=True, timeout=60))
    ok(subprocess.run(tc + ["--metadata-url", base, "--target-name", TARGET, "--target-dir", str(tmp_path / "dl"),
                            "--target-base-url", f"{base}/targets", "download"],
                      capture_output=True, text=True, timeout=60))
    assert (tmp_path / "dl" / "models%2Fdet%2F1.0.0%2Fmodel.onnx").read_bytes() == data


def test_agent_tuf_client_verifies_a_devices_director(server, tmp_path):
    """The director is a full TUF repository per device: with the device's token, the stock
    client workflow (root chain, timestamp, snapshot, targets) verifies it, and a target it names
    downloads from the image repository's TUF path. Without the token, or with an API token
    (the director's metadata is per device), the refresh fails."""
    data = b"bytes the director names"
    assert publish(server, "det", data).status_code == 201
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    assert server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "1.0.0"}).status_code == 200
    root = server.api("GET", "/v1/tuf/director/1.root.json").content
    assert sorted(json.loads(root)["signed"]["roles"]) == ["root", "snapshot", "targets", "timestamp"]
    (tmp_path / "root.json").write_bytes(root)
    (tmp_path / "dl").mkdir()
    base = f"{server.url}/v1/tuf/director"

    def tc(meta, token, *args):
        cmd = [str(AGENT), "tuf-client", "--metadata-dir", str(tmp_path / meta)]
        if token:
            (tmp_path / f"{meta}.tok").write_text(token + "\n")
            cmd += ["--token-file", str(tmp_path / f"{meta}.tok")]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)

    ok(tc("meta", tok, "init", str(tmp_path / "root.json")))
    ok(tc("meta", tok, "--metadata-url", base, "refresh"))
    mine = {r: json.loads((tmp_path / "meta" / f"{r}.json").read_bytes()) for r in ("timestamp", "snapshot", "targets")}
    assert mine["targets"] == server.api("GET", "/v1/tuf/director/targets.json", token=tok).json()
    assert mine["targets"]["signed"]["custom"]["device_id"] == dev.id
    for bad in ("1.models.json", "1.timestamp.json", "0.targets.json", "models.json"):  # no delegations
        assert server.api("GET", f"/v1/tuf/director/{bad}", token=tok).status_code == 404, bad
    v = mine["targets"]["signed"]["version"]
    assert mine["snapshot"]["signed"]["meta"]["targets.json"]["version"] == v
    assert mine["timestamp"]["signed"]["meta"]["snapshot.json"]["version"] == mine["snapshot"]["signed"]["version"]
    ok(tc("meta", tok, "--metadata-url", base, "--target-name", TARGET, "--target-dir", str(tmp_path / "dl"),
          "--target-base-url", f"{server.url}/v1/tuf/image/targets", "download"))
    assert (tmp_path / "dl" / "models%2Fdet%2F1.0.0%2Fmodel.onnx").read_bytes() == data

    for meta, token, why in (("none", None, "2.root.json: HTTP status 401"),
                             ("api", server.admin_token, "has no timestamp.json")):
        ok(tc(meta, token, "init", str(tmp_path / "root.json")))
        refused(tc(meta, token, "--metadata-url", base, "refresh"), why)
    refused(tc("bad", None, "--token-file", str(tmp_path / "missing"), "--metadata-url", base, "refresh"), "missing")
