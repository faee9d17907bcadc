"""Deployments and canary rollouts, driven by a simulated fleet that speaks the real protocol
(enrolment, challenge-response, check-ins reporting what it runs) against the real gangliond and
its controller: standing selectors, staged cohorts, gates, rollback, operator actions."""

import hashlib
import time

import pytest

from ganglion_harness import enroll_device, model_meta, publish, wait_for

# The controller wakes at once on changes; this bounds the wait for judgements with bake times.
FAST = ["--rollout-interval", "1s"]
# lib/latency.h: bounds 100 us, 200, 500, 1 ms, 2, 5, 10, 20, 50, 100, 200, 500 ms, 1 s, 2, 5, 10 s,
# then the overflow bucket.
NBUCKETS = 17
MS_1, MS_10 = 3, 6  # the buckets whose upper bounds are 1 ms and 10 ms


class SimDevice:
    """A device that does what its director targets say: "installs" the named version (failing
    for versions in `broken`; taking `install_checkins` check-ins to download when asked), then
    reports it active with request and error counters and, for versions in `latency`, a latency
    histogram on lib/latency.h's buckets (every request in the bucket `latency` names; the test may
    change it). Like the agent, it sends the ETag of the answer it holds (If-None-Match) and keeps
    the check-in interval it was last given."""

    def __init__(self, server, labels, broken=(), error_rate=None, latency=None, per_checkin=100,
                 install_checkins=0, name=None):
        self.dev = enroll_device(server, labels=labels, name=name)
        self.server = server
        self.token = self.dev.authenticate(server)
        self.broken = set(broken)
        self.error_rate = error_rate or {}
        self.latency = dict(latency or {})
        self.per_checkin = per_checkin
        self.install_checkins = install_checkins
        self.running = None  # (model, version)
        self.op = None
        self.seen = set()  # every (model, version) the director ever named to this device
        self.requests = 0
        self.buckets = [0] * NBUCKETS
        self.etag = None
        self.want = None
        self.poll = None  # the check-in interval last given
        self.downloading = None  # [(model, version), check-ins left]

    def desired(self, answer):
        for t in answer["director_targets"]["signed"]["targets"].values():
            c = t["custom"]
            return c["model"], c["version"]
        return None

    def report(self):
        if not self.running:
            return []
        self.requests += self.per_checkin
        version = self.running[1]
        rate = self.error_rate.get(version, 0.0)
        m = {"name": self.running[0], "version": version, "sha256": "0" * 64, "target": "cpu",
             "state": "active", "requests": self.requests, "errors": int(self.requests * rate),
             "latency_us_max": 900}
        if self.latency.get(version) is not None:
            self.buckets[self.latency[version]] += self.per_checkin
            m["latency_us_buckets"] = list(self.buckets)
        return [m]

    def checkin(self):
        body = {"agent_version": "sim", "models": self.report(), "facts": {}}
        if self.op:
            body["last_operation"] = self.op
        headers = {"If-None-Match": self.etag} if self.etag else None
        r = self.server.api("POST", "/v1/agent/checkin", token=self.token, json=body, headers=headers)
        assert r.status_code in (200, 304), r.text
        if r.status_code == 200:
            self.etag = r.headers.get("ETag")
            self.poll = r.json()["poll_interval"]
            self.want = self.desired(r.json())
        want = self.want
        if want:
            self.seen.add(want)
        if want and want != self.running and (not self.op or self.op.get("version") != want[1]
                                              or self.op["state"] != "failed"):
            self.install(want)
        return want

    def install(self, want):
        if self.install_checkins:
            if not self.downloading or self.downloading[0] != want:
                self.downloading = [want, self.install_checkins]
                self.op = {"state": "downloading", "model": want[0], "version": want[1]}
                return
            self.downloading[1] -= 1
            if self.downloading[1] > 0:
                return
        self.downloading = None
        if want[1] in self.broken:
            self.op = {"state": "failed", "model": want[0], "version": want[1], "detail": "self-test failed"}
        else:
            self.running = want
            self.requests = 0
            self.buckets = [0] * NBUCKETS
            self.op = {"state": "active", "model": want[0], "version": want[1]}


def fleet_checkin(fleet, rounds=1):
    for _ in range(rounds):
        for d in fleet:
            d.checkin()


def rollout_of(server, deployment):
    r = server.api("GET", "/v1/rollouts", params={"deployment": deployment})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    return items[0] if items else None


def drive(server, fleet, deployment, until, timeout=90):
    """Checks the fleet in until until(rollout) holds; returns the rollout."""
    last = {}

    def done():
        fleet_checkin(fleet)
        last["r"] = rollout_of(server, deployment)
        return last["r"] is not None and until(last["r"])

    assert wait_for(done, timeout, 0.2), f"rollout never got there: {last.get('r')}"
    return last["r"]


@pytest.fixture
def fast(gangliond):
    return gangliond(extra_args=FAST)


def publish_versions(server, *versions, model="det"):
    for v in versions:
        r = publish(server, model, f"bytes-{model}-{v}".encode(), meta=model_meta(v))
        assert r.status_code == 201, r.text


def create(server, name="cams", model="det", selector="site=north", follow="production", strategy=None,
           token=None, expect=201):
    body = {"name": name, "model": model, "selector": selector, "follow": follow}
    if strategy is not None:
        body["strategy"] = strategy
    kw = {"token": token} if token else {}
    r = server.api("POST", "/v1/deployments", json=body, **kw)
    assert r.status_code == expect, r.text
    return r.json()


CANARY = {"stages": [{"percent": 30, "bake": 1}, {"percent": 100, "bake": 0}],
          "gates": {"max_failed": 0, "min_healthy": 1}}


def test_a_deployment_is_a_standing_rule(fast):
    publish_versions(fast, "1.0.0")
    assert fast.api("PUT", "/v1/models/det/aliases/production", json={"version": "1.0.0"}).status_code == 200
    north = [SimDevice(fast, {"site": "north"}) for _ in range(3)]
    south = SimDevice(fast, {"site": "south"})
    d = create(fast)
    assert d["version"] == "1.0.0" and d["follow"] == "production"
    assert wait_for(lambda: (fleet_checkin(north), all(x.running == ("det", "1.0.0") for x in north))[1], 30, 0.2)
    south.checkin()
    assert south.running is None
    # A camera that enrols later with the same labels gets it too.
    late = SimDevice(fast, {"site": "north"})
    assert wait_for(lambda: late.checkin() == ("det", "1.0.0"), 30, 0.2)
    dev = fast.api("GET", f"/v1/devices/{late.dev.id}").json()
    (desired,) = dev["desired"]
    assert desired["deployment"] == "cams" and desired["override"] is False


def test_alias_move_rolls_out_in_stages_and_completes(fast):
    publish_versions(fast, "1.0.0", "2.0.0")
    fast.api("PUT", "/v1/models/det/aliases/production", json={"version": "1.0.0"})
    fleet = [SimDevice(fast, {"site": "north"}) for _ in range(10)]
    create(fast, strategy=CANARY)
    assert wait_for(lambda: (fleet_checkin(fleet), all(x.running == ("det", "1.0.0") for x in fleet))[1], 30, 0.2)
    plan = fast.api("GET", "/v1/deployments/cams/plan").json()
    assert plan["devices"] == 10 and plan["stages"][-1] == {"percent": 100, "devices": 10}

    assert fast.api("PUT", "/v1/models/det/aliases/production", json={"version": "2.0.0"}).status_code == 200
    r = drive(fast, fleet, "cams", lambda r: r["state"] == "completed")
    assert r["from_version"] == "1.0.0" and r["to_version"] == "2.0.0"
    watch = fast.cli("rollout", "watch", r["id"])
    assert watch.returncode == 0 and "completed" in watch.stdout, watch
    fleet_checkin(fleet)
    assert all(x.running == ("det", "2.0.0") for x in fleet)
    assert fast.api("GET", "/v1/deployments/cams").json()["version"] == "2.0.0"
    kinds = [e["kind"] for e in fast.api("GET", f"/v1/rollouts/{r['id']}/events").json()["items"]]
    # 30 % of 10 devices holds none in 0.7^10 (about 3 %) of rollouts: the controller then pins one.
    if any(cohort(r["id"], x.dev.id) < 0.30 for x in fleet):
        assert kinds == ["start", "stage", "complete"], kinds
    else:
        assert kinds == ["start", "pin", "stage", "complete"], kinds
    audit = fast.api("GET", "/v1/audit", params={"limit": 200}).json()["items"]
    assert any(a["action"] == "rollout.complete" and a["actor"] == "controller" for a in audit)


def test_a_bad_canary_rolls_back_and_never_reaches_the_rest(fast):
    publish_versions(fast, "1.0.0", "3.0.0")
    fast.api("PUT", "/v1/models/det/aliases/production", json={"version": "1.0.0"})
    # 30 devices: the chance that the 30 % stage holds none (and so judges nothing) is 0.7^30.
    fleet = [SimDevice(fast, {"site": "north"}, broken={"3.0.0"}) for _ in range(30)]
    create(fast, strategy=CANARY)
    assert wait_for(lambda: (fleet_checkin(fleet), all(x.running == ("det", "1.0.0") for x in fleet))[1], 30, 0.2)
    fast.api("PUT", "/v1/models/det/aliases/production", json={"version": "3.0.0"})
    r = drive(fast, fleet, "cams", lambda r: r["state"] == "rolled_back")
    assert "failed install" in r["reason"] and r["stage"] == 0, r
    fleet_checkin(fleet, 2)
    assert all(x.running == ("det", "1.0.0") for x in fleet)
    # The fleet view names what each device should run, from where, and the failure.
    out = fast.cli("devices", "list", "--selector", "site=north")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("det@1.0.0 (deployment cams)") == 30, out.stdout
    assert "FAILED det@3.0.0: self-test failed" in out.stdout, out.stdout
    watch = fast.cli("rollout", "watch", r["id"])
    assert watch.returncode == 1 and "rolled_back" in watch.stderr + watch.stdout, watch
    reached = [x for x in fleet if ("det", "3.0.0") in x.seen]
    assert 1 <= len(reached) < len(fleet), "only the canary cohort may ever be told to run 3.0.0"
    # The controller does not retry the same bad move by itself.
    time.sleep(2.5)
    assert rollout_of(fast, "cams")["id"] == r["id"]
    # A good release after it rolls out; the list shows the newest rollout first.
    publish_versions(fast, "4.0.0")
    fast.api("PUT", "/v1/models/det/aliases/production", json={"version": "4.0.0"})
    r4 = drive(fast, fleet, "cams", lambda x: x["to_version"] == "4.0.0" and x["state"] == "completed")
    assert r4["from_version"] == "1.0.0"
    ids = [x["id"] for x in fast.api("GET", "/v1/rollouts", params={"deployment": "cams"}).json()["items"]]
    assert ids == [r4["id"], r["id"]], ids


def test_error_rate_gate_rolls_back(fast):
    publish_versions(fast, "1.0.0", "2.0.0")
    fast.api("PUT", "/v1/models/det/aliases/production", json={"version": "1.0.0"})
    fleet = [SimDevice(fast, {"site": "north"}, error_rate={"2.0.0": 0.3}) for _ in range(10)]
    strat = {"stages": [{"percent": 50, "bake": 30}, {"percent": 100, "bake": 0}],
             "gates": {"max_error_increase": 0.05, "min_requests": 200}}
    create(fast, strategy=strat)
    assert wait_for(lambda: (fleet_checkin(fleet), all(x.running == ("det", "1.0.0") for x in fleet))[1], 30, 0.2)
    fast.api("PUT", "/v1/models/det/aliases/production", json={"version": "2.0.0"})
    r = drive(fast, fleet, "cams", lambda r: r["state"] == "rolled_back")
    assert "error rate" in r["reason"], r["reason"]


def test_operator_actions_and_approval(fast):
    publish_versions(fast, "1.0.0", "2.0.0")
    fleet = [SimDevice(fast, {"site": "north"}) for _ in range(4)]
    ci = fast.make_token(["ci"])["token"]
    op = fast.make_token(["operator"])["token"]
    strat = {"stages": [{"percent": 50, "bake": 3600}, {"percent": 100, "bake": 0}], "approval": True}
    create(fast, follow="1.0.0", strategy=strat, token=ci)
    assert wait_for(lambda: (fleet_checkin(fleet), all(x.running == ("det", "1.0.0") for x in fleet))[1], 30, 0.2)
    r = fast.api("PATCH", "/v1/deployments/cams", token=ci, json={"follow": "2.0.0"})
    assert r.status_code == 200, r.text
    ro = rollout_of(fast, "cams")
    assert ro["state"] == "waiting_approval"
    fleet_checkin(fleet)
    assert all(x.running == ("det", "1.0.0") for x in fleet), "nothing moves before approval"
    # The token that started it cannot approve it; ci cannot act on rollouts at all.
    assert fast.api("POST", f"/v1/rollouts/{ro['id']}/approve", token=ci).status_code == 403
    assert fast.api("POST", f"/v1/rollouts/{ro['id']}/resume", token=op).status_code == 409
    assert fast.api("POST", f"/v1/rollouts/{ro['id']}/launch", token=op).status_code == 400
    r = fast.api("POST", f"/v1/rollouts/{ro['id']}/approve", token=op)
    assert r.status_code == 200 and r.json()["state"] == "running", r.text
    assert r.json()["approved_by"].startswith("token:")
    # A second rollout while this one runs is refused, naming it.
    publish_versions(fast, "2.1.0")
    r = fast.api("PATCH", "/v1/deployments/cams", token=op, json={"follow": "2.1.0"})
    assert r.status_code == 409 and ro["id"] in r.json()["detail"]
    assert fast.api("POST", f"/v1/rollouts/{ro['id']}/pause", token=op).json()["state"] == "paused"
    assert fast.api("POST", f"/v1/rollouts/{ro['id']}/resume", token=op).json()["state"] == "running"
    # The bake is an hour: promote skips it once the stage is healthy.
    assert fast.api("POST", f"/v1/rollouts/{ro['id']}/promote", token=op).status_code == 200
    drive(fast, fleet, "cams", lambda r: r["stage"] == 1 or r["state"] == "completed")
    assert fast.api("POST", f"/v1/rollouts/{ro['id']}/abort", token=op).json()["state"] == "aborted"
    fleet_checkin(fleet, 2)
    assert all(x.running == ("det", "1.0.0") for x in fleet), "abort takes every device back"


def test_invalid_settings_and_overlap_are_refused(fast):
    publish_versions(fast, "1.0.0")
    bad = [
        ({"stages": [{"percent": 50}]}, "100 percent"),
        ({"stages": [{"percent": 50}, {"percent": 40}]}, "above the stage before"),
        ({"stages": [{"percent": 100, "bake": -1}]}, "bake"),
        ({"gates": {"max_failed_share": 2}}, "max_failed_share"),
        ({"gates": {"max_parallel": 3}}, "max_parallel"),
        ({"max_parallel": 0}, "strategy.max_parallel must be 1 to 1000000"),
        ({"max_parallel": "3"}, "max_parallel"),
        ({"gates": {"max_p95_latency_ratio": 0.5}}, "max_p95_latency_ratio must be from 1 to 1000"),
        ({"gates": {"max_p95_latency_ms": 0}}, "max_p95_latency_ms must be from 0.1 to 10000 milliseconds"),
        ({"gates": {"max_p95_latency_ms": 20000}}, "max_p95_latency_ms"),
        ({"gates": {"max_p95_latency_ms": 50, "min_requests": 0}}, "min_requests must be at least 1"),
        ({"gates": {"max_p95_latency_ratio": 2}}, "it needs a stage below 100 percent"),
        ({"stages": [{"percent": 100}], "gates": {"max_error_increase": 0.1}}, "max_error_increase compares"),
        ({"on_failure": "ignore"}, "on_failure"),
        ({"stages": [{"percent": 100, "soak": 3}]}, "soak"),
    ]
    for strat, words in bad:
        r = fast.api("POST", "/v1/deployments", json={"name": "x", "model": "det", "selector": "a=b",
                                                      "follow": "1.0.0", "strategy": strat})
        assert r.status_code == 400 and words in r.json()["detail"], (strat, r.text)
    for body, status, words in [
        ({"name": "Bad_Name", "model": "det", "selector": "a=b", "follow": "1.0.0"}, 400, "deployment name"),
        ({"name": "x", "model": "det", "selector": "", "follow": "1.0.0"}, 400, "selector is empty"),
        ({"name": "x", "model": "det", "selector": "a=b", "follow": "9.9.9"}, 404, "9.9.9"),
        ({"name": "x", "model": "nope", "selector": "a=b", "follow": "1.0.0"}, 404, "nope"),
    ]:
        r = fast.api("POST", "/v1/deployments", json=body)
        assert r.status_code == status and words in r.json()["detail"], (body, r.text)
    SimDevice(fast, {"site": "north", "kind": "cam"})
    create(fast, name="north", selector="site=north", follow="1.0.0")
    r = fast.api("POST", "/v1/deployments", json={"name": "cams", "model": "det", "selector": "kind=cam",
                                                  "follow": "1.0.0"})
    assert r.status_code == 409 and "north" in r.json()["detail"], r.text
    assert fast.api("POST", "/v1/deployments", json={"name": "north", "model": "det", "selector": "x=y",
                                                     "follow": "1.0.0"}).status_code == 409
    # Unknown fields, wrong types, missing fields, malformed JSON: 400, and nothing written.
    for body in ({"name": "y", "model": "det", "selector": "a=b", "follow": "1.0.0", "extra": 1},
                 {"name": "y", "model": "det", "selector": 7, "follow": "1.0.0"},
                 {"name": "y", "model": "det", "selector": "a=b"}):
        assert fast.api("POST", "/v1/deployments", json=body).status_code == 400, body
    r = fast.api("POST", "/v1/deployments", data=b'{"name": "y",', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert fast.api("GET", "/v1/deployments/y").status_code == 404
    assert fast.api("PATCH", "/v1/deployments/north", json={"follow": "1.0.0", "soak": 1}).status_code == 400
    assert fast.api("PATCH", "/v1/deployments/north", json={"follow": "9.9.9"}).status_code == 404
    assert fast.api("PATCH", "/v1/deployments/nope", json={"follow": "1.0.0"}).status_code == 404
    assert fast.api("DELETE", "/v1/deployments/nope").status_code == 404
    assert fast.api("GET", "/v1/deployments/nope/plan").status_code == 404
    for rid in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        assert fast.api("GET", f"/v1/rollouts/{rid}").status_code == 404
        assert fast.api("POST", f"/v1/rollouts/{rid}/pause").status_code == 404
    # Scopes: read cannot write, ci cannot act on rollouts or delete, no token is 401.
    read = fast.make_token(["read"])["token"]
    ci = fast.make_token(["ci"])["token"]
    body = {"name": "z", "model": "det", "selector": "q=r", "follow": "1.0.0"}
    assert fast.api("POST", "/v1/deployments", json=body, token=read).status_code == 403
    assert fast.api("DELETE", "/v1/deployments/north", token=ci).status_code == 403
    assert fast.api("POST", "/v1/deployments", json=body, token=None).status_code == 401
    assert fast.api("GET", "/v1/deployments/north", token=read).status_code == 200
    names = [d["name"] for d in fast.api("GET", "/v1/deployments").json()["items"]]
    assert names == ["north"], names
    audit = [a["action"] for a in fast.api("GET", "/v1/audit", params={"limit": 200}).json()["items"]]
    assert audit.count("deployment.create") == 1 and "deployment.update" not in audit, audit


def test_override_wins_and_is_shown(fast):
    publish_versions(fast, "1.0.0", "2.0.0")
    dev = SimDevice(fast, {"site": "north"})
    create(fast, follow="1.0.0")
    assert wait_for(lambda: dev.checkin() == ("det", "1.0.0"), 30, 0.2)
    r = fast.api("PUT", f"/v1/devices/{dev.dev.id}/desired", json={"model": "det", "version": "2.0.0"})
    assert r.status_code == 200, r.text
    time.sleep(2.5)  # a controller pass or two must not undo the override
    assert dev.checkin() == ("det", "2.0.0")
    (desired,) = fast.api("GET", f"/v1/devices/{dev.dev.id}").json()["desired"]
    assert desired["override"] is True and desired["deployment"] is None


def transitions(server, rollout_id):
    """The rollout's events but pins and hold-backs: with a handful of devices a canary stage may
    by chance hold none (it takes the first device in the rollout's order, a pin event) or all of
    them (it keeps the last back as the control, a hold_back event)."""
    items = server.api("GET", f"/v1/rollouts/{rollout_id}/events").json()["items"]
    return [e["kind"] for e in items if e["kind"] not in ("pin", "hold_back")]


def _kill9(server):
    server.proc.kill()
    server.proc.wait()
    server.proc = None


def test_killed_mid_rollout_it_resumes(gangliond):
    a = gangliond(extra_args=FAST)
    publish_versions(a, "1.0.0", "2.0.0")
    fleet = [SimDevice(a, {"site": "north"}) for _ in range(6)]
    strat = {"stages": [{"percent": 50, "bake": 2}, {"percent": 100, "bake": 0}]}
    create(a, follow="1.0.0", strategy=strat)
    assert wait_for(lambda: (fleet_checkin(fleet), all(x.running == ("det", "1.0.0") for x in fleet))[1], 30, 0.2)
    assert a.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
    fleet_checkin(fleet)
    _kill9(a)
    b = gangliond(extra_args=FAST, admin_token=a.admin_token)
    for d in fleet:
        d.server = b
    r = drive(b, fleet, "cams", lambda r: r["state"] == "completed")
    fleet_checkin(fleet)
    assert all(x.running == ("det", "2.0.0") for x in fleet)
    assert transitions(b, r["id"]) == ["start", "stage", "complete"]


def test_two_replicas_one_controller_and_handover(gangliond):
    a = gangliond(extra_args=FAST)
    b = gangliond(extra_args=FAST, admin_token=a.admin_token)
    publish_versions(a, "1.0.0", "2.0.0")
    fleet = [SimDevice(b, {"site": "north"}) for _ in range(8)]
    strat = {"stages": [{"percent": 25, "bake": 1}, {"percent": 50, "bake": 1}, {"percent": 100, "bake": 0}]}
    create(a, follow="1.0.0", strategy=strat)
    assert wait_for(lambda: (fleet_checkin(fleet), all(x.running == ("det", "1.0.0") for x in fleet))[1], 30, 0.2)
    assert a.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
    drive(b, fleet, "cams", lambda r: r["stage"] >= 1)
    _kill9(a)  # whichever replica held the controller, the other carries on
    r = drive(b, fleet, "cams", lambda r: r["state"] == "completed")
    assert transitions(b, r["id"]) == ["start", "stage", "stage", "complete"]


def cohort(rollout_id, device_id):
    """The device's place in the rollout, as gn_cohort computes it in SQL."""
    return int(hashlib.md5(f"{rollout_id}/{device_id}".encode()).hexdigest()[:8], 16) / 4294967296.0


def test_a_canary_stage_never_judges_nothing(fast):
    """1 % of three devices is usually none: the stage takes the first device in the rollout's
    order instead of passing with nothing to judge, and the bad version stops there."""
    publish_versions(fast, "1.0.0", "3.0.0")
    fleet = [SimDevice(fast, {"site": "north"}, broken={"3.0.0"}) for _ in range(3)]
    create(fast, follow="1.0.0", strategy={"stages": [{"percent": 1, "bake": 1}, {"percent": 100, "bake": 0}]})
    assert wait_for(lambda: (fleet_checkin(fleet), all(x.running == ("det", "1.0.0") for x in fleet))[1], 30, 0.2)
    plan = fast.api("GET", "/v1/deployments/cams/plan").json()
    assert plan["stages"][0]["devices"] >= 1, plan
    assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "3.0.0"}).status_code == 200
    r = drive(fast, fleet, "cams", lambda r: r["state"] == "rolled_back")
    assert r["stage"] == 0, r
    reached = [x for x in fleet if ("det", "3.0.0") in x.seen]
    natural = [x for x in fleet if cohort(r["id"], x.dev.id) < 0.01]
    kinds = [e["kind"] for e in fast.api("GET", f"/v1/rollouts/{r['id']}/events").json()["items"]]
    if natural:
        assert "pin" not in kinds and len(reached) == len(natural), (kinds, len(reached))
    else:
        assert kinds[:2] == ["start", "pin"] and len(reached) == 1, (kinds, len(reached))


# --- several models per device ----------------------------------------------------------------
class MultiSim(SimDevice):
    """A simulated device that runs every model its director targets name, one version each, and
    reports each with its counters and (one per check-in, as the agent does) the operation that
    made it active; it records every (model, version) it was ever told to run."""

    def __init__(self, server, labels):
        super().__init__(server, labels)
        self.runs = {}  # model -> version
        self.ops = []  # operations not reported yet, oldest first

    def checkin(self):
        self.requests += 100
        models = [{"name": m, "version": v, "sha256": "0" * 64, "target": "cpu", "state": "active",
                   "requests": self.requests, "errors": 0, "latency_us_buckets": [self.requests] + [0] * 16}
                  for m, v in sorted(self.runs.items())]
        body = {"agent_version": "sim", "models": models, "facts": {}}
        if self.ops:
            body["last_operation"] = self.ops.pop(0)
        r = self.server.api("POST", "/v1/agent/checkin", token=self.token, json=body)
        assert r.status_code == 200, r.text
        want = {t["custom"]["model"]: t["custom"]["version"]
                for t in r.json()["director_targets"]["signed"]["targets"].values()}
        self.seen |= set(want.items())
        self.ops += [{"state": "active", "model": m, "version": v} for m, v in sorted(want.items())
                     if self.runs.get(m) != v]
        self.runs = want
        return want


def audit_of(server, action):
    return [a for a in server.api("GET", "/v1/audit", params={"limit": 500}).json()["items"] if a["action"] == action]


def test_two_models_from_two_deployments_roll_out_alone(fast):
    """A detector and a classifier on the same cameras, from two deployments with the same
    selector: overlap is per model. A rollout of the classifier moves only the classifier."""
    publish_versions(fast, "1.0.0", "2.0.0", model="det")
    publish_versions(fast, "1.0.0", "2.0.0", model="cls")
    fleet = [MultiSim(fast, {"site": "north"}) for _ in range(4)]
    create(fast, name="detectors", model="det", follow="1.0.0")
    create(fast, name="classifiers", model="cls", follow="1.0.0", strategy=CANARY)
    # The same model on the same devices is refused, naming the deployment in the way.
    r = fast.api("POST", "/v1/deployments", json={"name": "more-cls", "model": "cls", "selector": "site",
                                                  "follow": "1.0.0"})
    assert r.status_code == 409 and "classifiers" in r.json()["detail"] and "cls" in r.json()["detail"], r.text
    assert wait_for(lambda: (fleet_checkin(fleet),
                             all(x.runs == {"det": "1.0.0", "cls": "1.0.0"} for x in fleet))[1], 30, 0.2)
    dev = fast.api("GET", f"/v1/devices/{fleet[0].dev.id}").json()
    assert [(d["model"], d["deployment"]) for d in dev["desired"]] == [("cls", "classifiers"), ("det", "detectors")]
    assert fast.api("GET", "/v1/deployments/classifiers").json()["devices"] == 4

    assert fast.api("PATCH", "/v1/deployments/classifiers", json={"follow": "2.0.0"}).status_code == 200
    ro = drive(fast, fleet, "classifiers", lambda r: r["state"] == "completed")
    assert (ro["model"], ro["from_version"], ro["to_version"]) == ("cls", "1.0.0", "2.0.0")
    fleet_checkin(fleet)
    assert all(x.runs == {"det": "1.0.0", "cls": "2.0.0"} for x in fleet), [x.runs for x in fleet]
    assert not any(("det", "2.0.0") in x.seen for x in fleet), "the classifier's rollout moved the detector"
    out = fast.cli("devices", "list", "--selector", "site=north")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("cls@2.0.0 (deployment classifiers), det@1.0.0 (deployment detectors)") == 4, out.stdout
    assert out.stdout.count("cls@2.0.0 [") == 4 and "p95<=100us" in out.stdout, out.stdout

    # Deleting one deployment takes its model away and leaves the other.
    assert fast.api("DELETE", "/v1/deployments/classifiers").status_code == 204
    fleet_checkin(fleet)
    assert all(x.runs == {"det": "1.0.0"} for x in fleet), [x.runs for x in fleet]


def test_a_label_change_that_makes_an_overlap_keeps_the_older_deployment(fast):
    """Two deployments of det that overlap on no device when created; a device relabelled (or
    enrolled) so that both match stays on the deployment it runs, and the conflict shows on the
    device, in `devices show` and in the audit log, until a label change resolves it."""
    publish_versions(fast, "1.0.0", "2.0.0")
    cam = MultiSim(fast, {"site": "north"})
    create(fast, name="north", selector="site=north", follow="1.0.0")
    create(fast, name="lab", selector="role=lab", follow="2.0.0")
    assert wait_for(lambda: cam.checkin() == {"det": "1.0.0"}, 30, 0.2)

    assert fast.api("PATCH", f"/v1/devices/{cam.dev.id}", json={"labels": {"role": "lab"}}).status_code == 200

    def conflicts():
        return fast.api("GET", f"/v1/devices/{cam.dev.id}").json()["conflicts"]

    assert wait_for(lambda: conflicts(), 30, 0.2), "no conflict reported"
    (c,) = conflicts()
    assert (c["model"], c["deployment"], c["kept"]) == ("det", "lab", "north") and c["since"], c
    time.sleep(2.5)  # controller passes must not move it
    assert cam.checkin() == {"det": "1.0.0"}
    (entry,) = [a for a in audit_of(fast, "device.conflict") if a["object_id"] == cam.dev.id]
    assert entry["actor"] == "controller" and entry["detail"]["deployment"] == "lab" \
        and entry["detail"]["kept"] == "north", entry
    show = fast.cli("devices", "show", cam.dev.id)
    assert show.returncode == 0, show.stderr
    assert "CONFLICT: deployment lab also matches this device for model det; it stays on deployment north" \
        in show.stdout, show.stdout
    assert "CONFLICT det: also deployment lab, kept north" in fast.cli("devices", "list").stdout

    # A camera enrolled with both labels goes to the older deployment, with the conflict.
    late = MultiSim(fast, {"site": "north", "role": "lab"})
    assert wait_for(lambda: late.checkin() == {"det": "1.0.0"}, 30, 0.2)
    assert wait_for(lambda: fast.api("GET", f"/v1/devices/{late.dev.id}").json()["conflicts"], 30, 0.2)

    # Out of north, the device moves to lab without a gap, and the conflict is gone.
    assert fast.api("PATCH", f"/v1/devices/{cam.dev.id}", json={"labels": {"site": None}}).status_code == 200
    seen = []
    assert wait_for(lambda: seen.append(cam.checkin()) or seen[-1] == {"det": "2.0.0"}, 30, 0.2), seen
    assert {} not in seen, "the device was left without det on the way"
    assert wait_for(lambda: conflicts() == [], 30, 0.2)
    (d,) = fast.api("GET", f"/v1/devices/{cam.dev.id}").json()["desired"]
    assert (d["deployment"], d["version"]) == ("lab", "2.0.0"), d
    assert fast.api("GET", "/v1/deployments/north").json()["devices"] == 1  # only the late camera
def events_of(server, rollout_id):
    return server.api("GET", f"/v1/rollouts/{rollout_id}/events").json()["items"]


def on_version(fleet, version):
    return all(x.running == ("det", version) for x in fleet)


def start_fleet(server, fleet, strategy, version="1.0.0"):
    """Creates deployment cams of det@version over the fleet and waits until every device runs it."""
    create(server, follow=version, strategy=strategy)
    assert wait_for(lambda: (fleet_checkin(fleet), on_version(fleet, version))[1], 30, 0.2)


LATENCY = {"stages": [{"percent": 50, "bake": 1}, {"percent": 100, "bake": 0}],
           "gates": {"max_p95_latency_ratio": 1.5, "min_requests": 200}}


def test_a_slower_canary_fails_the_p95_latency_gate(fast):
    """The canary's p95 (10 ms) against the control's (1 ms) over the same period: ten times, over
    max_p95_latency_ratio 1.5. A device whose report is malformed counts for nothing and breaks
    nothing."""
    publish_versions(fast, "1.0.0", "2.0.0")
    fleet = [SimDevice(fast, {"site": "north"}, latency={"1.0.0": MS_1, "2.0.0": MS_10}) for _ in range(10)]
    start_fleet(fast, fleet, LATENCY)
    odd = SimDevice(fast, {"site": "north"})
    odd.report = lambda: [{"name": "det", "version": "1.0.0", "state": "active", "requests": "many",
                           "errors": -1, "latency_us_buckets": [1, 2, "x"]}]
    fleet.append(odd)
    assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
    r = drive(fast, fleet, "cams", lambda r: r["state"] == "rolled_back")
    assert "p95 latency 10.0 ms is 10.00 times the control's 1.0 ms" in r["reason"], r["reason"]
    back = [e for e in events_of(fast, r["id"]) if e["kind"] == "rollback"][0]["detail"]
    assert back["gate"] == "max_p95_latency_ratio" and back["stats"]["canary_p95_latency_ms"] == 10.0, back
    assert back["stats"]["control_p95_latency_ms"] == 1.0 and back["stats"]["control_latency_samples"] >= 200
    fleet_checkin(fleet, 2)
    assert on_version(fleet[:-1], "1.0.0")


def test_the_control_is_judged_over_the_same_period(fast):
    """The devices on 1.0.0 answered in 1 ms for a long time; since the rollout began every device
    answers in 10 ms, whichever version it runs. Compared over the same period the canary is no
    slower than the control, and the rollout completes; against the control's whole history
    (p95 1 ms) it would have failed ten times over."""
    publish_versions(fast, "1.0.0", "2.0.0")
    fleet = [SimDevice(fast, {"site": "north"}, latency={"1.0.0": MS_1, "2.0.0": MS_10}, per_checkin=100000)
             for _ in range(8)]
    start_fleet(fast, fleet, dict(LATENCY, gates={"max_p95_latency_ratio": 1.5, "min_requests": 300}))
    fleet_checkin(fleet, 5)  # 500,000 fast requests of history on each device
    for d in fleet:
        d.latency["1.0.0"] = MS_10
        d.per_checkin = 100
    assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
    r = drive(fast, fleet, "cams", lambda r: r["state"] in ("completed", "rolled_back"))
    assert r["state"] == "completed", r
    stage = [e for e in events_of(fast, r["id"]) if e["kind"] == "stage"][0]["detail"]
    ratio = [g for g in stage["gates"] if g["gate"] == "max_p95_latency_ratio"][0]
    assert ratio["state"] == "pass" and ratio["value"] == 1.0, ratio
    assert stage["stats"]["control_p95_latency_ms"] == 10.0 and stage["stats"]["control_latency_samples"] < 100000


def test_a_gate_that_cannot_be_judged_holds_the_stage_explicitly(fast):
    """The control reports no latency histogram (agents that do not count latency): the ratio gate
    cannot be judged, so after its bake the stage holds, with a hold event saying why (once), and
    never passes by itself; promote waives it, named in the stage's event. The last stage holds
    every device, so the comparison does not apply there and the rollout completes."""
    publish_versions(fast, "1.0.0", "2.0.0")
    fleet = [SimDevice(fast, {"site": "north"}, latency={"2.0.0": MS_1}) for _ in range(10)]
    start_fleet(fast, fleet, LATENCY)
    assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
    r = drive(fast, fleet, "cams", lambda r: (r["reason"] or "").startswith("holding stage 0"))
    assert "max_p95_latency_ratio cannot be judged yet: the control has 0 latency samples" in r["reason"], r
    fleet_checkin(fleet, 6)
    time.sleep(1.5)
    ro = fast.api("GET", f"/v1/rollouts/{r['id']}").json()
    assert ro["state"] == "running" and ro["stage"] == 0, ro
    gate = [g for g in ro["progress"]["gates"] if g["gate"] == "max_p95_latency_ratio"][0]
    assert gate["state"] == "unjudged" and gate["value"] is None, gate
    out = fast.cli("rollout", "status", r["id"])
    assert out.returncode == 0 and "max_p95_latency_ratio -/1.5 unjudged" in out.stdout, out
    holds = [e for e in events_of(fast, r["id"]) if e["kind"] == "hold"]
    assert len(holds) == 1 and holds[0]["detail"]["unjudged"] == ["max_p95_latency_ratio"], holds
    assert fast.api("POST", f"/v1/rollouts/{r['id']}/promote").status_code == 200
    r = drive(fast, fleet, "cams", lambda r: r["state"] == "completed")
    stage = [e for e in events_of(fast, r["id"]) if e["kind"] == "stage"][0]["detail"]
    assert stage["waived_by"] == "promote" and "max_p95_latency_ratio" in stage["waived"][0], stage
    assert [g["gate"] for g in [e for e in events_of(fast, r["id"]) if e["kind"] == "complete"][0]
            ["detail"]["gates"]] == ["max_failed", "max_failed_share"]
    audit = [a["action"] for a in fast.api("GET", "/v1/audit", params={"limit": 200}).json()["items"]]
    assert audit.count("rollout.hold") == 1, audit


def test_too_few_requests_hold_the_absolute_gates_too(fast):
    """max_error_rate and max_p95_latency_ms on a canary that has served fewer requests than
    min_requests: held, not passed."""
    publish_versions(fast, "1.0.0", "2.0.0")
    fleet = [SimDevice(fast, {"site": "north"}, latency={"2.0.0": MS_1}, per_checkin=1) for _ in range(4)]
    strat = {"stages": [{"percent": 100, "bake": 0}],
             "gates": {"max_error_rate": 0.1, "max_p95_latency_ms": 50, "min_requests": 1000}}
    start_fleet(fast, fleet, strat)
    assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
    r = drive(fast, fleet, "cams", lambda r: (r["reason"] or "").startswith("holding stage 0"))
    hold = [e for e in events_of(fast, r["id"]) if e["kind"] == "hold"][0]["detail"]
    assert hold["unjudged"] == ["max_error_rate", "max_p95_latency_ms"], hold
    assert "the canary has" in hold["reason"] and "min_requests is 1000" in hold["reason"], hold


def test_devices_in_a_running_stage_check_in_faster(gangliond):
    """The check-in answer carries the interval: rollout-poll-interval for the devices of a running
    stage, agent-poll-interval for the rest, and it changes when a device enters or leaves a
    running stage even when what it runs does not (the cached answer is dropped)."""
    s = gangliond(extra_args=FAST + ["--agent-poll-interval", "30s", "--rollout-poll-interval", "2s"])
    publish_versions(s, "1.0.0", "2.0.0")
    fleet = [SimDevice(s, {"site": "north"}) for _ in range(8)]
    start_fleet(s, fleet, {"stages": [{"percent": 50, "bake": 3600}, {"percent": 100, "bake": 0}]})
    assert {d.poll for d in fleet} == {30}
    assert s.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
    rid = rollout_of(s, "cams")["id"]

    def stage_healthy():
        fleet_checkin(fleet)
        p = s.api("GET", f"/v1/rollouts/{rid}").json()["progress"]
        return p["devices"] > 0 and p["healthy"] == p["devices"]

    assert wait_for(stage_healthy, 60, 0.2)
    r = s.api("GET", f"/v1/rollouts/{rid}").json()
    fleet_checkin(fleet)
    canary = [d for d in fleet if cohort(r["id"], d.dev.id) < 0.5 or d.running == ("det", "2.0.0")]
    rest = [d for d in fleet if d not in canary]
    assert canary and {d.poll for d in canary} == {2} and {d.poll for d in rest} <= {30}
    etags = {d.dev.id: d.etag for d in canary}
    assert s.api("POST", f"/v1/rollouts/{r['id']}/pause").status_code == 200
    fleet_checkin(fleet)
    assert {d.poll for d in fleet} == {30}, "paused: no device is in a running stage"
    assert all(d.etag != etags[d.dev.id] for d in canary) and on_version(canary, "2.0.0")
    assert s.api("POST", f"/v1/rollouts/{r['id']}/resume").status_code == 200
    fleet_checkin(fleet)
    assert {d.poll for d in canary} == {2}
    assert s.api("POST", f"/v1/rollouts/{r['id']}/promote").status_code == 200
    drive(s, fleet, "cams", lambda r: r["state"] == "completed")
    fleet_checkin(fleet)
    assert on_version(fleet, "2.0.0") and {d.poll for d in fleet} == {30}


def test_max_parallel_caps_devices_downloading_at_once(fast):
    """max_parallel 3 over 12 devices whose downloads take a few check-ins: never more than three
    devices told 2.0.0 and not yet reporting it; the rest follow as those finish."""
    publish_versions(fast, "1.0.0", "2.0.0")
    fleet = [SimDevice(fast, {"site": "north"}, install_checkins=3) for _ in range(12)]
    start_fleet(fast, fleet, {"stages": [{"percent": 100, "bake": 0}], "max_parallel": 3})
    assert fast.api("GET", "/v1/deployments/cams").json()["strategy"]["max_parallel"] == 3
    assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
    most = [0]

    def done():
        fleet_checkin(fleet)
        told = [d for d in fleet if d.want == ("det", "2.0.0") and d.running != ("det", "2.0.0")]
        most[0] = max(most[0], len(told))
        assert len(told) <= 3, [d.op for d in told]
        return on_version(fleet, "2.0.0")

    assert wait_for(done, 90, 0.2)
    assert most[0] == 3, most
    assert drive(fast, fleet, "cams", lambda r: r["state"] in ("completed", "rolled_back"))["state"] == "completed"


# --- gates on the canary's telemetry -----------------------------------------------------------------

JUDGED = {"stages": [{"percent": 50, "bake": 1}, {"percent": 100, "bake": 0}],
          "gates": {"canary_judgement": {"min_score": 95, "marginal_score": 60}}}
OUTPUTS = {"features": [{"name": "x0", "edges": [0, 0.5, 1], "proportions": [0.4, 0.6]}],
           "outputs": [{"name": "y", "kind": "categorical", "vocabulary": ["0", "1"], "proportions": [0.5, 0.5, 0.0],
                        "reduce": "argmax"}]}


def send_windows(server, fleet, errors, windows=3, requests=200, slow=(), classes=None, offset=0):
    """Each device sends `windows` telemetry windows of 10 s (starting after the rollout began) for
    the version it runs: `requests` requests, errors[version] errors, every request in the 1 ms
    latency bucket (10 ms for versions in slow) and, when classes[version] is set, those counts
    of output classes 0 and 1. offset moves the windows later (calls must not repeat a window)."""
    start = (int(time.time()) // 10 + 1) * 10 + offset  # aligned on its length, after the rollout began
    for d in fleet:
        version = d.running[1]
        lat = [0] * NBUCKETS
        lat[MS_10 if version in slow else MS_1] = requests
        ws = []
        for k in range(windows):
            w = {"model": "det", "version": version, "start": start + 10 * k, "seconds": 10, "requests": requests,
                 "errors": errors[version], "latency_us_buckets": lat}
            if classes and version in classes:
                c0, c1 = classes[version]
                w["outputs"] = {"y": {"counts": [c0, c1, 0], "n": c0 + c1, "mean": c1 / (c0 + c1),
                                        "variance": c0 * c1 / (c0 + c1) ** 2, "min": 0.0 if c0 else 1.0,
                                        "max": 1.0 if c1 else 0.0}}
            ws.append(w)
        r = server.api("POST", "/v1/agent/telemetry", token=d.token, json={"windows": ws})
        assert r.status_code == 200 and r.json()["accepted"] == windows, r.text


def canary_started(server, fleet, strategy, **meta):
    """10 devices on det@1.0.0, then a rollout to 2.0.0 under strategy, driven until its first stage
    holds because its telemetry gates cannot judge yet (no telemetry)."""
    for v in ("1.0.0", "2.0.0"):
        assert publish(server, "det", f"bytes-det-{v}".encode(), meta=model_meta(v, **meta)).status_code == 201
    start_fleet(server, fleet, strategy)
    assert server.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
    return drive(server, fleet, "cams", lambda r: (r["reason"] or "").startswith("holding stage 0"))


def test_canary_judgement_gate_holds_without_data_and_rolls_back_a_worse_canary(fast):
    """Too little telemetry holds the stage (inconclusive, never a pass); a canary whose windows
    show 10 % errors against the control's 1 % fails the judgement and rolls back."""
    fleet = [SimDevice(fast, {"site": "north"}) for _ in range(10)]
    r = canary_started(fast, fleet, JUDGED)
    assert "canary_judgement cannot be judged yet: inconclusive, 0 canary and 0 control" in r["reason"], r
    gate = [g for g in fast.api("GET", f"/v1/rollouts/{r['id']}").json()["progress"]["gates"]
            if g["gate"] == "canary_judgement"][0]
    assert gate["state"] == "unjudged" and gate["judgement"]["verdict"] == "inconclusive", gate
    # two windows of the canary are too few still (at least 5 a side): held
    send_windows(fast, [d for d in fleet if d.running[1] == "2.0.0"][:2], {"2.0.0": 20}, windows=1)
    r = drive(fast, fleet, "cams", lambda r: "inconclusive, 2 canary and 0 control" in (r["reason"] or ""))
    assert r["state"] == "running", r
    send_windows(fast, fleet, {"1.0.0": 2, "2.0.0": 20}, windows=3, offset=100)
    r = drive(fast, fleet, "cams", lambda r: r["state"] != "running")
    assert r["state"] == "rolled_back", r
    assert r["reason"].startswith("canary judgement fail: score 33") and "error_rate" in r["reason"], r
    back = [e for e in events_of(fast, r["id"]) if e["kind"] == "rollback"][0]["detail"]
    assert back["gate"] == "canary_judgement", back
    j = [g for g in back["gates"] if g["gate"] == "canary_judgement"][0]["judgement"]
    m = {x["name"]: x for x in j["metrics"]}
    assert m["error_rate"]["verdict"] == "fail" and m["error_rate"]["p"] < 0.02, m
    assert m["error_rate"]["median_canary"] == 0.1 and m["error_rate"]["median_control"] == 0.01, m
    fleet_checkin(fleet, 2)
    assert on_version(fleet, "1.0.0")


def test_canary_judgement_gate_passes_an_equal_canary_and_holds_a_marginal_one(fast):
    """The same error rate and latency on both sides passes the first stage and the rollout
    completes (the last stage has no control and is not judged); a canary slower alone scores
    between marginal_score and min_score and holds until promoted."""
    fleet = [SimDevice(fast, {"site": "north"}) for _ in range(10)]
    canary_started(fast, fleet, JUDGED)
    send_windows(fast, fleet, {"1.0.0": 4, "2.0.0": 4})
    r = drive(fast, fleet, "cams", lambda r: r["state"] != "running")
    assert r["state"] == "completed", r
    stage = [e for e in events_of(fast, r["id"]) if e["kind"] == "stage"][0]["detail"]
    gate = [g for g in stage["gates"] if g["gate"] == "canary_judgement"][0]
    assert gate["state"] == "pass" and gate["value"] == 100 and gate["judgement"]["verdict"] == "pass", gate

    # a new version, slower: p95 latency fails (weight 1 of 3), the score is 66.7: marginal
    assert publish(fast, "det", b"bytes-det-3.0.0", meta=model_meta("3.0.0")).status_code == 201
    assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "3.0.0"}).status_code == 200
    r = drive(fast, fleet, "cams", lambda r: r["state"] == "running" and (r["reason"] or "").startswith(
        "holding stage 0") and sum(d.running[1] == "3.0.0" for d in fleet) > 0)
    send_windows(fast, fleet, {"2.0.0": 4, "3.0.0": 4}, slow={"3.0.0"}, offset=100)
    r = drive(fast, fleet, "cams", lambda r: "marginal" in (r["reason"] or ""))
    assert r["state"] == "running" and "canary judgement marginal: score 67 (min_score 95, marginal_score 60)" \
        in r["reason"] and "p95_latency_us" in r["reason"], r
    assert fast.api("POST", f"/v1/rollouts/{r['id']}/promote").status_code == 200
    r = drive(fast, fleet, "cams", lambda r: r["state"] == "completed")
    stage = [e for e in events_of(fast, r["id"]) if e["kind"] == "stage"][0]["detail"]
    assert stage["waived_by"] == "promote" and "marginal" in stage["waived"][0], stage


def test_output_psi_gate(fast):
    """max_output_psi on the canary's merged output histogram against 2.0.0's profile: held until
    min_requests outputs are counted, then a canary that answers class 0 nine times in ten (PSI
    0.88 against 50/50) rolls back."""
    fleet = [SimDevice(fast, {"site": "north"}) for _ in range(6)]
    strat = {"stages": [{"percent": 50, "bake": 1}, {"percent": 100, "bake": 0}],
             "gates": {"max_output_psi": 0.25, "min_requests": 500}}
    r = canary_started(fast, fleet, strat, reference_profile=OUTPUTS)
    assert "max_output_psi cannot be judged yet: the canary has 0 output samples, min_requests is 500" \
        in r["reason"], r
    send_windows(fast, fleet, {"1.0.0": 0, "2.0.0": 0}, classes={"1.0.0": (100, 100), "2.0.0": (180, 20)})
    r = drive(fast, fleet, "cams", lambda r: r["state"] != "running")
    assert r["state"] == "rolled_back" and r["reason"].startswith("canary output PSI 0.8789 (output:y"), r


def test_telemetry_gate_settings_are_checked(fast):
    publish_versions(fast, "1.0.0")
    for gates, why in (({"canary_judgement": {"min_score": 101}}, "canary_judgement.min_score must be from 0 to 100"),
                       ({"canary_judgement": {"min_score": 70, "marginal_score": 80}},
                        "marginal_score (80) must not be above min_score (70)"),
                       ({"canary_judgement": {"min_scor": 70}}, "min_scor"),
                       ({"canary_judgement": 95}, "canary_judgement"),
                       ({"max_output_psi": -0.1}, "max_output_psi must be from 0 to 100"),
                       ({"max_output_psi": 0.2, "min_requests": 0}, "min_requests must be at least 1")):
        r = fast.api("POST", "/v1/deployments", json={"name": "x", "model": "det", "selector": "site=north",
                                                        "follow": "1.0.0", "strategy": {"gates": gates}})
        assert r.status_code == 400 and why in r.json()["detail"], (gates, r.text)
    r = fast.api("POST", "/v1/deployments", json={"name": "x", "model": "det", "selector": "site=north",
                                                    "follow": "1.0.0", "strategy": {"gates": {"canary_judgement": {}}}})
    assert r.status_code == 400 and "needs a stage below 100 percent" in r.json()["detail"], r.text
    d = create(fast, name="y", follow="1.0.0", strategy=dict(JUDGED, gates={"canary_judgement": {},
                                                                              "max_output_psi": 0.2}))
    g = d["strategy"]["gates"]
    assert g["canary_judgement"] == {"min_score": 95, "marginal_score": 75} and g["max_output_psi"] == 0.2, g


def test_a_canary_stage_never_takes_every_device(fast):
    """Two devices and a 50 % stage: rollouts are started (each waits for approval, moving
    nothing) and aborted until one's id puts both below 50 % by gn_cohort. The controller holds
    back the one last in that rollout's order (a hold_back event): it stays on 1.0.0 as the
    control, so the canary judgement compares 2.0.0 with it and the stage passes; the last stage
    then gives it 2.0.0 too."""
    publish_versions(fast, "1.0.0", "2.0.0")
    fleet = [SimDevice(fast, {"site": "north"}) for _ in range(2)]
    start_fleet(fast, fleet, dict(JUDGED, approval=True))
    plan = fast.api("GET", "/v1/deployments/cams/plan").json()
    assert [s["devices"] for s in plan["stages"]] == [1, 2], plan  # whatever the draw
    for _ in range(60):  # each id puts both below 50 % one time in four
        assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
        r = rollout_of(fast, "cams")
        assert r["state"] == "waiting_approval", r
        if all(cohort(r["id"], d.dev.id) < 0.5 for d in fleet):
            break
        assert r["held_back"] == [], r
        assert fast.api("POST", f"/v1/rollouts/{r['id']}/abort").status_code == 200
    else:
        pytest.fail("no rollout id in 60 put both devices in the 50 % stage")
    held = max(fleet, key=lambda d: cohort(r["id"], d.dev.id))
    canary = [d for d in fleet if d is not held][0]
    assert r["held_back"] == [held.dev.id] and r["pinned"] == [], r
    ev = events_of(fast, r["id"])
    assert [e["kind"] for e in ev] == ["start", "hold_back"], ev
    assert ev[1]["detail"]["device"] == held.dev.id and ev[1]["detail"]["stage"] == 0, ev
    assert [a["object_id"] for a in audit_of(fast, "rollout.hold_back")] == [r["id"]]
    op = fast.make_token(["operator"])["token"]
    assert fast.api("POST", f"/v1/rollouts/{r['id']}/approve", token=op).status_code == 200
    r = drive(fast, fleet, "cams", lambda r: (r["reason"] or "").startswith("holding stage 0"))
    assert canary.running == ("det", "2.0.0") and ("det", "2.0.0") not in held.seen
    # No telemetry yet: inconclusive, not "no device outside the stage".
    assert "inconclusive, 0 canary and 0 control" in r["reason"], r
    p = fast.api("GET", f"/v1/rollouts/{r['id']}").json()["progress"]
    assert (p["devices"], p["held_back"], p["deployment_devices"]) == (1, 1, 2), p
    out = fast.cli("rollout", "status", r["id"])
    assert out.returncode == 0 and "50%: " in out.stdout and "1 held back as the control" in out.stdout, out
    send_windows(fast, fleet, {"1.0.0": 4, "2.0.0": 4}, windows=6)
    told_in_stage_0 = []  # whether the held-back device had been told 2.0.0, at each look in stage 0

    def until(r):
        if r["stage"] == 0:
            told_in_stage_0.append(("det", "2.0.0") in held.seen)
        return r["state"] != "running"
    r = drive(fast, fleet, "cams", until)
    assert r["state"] == "completed" and told_in_stage_0 and not any(told_in_stage_0), (r, told_in_stage_0)
    stage = [e for e in events_of(fast, r["id"]) if e["kind"] == "stage"][0]["detail"]
    gate = [g for g in stage["gates"] if g["gate"] == "canary_judgement"][0]
    assert gate["state"] == "pass" and "waived" not in stage, stage
    m = gate["judgement"]["metrics"][0]
    assert m["n_canary"] == 6 and m["n_control"] == 6, m
    fleet_checkin(fleet, 2)
    assert on_version(fleet, "2.0.0")


def test_a_pin_and_a_hold_back_in_one_rollout(fast):
    """Two devices, stages of 1 %, 99 % and 100 %, and a rollout id (drawn as above) that puts both
    between 1 % and 99 %: the first stage would take neither, so the first in the rollout's order
    is pinned into it; the second would take both, so as it begins the other is held back (the
    pinned one never is); only the last stage tells that one the new version."""
    publish_versions(fast, "1.0.0", "2.0.0")
    fleet = [SimDevice(fast, {"site": "north"}) for _ in range(2)]
    strat = {"stages": [{"percent": 1, "bake": 0}, {"percent": 99, "bake": 1}, {"percent": 100, "bake": 0}],
             "approval": True}
    start_fleet(fast, fleet, strat)
    for _ in range(20):  # one id in 25 puts a device below 1 % or above 99 %
        assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
        r = rollout_of(fast, "cams")
        if all(0.01 <= cohort(r["id"], d.dev.id) < 0.99 for d in fleet):
            break
        assert fast.api("POST", f"/v1/rollouts/{r['id']}/abort").status_code == 200
    else:
        pytest.fail("no rollout id in 20 put both devices between 1 % and 99 %")
    first, last = sorted(fleet, key=lambda d: cohort(r["id"], d.dev.id))
    op = fast.make_token(["operator"])["token"]
    assert fast.api("POST", f"/v1/rollouts/{r['id']}/approve", token=op).status_code == 200
    told_early = []  # whether the held-back device had been told 2.0.0, at each look before the last stage

    def until(r):
        if r["stage"] < 2:
            told_early.append(("det", "2.0.0") in last.seen)
        return r["state"] != "running"
    r = drive(fast, fleet, "cams", until)
    assert r["state"] == "completed" and told_early and not any(told_early), (r, told_early)
    assert r["pinned"] == [first.dev.id] and r["held_back"] == [last.dev.id], r
    ev = events_of(fast, r["id"])
    assert [e["kind"] for e in ev] == ["start", "approve", "pin", "stage", "hold_back", "stage", "complete"], ev
    assert ev[4]["detail"]["stage"] == 1 and ev[4]["detail"]["device"] == last.dev.id, ev
    fleet_checkin(fleet, 2)
    assert on_version(fleet, "2.0.0")


def test_a_hold_back_never_takes_back_a_device_told_the_new_version(fast):
    """Three devices and a 50 % stage whose rollout id (drawn as above) puts two of them in it: both
    are told 2.0.0. Then the third one's labels change, so it leaves the deployment (marked stale)
    and the stage holds every device left. No control is made by sending either back to 1.0.0:
    nothing is held back, and the comparing gate holds the stage, saying why, instead of passing."""
    publish_versions(fast, "1.0.0", "2.0.0")
    fleet = [SimDevice(fast, {"site": "north"}) for _ in range(3)]
    strat = {"stages": [{"percent": 50, "bake": 0}, {"percent": 100, "bake": 0}], "probation": 0,
             "gates": {"max_error_increase": 0.05, "min_requests": 1000000}, "approval": True}
    start_fleet(fast, fleet, strat)
    for _ in range(40):  # one id in about three puts exactly two below 50 %
        assert fast.api("PATCH", "/v1/deployments/cams", json={"follow": "2.0.0"}).status_code == 200
        r = rollout_of(fast, "cams")
        if sum(cohort(r["id"], d.dev.id) < 0.5 for d in fleet) == 2:
            break
        assert fast.api("POST", f"/v1/rollouts/{r['id']}/abort").status_code == 200
    else:
        pytest.fail("no rollout id in 40 put exactly two devices in the 50 % stage")
    canaries = [d for d in fleet if cohort(r["id"], d.dev.id) < 0.5]
    leaver = [d for d in fleet if d not in canaries][0]
    op = fast.make_token(["operator"])["token"]
    assert fast.api("POST", f"/v1/rollouts/{r['id']}/approve", token=op).status_code == 200
    r = drive(fast, fleet, "cams", lambda r: (r["reason"] or "").startswith("holding stage 0"))
    assert "min_requests" in r["reason"] and on_version(canaries, "2.0.0"), r
    assert fast.api("PATCH", f"/v1/devices/{leaver.dev.id}", json={"labels": {"site": "south"}}).status_code == 200
    told = []  # what each canary is told, at each check-in from now on

    def until(r):
        told.append([d.want for d in canaries])
        return r["held_back"] != [] or "no device outside the stage" in (r["reason"] or "")
    r = drive(fast, canaries, "cams", until)
    fleet_checkin(canaries, 3)
    r = rollout_of(fast, "cams")
    assert r["state"] == "running" and r["stage"] == 0 and r["held_back"] == [], r
    assert r["reason"].startswith("holding stage 0: max_error_increase cannot be judged: no device outside"), r
    assert all(w == [("det", "2.0.0")] * 2 for w in told) and on_version(canaries, "2.0.0"), told
    assert "hold_back" not in [e["kind"] for e in events_of(fast, r["id"])]
    p = fast.api("GET", f"/v1/rollouts/{r['id']}").json()["progress"]
    assert (p["devices"], p["held_back"], p["deployment_devices"], p["control_devices"]) == (2, 0, 2, 0), p
    plan = fast.api("GET", "/v1/deployments/cams/plan").json()  # counts the devices the controller does
    assert plan["devices"] == 2 and [s["devices"] for s in plan["stages"]] == [1, 2], plan
