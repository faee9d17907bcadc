"""Enrollment: an operator makes an enrollment token, a device enrolls with it and its own key,
and the device shows up in the inventory (API and CLI) with the token's labels."""

import json
import time
import uuid

import pytest

from ganglion_harness import (
    NO_TOKEN,
    assert_problem,
    enroll_device,
    list_all,
    new_key,
    public_hex,
)


def _enroll(server, token, key=None, name=None, facts=None):
    body = {"token": token, "public_key": public_hex(key or new_key())}
    if name is not None:
        body["name"] = name
    if facts is not None:
        body["facts"] = facts
    return server.api("POST", "/v1/enroll", token=NO_TOKEN, json=body)


def _device_count(server):
    return len(list_all(server, "/v1/devices")[0])


def test_enroll_end_to_end_api(server):
    et = server.make_enroll_token(labels={"site": "north", "type": "camera"}, name="north-cams", max_uses=5)
    assert et["token"].startswith("gne_")
    assert et["labels"] == {"site": "north", "type": "camera"}
    assert et["max_uses"] == 5 and et["uses"] == 0

    facts = {"arch": "aarch64", "accelerators": [{"kind": "npu", "tops": 6}]}
    r = _enroll(server, et["token"], name="cam-01", facts=facts)
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["name"] == "cam-01"
    assert b["labels"] == {"site": "north", "type": "camera"}
    dev_id = b["device_id"]
    uuid.UUID(dev_id)

    r = server.api("GET", f"/v1/devices/{dev_id}")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["id"] == dev_id
    assert d["name"] == "cam-01"
    assert d["labels"] == {"site": "north", "type": "camera"}
    assert d["facts"] == facts
    assert d["status"] == "active"
    assert d["decommissioned_at"] is None

    items, _ = list_all(server, "/v1/devices")
    assert [i["id"] for i in items] == [dev_id]

    # The enrollment token counts the use and never shows its secret again.
    r = server.api("GET", "/v1/enroll-tokens")
    assert r.status_code == 200
    listed = {t["id"]: t for t in r.json()["items"]}
    assert listed[et["id"]]["uses"] == 1
    assert "token" not in listed[et["id"]]
    assert et["token"] not in r.text


def test_enroll_end_to_end_cli(server):
    et = server.make_enroll_token(labels={"site": "north", "type": "camera"}, max_uses=2)
    a = enroll_device(server, enroll_token=et["token"], name="cli-cam-a")
    b = enroll_device(server, enroll_token=et["token"], name="cli-cam-b")

    p = server.cli("devices", "list", output="json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    items = out["items"] if isinstance(out, dict) else out
    by_id = {d["id"]: d for d in items}
    assert set(by_id) == {a.id, b.id}
    assert by_id[a.id]["labels"] == {"site": "north", "type": "camera"}
    assert by_id[b.id]["name"] == "cli-cam-b"

    p = server.cli("devices", "show", a.id, output="json")
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert shown["id"] == a.id and shown["labels"]["site"] == "north"

    # The table: a header line, then one line per device naming it.
    p = server.cli("devices", "list")
    assert p.returncode == 0, p.stderr
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert len(lines) >= 3, p.stdout
    assert "NAME" in lines[0].upper(), p.stdout
    for dev in (a, b):
        row = [l for l in lines[1:] if dev.name in l]
        assert len(row) == 1, f"{dev.name} not on exactly one row:\n{p.stdout}"
        assert "site=north" in row[0] or "north" in row[0], f"labels missing from row: {row[0]}"

    # The CLI's selector reaches the server.
    enroll_device(server, labels={"site": "south"}, name="cli-cam-south")
    p = server.cli("devices", "list", "--selector", "site=south", output="json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    items = out["items"] if isinstance(out, dict) else out
    assert [d["name"] for d in items] == ["cli-cam-south"]


def test_enroll_token_used_up(server):
    et = server.make_enroll_token(max_uses=2)
    assert _enroll(server, et["token"]).status_code == 201
    assert _enroll(server, et["token"]).status_code == 201
    before = _device_count(server)
    body = assert_problem(_enroll(server, et["token"]), 401)
    assert _device_count(server) == before, "a refused enrollment created a device"
    assert any(w in body["detail"].lower() for w in ("used", "uses", "exhausted")), body
    r = server.api("GET", "/v1/enroll-tokens")
    assert {t["id"]: t["uses"] for t in r.json()["items"]}[et["id"]] == 2


@pytest.mark.slow
def test_enroll_token_expired(server):
    et = server.make_enroll_token(expires_in=1)
    time.sleep(2)
    body = assert_problem(_enroll(server, et["token"]), 401)
    assert "expired" in body["detail"].lower(), body
    assert _device_count(server) == 0


def test_enroll_token_revoked(server):
    et = server.make_enroll_token(max_uses=10)
    assert _enroll(server, et["token"]).status_code == 201
    r = server.api("DELETE", f"/v1/enroll-tokens/{et['id']}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    body = assert_problem(_enroll(server, et["token"]), 401)
    assert "revoked" in body["detail"].lower(), body
    assert _device_count(server) == 1
    listed = {t["id"]: t for t in server.api("GET", "/v1/enroll-tokens").json()["items"]}
    assert listed[et["id"]]["revoked_at"] is not None


def test_enroll_token_revoke_unknown_is_404(server):
    assert_problem(server.api("DELETE", f"/v1/enroll-tokens/{uuid.uuid4()}"), 404)


@pytest.mark.slow
def test_enroll_refusals_say_which(server):
    """Unknown, used-up, expired and revoked tokens are all 401 but with distinct details."""
    used = server.make_enroll_token(max_uses=1)
    assert _enroll(server, used["token"]).status_code == 201
    revoked = server.make_enroll_token()
    assert server.api("DELETE", f"/v1/enroll-tokens/{revoked['id']}").status_code == 204
    expired = server.make_enroll_token(expires_in=1)
    time.sleep(2)
    details = {
        "unknown": assert_problem(_enroll(server, "gne_" + "0" * 40), 401)["detail"],
        "used": assert_problem(_enroll(server, used["token"]), 401)["detail"],
        "revoked": assert_problem(_enroll(server, revoked["token"]), 401)["detail"],
        "expired": assert_problem(_enroll(server, expired["token"]), 401)["detail"],
    }
    assert len(set(details.values())) == 4, details


def test_key_already_enrolled_is_409(server):
    key = new_key()
    et = server.make_enroll_token(max_uses=5)
    assert _enroll(server, et["token"], key=key).status_code == 201
    assert_problem(_enroll(server, et["token"], key=key), 409)
    # also with a different enrollment token
    assert_problem(_enroll(server, server.make_enroll_token()["token"], key=key), 409)
    assert _device_count(server) == 1


@pytest.mark.parametrize(
    "public_key",
    ["", "zz" * 32, "ab" * 31, "ab" * 33, "AB" * 31 + "A", 12345, None],
    ids=["empty", "not-hex", "short", "long", "odd-length", "number", "null"],
)
def test_bad_public_key_is_400(server, public_key):
    et = server.make_enroll_token()
    r = server.api("POST", "/v1/enroll", token=NO_TOKEN, json={"token": et["token"], "public_key": public_key})
    assert_problem(r, 400)
    assert _device_count(server) == 0
    # The token was not spent on the bad request.
    assert _enroll(server, et["token"]).status_code == 201


def test_enroll_needs_no_bearer_but_token_create_does(server):
    r = server.api("POST", "/v1/enroll-tokens", token=NO_TOKEN, json={})
    assert_problem(r, 401)
    r = server.api("POST", "/v1/enroll-tokens", json={})
    assert r.status_code == 201, r.text
    # defaults: one use, a day
    assert r.json()["max_uses"] == 1


@pytest.mark.parametrize("max_uses", [0, -1, 1000001, "3", 1.5])
def test_enroll_token_max_uses_out_of_range(server, max_uses):
    assert_problem(server.api("POST", "/v1/enroll-tokens", json={"max_uses": max_uses}), 400)
