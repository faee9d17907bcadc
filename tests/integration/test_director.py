"""The director's REST side as docs/API.md documents it: desired state per device and by selector,
its errors, scopes and audit rows; the check-in answer's fields; director targets for the device's
own token only; re-signing at half expiry; device-token lifetime; the events a device reported,
paged and scoped; and the size limit of a publish's metadata part."""

import datetime
import time
import uuid

import pytest

from ganglion_harness import (
    NO_TOKEN,
    artifact_files,
    assert_problem,
    enroll_device,
    list_all,
    metric_value,
    model_meta,
    parse_metrics,
    publish,
    sign_device_token,
    wait_for,
)


def _publish(server, name, *versions):
    for v in versions:
        r = publish(server, name, f"{name}-{v}".encode(), meta=model_meta(v))
        assert r.status_code == 201, r.text


def _checkin(server, token, etag=None, body=None):
    return server.api("POST", "/v1/agent/checkin", token=token, json=body if body is not None else {},
                      headers={"If-None-Match": etag} if etag else None)


def _wait_answer_dropped(server):
    """Waits until the server holds no device's check-in answer in memory. A change to a device's
    desired state drops its remembered answer through PostgreSQL NOTIFY, which reaches the
    server's own listener a moment after the change was answered: a check-in in between is still
    answered 304 from memory. (For tests with one device that checks in.)"""
    def held():
        m = parse_metrics(server.api("GET", "/metrics", token=NO_TOKEN).text)
        return metric_value(m, "gangliond_checkin_cache_devices")

    assert wait_for(lambda: held() == 0, 30, 0.05), f"{held()} check-in answers still held 30 s after the change"


def _audit(server, action):
    return [e for e in list_all(server, "/v1/audit")[0] if e["action"] == action]


def _time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def test_put_desired_resolves_aliases_and_is_audited(server):
    _publish(server, "det", "1.0.0", "1.1.0")
    assert server.api("PUT", "/v1/models/det/aliases/production", json={"version": "1.1.0"}).status_code == 200
    dev = enroll_device(server)
    op = server.make_token(["operator"], name="ops")
    r = server.api("PUT", f"/v1/devices/{dev.id}/desired", token=op["token"],
                   json={"model": "det", "version": "production"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["device_id"] == dev.id and body["model"] == "det" and body["version"] == "1.1.0", body
    assert isinstance(body["director_version"], int) and body["director_version"] >= 1
    # Resolved now: moving the alias later does not move the device.
    assert server.api("PUT", "/v1/models/det/aliases/production", json={"version": "1.0.0"}).status_code == 200
    d = server.api("GET", f"/v1/devices/{dev.id}").json()
    (desired,) = d["desired"]
    assert desired["model"] == "det" and desired["version"] == "1.1.0", desired
    assert desired["assigned_by"] and desired["assigned_at"] and desired["override"] is True, desired
    # The device's own director targets name exactly that version.
    tok = dev.authenticate(server)
    targets = server.api("GET", "/v1/tuf/director/targets.json", token=tok).json()["signed"]
    assert list(targets["targets"]) == ["models/det/1.1.0/model.onnx"], targets
    assert targets["version"] == body["director_version"]
    (entry,) = _audit(server, "device.assign")
    assert entry["object_id"] == dev.id and entry["token_id"] == op["id"] and entry["request_id"], entry
    assert entry["detail"]["model"] == "det" and entry["detail"]["version"] == "1.1.0", entry


def test_put_desired_errors_and_scopes(server):
    _publish(server, "det", "1.0.0")
    dev = enroll_device(server)
    path = f"/v1/devices/{dev.id}/desired"
    good = {"model": "det", "version": "1.0.0"}
    assert_problem(server.api("PUT", f"/v1/devices/{uuid.uuid4()}/desired", json=good), 404)
    assert_problem(server.api("PUT", path, json={"model": "det", "version": "9.9.9"}), 404)
    assert_problem(server.api("PUT", path, json={"model": "nope", "version": "1.0.0"}), 404)
    assert_problem(server.api("PUT", path, json={"model": "det", "version": "stable"}), 404)  # no such alias
    for bad in ({"model": "det"}, {"version": "1.0.0"}, {"model": 1, "version": "1.0.0"},
                {"model": "det", "version": "1.0.0", "extra": 1}):
        assert_problem(server.api("PUT", path, json=bad), 400)
    for scopes in (["read"], ["ci"]):
        assert_problem(server.api("PUT", path, token=server.make_token(scopes)["token"], json=good), 403)
    assert_problem(server.api("PUT", path, token=NO_TOKEN, json=good), 401)
    assert_problem(server.api("PUT", path, token=dev.authenticate(server), json=good), 403)
    assert server.api("GET", f"/v1/devices/{dev.id}").json()["desired"] == []
    assert _audit(server, "device.assign") == []
    # A decommissioned device gets nothing.
    assert server.api("DELETE", f"/v1/devices/{dev.id}").status_code == 200
    assert_problem(server.api("PUT", path, json=good), 404, "no such active device")


def test_delete_desired(server):
    _publish(server, "det", "1.0.0")
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    assert server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "1.0.0"}).status_code == 200
    before = _checkin(server, tok)
    assert before.status_code == 200
    assert_problem(server.api("DELETE", f"/v1/devices/{dev.id}/desired", token=server.make_token(["read"])["token"]), 403)
    assert_problem(server.api("DELETE", f"/v1/devices/{dev.id}/desired", token=NO_TOKEN), 401)
    r = server.api("DELETE", f"/v1/devices/{dev.id}/desired")
    assert r.status_code == 204 and r.content == b"", r.text
    assert server.api("GET", f"/v1/devices/{dev.id}").json()["desired"] == []
    # The device learns at its next check-in (once the change's NOTIFY has dropped the answer the
    # server remembers): new director targets that name nothing.
    _wait_answer_dropped(server)
    after = _checkin(server, tok, before.headers["ETag"])
    assert after.status_code == 200, after.status_code
    assert after.json()["director_targets"]["signed"]["targets"] == {}
    assert after.json()["director_version"] > before.json()["director_version"]
    assert_problem(server.api("DELETE", f"/v1/devices/{uuid.uuid4()}/desired"), 404)


def test_post_desired_by_selector(server):
    _publish(server, "det", "1.0.0", "2.0.0")
    north = [enroll_device(server, labels={"site": "north", "n": str(i)}) for i in range(3)]
    south = enroll_device(server, labels={"site": "south"})
    gone = enroll_device(server, labels={"site": "north"})
    assert server.api("DELETE", f"/v1/devices/{gone.id}").status_code == 200
    op = server.make_token(["operator"])["token"]
    r = server.api("POST", "/v1/desired", token=op, json={"selector": "site=north", "model": "det", "version": "2.0.0"})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["model"] == "det" and b["version"] == "2.0.0" and b["count"] == 3, b
    assert sorted(b["devices"]) == sorted(d.id for d in north), "decommissioned or other devices were assigned"
    for d in north:
        assert server.api("GET", f"/v1/devices/{d.id}").json()["desired"][0]["version"] == "2.0.0"
    assert server.api("GET", f"/v1/devices/{south.id}").json()["desired"] == []
    assert server.api("GET", f"/v1/devices/{gone.id}").json()["desired"] == []
    # Audited once, for the selector, with the number of devices it reached.
    (entry,) = _audit(server, "device.assign")
    assert (entry["object_type"], entry["object_id"]) == ("selector", "site=north"), entry
    assert entry["detail"] == {"model": "det", "version": "2.0.0", "devices": 3}, entry
    # A selector that matches nothing assigns nothing.
    r = server.api("POST", "/v1/desired", json={"selector": "site=west", "model": "det", "version": "1.0.0"})
    assert r.status_code == 200 and r.json()["count"] == 0 and r.json()["devices"] == [], r.text
    # Errors: empty or bad selector, unknown version, body, scope.
    for bad in ({"selector": "", "model": "det", "version": "1.0.0"}, {"selector": "=x", "model": "det", "version": "1.0.0"},
                {"model": "det", "version": "1.0.0"}, {"selector": "site=north", "model": "det"}):
        assert_problem(server.api("POST", "/v1/desired", json=bad), 400)
    assert_problem(server.api("POST", "/v1/desired", json={"selector": "site=north", "model": "det", "version": "7.0.0"}), 404)
    assert_problem(server.api("POST", "/v1/desired", token=server.make_token(["ci"])["token"],
                              json={"selector": "site=north", "model": "det", "version": "1.0.0"}), 403)
    assert_problem(server.api("POST", "/v1/desired", token=NO_TOKEN,
                              json={"selector": "site=north", "model": "det", "version": "1.0.0"}), 401)
    for d in north:  # the refused requests changed nothing
        assert server.api("GET", f"/v1/devices/{d.id}").json()["desired"][0]["version"] == "2.0.0"


def test_checkin_answer_fields(gangliond):
    server = gangliond(extra_args=["--agent-poll-interval", "45s"])
    _publish(server, "det", "1.0.0")
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    assert server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "1.0.0"}).status_code == 200
    r = _checkin(server, tok, body={"agent_version": "9.9", "models": [], "facts": {"arch": "x"}})
    assert r.status_code == 200 and r.headers.get("ETag"), r.text
    b = r.json()
    assert set(b) == {"poll_interval", "director_version", "image_root_version", "director_root_version",
                      "director_targets"}, b.keys()
    assert b["poll_interval"] == 45
    assert b["director_version"] == b["director_targets"]["signed"]["version"]
    assert b["image_root_version"] == server.api("GET", "/v1/tuf/image/root.json").json()["signed"]["version"] == 1
    assert b["director_root_version"] == server.api("GET", "/v1/tuf/director/root.json").json()["signed"]["version"] == 1
    assert b["director_targets"]["signed"]["custom"]["device_id"] == dev.id
    assert server.api("GET", f"/v1/devices/{dev.id}").json()["facts"] == {"arch": "x"}
    # A new image root (an online key rotation signs one) is announced in the next full answer;
    # while the device's director metadata has not changed, the answer stays 304 (the agent
    # walks the root chain itself).
    assert server.api("POST", "/v1/keys/rotate", json={"role": "snapshot"}).status_code == 200
    assert _checkin(server, tok, r.headers["ETag"]).status_code == 304
    r2 = _checkin(server, tok)
    assert r2.status_code == 200, r2.status_code
    assert r2.json()["image_root_version"] == 2 and r2.json()["director_version"] == b["director_version"]
    # Only a device token checks in.
    assert_problem(_checkin(server, server.admin_token), 403, "device token")
    assert_problem(_checkin(server, NO_TOKEN), 401)


def test_director_targets_are_for_the_device_token_only(server):
    _publish(server, "det", "1.0.0")
    a, b = enroll_device(server), enroll_device(server)
    assert server.api("PUT", f"/v1/devices/{a.id}/desired", json={"model": "det", "version": "1.0.0"}).status_code == 200
    for tok in (server.admin_token, server.make_token(["read"])["token"]):
        assert_problem(server.api("GET", "/v1/tuf/director/targets.json", token=tok), 404, "device's token")
    assert_problem(server.api("GET", "/v1/tuf/director/targets.json", token=NO_TOKEN), 401)
    ta = server.api("GET", "/v1/tuf/director/targets.json", token=a.authenticate(server))
    tb = server.api("GET", "/v1/tuf/director/targets.json", token=b.authenticate(server))
    assert ta.status_code == 200 and tb.status_code == 200
    assert ta.json()["signed"]["custom"]["device_id"] == a.id and list(ta.json()["signed"]["targets"]) == \
        ["models/det/1.0.0/model.onnx"]
    assert tb.json()["signed"]["custom"]["device_id"] == b.id and tb.json()["signed"]["targets"] == {}
    # The root chain is for every reader, and for devices.
    for tok in (server.make_token(["read"])["token"], a.authenticate(server)):
        assert server.api("GET", "/v1/tuf/director/1.root.json", token=tok).status_code == 200


def test_director_targets_are_re_signed_at_half_expiry(gangliond):
    """Director targets of 6 s: the check-in re-signs them (a higher version, a later expiry, the
    same targets) once less than half is left, and not before."""
    server = gangliond(extra_args=["--tuf-director-expiry", "6s"])
    _publish(server, "det", "1.0.0")
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    assert server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "1.0.0"}).status_code == 200
    first = _checkin(server, tok)
    s1 = first.json()["director_targets"]["signed"]
    lifetime = (_time(s1["expires"]) - _time(s1["custom"]["issued_at"])).total_seconds()
    assert 5 <= lifetime <= 7, s1
    r = _checkin(server, tok, first.headers["ETag"])
    if r.status_code == 200:  # only if this machine took more than 3 s for one request
        assert (_time(r.json()["director_targets"]["signed"]["custom"]["issued_at"]) - _time(s1["custom"]["issued_at"])
                ).total_seconds() >= 2, "re-signed with most of its lifetime left"
    answers = []

    def re_signed():
        answers.append(_checkin(server, tok, first.headers["ETag"]))
        return answers[-1].status_code == 200

    assert wait_for(re_signed, 60, 0.2), f"not re-signed within 60 s (last {answers[-1].status_code})"
    s2 = answers[-1].json()["director_targets"]["signed"]
    assert s2["version"] > s1["version"] and _time(s2["expires"]) > _time(s1["expires"]), (s1, s2)
    assert s2["targets"] == s1["targets"]
    # Served fresh: the answer is never already expired.
    assert _time(s2["expires"]) > datetime.datetime.now(datetime.timezone.utc)


def test_device_token_lifetime(gangliond, pg, db):
    server = gangliond(extra_args=["--device-token-ttl", "90s"])
    dev = enroll_device(server)
    r = dev.exchange(server, dev.challenge(server).json()["nonce"])
    assert r.status_code == 200, r.text
    ttl = (_time(r.json()["expires_at"]) - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 80 <= ttl <= 91, f"device token lives {ttl} s, configured 90 s"
    tok = r.json()["token"]
    assert server.api("GET", "/v1/agent/self", token=tok).status_code == 200
    # The token carries its expiry, signed: the same token past its expiry (made with the
    # replicas' key rather than waited for) is refused, and so is one whose expiry was altered.
    body, mac = tok.rsplit(".", 1)
    prefix, dev_id, gen, exp = body.split(".")
    assert (prefix, dev_id) == ("gnd_v2", dev.id) and abs(int(exp) - time.time() - 90) <= 10, tok
    assert sign_device_token(pg, db, dev.id, gen, exp) == tok
    expired = sign_device_token(pg, db, dev.id, gen, time.time() - 1)
    assert_problem(server.api("GET", "/v1/agent/self", token=expired), 401, "expired")
    assert_problem(_checkin(server, expired), 401, "expired")
    stretched = f"gnd_v2.{dev.id}.{gen}.{int(exp) + 86400}.{mac}"
    assert_problem(server.api("GET", "/v1/agent/self", token=stretched), 401, "malformed")
    # A new challenge-response gives a working token again.
    assert server.api("GET", "/v1/agent/self", token=dev.authenticate(server)).status_code == 200


def test_events_pages_and_scope(server):
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    states = ["downloading", "verifying", "loading", "active", "failed", "downloading", "active"]
    for i, st in enumerate(states):
        op = {"state": st, "model": "det", "version": f"1.0.{i}"}
        if st == "failed":
            op["detail"] = "self-test failed"
        assert _checkin(server, tok, body={"agent_version": "t", "last_operation": op}).status_code == 200
    # The same report again is not a new event.
    assert _checkin(server, tok, body={"agent_version": "t", "last_operation": op}).status_code == 200
    whole = server.api("GET", f"/v1/devices/{dev.id}/events").json()
    assert whole["next_cursor"] is None
    got = [(e["operation"]["state"], e["operation"]["version"]) for e in whole["items"]]
    assert got == [(st, f"1.0.{i}") for i, st in reversed(list(enumerate(states)))], got  # newest first
    assert all(e["at"].endswith("Z") and isinstance(e["id"], int) for e in whole["items"])
    paged, pages = list_all(server, f"/v1/devices/{dev.id}/events", limit=3)
    assert [e["id"] for e in paged] == [e["id"] for e in whole["items"]] and pages == 3
    for params in ({"limit": 0}, {"limit": 1001}, {"cursor": "garbage!"}):
        assert_problem(server.api("GET", f"/v1/devices/{dev.id}/events", params=params), 400)
    assert server.api("GET", f"/v1/devices/{dev.id}/events", token=server.make_token(["read"])["token"]).status_code == 200
    assert_problem(server.api("GET", f"/v1/devices/{dev.id}/events", token=NO_TOKEN), 401)
    assert_problem(server.api("GET", f"/v1/devices/{dev.id}/events", token=tok), 403)
    # Another device's events are its own.
    other = enroll_device(server)
    assert server.api("GET", f"/v1/devices/{other.id}/events").json() == {"items": [], "next_cursor": None}


def test_events_of_an_unknown_device_are_404(server):
    assert_problem(server.api("GET", f"/v1/devices/{uuid.uuid4()}/events"), 404)


def test_oversized_metadata_part_is_413(gangliond):
    """The metadata part of a publish is JSON held in memory: over max-release-metadata (here
    1 MiB) it is 413 naming the limit, and nothing is kept."""
    server = gangliond(extra_args=["--max-release-metadata", "1M"])
    meta = model_meta(provenance={"commit": "abc", "notes": "x" * (1024 * 1024 + 100)})
    r = publish(server, "big-meta", b"weights", meta=meta)
    assert "max-release-metadata" in assert_problem(r, 413)["detail"]
    assert_problem(server.api("GET", "/v1/models/big-meta"), 404)
    assert wait_for(lambda: artifact_files(server.data_dir) == ([], []), 30), artifact_files(server.data_dir)
    # Just under the limit is fine.
    meta = model_meta(provenance={"commit": "abc", "notes": "x" * (1024 * 1024 - 4096)})
    r = publish(server, "big-meta", b"weights", meta=meta)
    assert r.status_code == 201, r.text[:300]


def test_several_models_per_device_each_assigned_and_unassigned_alone(server):
    """A device runs one version of each of several models: assigning one leaves the others, the
    director targets name every one, and unassigning takes away only the model named (or every
    per-device assignment); what a deployment gives is not an assignment to remove."""
    _publish(server, "det", "1.0.0", "2.0.0")
    _publish(server, "cls", "1.0.0")
    dev = enroll_device(server, labels={"site": "north"})
    tok = dev.authenticate(server)
    path = f"/v1/devices/{dev.id}/desired"
    for model, version in (("det", "1.0.0"), ("cls", "1.0.0"), ("det", "2.0.0")):
        r = server.api("PUT", path, json={"model": model, "version": version})
        assert r.status_code == 200, r.text
    d = server.api("GET", f"/v1/devices/{dev.id}").json()
    assert [(x["model"], x["version"], x["override"]) for x in d["desired"]] == \
        [("cls", "1.0.0", True), ("det", "2.0.0", True)], d["desired"]
    first = _checkin(server, tok)
    targets = first.json()["director_targets"]["signed"]["targets"]
    assert sorted(targets) == ["models/cls/1.0.0/model.onnx", "models/det/2.0.0/model.onnx"], targets
    assert {t["custom"]["model"]: t["custom"]["version"] for t in targets.values()} == {"cls": "1.0.0", "det": "2.0.0"}
    # Nothing changed: the same answer, from memory.
    assert _checkin(server, tok, first.headers["ETag"]).status_code == 304

    # One model's assignment goes; the other stays, and the device is told at once.
    for bad, status in (("NOT A NAME", 400), ("seg", 404)):
        assert_problem(server.api("DELETE", path, params={"model": bad}), status)
    assert server.cli("devices", "unassign", dev.id, "Not_A_Name").returncode == 2
    p = server.cli("devices", "unassign", dev.id, "det")
    assert p.returncode == 0 and "assignment of det removed" in p.stdout, (p.stdout, p.stderr)
    assert [x["model"] for x in server.api("GET", f"/v1/devices/{dev.id}").json()["desired"]] == ["cls"]
    _wait_answer_dropped(server)
    after = _checkin(server, tok, first.headers["ETag"])
    assert after.status_code == 200
    assert list(after.json()["director_targets"]["signed"]["targets"]) == ["models/cls/1.0.0/model.onnx"]
    assert_problem(server.api("DELETE", path, params={"model": "det"}), 404, "no desired version of model det")
    (entry,) = [e for e in _audit(server, "device.unassign")]
    assert entry["detail"] == {"models": ["det"]}, entry

    # A deployment of det gives the device det beside its cls override; unassigning det is a
    # 409 naming the deployment, and unassigning everything leaves what the deployment gives.
    r = server.api("POST", "/v1/deployments", json={"name": "cams", "model": "det", "selector": "site=north",
                                                   "follow": "1.0.0"})
    assert r.status_code == 201, r.text
    assert wait_for(lambda: len(server.api("GET", f"/v1/devices/{dev.id}").json()["desired"]) == 2, 30, 0.2)
    assert_problem(server.api("DELETE", path, params={"model": "det"}), 409, "deployment cams")
    p = server.cli("devices", "unassign", dev.id, "det")
    assert p.returncode != 0 and "deployment cams" in p.stderr, (p.stdout, p.stderr)
    assert server.api("DELETE", path).status_code == 204
    (left,) = server.api("GET", f"/v1/devices/{dev.id}").json()["desired"]
    assert (left["model"], left["version"], left["deployment"], left["override"]) == ("det", "1.0.0", "cams", False)
