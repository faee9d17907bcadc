"""TUF delegations. `ganglion-agent tuf-client` (the agent's own checks) against static repositories
whose delegated targets roles python-securesystemslib signs: a threshold of 2 of 3 CI keys, a
terminating delegation that hides a later role, per-model delegations, and a delegated role the
snapshot does not vouch for."""

import hashlib

import pytest
import securesystemslib.keys as sslkeys

from test_tuf_client import TARGET, Repo, Server, client, expires, key_object, keyid, ok, refused, sign


class DelegatingRepo(Repo):
    """A Repo whose top-level targets delegate to roles (in order); publish() signs each delegated
    role at the new version too and lists it in the snapshot."""

    def __init__(self, dir):
        super().__init__(dir)
        self.roles = []  # [{"name", "keys", "threshold", "paths", "terminating", "targets", "signers"}]

    def delegate(self, name, keys, threshold, paths, terminating=False, signers=None):
        self.roles.append({"name": name, "keys": keys, "threshold": threshold, "paths": paths,
                           "terminating": terminating, "targets": {}, "signers": signers or keys})
        return self.roles[-1]

    def publish(self, ts_expires=7, ts_key=None):
        self.version += 1
        v = self.version
        common = {"spec_version": "1.0.0", "version": v, "expires": expires(30)}
        meta = {}
        for r in self.roles:
            data = self.write(f"{v}.{r['name']}.json",
                              sign({"_type": "targets", **common, "targets": r["targets"]}, *r["signers"]))
            meta[f"{r['name']}.json"] = {"version": v, "length": len(data)}
        delegations = {"keys": {keyid(k): key_object(k) for r in self.roles for k in r["keys"]},
                       "roles": [{"name": r["name"], "keyids": [keyid(k) for k in r["keys"]],
                                  "threshold": r["threshold"], "paths": r["paths"],
                                  "terminating": r["terminating"]} for r in self.roles]}
        tg = self.write(f"{v}.targets.json", sign({"_type": "targets", **common, "targets": self.targets,
                                                   "delegations": delegations}, self.keys["targets"]))
        meta["targets.json"] = {"version": v, "length": len(tg), "hashes": {"sha256": hashlib.sha256(tg).hexdigest()}}
        sn = self.write(f"{v}.snapshot.json", sign({"_type": "snapshot", **common, "meta": meta}, self.keys["snapshot"]))
        ts = {"_type": "timestamp", **common, "expires": expires(ts_expires),
              "meta": {"snapshot.json": {"version": v, "length": len(sn),
                                         "hashes": {"sha256": hashlib.sha256(sn).hexdigest()}}}}
        return self.write("timestamp.json", sign(ts, ts_key or self.keys["timestamp"]))

    def release(self, role, path, content):
        """Puts the target file in place and lists it in role's targets (not in the top-level's)."""
        self.add_target(path, content)
        role["targets"][path] = self.targets.pop(path)


@pytest.fixture
def drepo(tmp_path):
    repo = DelegatingRepo(tmp_path / "repo")
    srv = Server(tmp_path / "repo")
    (tmp_path / "dl").mkdir()
    yield repo, srv, tmp_path
    srv.close()


def start(repo, srv, tmp):
    repo.publish()
    ok(client(srv, tmp, "init", str(repo.dir / "metadata" / "1.root.json")))


def test_threshold_two_of_three_ci_keys(drepo):
    repo, srv, tmp = drepo
    ci = [sslkeys.generate_ed25519_key() for _ in range(3)]
    role = repo.delegate("ci", ci, 2, ["models/*/*/*"], signers=ci[:2])
    repo.release(role, TARGET, b"released by CI")
    start(repo, srv, tmp)
    ok(client(srv, tmp, "download", TARGET))
    assert (tmp / "dl" / "models%2Fdet%2F1.0.0%2Fmodel.onnx").read_bytes() == b"released by CI"
    assert "/metadata/1.ci.json" in srv.requests
    assert (tmp / "meta" / "ci.json").is_file()

    # Version 2, signed by one CI key only: refused, and the trusted ci.json stays version 1.
    other = "models/det/2.0.0/model.onnx"
    role["signers"] = ci[2:]
    repo.release(role, other, b"one key only")
    repo.publish()
    refused(client(srv, tmp, "download", other), "threshold is 2")
    assert '"version":1' in (tmp / "meta" / "ci.json").read_text().replace(" ", "")
    # Signed by one CI key and the top-level targets key: still one CI key.
    role["signers"] = [ci[0], repo.keys["targets"]]
    repo.publish()
    refused(client(srv, tmp, "download", other), "threshold is 2")
    role["signers"] = [ci[0], ci[2]]
    repo.publish()
    ok(client(srv, tmp, "download", other))


def test_terminating_delegation_hides_later_roles(drepo):
    repo, srv, tmp = drepo
    ci, late = sslkeys.generate_ed25519_key(), sslkeys.generate_ed25519_key()
    first = repo.delegate("ci", [ci], 1, ["models/*/*/*"], terminating=True)
    second = repo.delegate("late", [late], 1, ["models/*/*/*"])
    repo.release(first, TARGET, b"from ci")
    repo.release(second, "models/det/9.9.9/model.onnx", b"from a later role")
    start(repo, srv, tmp)
    ok(client(srv, tmp, "download", TARGET))
    refused(client(srv, tmp, "download", "models/det/9.9.9/model.onnx"), "lists no target")
    assert not any("late.json" in p for p in srv.requests)
    # Not terminating: the later role is asked, and speaks for it.
    first["terminating"] = False
    repo.publish()
    ok(client(srv, tmp, "download", "models/det/9.9.9/model.onnx"))


def test_paths_bound_each_role(drepo):
    repo, srv, tmp = drepo
    keys = {n: sslkeys.generate_ed25519_key() for n in ("det", "cls")}
    det = repo.delegate("models-det", [keys["det"]], 1, ["models/det/*/*"], terminating=True)
    cls = repo.delegate("models-cls", [keys["cls"]], 1, ["models/cls/*/*"], terminating=True)
    repo.release(det, TARGET, b"det")
    # The cls role lists a det path: outside its paths, so nobody trusted for it lists it.
    repo.release(cls, "models/det/2.0.0/model.onnx", b"det by the cls role")
    repo.release(cls, "models/cls/1.0.0/model.onnx", b"cls")
    start(repo, srv, tmp)
    ok(client(srv, tmp, "download", TARGET))
    ok(client(srv, tmp, "download", "models/cls/1.0.0/model.onnx"))
    refused(client(srv, tmp, "download", "models/det/2.0.0/model.onnx"), "lists no target")
    # '*' does not cross '/': a pattern one level short covers nothing below.
    repo.roles[1]["paths"] = ["models/*"]
    repo.publish()
    refused(client(srv, tmp, "download", "models/cls/1.0.0/model.onnx"), "lists no target")


def test_delegated_role_must_be_what_the_snapshot_lists(drepo):
    repo, srv, tmp = drepo
    ci = sslkeys.generate_ed25519_key()
    role = repo.delegate("ci", [ci], 1, ["models/*/*/*"])
    repo.release(role, TARGET, b"v1")
    start(repo, srv, tmp)
    ok(client(srv, tmp, "download", TARGET))
    # Someone replaces 2.ci.json after the snapshot listed its length: refused.
    repo.publish()
    meta = repo.dir / "metadata" / "2.ci.json"
    meta.write_bytes(meta.read_bytes() + b"\n")
    refused(client(srv, tmp, "download", TARGET), "ci")


# --- gangliond with its top-level targets offline: CI signs, the server cannot ------------------
import http.client  # noqa: E402
import http.server  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import urllib.parse  # noqa: E402

import onnx  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: E402

from ganglion_harness import TEST_MODELS, Agent, last_event_id, wait_event, wait_for  # noqa: E402
import tuf_verify  # noqa: E402
from hostile_server import sign as sign_crypto  # noqa: E402

MODEL = "det"


def pem_key(path):
    """Writes a new Ed25519 private key (PEM) to path; returns path."""
    path.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def model_bytes(tag):
    """v1's model with another doc string: other bytes, the same function and sample."""
    m = onnx.load_from_string((TEST_MODELS / "v1.onnx").read_bytes())
    m.doc_string = f"delegation test {tag}"
    return m.SerializeToString()


def cli_push(srv, dir, version, *sign_args, url=None, tag=None, **meta_fields):
    art, meta = dir / f"{version}.onnx", dir / f"{version}.json"
    art.write_bytes(model_bytes(tag or version))
    meta.write_text(json.dumps(dict(json.loads((TEST_MODELS / "v1.json").read_text()), version=version, **meta_fields)))
    return srv.cli("models", "push", art, "--name", MODEL, "--meta", meta, "--no-progress", *sign_args, timeout=60,
                   url=url)


class DraftTamperer:
    """A proxy in front of gangliond that passes everything through but edits the release draft
    (POST /v1/tuf/image/release-draft) with self.edit(draft): what a compromised server could
    hand CI to sign."""

    def __init__(self, upstream):
        self.edit = None
        up = urllib.parse.urlsplit(upstream)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
                conn.request(self.command, self.path, body=body, headers=headers)
                r = conn.getresponse()
                data, ctype = r.read(), r.getheader("Content-Type", "application/json")
                if self.path == "/v1/tuf/image/release-draft" and r.status == 200 and outer.edit:
                    draft = json.loads(data)
                    outer.edit(draft)
                    data = json.dumps(draft).encode()
                conn.close()
                self.send_response(r.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def moved(draft):
    """CI's bytes listed under another version."""
    t = draft["signed"]["targets"]
    draft["path"] = draft["path"].replace("/2.1.0/", "/9.9.9/")
    t[draft["path"]] = t.pop(f"models/{MODEL}/2.1.0/v1.onnx")


def handed_over(draft):
    """The role delegates every model to a key the server holds."""
    draft["signed"]["delegations"] = {"keys": {}, "roles": [{"name": "evil", "keyids": [], "threshold": 1,
                                                             "paths": ["models/*/*/*"], "terminating": True}]}


def no_current(draft):
    """'There is no current version': every earlier release dropped."""
    draft["current"] = None
    draft["signed"]["version"] = 1
    draft["signed"]["targets"] = {draft["path"]: draft["signed"]["targets"][draft["path"]]}


def assign(srv, device_id, version):
    r = srv.api("PUT", f"/v1/devices/{device_id}/desired", json={"model": MODEL, "version": version})
    assert r.status_code == 200, r.text


def serving(agent, version):
    got = wait_for(lambda: (agent.serving() or [None])[0] == version, 90, 0.2)
    assert got, f"agent does not serve {version}: {agent.serving()}\n{agent.log()[-4000:]}"


def agent_refused(srv, agent, after, version, words):
    wait_event(srv, agent.device_id, lambda o: o["state"] == "failed" and o.get("version") == version
               and words in o.get("detail", ""), after_id=after, what=f"refusal of {version} ({words})")


def online_keys(pg, db):
    """Every private key of the image repository in the database, active or retired: {role: [key]}."""
    out = {}
    for line in pg.sql("SELECT role || ' ' || replace(private_pem, E'\\n', '|') FROM tuf_keys"
                       " WHERE repo = 'image' AND private_pem IS NOT NULL", db).splitlines():
        role, pem = line.split(" ", 1)
        out.setdefault(role, []).append(load_pem_private_key(pem.replace("|", "\n").encode() + b"\n", None))
    return out


def store(pg, db, role, version, env):
    body = json.dumps(env, separators=(",", ":"), sort_keys=True)
    assert "$gn$" not in body
    pg.sql(f"INSERT INTO tuf_metadata (repo, role, version, body, expires_at) VALUES"
           f" ('image', '{role}', {version}, $gn${body}$gn$, now() + interval '30 days')", db)
    return body


def latest(pg, db, role):
    return json.loads(pg.sql(f"SELECT body FROM tuf_metadata WHERE repo = 'image' AND role = '{role}'"
                             " ORDER BY version DESC LIMIT 1", db))


def forge_release(pg, db, keys, role, entry_path, entry):
    """What an attacker with the database and every online key does: a new version of `role` that
    lists entry_path, signed with every key it has, and a snapshot and timestamp over it signed with
    the real online keys. Returns the forged version."""
    cur = latest(pg, db, role)["signed"]
    signed = dict(cur, version=cur["version"] + 1, targets=dict(cur["targets"], **{entry_path: entry}))
    every = [k for ks in keys.values() for k in ks]
    store(pg, db, role, signed["version"], sign_crypto(signed, *every))
    sn = latest(pg, db, "snapshot")["signed"]
    meta = dict(sn["meta"], **{f"{role}.json": {"version": signed["version"]}})
    sn_new = dict(sn, version=sn["version"] + 1, meta=meta)
    sn_body = store(pg, db, "snapshot", sn_new["version"], sign_crypto(sn_new, *keys["snapshot"]))
    ts = latest(pg, db, "timestamp")["signed"]
    ts_new = dict(ts, version=ts["version"] + 1, meta={"snapshot.json": {
        "version": sn_new["version"], "length": len(sn_body),
        "hashes": {"sha256": hashlib.sha256(sn_body.encode()).hexdigest()}}})
    store(pg, db, "timestamp", ts_new["version"], sign_crypto(ts_new, *keys["timestamp"]))
    return signed["version"]


def test_release_routes_in_server_held_mode(gangliond):
    """With the targets key on the server there is no delegated role to draft or publish: both
    routes say so (400), a bad role name is refused before anything else, and a reader gets 403."""
    srv = gangliond()
    envelope = {"signed": {"_type": "targets"}, "signatures": []}
    for path, body, status, words in (
            ("/v1/tuf/image/release-draft", {"model": MODEL, "version": "1.0.0"}, 400, "server-held mode"),
            ("/v1/tuf/image/release-draft", {"model": MODEL}, 400, "version"),
            ("/v1/tuf/image/release-draft", {"model": MODEL, "version": "1.0.0", "extra": 1}, 400, "extra"),
            ("/v1/tuf/image/roles/ci", envelope, 400, "server-held mode"),
            ("/v1/tuf/image/roles/.hidden", envelope, 400, ".hidden")):
        r = srv.api("POST", path, json=body)
        assert r.status_code == status and words in r.json()["detail"], (path, r.status_code, r.text)
    reader = srv.make_token(["read"])["token"]
    r = srv.api("POST", "/v1/tuf/image/release-draft", token=reader, json={"model": MODEL, "version": "1.0.0"})
    assert r.status_code == 403, r.text


def test_ci_signs_releases_and_a_compromised_server_cannot(gangliond, pg, db, workdir, request):
    srv = gangliond(extra_args=["--agent-poll-interval", "1s"])
    ci = [pem_key(workdir / f"ci{i}.pem") for i in range(3)]
    offline = pem_key(workdir / "targets-offline.pem")
    root_ids = srv.api("GET", "/v1/tuf/image/root.json").json()["signed"]["roles"]["root"]["keyids"]
    root_keys = [a for k in root_ids for a in ("--root-key", srv.data_dir / "keys" / f"root-{k}.pem")]

    # Server-held mode says so; a release to sign is refused there.
    p = srv.cli("keys", "list")
    assert p.returncode == 0 and "WARNING: the image targets key is held by this server" in p.stderr, p.stderr
    p = cli_push(srv, workdir, "0.9.0", "--sign-key", ci[0])
    assert p.returncode != 0 and "server-held mode" in p.stderr, p.stderr

    # A bad argument changes nothing: no root is signed for a ceremony that cannot finish.
    p = srv.cli("keys", "delegate", "--targets-key", offline, "--ci-key", ci[0], "--threshold", "2", *root_keys)
    assert p.returncode == 2 and "--threshold (2)" in p.stderr, p.stderr
    assert srv.api("GET", "/v1/tuf/image/root.json").json()["signed"]["version"] == 1

    # The key ceremony: root lists the offline targets key; targets delegate models/*/*/* to 2 of 3 CI keys.
    pub_hex = workdir / "ci2.pub"
    pub_hex.write_text(load_pem_private_key(ci[2].read_bytes(), None).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex() + "\n")
    p = srv.cli("keys", "delegate", "--targets-key", offline, "--ci-key", ci[0], "--ci-key", ci[1],
                "--ci-key", pub_hex, "--threshold", "2", *root_keys)
    assert p.returncode == 0 and "role ci signs models/*/*/* with 2 of 3 CI key(s)" in p.stdout, p.stderr
    p = srv.cli("keys", "list")
    assert p.returncode == 0 and "WARNING" not in p.stderr + p.stdout, p.stderr
    top = srv.api("GET", "/v1/tuf/image/targets.json").json()
    assert top["signed"]["delegations"]["roles"][0]["threshold"] == 2
    # Uploading it again (same version) is refused; so is targets signed by a key the root does not list.
    assert srv.api("POST", "/v1/tuf/image/targets", json=top).status_code == 409

    # The role has no version yet: CI signs a draft saying so only when told it is the first release
    # (else a compromised server could drop every target by claiming so). The upload stays, unreleased.
    p = cli_push(srv, workdir, "0.9.5", "--sign-key", ci[0], "--sign-key", ci[1])
    assert p.returncode != 0 and "has no current version" in p.stderr and "--first-release" in p.stderr, p.stderr
    p = cli_push(srv, workdir, "1.0.0", "--first-release")
    assert p.returncode == 2 and "--first-release is for a signed release" in p.stderr, p.stderr
    # A release signed by 2 of the 3 CI keys installs.
    p = cli_push(srv, workdir, "1.0.0", "--sign-key", ci[0], "--sign-key", ci[1], "--first-release")
    assert p.returncode == 0 and "Released: signed role ci version 1" in p.stdout, (p.stdout, p.stderr)
    # The release routes refuse, over HTTP, what cannot be released, and store nothing.
    ci_json = srv.api("GET", "/v1/tuf/image/1.ci.json").json()
    for path, body, status, words in (
            ("/v1/tuf/image/release-draft", {"model": MODEL, "version": "7.7.7"}, 404, "no model version"),
            ("/v1/tuf/image/roles/nope", ci_json, 404, "delegate to no role 'nope'"),
            ("/v1/tuf/image/roles/ci", ci_json, 409, "version must be 2"),
            ("/v1/tuf/image/roles/ci", {"signed": ci_json["signed"]}, 400, "signatures")):
        r = srv.api("POST", path, json=body)
        assert r.status_code == status and words in r.json()["detail"], (path, r.status_code, r.text)
    assert srv.api("GET", "/v1/tuf/image/2.ci.json").status_code == 404
    reader = srv.make_token(["read"])["token"]
    r = srv.api("POST", "/v1/tuf/image/roles/ci", token=reader, json=ci_json)
    assert r.status_code == 403, r.text
    a = Agent(workdir / "ag", srv.url)
    request.addfinalizer(a.kill)  # a failed assertion must not leave it running
    a.enroll(srv.make_enroll_token()["token"])
    a.start()
    assign(srv, a.device_id, "1.0.0")
    serving(a, "1.0.0")
    assert json.loads((a.data_dir / "trust" / "image" / "delegated" / "ci.json").read_text())["signed"]["version"] == 1

    # One CI signature: the server refuses it; the version is uploaded but not released, and the
    # agent refuses it too.
    p = cli_push(srv, workdir, "2.0.0", "--sign-key", ci[1])
    assert p.returncode != 0 and "threshold is 2" in p.stderr, p.stderr
    after = last_event_id(srv, a.device_id)
    assign(srv, a.device_id, "2.0.0")
    agent_refused(srv, a, after, "2.0.0", "has not signed target")
    assert a.serving()[0] == "1.0.0"
    # Nor is it served at its TUF path, where a mirror with anonymous read would fetch it.
    for version, status in (("1.0.0", 200), ("2.0.0", 404)):
        v = srv.api("GET", f"/v1/models/{MODEL}/versions/{version}").json()
        r = srv.api("GET", f"/v1/tuf/image/targets/{v['target'].rsplit('/', 1)[0]}/"
                    f"{v['artifact']['sha256']}.{v['filename']}")
        assert r.status_code == status, (version, r.status_code, r.text[:300])

    # Another pair of CI keys (an external signer for the third) releases the next version.
    signer = workdir / "signer.py"
    signer.write_text(
        "import sys, json, hashlib\n"
        "from cryptography.hazmat.primitives.serialization import load_pem_private_key, Encoding, PublicFormat\n"
        f"k = load_pem_private_key(open({str(ci[2])!r}, 'rb').read(), None)\n"
        "pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()\n"
        "obj = {'keytype': 'ed25519', 'scheme': 'ed25519', 'keyval': {'public': pub}}\n"
        "kid = hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(',', ':')).encode()).hexdigest()\n"
        "out = {'keyid': kid, 'sig': k.sign(sys.stdin.buffer.read()).hex(), 'public': pub}\n"
        "if len(sys.argv) > 1: out.pop('public')\n"
        "print(json.dumps(out))\n")
    # Its signing fails after the upload (a signer that fails): the version is stored, unreleased.
    p = cli_push(srv, workdir, "2.0.1", "--sign-key", ci[1], "--signer-cmd", "exit 3")
    assert p.returncode != 0 and "the signer command failed" in p.stderr, p.stderr
    # The same push again with other bytes is refused; with the same bytes it only releases them.
    p = cli_push(srv, workdir, "2.0.1", "--sign-key", ci[1], "--signer-cmd", f"/usr/bin/python3 {signer}",
                 tag="other")
    assert p.returncode == 5 and "already published with other bytes" in p.stderr, (p.returncode, p.stderr)
    # With the same bytes but metadata changed since the upload, the draft (built from what was
    # uploaded) is not what this push would release: refused, naming the field and both values.
    p = cli_push(srv, workdir, "2.0.1", "--sign-key", ci[1], "--signer-cmd", f"/usr/bin/python3 {signer}",
                 requirements={"min_memory_mb": 4096})
    assert p.returncode != 0 and "refusing to sign" in p.stderr, (p.returncode, p.stderr)
    assert "custom.requirements.min_memory_mb (the server's nothing, this push's 4096)" in p.stderr, p.stderr
    p = cli_push(srv, workdir, "2.0.1", "--sign-key", ci[1], "--signer-cmd", f"/usr/bin/python3 {signer}")
    assert p.returncode == 0 and "Released: signed role ci version 2" in p.stdout, (p.stdout, p.stderr)
    assert "already published with these bytes: releasing it" in p.stderr, p.stderr
    assign(srv, a.device_id, "2.0.1")
    serving(a, "2.0.1")
    # The project's own verifier (no code shared with lib/) walks the delegation too.
    summary = tuf_verify.verify(srv.url, srv.admin_token)
    # 0.9.0 was signed by the server before the ceremony, which kept it in the top-level targets.
    released = {f"models/{MODEL}/{v}/v1.onnx" for v in ("0.9.0", "1.0.0", "2.0.1")}
    assert summary["delegated_roles"] == ["ci"] and set(summary["targets"]) == released, summary
    assert sorted(summary["unreleased"]) == [f"models/{MODEL}/{v}/v1.onnx" for v in ("0.9.5", "2.0.0")], summary
    # A signer that does not print its public key leaves the current version unchecked: refused.
    p = cli_push(srv, workdir, "2.0.9", "--signer-cmd", f"/usr/bin/python3 {signer} no-public")
    assert p.returncode != 0 and "must print its Ed25519 public key" in p.stderr, p.stderr

    # A compromised server hands CI a tampered draft: CI refuses to sign it, whatever is changed.
    proxy = DraftTamperer(srv.url)
    try:
        for version, edit, why in (("2.1.0", moved, "releases models/det/9.9.9/v1.onnx, not"),
                                   ("2.1.1", handed_over, "adds delegations"),
                                   ("2.1.2", no_current, "has no current version"),
                                   ("2.1.3", lambda d: d["signed"].update(expires="2999-01-01T00:00:00Z"),
                                    "expires at 2999")):
            proxy.edit = edit
            p = cli_push(srv, workdir, version, "--sign-key", ci[0], "--sign-key", ci[1], url=proxy.url)
            assert p.returncode != 0 and why in p.stderr and "refusing to sign" in p.stderr, (version, p.stderr)
    finally:
        proxy.close()
    assert srv.api("GET", "/v1/tuf/image/2.ci.json").status_code == 200
    assert srv.api("GET", "/v1/tuf/image/3.ci.json").status_code == 404

    # The compromised server: the database and every private key in it (snapshot, timestamp, and
    # the retired server targets key). Through the API, a role signed with them is refused.
    keys = online_keys(pg, db)
    assert {"targets", "snapshot", "timestamp"} <= set(keys), keys.keys()
    draft = srv.api("POST", "/v1/tuf/image/release-draft", json={"model": MODEL, "version": "2.0.0"}).json()
    path, entry = draft["path"], draft["signed"]["targets"][draft["path"]]
    forged = sign_crypto(draft["signed"], *[k for ks in keys.values() for k in ks])
    r = srv.api("POST", "/v1/tuf/image/roles/ci", json=forged)
    assert r.status_code == 400 and "threshold is 2" in r.text, r.text
    # Straight into the database, with a snapshot and timestamp that vouch for it: the agent
    # refuses the forged role and serves on.
    forge_release(pg, db, keys, "ci", path, entry)
    with pytest.raises(tuf_verify.VerifyError, match="from delegated ci keys, threshold 2"):
        tuf_verify.verify(srv.url, srv.admin_token)
    after = last_event_id(srv, a.device_id)
    assign(srv, a.device_id, "2.0.0")
    agent_refused(srv, a, after, "2.0.0", "threshold is 2")
    assert a.serving()[0] == "2.0.1"
    assert json.loads((a.data_dir / "trust" / "image" / "delegated" / "ci.json").read_text())["signed"]["version"] == 2
    # The same with the top-level targets re-signed by the server's old targets key, listing
    # another version uploaded but never released.
    assert cli_push(srv, workdir, "2.0.2").returncode == 0
    draft = srv.api("POST", "/v1/tuf/image/release-draft", json={"model": MODEL, "version": "2.0.2"}).json()
    forge_release(pg, db, keys, "targets", draft["path"], draft["signed"]["targets"][draft["path"]])
    after = last_event_id(srv, a.device_id)
    assign(srv, a.device_id, "2.0.2")
    agent_refused(srv, a, after, "2.0.2", "targets metadata has 0 valid signature(s)")
    assert a.serving()[0] == "2.0.1"
    # And CI does not sign on top of a forged current version.
    p = cli_push(srv, workdir, "3.0.0", "--sign-key", ci[0], "--sign-key", ci[1])
    assert p.returncode != 0 and "no valid signature by the keys signing here" in p.stderr, p.stderr
    assert a.stop() == []
