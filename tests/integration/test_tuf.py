"""The TUF image repository, checked by an independent verifier (tuf_verify.py: securesystemslib
and python3-cryptography, no code shared with lib/): metadata after publishes, online key
rotation, the offline root flow, thresholds, timestamp re-signing, and immutable versions."""

import copy
import hashlib
import datetime
import json
import shutil
import subprocess
import threading
import time

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import tuf_verify
from ganglion_harness import (
    NO_TOKEN,
    TEST_DIR,
    assert_problem,
    enroll_device,
    list_all,
    model_meta,
    new_key,
    public_hex,
    publish,
)

ONLINE_ROLES = ("targets", "snapshot", "timestamp")


def _verify(server, token=None):
    return tuf_verify.verify(server.url, token or server.admin_token)


def _meta(server, f, token=None):
    r = server.api("GET", f"/v1/tuf/image/{f}", token=token or server.admin_token)
    assert r.status_code == 200, f"GET {f} -> {r.status_code} {r.text[:300]}"
    return r.json()


def _root_key_file(server, keyid):
    return server.data_dir / "keys" / f"root-{keyid}.pem"


def _root_keys(server):
    """The root private keys this server holds, as {keyid: Ed25519PrivateKey}."""
    root = _meta(server, "root.json")["signed"]
    return {k: load_pem_private_key(_root_key_file(server, k).read_bytes(), password=None)
            for k in root["roles"]["root"]["keyids"] if _root_key_file(server, k).exists()}


def _image_keys(server):
    """GET /v1/keys, the image repository's keys only (the director has its own)."""
    r = server.api("GET", "/v1/keys")
    assert r.status_code == 200, r.text
    return [k for k in r.json()["items"] if k.get("repo", "image") == "image"]


def _draft(server):
    r = server.api("GET", "/v1/tuf/image/root/draft")
    assert r.status_code == 200, r.text
    return r.json()


def _import(server, env):
    return server.api("POST", "/v1/tuf/image/root", json=env)


def test_metadata_verifies_after_publishes(server):
    s = _verify(server)
    assert (s["root_version"], s["targets"], s["model_versions"]) == (1, [], 0)
    root = _meta(server, "root.json")["signed"]
    assert root["roles"]["root"]["threshold"] == 1 and len(root["keys"]) == 4

    published = []
    for name, version, meta in [("det", "1.0.0", None), ("det", "1.1.0", {"version": "1.1.0", "no_self_test": True}),
                                ("cls", "0.1.0-rc.1", model_meta("0.1.0-rc.1", filename="c.tflite",
                                                                 format="tflite", reference_profile=None))]:
        r = publish(server, name, f"{name}-{version}".encode() * 100, meta=meta or model_meta(version))
        assert r.status_code == 201, r.text
        published.append(r.json()["target"])
        before = s
        s = _verify(server)
        assert s["targets"] == sorted(published)
        assert s["targets_version"] == before["targets_version"] + 1
        assert s["snapshot_version"] > before["snapshot_version"]
        assert s["timestamp_version"] > before["timestamp_version"]
        assert s["root_version"] == 1

    targets = _meta(server, "targets.json")["signed"]["targets"]
    c = targets["models/cls/0.1.0-rc.1/c.tflite"]["custom"]
    assert c["reference_profile_sha256"] is None and c["format"] == "tflite" and c["model"] == "cls"
    assert targets["models/det/1.1.0/model.bin"]["custom"]["sample_sha256"] is None

    # As a command, with a read-only token; a bad token fails it.
    read = server.make_token(["read"])["token"]
    cli = ["/usr/bin/python3", str(TEST_DIR / "tuf_verify.py")]  # Debian's modules (PITFALLS.md)
    p = subprocess.run(cli + [server.url, read], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["targets"] == sorted(published)
    p = subprocess.run(cli + [server.url, "gna_" + "0" * 40], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "401" in p.stderr


def test_verifier_catches_tampering(server, monkeypatch):
    """The verifier must fail on what it exists to catch (a test that cannot fail is a defect)."""
    assert publish(server, "t", b"weights").status_code == 201
    _verify(server)
    real_get = tuf_verify.Verifier.get

    def tampered(rewrite):
        def get(self, path, method="GET", token=None):
            body, headers = real_get(self, path, method, token)
            return rewrite(path, body), headers
        return get

    def edit_json(match, fn):
        def rewrite(path, body):
            if not path.endswith(match):
                return body
            doc = json.loads(body)
            fn(doc)
            return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        return rewrite

    def flip_sig(doc):
        s = doc["signatures"][0]["sig"]
        doc["signatures"][0]["sig"] = ("0" if s[0] != "0" else "1") + s[1:]

    def grow_target(doc):
        next(iter(doc["signed"]["targets"].values()))["length"] += 1

    cases = [
        (edit_json("targets.json", flip_sig), "does not verify"),
        (edit_json("targets.json", grow_target), "valid signature"),
        (edit_json("1.root.json", lambda d: d["signed"].update(version=1, expires="2000-01-01T00:00:00Z")),
         "valid signature"),
        (edit_json("timestamp.json", lambda d: d["signed"].update(spec_version="2.0.0")), "spec_version"),
        (lambda p, b: b + b" " if p.endswith(".snapshot.json") else b, "sha256"),
        (lambda p, b: b.replace(b"0.1", b"0.10") if p.endswith("/sample") else b, "sample_sha256"),
        (lambda p, b: b"x" + b[1:] if p.startswith("/v1/artifacts/") else b, "/v1/artifacts/sha256/"),
        (lambda p, b: b[:-1] if p.startswith("/v1/tuf/image/targets/") else b, "/v1/tuf/image/targets/models/t/"),
    ]
    for rewrite, expect in cases:
        monkeypatch.setattr(tuf_verify.Verifier, "get", tampered(rewrite))
        with pytest.raises(tuf_verify.VerifyError) as e:
            tuf_verify.verify(server.url, server.admin_token)
        assert expect in str(e.value), str(e.value)
    monkeypatch.setattr(tuf_verify.Verifier, "get", real_get)
    # A clock past the timestamp's expiry fails too.
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
    with pytest.raises(tuf_verify.VerifyError, match="expired"):
        tuf_verify.verify(server.url, server.admin_token, now=later)


def test_rotate_each_online_role(server):
    assert publish(server, "rot", b"w1").status_code == 201
    s = _verify(server)
    old_targets = {v: _meta(server, f"{v}.targets.json") for v in range(1, s["targets_version"] + 1)}
    root_version = 1
    for role in ONLINE_ROLES:
        prev = s["keyids"]
        old_keyids = prev[role]
        r = server.api("POST", "/v1/keys/rotate", json={"role": role})
        assert r.status_code == 200, r.text
        out = r.json()
        root_version += 1
        assert out["role"] == role and out["root_version"] == root_version
        s = _verify(server)
        assert s["root_version"] == root_version
        assert s["keyids"][role] == [out["keyid"]] and out["keyid"] not in old_keyids
        assert all(s["keyids"][other] == prev[other] for other in prev if other != role)
        # The role's current metadata is signed by the new key only.
        f = "timestamp.json" if role == "timestamp" else f"{role}.json"
        assert [x["keyid"] for x in _meta(server, f)["signatures"]] == [out["keyid"]]
        keys = _image_keys(server)
        assert [k["keyid"] for k in keys if k["role"] == role] == [out["keyid"]]
        # Publishing still works and verifies under the new key.
        assert publish(server, "rot", role.encode(), meta=model_meta(f"1.{root_version}.0")).status_code == 201
        s = _verify(server)

    # Earlier files are unchanged; the whole root chain 1..4 verified above.
    for v, doc in old_targets.items():
        assert _meta(server, f"{v}.targets.json") == doc
    assert [e["detail"]["role"] for e in list_all(server, "/v1/audit")[0] if e["action"] == "tuf.key_rotate"] == \
        list(reversed(ONLINE_ROLES))

    for bad in ({"role": "root"}, {"role": "nobody"}, {}, {"role": "targets", "x": 1}):
        assert_problem(server.api("POST", "/v1/keys/rotate", json=bad), 400)
    assert _verify(server)["root_version"] == root_version


def test_offline_root_flow(server):
    assert publish(server, "off", b"w").status_code == 201
    current = _meta(server, "root.json")
    draft = _draft(server)
    assert draft["signatures"] == []
    d = draft["signed"]
    assert d["version"] == 2 and d["_type"] == "root"
    assert d["keys"] == current["signed"]["keys"] and d["roles"] == current["signed"]["roles"]
    keys = _root_keys(server)
    assert len(keys) == 1
    signed = tuf_verify.sign_metadata(copy.deepcopy(draft), next(iter(keys.values())))

    # Refused: unsigned, signed by a stranger, tampered after signing, skipping a version,
    # expired, or changing the online keys.
    assert_problem(_import(server, draft), 400)
    assert_problem(_import(server, tuf_verify.sign_metadata(copy.deepcopy(draft), new_key())), 400)
    tampered = copy.deepcopy(signed)
    tampered["signed"]["expires"] = "2099-01-01T00:00:00Z"
    assert_problem(_import(server, tampered), 400)
    tampered = copy.deepcopy(signed)
    tampered["signatures"][0]["sig"] = "00" * 64
    assert_problem(_import(server, tampered), 400)
    for change in ({"version": 3}, {"expires": "2001-01-01T00:00:00Z"}, {"_type": "targets"}):
        bad = copy.deepcopy(draft)
        bad["signed"].update(change)
        assert_problem(_import(server, tuf_verify.sign_metadata(bad, next(iter(keys.values())))), 400)
    bad = copy.deepcopy(draft)
    stranger = tuf_verify.ed25519_key_object(bytes.fromhex(public_hex(new_key())))
    sid = tuf_verify.keyid(stranger)
    bad["signed"]["keys"][sid] = stranger
    bad["signed"]["roles"]["targets"]["keyids"] = [sid]
    assert_problem(_import(server, tuf_verify.sign_metadata(bad, next(iter(keys.values())))), 400)
    assert_problem(server.api("POST", "/v1/tuf/image/root", json={"signed": d}), 400)
    assert _verify(server)["root_version"] == 1

    r = _import(server, signed)
    assert r.status_code == 201, r.text
    assert r.json() == {"role": "root", "version": 2}
    s = _verify(server)
    assert s["root_version"] == 2
    assert _meta(server, "2.root.json")["signed"] == d
    # The same root again is no longer current+1.
    assert_problem(_import(server, signed), 400)
    assert [e["object_id"] for e in list_all(server, "/v1/audit")[0] if e["action"] == "tuf.root_import"] == ["2"]
    # Only admin.
    ci = server.make_token(["ci"])["token"]
    assert_problem(server.api("POST", "/v1/tuf/image/root", token=ci, json=signed), 403)
    assert_problem(server.api("POST", "/v1/tuf/image/root", token=NO_TOKEN, json=signed), 401)


def test_threshold_two_needs_two_distinct_keys(gangliond):
    server = gangliond(extra_args=["--tuf-root-keys", "2", "--tuf-root-threshold", "2"])
    s = _verify(server)
    root = _meta(server, "1.root.json")
    assert root["signed"]["roles"]["root"]["threshold"] == 2
    assert len(root["signed"]["roles"]["root"]["keyids"]) == 2 and len(root["signatures"]) == 2
    keys = _root_keys(server)
    assert len(keys) == 2
    (k1, key1), (k2, key2) = sorted(keys.items())

    draft = _draft(server)
    one = tuf_verify.sign_metadata(copy.deepcopy(draft), key1)
    assert_problem(_import(server, one), 400)
    # The same key's signature twice does not make two.
    twice = copy.deepcopy(one)
    twice["signatures"].append(dict(one["signatures"][0]))
    assert_problem(_import(server, twice), 400)
    assert _verify(server)["root_version"] == 1

    both = tuf_verify.sign_metadata(copy.deepcopy(one), key2)
    r = _import(server, both)
    assert r.status_code == 201, r.text
    assert _verify(server)["root_version"] == 2
    # The server holds both keys, so online rotation signs the new root itself.
    r = server.api("POST", "/v1/keys/rotate", json={"role": "targets"})
    assert r.status_code == 200, r.text
    assert len(_meta(server, "3.root.json")["signatures"]) == 2
    assert _verify(server)["root_version"] == 3


def test_root_key_rotation_offline(server):
    """A new root key: the next root names it, signed by the old root key and the new one. The
    server then holds no root key it needs, so online rotation asks for the offline flow."""
    old = next(iter(_root_keys(server).values()))
    new = new_key()
    new_obj = tuf_verify.ed25519_key_object(bytes.fromhex(public_hex(new)))
    new_id = tuf_verify.keyid(new_obj)
    draft = _draft(server)
    old_id = draft["signed"]["roles"]["root"]["keyids"][0]
    draft["signed"]["keys"][new_id] = new_obj
    del draft["signed"]["keys"][old_id]
    draft["signed"]["roles"]["root"]["keyids"] = [new_id]
    # Only the new key, or only the old one: not enough.
    assert_problem(_import(server, tuf_verify.sign_metadata(copy.deepcopy(draft), new)), 400)
    assert_problem(_import(server, tuf_verify.sign_metadata(copy.deepcopy(draft), old)), 400)
    both = tuf_verify.sign_metadata(tuf_verify.sign_metadata(draft, old), new)
    r = _import(server, both)
    assert r.status_code == 201, r.text
    s = _verify(server)
    assert s["root_version"] == 2 and s["keyids"]["root"] == [new_id]
    keys = _image_keys(server)
    assert [(k["keyid"], k["online"]) for k in keys if k["role"] == "root"] == [(new_id, False)]

    r = server.api("POST", "/v1/keys/rotate", json={"role": "timestamp"})
    assert r.status_code == 202 and r.json()["pending"] is True, r.text
    nxt = _draft(server)
    assert nxt["signed"]["roles"]["timestamp"]["keyids"] == [r.json()["keyid"]]
    assert list(nxt["signed"]["keys"]).count(old_id) == 0
    assert_problem(_import(server, tuf_verify.sign_metadata(copy.deepcopy(nxt), old)), 400)
    assert _import(server, tuf_verify.sign_metadata(nxt, new)).status_code == 201
    assert _verify(server)["root_version"] == 3


BREAKING_ROOTS = {
    "online role threshold above its keys": lambda d: d["roles"]["targets"].update(threshold=2),
    "no spec_version": lambda d: d.pop("spec_version"),
    "spec_version 2": lambda d: d.update(spec_version="2.0.0"),
    "consistent_snapshot false": lambda d: d.update(consistent_snapshot=False),
}


@pytest.mark.parametrize("case", list(BREAKING_ROOTS))
def test_import_refuses_a_root_that_breaks_the_repository(server, case):
    key = next(iter(_root_keys(server).values()))
    draft = _draft(server)
    BREAKING_ROOTS[case](draft["signed"])
    r = _import(server, tuf_verify.sign_metadata(draft, key))
    assert r.status_code == 400, f"accepted ({r.status_code} {r.text[:200]}) a root with {case}"


def test_concurrent_publishes_all_become_targets(server):
    results = {}

    def go(i):
        results[i] = publish(server, f"m{i % 3}", f"c{i}".encode() * 1000, meta=model_meta(f"1.0.{i}"))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r.status_code for r in results.values()) == [201] * 8, [r.text[:200] for r in results.values()]
    s = _verify(server)
    assert s["targets"] == sorted(f"models/m{i % 3}/1.0.{i}/model.onnx" for i in range(8))
    assert s["targets_version"] == 9


def test_keys_list_shows_the_root_threshold(server):
    assert [k.get("threshold") for k in _image_keys(server) if k["role"] == "root"] == [1]


def test_keys_list(server):
    items = _image_keys(server)
    root = _meta(server, "root.json")["signed"]
    assert sorted(k["role"] for k in items) == ["root", "snapshot", "targets", "timestamp"]
    for k in items:
        assert k["keyid"] in root["roles"][k["role"]]["keyids"]
        assert root["keys"][k["keyid"]]["keyval"]["public"] == k["public"]
        assert k["online"] is True


def test_rotation_without_the_root_key_waits_for_an_offline_root(server, workdir):
    (keyid,) = _meta(server, "root.json")["signed"]["roles"]["root"]["keyids"]
    offline = workdir / "offline-root.pem"
    shutil.move(_root_key_file(server, keyid), offline)
    before = _image_keys(server)
    assert [k["online"] for k in before if k["role"] == "root"] == [False]
    old_targets = _meta(server, "root.json")["signed"]["roles"]["targets"]["keyids"]

    r = server.api("POST", "/v1/keys/rotate", json={"role": "targets"})
    assert r.status_code == 202, r.text
    assert r.json()["pending"] is True and "offline" in r.json()["next"]
    pending = r.json()["keyid"]
    # Until a root lists it, nothing changes for clients: same keys, same root, old key signs.
    assert _image_keys(server) == before
    assert _verify(server)["root_version"] == 1
    assert publish(server, "after", b"w").status_code == 201
    assert _verify(server)["keyids"]["targets"] == old_targets

    # The draft lists the pending key; the offline holder signs it; the server switches keys.
    draft = _draft(server)
    assert draft["signed"]["roles"]["targets"]["keyids"] == [pending]
    key = load_pem_private_key(offline.read_bytes(), password=None)
    r = _import(server, tuf_verify.sign_metadata(draft, key))
    assert r.status_code == 201, r.text
    s = _verify(server)
    assert s["root_version"] == 2 and s["keyids"]["targets"] == [pending]
    assert publish(server, "after-rotation", b"v").status_code == 201
    assert "models/after-rotation/1.0.0/model.onnx" in _verify(server)["targets"]


@pytest.mark.slow
def test_timestamp_is_re_signed_before_it_expires(gangliond):
    """A 16 s timestamp is re-signed once less than half of it is left (housekeeping every
    second): 8 s of slack, so a loaded machine does not make it serve an expired one. Watched
    until it has been re-signed; the deadline only bounds a broken run."""
    server = gangliond(extra_args=["--tuf-timestamp-expiry", "16s", "--housekeeping-interval", "1s"])
    first = _meta(server, "timestamp.json")
    v0 = first["signed"]["version"]
    seen = {}
    deadline = time.monotonic() + 90
    while not [v for v in seen if v > v0]:
        assert time.monotonic() < deadline, f"timestamp not re-signed in 90 s: {sorted(seen)}"
        ts = _meta(server, "timestamp.json")
        exp = tuf_verify.parse_time(ts["signed"]["expires"])
        assert exp > datetime.datetime.now(datetime.timezone.utc), f"served an expired timestamp: {ts['signed']}"
        v = ts["signed"]["version"]
        assert v >= max(seen, default=v0), "timestamp version went back"
        assert seen.setdefault(v, ts) == ts, f"timestamp version {v} changed content"
        time.sleep(0.2)  # the polling interval, not a wait for something to happen
    latest = _meta(server, "timestamp.json")["signed"]
    assert latest["version"] > v0
    # Only the timestamp moved: it names the same snapshot.
    assert latest["meta"] == first["signed"]["meta"]
    _verify(server)


def test_versioned_files_never_change(server):
    assert publish(server, "imm", b"1").status_code == 201
    s = _verify(server)
    names = ["1.root.json", f"{s['targets_version']}.targets.json", f"{s['snapshot_version']}.snapshot.json",
             "1.targets.json", "1.snapshot.json"]
    first = {}
    for n in names:
        r = server.api("GET", f"/v1/tuf/image/{n}")
        assert r.status_code == 200, n
        assert "immutable" in r.headers.get("Cache-Control", ""), (n, r.headers.get("Cache-Control"))
        first[n] = r.content
    for n in ("root.json", "timestamp.json", "targets.json", "snapshot.json"):
        assert "no-cache" in server.api("GET", f"/v1/tuf/image/{n}").headers.get("Cache-Control", ""), n

    # Time passes; more publishes, rotations and a new root.
    assert publish(server, "imm", b"2", meta=model_meta("1.0.1")).status_code == 201
    for role in ONLINE_ROLES:
        assert server.api("POST", "/v1/keys/rotate", json={"role": role}).status_code == 200
    key = next(iter(_root_keys(server).values()))
    assert _import(server, tuf_verify.sign_metadata(_draft(server), key)).status_code == 201
    s = _verify(server)
    assert s["root_version"] == 5
    for n in names:
        assert server.api("GET", f"/v1/tuf/image/{n}").content == first[n], f"{n} changed"

    for bad in ("0.root.json", "1.timestamp.json", "foo.json", "root.json.bak", "-1.root.json", "01.root.json",
                "99.targets.json", "6.root.json", "root", "1.root.json/x"):
        assert server.api("GET", f"/v1/tuf/image/{bad}").status_code == 404, bad


def test_cli_keys_sign_root_then_import(server, workdir):
    (keyid,) = _meta(server, "root.json")["signed"]["roles"]["root"]["keyids"]
    pem = _root_key_file(server, keyid)
    draft, signed = workdir / "draft.json", workdir / "signed.json"

    p = server.cli("keys", "export-root", "--out", draft)
    assert p.returncode == 0, p.stderr
    assert json.loads(draft.read_text())["signed"]["version"] == 2
    p = server.cli("keys", "sign-root", "--key", pem, "--out", signed, draft, token=None)
    assert p.returncode == 0, p.stderr
    env = json.loads(signed.read_text())
    assert [s["keyid"] for s in env["signatures"]] == [keyid]
    # The CLI's signature checks out independently (not only by the server's own code).
    v = tuf_verify.Verifier(server.url, server.admin_token)
    assert v.count_valid("cli", env, env["signed"]["keys"], [keyid]) == 1
    # Signing again with the same key replaces its signature rather than adding one.
    p = server.cli("keys", "sign-root", "--key", pem, "--out", signed, signed, token=None)
    assert p.returncode == 0, p.stderr
    assert len(json.loads(signed.read_text())["signatures"]) == 1

    p = server.cli("keys", "import-root", signed)
    assert p.returncode == 0, p.stderr
    assert _verify(server)["root_version"] == 2
    p = server.cli("keys", "import-root", signed)
    assert p.returncode != 0

    p = server.cli("keys", "rotate", "snapshot", output="json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["root_version"] == 3
    listed = json.loads(server.cli("keys", "list", output="json").stdout)
    items = listed["items"] if isinstance(listed, dict) else listed
    assert sorted(k["role"] for k in items if k.get("repo", "image") == "image") == \
        ["root", "snapshot", "targets", "timestamp"]
    assert _verify(server)["root_version"] == 3


# --- the director, checked by the same independent verifier ------------------------------------
def test_director_repository_verifies_independently(server, monkeypatch):
    """The agent verifies the director with lib/tufclient.c, the signer's own library; here
    tuf_verify.py (securesystemslib and python3-cryptography) checks the director's root chain
    and a device's targets: threshold, freshness, device id, and the image repository's length
    and hash for every target. Its refusals are checked too, so it can fail."""
    for v in ("1.0.0", "1.1.0"):
        assert publish(server, "det", f"det-{v}".encode() * 50, meta=model_meta(v)).status_code == 201
    dev = enroll_device(server)
    other = enroll_device(server)
    tok = dev.authenticate(server)
    assert server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "1.0.0"}).status_code == 200
    s = tuf_verify.verify_director(server.url, server.admin_token, tok, dev.id)
    assert s["root_version"] == 1 and s["targets"] == ["models/det/1.0.0/model.onnx"], s
    # A full TUF repository per device: four roles, a timestamp and a snapshot over its targets.
    assert sorted(s["keyids"]) == ["root", "snapshot", "targets", "timestamp"], s
    assert s["snapshot_version"] == s["timestamp_version"] == s["targets_version"], s
    first = s["targets_version"]
    assert server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "1.1.0"}).status_code == 200
    s = tuf_verify.verify_director(server.url, server.admin_token, tok, dev.id)
    assert s["targets"] == ["models/det/1.1.0/model.onnx"] and s["targets_version"] > first, s
    # The device's targets are its own only: another device's token gets its own (none assigned).
    s = tuf_verify.verify_director(server.url, server.admin_token, other.authenticate(server), other.id)
    assert s["targets"] == [], s

    # As a command, with a read token.
    read = server.make_token(["read"])["token"]
    cli = ["/usr/bin/python3", str(TEST_DIR / "tuf_verify.py"), server.url, read, "--device-token", tok]
    p = subprocess.run(cli + ["--device-id", dev.id], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["director"]["targets"] == ["models/det/1.1.0/model.onnx"]
    p = subprocess.run(cli + ["--device-id", other.id], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "custom.device_id" in p.stderr, p.stderr

    # What it exists to catch.
    real_get = tuf_verify.Verifier.get

    def tampered(path_end, fn):
        def get(self, path, method="GET", token=None):
            body, headers = real_get(self, path, method, token)
            if path.endswith(path_end) and token == tok:
                doc = json.loads(body)
                fn(doc)
                body = json.dumps(doc).encode()
            return body, headers
        return get

    def flip(doc):
        sig = doc["signatures"][0]["sig"]
        doc["signatures"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]

    def other_device(doc):
        doc["signed"]["custom"]["device_id"] = other.id

    def bump(doc):
        doc["signed"]["version"] += 1

    for end, fn, expect in (("targets.json", flip, "does not verify"), ("targets.json", other_device, "valid signature"),
                            ("timestamp.json", flip, "does not verify"), ("snapshot.json", bump, "valid signature")):
        monkeypatch.setattr(tuf_verify.Verifier, "get", tampered(end, fn))
        with pytest.raises(tuf_verify.VerifyError) as e:
            tuf_verify.verify_director(server.url, server.admin_token, tok, dev.id)
        assert expect in str(e.value), str(e.value)
    monkeypatch.setattr(tuf_verify.Verifier, "get", real_get)
    # A target the image repository does not list, or lists with another length.
    image = {p: dict(t) for p, t in _meta(server, "targets.json")["signed"]["targets"].items()}
    director = tuf_verify.Verifier(server.url, server.admin_token, repo="director")
    with pytest.raises(tuf_verify.VerifyError, match="not signed by the image repository"):
        director.run_director(tok, dev.id, {p: t for p, t in image.items() if "1.1.0" not in p})
    image["models/det/1.1.0/model.onnx"]["length"] += 1
    with pytest.raises(tuf_verify.VerifyError, match="differs from the image repository"):
        tuf_verify.Verifier(server.url, server.admin_token, repo="director").run_director(tok, dev.id, image)
    # Expired at a later clock.
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
    with pytest.raises(tuf_verify.VerifyError, match="expired"):
        tuf_verify.verify_director(server.url, server.admin_token, tok, dev.id, now=later)


def _tuf_path(target, digest):
    """A target's URL in the image repository (consistent snapshots: DIR/HASH.NAME)."""
    d, _, base = target.rpartition("/")
    return f"/v1/tuf/image/targets/{d}/{digest}.{base}"


def test_targets_are_served_at_their_tuf_paths(server):
    """What a stock TUF client asks for: the bytes the targets metadata lists, at the target's
    path with its hash on the file name, with Range and ETag as under /v1/artifacts; any other
    name, version or hash is 404, and a device reads only what its director named."""
    data = bytes(range(256)) * 40
    r = publish(server, "det", data)
    assert r.status_code == 201, r.text
    target = r.json()["target"]
    sha = _meta(server, "targets.json")["signed"]["targets"][target]["hashes"]["sha256"]
    assert sha == hashlib.sha256(data).hexdigest()
    url = _tuf_path(target, sha)
    r = server.api("GET", url)
    assert r.status_code == 200 and r.content == data, r.text[:300]
    etag = f'"sha256:{sha}"'
    assert r.headers["ETag"] == etag and r.headers["Accept-Ranges"] == "bytes"
    r = server.api("GET", url, headers={"Range": "bytes=100-199"})
    assert (r.status_code, r.content, r.headers["Content-Range"]) == (206, data[100:200], f"bytes 100-199/{len(data)}")
    r = server.api("GET", url, headers={"Range": "bytes=-10"})
    assert (r.status_code, r.content) == (206, data[-10:])
    assert_problem(server.api("GET", url, headers={"Range": f"bytes={len(data)}-"}), 416)
    assert server.api("GET", url, headers={"If-None-Match": etag}).status_code == 304

    other = publish(server, "det", b"other bytes", meta=model_meta("1.1.0"))
    assert other.status_code == 201, other.text
    other_sha = hashlib.sha256(b"other bytes").hexdigest()
    d = target.rpartition("/")[0]
    for bad in (f"{d}/{other_sha}.model.onnx", f"{d}/model.onnx", f"{d}/{sha.upper()}.model.onnx",
                f"{d}/{sha}.model.bin", f"{d}/{sha}.", f"{d}/{sha[:-1]}.model.onnx", f"models/det/9.9.9/{sha}.model.onnx",
                f"models/nope/1.0.0/{sha}.model.onnx"):
        assert_problem(server.api("GET", f"/v1/tuf/image/targets/{bad}"), 404, "target")
    assert server.api("GET", _tuf_path(other.json()["target"], other_sha)).content == b"other bytes"

    # A token is needed (tuf-anonymous-read is off by default); a device gets only what its
    # director names.
    assert_problem(server.api("GET", url, token=NO_TOKEN), 401)
    assert_problem(server.api("GET", "/v1/tuf/image/timestamp.json", token=NO_TOKEN), 401)
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    assert_problem(server.api("GET", url, token=tok), 403)
    assert server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "1.0.0"}).status_code == 200
    assert server.api("GET", "/v1/tuf/director/targets.json", token=tok).status_code == 200
    r = server.api("GET", url, token=tok, headers={"Range": "bytes=4096-"})
    assert (r.status_code, r.content) == (206, data[4096:])
    assert_problem(server.api("GET", _tuf_path(other.json()["target"], other_sha), token=tok), 403)
