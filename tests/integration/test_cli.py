"""The ganglion CLI against a real gangliond: an operator's day, and the exit codes scripts
rely on (0 ok, 2 usage, 3 auth, 4 not found, 5 conflict, 6 unreachable, 7 invalid)."""

import json
import uuid

from ganglion_harness import NO_TOKEN, assert_problem, enroll_device, free_port, list_all, new_key, public_hex


def _json(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return json.loads(p.stdout)


def _items(out):
    return out["items"] if isinstance(out, dict) else out


def test_operator_workflow(server):
    # make an enrollment token with labels
    et = _json(server.cli("enroll-tokens", "create", "--name", "cams", "--label", "site=north",
                          "--label", "type=camera", "--max-uses", "2", output="json"))
    assert et["token"].startswith("gne_") and et["labels"] == {"site": "north", "type": "camera"}
    assert et["max_uses"] == 2
    dev = enroll_device(server, enroll_token=et["token"], name="cam-7")

    listed = _items(_json(server.cli("enroll-tokens", "list", output="json")))
    assert [(t["id"], t["uses"]) for t in listed] == [(et["id"], 1)]
    assert et["token"] not in server.cli("enroll-tokens", "list").stdout

    # relabel: set one, change one, remove one
    p = server.cli("devices", "label", dev.id, "floor=2", "type-")
    assert p.returncode == 0, p.stderr
    shown = _json(server.cli("devices", "show", dev.id, output="json"))
    assert shown["labels"] == {"site": "north", "floor": "2"}
    p = server.cli("devices", "show", dev.id)
    assert p.returncode == 0 and dev.id in p.stdout and "cam-7" in p.stdout, p.stdout

    # revoke the enrollment token: the second use is refused
    p = server.cli("enroll-tokens", "revoke", et["id"])
    assert p.returncode == 0, p.stderr
    r = server.api("POST", "/v1/enroll", token=NO_TOKEN,
                   json={"token": et["token"], "public_key": public_hex(new_key())})
    assert_problem(r, 401)

    # decommission
    p = server.cli("devices", "decommission", dev.id)
    assert p.returncode == 0, p.stderr
    assert server.api("GET", f"/v1/devices/{dev.id}").json()["status"] == "decommissioned"
    active = _items(_json(server.cli("devices", "list", "--status", "active", output="json")))
    assert active == []

    # the audit log shows what happened, newest first
    entries = _items(_json(server.cli("audit", "list", output="json")))
    actions = [e["action"] for e in entries]
    want = ["device.decommission", "enroll_token.revoke", "device.update", "device.enroll", "enroll_token.create"]
    assert actions[: len(want)] == want, actions
    p = server.cli("audit", "list")
    assert p.returncode == 0 and "device.decommission" in p.stdout, p.stdout


def test_api_tokens_via_cli(server):
    t = _json(server.cli("tokens", "create", "--name", "grafana", "--scope", "read", output="json"))
    assert t["token"].startswith("gna_") and t["scopes"] == ["read"]
    # the new token works for the CLI too, within its scope
    p = server.cli("devices", "list", token=t["token"], output="json")
    assert p.returncode == 0, p.stderr
    p = server.cli("tokens", "list", token=t["token"])
    assert p.returncode == 3, f"read token listing tokens: exit {p.returncode}\n{p.stderr}"

    table = server.cli("tokens", "list")
    assert table.returncode == 0 and "grafana" in table.stdout
    assert t["token"] not in table.stdout
    p = server.cli("tokens", "revoke", t["id"])
    assert p.returncode == 0, p.stderr
    assert server.cli("devices", "list", token=t["token"]).returncode == 3
    # the table output's secret is printed once too
    p = server.cli("tokens", "create", "--name", "ops", "--scope", "operator,read")
    assert p.returncode == 0, p.stderr
    assert "gna_" in p.stdout


def test_exit_codes(server):
    dev = enroll_device(server)
    missing = str(uuid.uuid4())
    cases = [
        (0, server.cli("devices", "show", dev.id)),
        (2, server.cli("devices", "frobnicate")),
        (2, server.cli("no-such-command")),
        (2, server.cli("devices", "list", "--selector", "=north")),
        (2, server.cli("devices", "show")),
        (3, server.cli("devices", "list", token="gna_" + "0" * 40)),
        (3, server.cli("devices", "list", token=NO_TOKEN)),
        (4, server.cli("devices", "show", missing)),
        (4, server.cli("tokens", "revoke", missing)),
        (6, server.cli("devices", "list", url=f"http://127.0.0.1:{free_port()}")),
        (7, server.cli("tokens", "create", "--name", "x", "--scope", "superuser")),
    ]
    for want, p in cases:
        assert p.returncode == want, f"{p.args[5:]}: exit {p.returncode}, want {want}\n{p.stderr}"
        if want:
            assert p.stderr.strip(), f"{p.args[5:]}: failed without a message"
    # nothing was created by the failed create
    assert "x" not in [t["name"] for t in list_all(server, "/v1/tokens")[0]]

