"""The fleet simulator (bench/fleetsim.c, a second implementation of the agent protocol, in C over
libcurl multi) against the real gangliond: a few hundred devices enrol, authenticate and check in
at once; a canary of a version that raises their error rate rolls back by itself, and no device
outside the canary cohort is ever told that version."""

import signal
import subprocess

from ganglion_harness import BUILDDIR, model_meta, publish, wait_for
from test_rollouts import cohort

FLEETSIM = BUILDDIR / "bench" / "fleetsim"
N = 300


def test_a_simulated_fleet_catches_a_bad_canary(gangliond, workdir):
    server = gangliond(extra_args=["--rollout-interval", "1s", "--rate-limit-address", "0",
                                   "--rate-limit-identity", "0"])
    for v in ("1.0.0", "2.0.0"):
        assert publish(server, "det", f"bytes-det-{v}".encode(), meta=model_meta(v)).status_code == 201
    r = server.api("POST", "/v1/deployments", json={
        "name": "sim", "model": "det", "selector": "site=sim", "follow": "1.0.0",
        "strategy": {"stages": [{"percent": 10, "bake": 30}, {"percent": 100, "bake": 0}], "probation": 1,
                     "gates": {"max_error_increase": 0.05, "min_requests": 50}}})
    assert r.status_code == 201, r.text
    token = server.make_enroll_token(labels={"site": "sim"}, max_uses=N)["token"]
    seen = workdir / "seen.txt"
    sim = subprocess.Popen(
        [FLEETSIM, "--url", server.url, "--enroll-token", token, "--devices", str(N), "--concurrency", "16",
         "--interval", "0.5", "--duration", "120", "--install-delay", "0.2", "--rps", "100",
         "--bad-version", "2.0.0", "--bad-error-rate", "0.3", "--seen", seen],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    def running():
        """{version: devices that report running it}, from GET /v1/status."""
        models = server.api("GET", "/v1/status").json()["models"]
        return {v["version"]: v["running"] for m in models for v in m["versions"] if v["running"]}

    try:
        def on_v1():
            devs = server.api("GET", "/v1/deployments/sim").json()
            return devs["devices"] == N
        assert wait_for(on_v1, 60, 0.5), server.api("GET", "/v1/deployments/sim").text
        # Every device has been told 1.0.0 and runs it (a control cohort with requests). A fixed
        # sleep was not always enough under ASan, where a round of 300 check-ins takes longer.
        assert wait_for(lambda: running() == {"1.0.0": N}, 90, 0.5), running()
        assert server.api("PATCH", "/v1/deployments/sim", json={"follow": "2.0.0"}).status_code == 200

        def rolled_back():
            items = server.api("GET", "/v1/rollouts", params={"deployment": "sim"}).json()["items"]
            return items and items[0]["state"] == "rolled_back" and items[0]
        assert wait_for(rolled_back, 90, 0.5), server.api("GET", "/v1/rollouts").text
        rollout = rolled_back()
        assert rollout["stage"] == 0 and "error rate" in rollout["reason"], rollout
        # The canary's devices hear of the rollback and run 1.0.0 again.
        assert wait_for(lambda: running() == {"1.0.0": N}, 60, 0.5), running()
        sim.send_signal(signal.SIGTERM)  # it reports what it saw and exits
        out, _ = sim.communicate(timeout=60)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    assert sim.returncode == 0, out
    assert "errors: 0" in out, out
    lines = [ln.split() for ln in seen.read_text().splitlines()]
    assert len(lines) == N
    told_bad = {ln[0] for ln in lines if "det/2.0.0" in ln[1:]}
    canary = {ln[0] for ln in lines if cohort(rollout["id"], ln[0]) < 0.10}
    assert told_bad and told_bad <= canary, (len(told_bad), len(canary))
    assert all("det/1.0.0" in ln[1:] for ln in lines)
    # and every device is told 1.0.0 again (the canary's) or still (the rest)
    r = server.api("GET", "/v1/deployments/sim").json()
    assert r["version"] == "1.0.0", r
