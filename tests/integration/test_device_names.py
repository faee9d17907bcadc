"""Devices are named and addressed by name: a name is unique among active devices (enrolment and
renames that would take one in use are 409s naming it), a name shaped like an id is refused, and
every CLI command that takes a device takes its name too; an unknown name exits 4, a name that
only decommissioned devices share is ambiguous (exit 2, their ids listed)."""

import json
import uuid

from ganglion_harness import NO_TOKEN, assert_problem, model_meta, new_key, public_hex, publish


def _enroll(server, name, labels=None):
    et = server.make_enroll_token(labels=labels or {})["token"]
    return server.api("POST", "/v1/enroll", token=NO_TOKEN,
                      json={"token": et, "public_key": public_hex(new_key()), "name": name})


def test_names_are_unique_among_active_devices(server):
    a = _enroll(server, "cam-1")
    assert a.status_code == 201, a.text
    r = _enroll(server, "cam-1")
    assert_problem(r, 409)
    assert "already named 'cam-1'" in r.json()["detail"], r.text
    assert_problem(_enroll(server, str(uuid.uuid4())), 400)
    b = _enroll(server, "cam-2").json()["device_id"]
    r = server.api("PATCH", f"/v1/devices/{b}", json={"name": "cam-1"})
    assert_problem(r, 409)
    assert "cam-1" in r.json()["detail"]
    assert server.api("GET", f"/v1/devices/{b}").json()["name"] == "cam-2", "a refused rename changes nothing"
    assert_problem(server.api("PATCH", f"/v1/devices/{b}", json={"name": str(uuid.uuid4()).upper()}), 400)
    # A decommissioned device's name is free again; unnamed devices are many.
    assert server.api("DELETE", f"/v1/devices/{a.json()['device_id']}").ok
    assert _enroll(server, "cam-1").status_code == 201
    assert _enroll(server, "").status_code == 201 and _enroll(server, "").status_code == 201
    names = [d["name"] for d in server.api("GET", "/v1/devices", params={"name": "cam-1"}).json()["items"]]
    assert names == ["cam-1", "cam-1"], names
    only = server.api("GET", "/v1/devices", params={"name": "cam-1", "status": "active"}).json()["items"]
    assert len(only) == 1 and only[0]["status"] == "active"


def test_the_cli_takes_a_device_name_wherever_it_takes_an_id(server):
    r = publish(server, "det", b"det-1.0.0", meta=model_meta("1.0.0"))
    assert r.status_code == 201, r.text
    dev = _enroll(server, "gate-cam").json()["device_id"]

    def cli(*args):
        return server.cli(*args)

    shown = cli("-o", "json", "devices", "show", "gate-cam")
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == dev, shown
    assert cli("devices", "label", "gate-cam", "zone=a").returncode == 0
    assert server.api("GET", f"/v1/devices/{dev}").json()["labels"] == {"zone": "a"}
    assert cli("devices", "assign", "gate-cam", "det@1.0.0").returncode == 0
    assert [(d["model"], d["version"]) for d in server.api("GET", f"/v1/devices/{dev}").json()["desired"]] == [
        ("det", "1.0.0")]
    assert cli("devices", "events", "gate-cam").returncode == 0
    assert cli("devices", "unassign", "gate-cam").returncode == 0
    assert server.api("GET", f"/v1/devices/{dev}").json()["desired"] == []
    out = cli("devices", "rename", "gate-cam", "gate-cam-2")
    assert out.returncode == 0 and dev in out.stdout, out
    assert cli("devices", "show", dev).returncode == 0, "an id still works"

    # Unknown: exit 4, naming what was asked. Taken: exit 5. Shaped like an id: exit 2.
    out = cli("devices", "show", "gate-cam")
    assert out.returncode == 4 and "no device is named 'gate-cam'" in out.stderr, out
    other = _enroll(server, "other").json()["device_id"]
    out = cli("devices", "rename", "other", "gate-cam-2")
    assert out.returncode == 5 and "already named 'gate-cam-2'" in out.stderr, out
    assert cli("devices", "rename", "other", str(uuid.uuid4())).returncode == 2

    # Two decommissioned devices once named "old": the name is ambiguous until one is chosen by id.
    olds = []
    for _ in range(2):
        d = _enroll(server, "old").json()["device_id"]
        assert cli("devices", "decommission", "old").returncode == 0
        olds.append(d)
    out = cli("devices", "show", "old")
    assert out.returncode == 2 and all(d in out.stderr for d in olds), out
    assert "give the id" in out.stderr
    assert cli("devices", "decommission", "other").returncode == 0
    assert server.api("GET", f"/v1/devices/{other}").json()["status"] == "decommissioned"
    # The last device of a name, decommissioned, is still found by it.
    assert json.loads(cli("-o", "json", "devices", "show", "other").stdout)["id"] == other
