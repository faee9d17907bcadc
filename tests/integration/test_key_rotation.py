"""Key rotation of both TUF repositories, and recovery from a fast-forward attack (TUF 5.3.11).

The director's online key rotates like the image repository's: at once under a new director root
when the server holds the director's root keys, or pending until a director root signed offline
(GET /v1/tuf/director/root/draft, `ganglion keys sign-root`, POST /v1/tuf/director/root) lists it.
Each device's director targets are then signed anew with the new key, even for a device whose
check-in answer the server keeps in memory.

The fast-forward attack: whoever holds an online key (a copy of the database) signs metadata at a
version far above the server's, and a device accepts it; once the operator has put the database
back, the device refuses every real version as a rollback, for good. Rotating the key is the way
out: the device follows the new root, forgets what the old key vouched for, and takes the real
metadata signed by the new key. Shown here for the director's targets and for the image
repository's timestamp and snapshot, with real agents."""

import copy
import hashlib
import json
import shutil
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import tuf_verify
from ganglion_harness import (
    NO_TOKEN,
    TEST_MODELS,
    Agent,
    assert_problem,
    enroll_device,
    last_event_id,
    list_all,
    model_meta,
    new_key,
    public_hex,
    publish,
    wait_event,
    wait_for,
)

MODEL = "det"
FORWARD = 9000  # how far the attacker moves a version ahead


# --- helpers ----------------------------------------------------------------------------------
def _get(server, path, token=None):
    r = server.api("GET", path, token=token or server.admin_token)
    assert r.status_code == 200, f"GET {path} -> {r.status_code} {r.text[:300]}"
    return r.json()


def _sig_keyids(env):
    return [s["keyid"] for s in env["signatures"]]


def _valid(env, root_signed, role):
    """The number of distinct keys of root_signed's `role` with a valid signature on env."""
    msg = tuf_verify.canonical(env["signed"])
    ids = root_signed["roles"][role]["keyids"]
    ok = set()
    for s in env["signatures"]:
        if s["keyid"] not in ids:
            continue
        pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(root_signed["keys"][s["keyid"]]["keyval"]["public"]))
        try:
            pub.verify(bytes.fromhex(s["sig"]), msg)
            ok.add(s["keyid"])
        except InvalidSignature:
            pass
    return len(ok)


def _follows(new, old):
    """TUF's rule for a new root: version + 1, a threshold of the old root's and of its own root keys."""
    assert new["signed"]["version"] == old["signed"]["version"] + 1
    for by in (old["signed"], new["signed"]):
        assert _valid(new, by, "root") >= by["roles"]["root"]["threshold"], f"root {new['signed']['version']}"


def _keys(server, repo):
    return [k for k in _get(server, "/v1/keys")["items"] if k.get("repo", "image") == repo]


def _director_root_key_files(server):
    return sorted((server.data_dir / "keys").glob("director-root-*.pem"))


def _device_targets(server, token):
    return _get(server, "/v1/tuf/director/targets.json", token=token)


def _checkin(server, token, etag=None):
    headers = {"If-None-Match": etag} if etag else {}
    return server.api("POST", "/v1/agent/checkin", token=token, json={}, headers=headers)


def _assigned_device(server):
    """A device (enrolled through the API, with a device token) that should run model a 1.0.0."""
    assert publish(server, "a", b"weights").status_code == 201
    dev = enroll_device(server)
    r = server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "a", "version": "1.0.0"})
    assert r.status_code == 200, r.text
    return dev, dev.authenticate(server)


def _sql(server, text):
    return server.pg.sql(text, server.db)


def _online_key(server, repo, role):
    pem = _sql(server, f"SELECT private_pem FROM tuf_keys WHERE repo = '{repo}' AND role = '{role}' AND active"
                       " ORDER BY created_at DESC LIMIT 1")
    return load_pem_private_key(pem.encode() + b"\n", password=None)


def _body(env):
    """The bytes gangliond would store for env (compact, sorted keys)."""
    return json.dumps(env, separators=(",", ":"), sort_keys=True)


def _tuf_time(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- rotating the director's key ----------------------------------------------------------
def test_rotate_the_director_key_with_its_root_keys_here(gangliond, pg, db):
    server = gangliond()
    root1 = _get(server, "/v1/tuf/director/root.json")
    assert root1["signed"]["version"] == 1
    (old,) = root1["signed"]["roles"]["targets"]["keyids"]
    dev, token = _assigned_device(server)
    before = _device_targets(server, token)
    assert _sig_keyids(before) == [old]
    # A device holding the newest answer is answered 304 from memory.
    r = _checkin(server, token)
    assert r.status_code == 200, r.text
    etag = r.headers["ETag"]
    assert _checkin(server, token, etag).status_code == 304
    image_root = _get(server, "/v1/tuf/image/root.json")

    r = server.api("POST", "/v1/keys/rotate", json={"role": "director"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["role"] == "director" and out["root_version"] == 2 and out["pending"] is False
    new = out["keyid"]
    assert new != old

    # A new director root names the new key; it follows root 1 by TUF's rule.
    root2 = _get(server, "/v1/tuf/director/2.root.json")
    assert _get(server, "/v1/tuf/director/root.json") == root2
    _follows(root2, root1)
    assert root2["signed"]["roles"]["targets"]["keyids"] == [new]
    assert set(root2["signed"]["roles"]) == {"root", "targets", "snapshot", "timestamp"}
    assert root2["signed"]["roles"]["root"] == root1["signed"]["roles"]["root"]
    listed = {k["role"]: k for k in _keys(server, "director")}
    assert listed["targets"]["keyid"] == new
    assert root2["signed"]["keys"][new]["keyval"]["public"] == listed["targets"]["public"]
    # The image repository is not touched.
    assert _get(server, "/v1/tuf/image/root.json") == image_root

    # The device's targets are signed anew by the new key, and the check-in does not answer 304
    # from memory with the answer signed by the retired key (the notification that drops it
    # reaches the server's listener a moment after the commit).
    got = wait_for(lambda: (lambda r: r if r.status_code != 304 else None)(_checkin(server, token, etag)), 30, 0.05)
    assert got is not None, "the check-in still answers 304 (signed by the retired key) 30 s after the rotation"
    r = got
    assert r.status_code == 200, f"check-in after the rotation -> {r.status_code} {r.text[:300]}"
    ans = r.json()
    assert ans["director_root_version"] == 2
    dt = ans["director_targets"]
    assert dt["signed"]["version"] == before["signed"]["version"] + 1
    assert _sig_keyids(dt) == [new] and _valid(dt, root2["signed"], "targets") == 1
    assert dt["signed"]["targets"] == before["signed"]["targets"]
    assert _device_targets(server, token) == dt
    # Signed once: the next check-in is unchanged.
    assert _checkin(server, token, r.headers["ETag"]).status_code == 304

    audit = [e for e in list_all(server, "/v1/audit")[0] if e["action"] == "tuf.key_rotate"]
    assert [(e["object_id"], e["detail"]["role"]) for e in audit] == [(new, "director")]
    # Only admins rotate.
    op = server.make_token(["operator"])["token"]
    assert_problem(server.api("POST", "/v1/keys/rotate", token=op, json={"role": "director"}), 403)
    assert_problem(server.api("POST", "/v1/keys/rotate", token=NO_TOKEN, json={"role": "director"}), 401)
    assert _get(server, "/v1/tuf/director/root.json")["signed"]["version"] == 2


def test_director_rotation_with_the_root_keys_offline(gangliond, workdir):
    server = gangliond()
    root1 = _get(server, "/v1/tuf/director/root.json")
    (old,) = root1["signed"]["roles"]["targets"]["keyids"]
    (pem,) = _director_root_key_files(server)
    offline = workdir / "director-root.pem"
    shutil.move(pem, offline)
    root_key = load_pem_private_key(offline.read_bytes(), password=None)
    assert [k["online"] for k in _keys(server, "director") if k["role"] == "root"] == [False]
    dev, token = _assigned_device(server)
    before = _device_targets(server, token)

    r = server.api("POST", "/v1/keys/rotate", json={"role": "director"})
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["role"] == "director" and out["pending"] is True and "--repo director" in out["next"]
    pending = out["keyid"]
    # Until a root lists it, nothing changes for devices: same root, the old key signs.
    assert _get(server, "/v1/tuf/director/root.json") == root1
    assert _device_targets(server, token) == before
    assert [k["keyid"] for k in _keys(server, "director") if k["role"] == "targets"] == [old]

    draft = _get(server, "/v1/tuf/director/root/draft")
    assert draft["signatures"] == [] and draft["signed"]["version"] == 2
    assert draft["signed"]["roles"]["targets"]["keyids"] == [pending]
    assert draft["signed"]["roles"]["root"] == root1["signed"]["roles"]["root"]
    assert set(draft["signed"]["roles"]) == {"root", "targets", "snapshot", "timestamp"}
    signed = tuf_verify.sign_metadata(copy.deepcopy(draft), root_key)

    def imp(env, repo="director"):
        return server.api("POST", f"/v1/tuf/{repo}/root", json=env)

    # Refused: unsigned; signed by a stranger; tampered; a role no TUF repository has; the
    # timestamp role given the pending targets key; a targets key that is neither the current nor
    # the pending one; the image repository's draft; the director's root at the image repository.
    assert_problem(imp(draft), 400)
    assert_problem(imp(tuf_verify.sign_metadata(copy.deepcopy(draft), new_key())), 400)
    tampered = copy.deepcopy(signed)
    tampered["signed"]["expires"] = "2099-01-01T00:00:00Z"
    assert_problem(imp(tampered), 400)
    bad = copy.deepcopy(draft)
    bad["signed"]["roles"]["mirrors"] = {"keyids": [pending], "threshold": 1}
    assert_problem(imp(tuf_verify.sign_metadata(bad, root_key)), 400, "does not have")
    bad = copy.deepcopy(draft)
    bad["signed"]["roles"]["timestamp"] = {"keyids": [pending], "threshold": 1}
    assert_problem(imp(tuf_verify.sign_metadata(bad, root_key)), 400, "timestamp role's keys are neither")
    bad = copy.deepcopy(draft)
    stranger = tuf_verify.ed25519_key_object(bytes.fromhex(public_hex(new_key())))
    bad["signed"]["keys"][tuf_verify.keyid(stranger)] = stranger
    bad["signed"]["roles"]["targets"]["keyids"] = [tuf_verify.keyid(stranger)]
    assert_problem(imp(tuf_verify.sign_metadata(bad, root_key)), 400, "neither the current ones nor")
    bad = copy.deepcopy(draft)
    bad["signed"]["keys"][pending] = stranger  # the pending key id, another public key
    assert_problem(imp(tuf_verify.sign_metadata(bad, root_key)), 400)
    image_draft = _get(server, "/v1/tuf/image/root/draft")
    assert_problem(imp(tuf_verify.sign_metadata(image_draft, root_key)), 400)
    assert_problem(imp(signed, repo="image"), 400)
    assert _get(server, "/v1/tuf/director/root.json") == root1
    assert _device_targets(server, token) == before
    # Only admins.
    op = server.make_token(["operator"])["token"]
    assert_problem(server.api("GET", "/v1/tuf/director/root/draft", token=op), 403)
    assert_problem(server.api("GET", "/v1/tuf/director/root/draft", token=NO_TOKEN), 401)
    assert_problem(server.api("POST", "/v1/tuf/director/root", token=op, json=signed), 403)
    assert_problem(server.api("POST", "/v1/tuf/director/root", token=NO_TOKEN, json=signed), 401)

    r = imp(signed)
    assert r.status_code == 201, r.text
    assert r.json() == {"role": "root", "version": 2}
    root2 = _get(server, "/v1/tuf/director/root.json")
    assert root2 == signed or root2["signed"] == signed["signed"]
    _follows(root2, root1)
    assert [k["keyid"] for k in _keys(server, "director") if k["role"] == "targets"] == [pending]
    # The pending key signs from now on: the device's targets anew.
    dt = _device_targets(server, token)
    assert dt["signed"]["version"] == before["signed"]["version"] + 1
    assert _sig_keyids(dt) == [pending] and _valid(dt, root2["signed"], "targets") == 1
    assert_problem(imp(signed), 400)  # no longer current + 1
    assert [e["object_id"] for e in list_all(server, "/v1/audit")[0] if e["action"] == "tuf.root_import"] == ["2"]
    # The image repository's root is its own.
    assert _get(server, "/v1/tuf/image/root.json")["signed"]["version"] == 1


def test_cli_rotates_the_director_key_offline(gangliond, workdir):
    server = gangliond()
    (pem,) = _director_root_key_files(server)
    offline = workdir / "director-root.pem"
    shutil.move(pem, offline)
    draft, signed = workdir / "draft.json", workdir / "signed.json"

    p = server.cli("keys", "rotate", "director")
    assert p.returncode == 0, p.stderr
    assert "pending" in p.stdout and "export-root --repo director" in p.stdout, p.stdout
    p = server.cli("keys", "list")
    assert p.returncode == 0, p.stderr
    assert "REPO" in p.stdout and "director" in p.stdout, p.stdout
    assert "director root threshold: 1" in p.stdout and "image root threshold: 1" in p.stdout, p.stdout

    p = server.cli("keys", "export-root", "--repo", "director", "--out", draft)
    assert p.returncode == 0, p.stderr
    d = json.loads(draft.read_text())
    assert d["signed"]["version"] == 2 and set(d["signed"]["roles"]) == {"root", "targets", "snapshot", "timestamp"}
    p = server.cli("keys", "sign-root", "--key", offline, "--out", signed, draft, token=None)
    assert p.returncode == 0, p.stderr
    # Without --repo it goes to the image repository, which refuses it.
    p = server.cli("keys", "import-root", signed)
    assert p.returncode == 7, (p.returncode, p.stderr)
    p = server.cli("keys", "import-root", "--repo", "nowhere", signed)
    assert p.returncode == 2, (p.returncode, p.stderr)
    p = server.cli("keys", "import-root", "--repo", "director", signed)
    assert p.returncode == 0, p.stderr
    assert "director root version 2 imported" in p.stdout, p.stdout
    root = _get(server, "/v1/tuf/director/root.json")["signed"]
    assert root["version"] == 2 and root["roles"]["targets"]["keyids"] == d["signed"]["roles"]["targets"]["keyids"]

    # With the root keys back on the server, the rotation is immediate.
    shutil.move(offline, pem)
    p = server.cli("keys", "rotate", "director")
    assert p.returncode == 0, p.stderr
    assert "Root version:" in p.stdout and "3" in p.stdout, p.stdout
    assert _get(server, "/v1/tuf/director/root.json")["signed"]["version"] == 3
    p = server.cli("keys", "rotate", "root")
    assert p.returncode == 2, (p.returncode, p.stderr)


# --- recovery from a fast-forward attack, with a real agent ----------------------------------
def _model(name):
    path = TEST_MODELS / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} missing: `make check` builds it (or run `make tests/models/stamp` in the build directory)")
    return json.loads(path.read_text()), (TEST_MODELS / f"{name}.onnx").read_bytes()


def _push(server, version, like="v1", tag=None):
    """Publishes det/version with the function of `like` (other bytes when tag is given)."""
    meta, data = _model(like)
    if tag:
        import onnx  # only the agent tests need it

        m = onnx.load_from_string(data)
        m.doc_string = f"ganglion key rotation test {tag}"
        data = m.SerializeToString()
    r = publish(server, MODEL, data, meta=dict(meta, version=version))
    assert r.status_code == 201, f"publish {version} -> {r.status_code} {r.text[:300]}"


def _assign(server, device_id, version):
    r = server.api("PUT", f"/v1/devices/{device_id}/desired", json={"model": MODEL, "version": version})
    assert r.status_code == 200, f"PUT desired {version} -> {r.status_code} {r.text[:300]}"


def _serving(agent, version, timeout=30):
    ok = wait_for(lambda: (agent.serving() or ("",))[0] == version, timeout, 0.1)
    assert ok, f"the agent does not serve {version} within {timeout} s (serves {agent.serving()})\n{agent.log()[-4000:]}"


def _trusted(agent, repo, role):
    return json.loads((agent.data_dir / "trust" / repo / f"{role}.json").read_text())


@pytest.fixture
def fleet(gangliond, pg, db, workdir):
    """A gangliond telling agents to check in every second, det 1.0.0 (v1) and 2.0.0 (v2)
    published, and one agent enrolled, running and serving 1.0.0."""
    _model("v1")
    server = gangliond(extra_args=["--agent-poll-interval", "1s"])
    server.pg, server.db = pg, db
    _push(server, "1.0.0", "v1")
    _push(server, "2.0.0", "v2")
    agent = Agent(workdir / "ag", server.url)
    try:
        agent.enroll(server.make_enroll_token()["token"])
        agent.start()
        _assign(server, agent.device_id, "1.0.0")
        _serving(agent, "1.0.0")
        yield server, agent
    finally:
        problems = agent.stop(check=False)
        print(f"\n--- agent log ({agent.logfile}) ---\n{agent.log()[-8000:]}")
        assert not problems, problems


def test_device_recovers_from_a_director_fast_forward(fleet):
    server, agent = fleet
    dev = agent.device_id
    top = json.loads(_sql(server, "SELECT json_build_object('version', version, 'model', model, 'model_version',"
                                  f" model_version, 'body', body) FROM director_targets WHERE device_id = '{dev}'"
                                  " ORDER BY version DESC LIMIT 1"))
    env = json.loads(top["body"])
    (old,) = _sig_keyids(env)

    # The attacker, with the director's online keys from a copy of the database, signs the
    # device's targets (what it runs), a snapshot and a timestamp over them FORWARD versions
    # ahead, and serves them; the device takes them, as it must: they are validly signed.
    now = datetime.now(timezone.utc)
    v = top["version"] + FORWARD
    exp = _tuf_time(now + timedelta(days=1))
    forged = dict(env["signed"], version=v, expires=exp, custom={"device_id": dev, "issued_at": _tuf_time(now)})
    forged_env = tuf_verify.sign_metadata({"signed": forged, "signatures": []}, _online_key(server, "director", "targets"))
    assert _sig_keyids(forged_env) == [old], "not the director's online key"
    chain = {"targets": _body(forged_env)}
    for role, listed in (("snapshot", "targets"), ("timestamp", "snapshot")):
        raw = chain[listed].encode()
        signed = {"_type": role, "spec_version": "1.0.31", "version": v, "expires": exp,
                  "meta": {f"{listed}.json": {"version": v, "length": len(raw),
                                              "hashes": {"sha256": hashlib.sha256(raw).hexdigest()}}}}
        chain[role] = _body(tuf_verify.sign_metadata({"signed": signed, "signatures": []},
                                                     _online_key(server, "director", role)))
    _sql(server, "INSERT INTO director_targets (device_id, version, body, snapshot_body, timestamp_body, model,"
                 f" model_version, expires_at, assigned_at) VALUES ('{dev}', {v}, $gn${chain['targets']}$gn$,"
                 f" $gn${chain['snapshot']}$gn$, $gn${chain['timestamp']}$gn$, '{top['model']}',"
                 f" '{top['model_version']}', now() + interval '1 day',"
                 f" (SELECT assigned_at FROM device_desired WHERE device_id = '{dev}'))")
    # The timestamp is stored last of the three.
    taken = wait_for(lambda: _trusted(agent, "director", "timestamp")["signed"]["version"] == v, 60, 0.1)
    assert taken, f"the device did not take the forged metadata\n{agent.log()[-3000:]}"
    assert _trusted(agent, "director", "targets")["signed"]["version"] == v

    # The operator puts the database back (the forged row is gone) and assigns 2.0.0: the
    # server signs its next version, far below the device's, which refuses it as a rollback.
    _sql(server, f"DELETE FROM director_targets WHERE device_id = '{dev}' AND version > {top['version']}")
    after = last_event_id(server, dev)
    _assign(server, dev, "2.0.0")
    wait_event(server, dev, lambda o: o.get("state") == "failed" and "rollback" in (o.get("detail") or ""),
               after_id=after, what="a refusal of the real director metadata as a rollback")
    assert agent.serving()[0] == "1.0.0"
    assert _trusted(agent, "director", "targets")["signed"]["version"] == v

    # The way out: rotate the director's keys that signed ahead (targets, and timestamp, whose
    # rotation restarts the chain from it). The device follows the new director roots, drops what
    # the old keys vouched for, and takes the real metadata, signed by the new keys.
    keys = {}
    for role in ("director", "director-timestamp"):
        r = server.api("POST", "/v1/keys/rotate", json={"role": role})
        assert r.status_code == 200, f"rotating {role} -> {r.status_code} {r.text[:300]}"
        keys[role] = r.json()["keyid"]
    _serving(agent, "2.0.0")
    assert _trusted(agent, "director", "root")["signed"]["version"] == 3
    trusted = _trusted(agent, "director", "targets")
    assert trusted["signed"]["version"] < v
    assert _sig_keyids(trusted) == [keys["director"]]
    assert _sig_keyids(_trusted(agent, "director", "timestamp")) == [keys["director-timestamp"]]
    # And it keeps following the real versions: a new assignment arrives as usual.
    _assign(server, dev, "1.0.0")
    _serving(agent, "1.0.0")


def test_device_recovers_from_an_image_fast_forward(fleet):
    server, agent = fleet
    dev = agent.device_id
    ts = _get(server, "/v1/tuf/image/timestamp.json")
    sn = _get(server, f"/v1/tuf/image/{ts['signed']['meta']['snapshot.json']['version']}.snapshot.json")
    old_ts_key = _sig_keyids(ts)

    # The attacker, with the snapshot and timestamp keys from a copy of the database, signs a
    # snapshot and a timestamp FORWARD versions ahead (over the real targets) and serves them.
    exp = _tuf_time(datetime.now(timezone.utc) + timedelta(days=1))
    snap = dict(sn["signed"], version=sn["signed"]["version"] + FORWARD, expires=exp)
    snap_body = _body(tuf_verify.sign_metadata({"signed": snap, "signatures": []},
                                               _online_key(server, "image", "snapshot")))
    stamp = dict(ts["signed"], version=ts["signed"]["version"] + FORWARD, expires=exp,
                 meta={"snapshot.json": {"version": snap["version"], "length": len(snap_body),
                                         "hashes": {"sha256": hashlib.sha256(snap_body.encode()).hexdigest()}}})
    stamp_env = tuf_verify.sign_metadata({"signed": stamp, "signatures": []}, _online_key(server, "image", "timestamp"))
    assert _sig_keyids(stamp_env) == old_ts_key, "not the timestamp's online key"
    _sql(server, "INSERT INTO tuf_metadata (repo, role, version, body, expires_at) VALUES"
                 f" ('image', 'snapshot', {snap['version']}, $gn${snap_body}$gn$, now() + interval '1 day'),"
                 f" ('image', 'timestamp', {stamp['version']}, $gn${_body(stamp_env)}$gn$, now() + interval '1 day')")
    _assign(server, dev, "2.0.0")
    _serving(agent, "2.0.0")
    assert _trusted(agent, "image", "timestamp")["signed"]["version"] == stamp["version"]

    # The operator puts the database back; a new release is signed at the server's own next
    # versions, which the device refuses as a rollback.
    _sql(server, f"DELETE FROM tuf_metadata WHERE repo = 'image' AND ((role = 'snapshot' AND version >="
                 f" {snap['version']}) OR (role = 'timestamp' AND version >= {stamp['version']}))")
    _push(server, "3.0.0", "v1", tag="3")
    after = last_event_id(server, dev)
    _assign(server, dev, "3.0.0")
    wait_event(server, dev, lambda o: o.get("state") == "failed" and "rollback" in (o.get("detail") or ""),
               after_id=after, what="a refusal of the real timestamp as a rollback")
    assert agent.serving()[0] == "2.0.0"

    # The way out: rotate the timestamp and snapshot keys. The device follows the new roots,
    # forgets the timestamp and snapshot the old keys vouched for, and installs 3.0.0.
    for role in ("timestamp", "snapshot"):
        r = server.api("POST", "/v1/keys/rotate", json={"role": role})
        assert r.status_code == 200, f"rotating {role} -> {r.status_code} {r.text[:300]}"
    _serving(agent, "3.0.0")
    # And it keeps following the real versions (the next update fetches the image repository
    # anew, so by then it has followed both new roots).
    _push(server, "4.0.0", "v2", tag="4")
    _assign(server, dev, "4.0.0")
    _serving(agent, "4.0.0")
    assert _trusted(agent, "image", "root")["signed"]["version"] == 3
    trusted = _trusted(agent, "image", "timestamp")
    assert trusted["signed"]["version"] < stamp["version"]
    assert _sig_keyids(trusted) == _sig_keyids(_get(server, "/v1/tuf/image/timestamp.json")) != old_ts_key


# --- a director from before it was a full TUF repository ----------------------------------------
def _two_role_director(server, root1, key_file):
    """Puts the director back as releases before the full repository left it: root 1 lists only
    root and targets (signed by its root key), there are no director snapshot or timestamp keys,
    and no device's metadata has a snapshot or timestamp. Returns that root. The server is down."""
    s = copy.deepcopy(root1["signed"])
    for role in ("snapshot", "timestamp"):
        for k in s["roles"].pop(role)["keyids"]:
            del s["keys"][k]
    env = tuf_verify.sign_metadata({"signed": s, "signatures": []},
                                   load_pem_private_key(key_file.read_bytes(), password=None))
    _sql(server, f"UPDATE tuf_metadata SET body = $gn${_body(env)}$gn$ WHERE repo = 'director' AND role = 'root'")
    _sql(server, "DELETE FROM tuf_keys WHERE repo = 'director' AND role IN ('snapshot', 'timestamp')")
    _sql(server, "UPDATE director_targets SET snapshot_body = NULL, timestamp_body = NULL")
    return env


@pytest.mark.parametrize("root_keys", ["here", "offline"])
def test_director_gets_4_roles(fleet, workdir, root_keys):
    """An upgrade from a director whose root lists only root and targets, with an agent that
    trusts that root. With the root key on the server, the start-up signs root 2 with online
    snapshot and timestamp keys, and the device follows it and then verifies its director as a
    four-role repository. With the root key offline, the new keys wait (the draft lists them),
    devices keep updating from targets alone, and importing the signed draft completes it."""
    server, agent = fleet
    root1 = _get(server, "/v1/tuf/director/1.root.json")
    (key_file,) = _director_root_key_files(server)
    agent.stop()
    server.stop()
    old = _two_role_director(server, root1, key_file)
    trust = agent.data_dir / "trust" / "director"
    (trust / "root.json").write_text(_body(old))
    for role in ("timestamp", "snapshot"):
        (trust / f"{role}.json").unlink(missing_ok=True)
    offline = workdir / "director-root.pem"
    if root_keys == "offline":
        shutil.move(key_file, offline)
    server.start()
    agent.start()

    if root_keys == "offline":
        assert _get(server, "/v1/tuf/director/root.json") == old
        _assign(server, agent.device_id, "2.0.0")
        _serving(agent, "2.0.0")
        assert not (trust / "timestamp.json").exists()
        draft = _get(server, "/v1/tuf/director/root/draft")
        assert set(draft["signed"]["roles"]) == {"root", "targets", "snapshot", "timestamp"}
        active = {k["keyid"] for k in _keys(server, "director")}
        assert not {draft["signed"]["roles"][r]["keyids"][0] for r in ("snapshot", "timestamp")} & active
        signed = tuf_verify.sign_metadata(draft, load_pem_private_key(offline.read_bytes(), password=None))
        r = server.api("POST", "/v1/tuf/director/root", json=signed)
        assert r.status_code == 201, r.text
    root2 = _get(server, "/v1/tuf/director/root.json")
    assert root2["signed"]["version"] == 2 and set(root2["signed"]["roles"]) == {"root", "targets", "snapshot",
                                                                                "timestamp"}
    _follows(root2, old)
    _assign(server, agent.device_id, "1.0.0" if root_keys == "offline" else "2.0.0")
    _serving(agent, "1.0.0" if root_keys == "offline" else "2.0.0")
    assert wait_for(lambda: (trust / "timestamp.json").exists(), 60, 0.1), agent.log()[-3000:]
    assert _trusted(agent, "director", "root")["signed"]["version"] == 2
    ts, sn, tg = (_trusted(agent, "director", r) for r in ("timestamp", "snapshot", "targets"))
    assert ts["signed"]["meta"]["snapshot.json"]["version"] == sn["signed"]["version"]
    assert sn["signed"]["meta"]["targets.json"]["version"] == tg["signed"]["version"]
    assert _sig_keyids(ts) == root2["signed"]["roles"]["timestamp"]["keyids"]
