"""ganglion status and GET /v1/status: the fleet at a glance, from a simulated fleet that speaks
the real protocol: per model, devices running and told each version, updating, failing (and
why), stale (and why), and the rollouts in progress."""

import json

from ganglion_harness import NO_TOKEN, assert_problem, enroll_device, wait_for
from test_rollouts import FAST, SimDevice, cohort, create, fleet_checkin, publish_versions, rollout_of


def _status(server, **kw):
    r = server.api("GET", "/v1/status", **kw)
    assert r.status_code == 200, r.text
    return r.json()


def r_told(st):
    return st["rollouts"][0]["told_new"]


def test_status_of_a_fleet(gangliond, pg, db):
    s = gangliond(extra_args=FAST)
    empty = _status(s)
    assert empty["devices"] == {"active": 0, "decommissioned": 0, "stale": 0, "failing": 0}, empty
    assert empty["models"] == [] and empty["rollouts"] == [] and empty["stale_after"] == 180
    out = s.cli("status")
    assert out.returncode == 0 and "No rollout in progress." in out.stdout, out

    publish_versions(s, "1.0.0", "2.0.0", "3.0.0")
    # 12 devices, so that the 50 % stage usually holds some of fleet[2:] (the ones that check in).
    n = 12
    fleet = [SimDevice(s, {"site": "north"}, broken={"3.0.0"}) for _ in range(n)]
    create(s, follow="1.0.0", strategy={"stages": [{"percent": 50, "bake": 3600}, {"percent": 100}]})
    assert wait_for(lambda: (fleet_checkin(fleet), all(d.running == ("det", "1.0.0") for d in fleet))[1], 30, 0.2)
    fleet_checkin(fleet)  # each reports what it installed
    # One device is told 3.0.0 by hand, whose self-test fails; one will not be seen again for an hour.
    bad, late = fleet[0], fleet[1]
    assert s.api("PUT", f"/v1/devices/{bad.dev.id}/desired", json={"model": "det", "version": "3.0.0"}).ok
    assert wait_for(lambda: (bad.checkin(), bad.op["state"] == "failed")[1], 30, 0.2)
    bad.checkin()  # reports the failure
    pg.sql(f"UPDATE devices SET last_seen_at = now() - interval '1 hour' WHERE id = '{late.dev.id}'", dbname=db)
    enroll_device(s, labels={"site": "south"})  # never checks in
    gone = enroll_device(s, labels={"site": "south"})
    assert s.api("DELETE", f"/v1/devices/{gone.id}").ok
    # A rollout to 2.0.0 that stays in its first stage (an hour's bake).
    assert s.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).ok
    ro = rollout_of(s, "cams")

    def stage_installed():
        """Every device of fleet[2:] in the first stage runs 2.0.0. The stage holds the rollout's
        devices (fleet[1:]; bad has its own version) as gn_in_stage places them: below 50 % in
        gn_cohort's order and not held back, or pinned. That may be none of fleet[2:] (about one
        rollout in a thousand), and when it is none of fleet[1:] the controller pins one first."""
        fleet_checkin(fleet[2:])
        r = rollout_of(s, "cams")

        def in_stage(d):
            return d.dev.id in r["pinned"] or (cohort(r["id"], d.dev.id) < 0.5 and d.dev.id not in r["held_back"])

        if not any(in_stage(d) for d in fleet[1:]):
            return False  # the controller has yet to pin one
        return all(d.running == ("det", "2.0.0") for d in fleet[2:] if in_stage(d))

    assert wait_for(stage_installed, 30, 0.2), [(d.running, cohort(ro["id"], d.dev.id)) for d in fleet]
    fleet_checkin(fleet[2:], 2)  # every device of the stage installed and reported it

    st = _status(s)
    assert st["devices"] == {"active": n + 1, "decommissioned": 1, "stale": 2, "failing": 1}, st["devices"]
    assert st["stale"] == [{"reason": "never checked in", "devices": 1},
                           {"reason": "not seen for more than 3m", "devices": 1}], st["stale"]
    [det] = st["models"]
    running = {v["version"]: v["running"] for v in det["versions"]}
    desired = {v["version"]: v["desired"] for v in det["versions"]}
    on2 = sum(1 for d in fleet if d.running == ("det", "2.0.0"))
    told = {d.dev.id: [x["version"] for x in s.api("GET", f"/v1/devices/{d.dev.id}").json()["desired"]
                       if x["model"] == "det"][0] for d in fleet}
    assert running == {"1.0.0": n - on2, "2.0.0": on2, "3.0.0": 0}, det
    assert desired.get("3.0.0") == 1 and desired.get("2.0.0", 0) + desired.get("1.0.0", 0) == n - 1, det
    assert det["devices"] == n and det["failing"] == 1 and det["stale"] == 1, det
    assert det["failures"] == [{"version": "3.0.0", "reason": "self-test failed", "devices": 1}], det
    # Told a version they do not run yet (the late one, if in the stage), failing ones apart.
    updating = [d for d in fleet if d is not bad and told[d.dev.id] != d.running[1]]
    assert det["updating"] == len(updating), (det, told)
    assert r_told(st) == sum(1 for v in told.values() if v == "2.0.0")
    [r] = st["rollouts"]
    assert (r["id"], r["state"], r["stage"], r["stages"], r["percent"]) == (ro["id"], "running", 0, 2, 50), r
    assert r["devices"] == n - 1 and r["model"] == "det" and r["to_version"] == "2.0.0", r

    out = s.cli("status")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"Devices: {n + 1} active (1 failing, 2 stale" in text and "1 decommissioned" in text, text
    assert "self-test failed" in text and "never checked in" in text, text
    assert f"running, stage 1 of 2 (50 %)" in text and ro["id"] in text, text
    js = s.cli("status", output="json")
    assert js.returncode == 0 and json.loads(js.stdout)["rollouts"][0]["id"] == ro["id"], js

    # Scopes: read may look, no token may not.
    read = s.make_token(["read"])["token"]
    assert _status(s, token=read)["devices"]["active"] == n + 1
    assert_problem(s.api("GET", "/v1/status", token=NO_TOKEN), 401)
    assert s.cli("status", "extra").returncode == 2
