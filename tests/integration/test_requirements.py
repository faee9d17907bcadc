"""Models that declare what they need, devices that say what they have (docs/OPERATIONS.md,
"Runtime requirements and device facts"): two real agents, one on OpenCV DNN and one on ONNX
Runtime, report their runtime at check-in before any model loads it; a release that needs ONNX
Runtime is refused for the OpenCV device (assignment, deployment, deployment change), the dry run
names that device, and where the rollout controller sends it anyway (an alias moved) the OpenCV
agent refuses it before downloading while the ONNX Runtime agent installs it."""

import json
import platform
import threading
from pathlib import Path

import pytest

from ganglion_harness import (
    RUNTIME_PLUGINS,
    TEST_MODELS,
    Agent,
    Gangliond,
    artifact_files,
    assert_problem,
    device_events,
    last_event_id,
    make_dir,
    model_meta,
    publish,
    wait_event,
    wait_for,
)

NEEDS_ORT = {"runtimes": ["onnxruntime"], "accelerators": ["cpu"]}
EITHER = {"runtimes": ["opencv-dnn", "onnxruntime"]}


@pytest.fixture(scope="module")
def srv(pg, tmp_base):
    db = pg.create_database()
    s = Gangliond(make_dir(tmp_base / "rqsrv", 0o711), database_url=pg.dsn(db),
                  extra_args=["--agent-poll-interval", "1s", "--device-reports-per-hour", "100000"])
    s.start()
    try:
        yield s
    finally:
        try:
            s.stop(check=True)
        finally:
            print(f"\n--- gangliond log ({s.logfile}) ---\n{s.log()}")


def release(srv, model, version, like, requirements):
    meta = json.loads((TEST_MODELS / f"{like}.json").read_text())
    meta.update(version=version, requirements=requirements)
    r = publish(srv, model, (TEST_MODELS / f"{like}.onnx").read_bytes(), meta=meta)
    assert r.status_code == 201, r.text


def runtime_of(srv, device_id):
    return srv.api("GET", f"/v1/devices/{device_id}").json()["facts"].get("runtime", {})


@pytest.fixture(scope="module")
def fleet(srv, tmp_base):
    """cv-1 (OpenCV DNN) and ort-1 (ONNX Runtime), labelled fleet=rq, running, facts reported."""
    if not RUNTIME_PLUGINS["onnxruntime"].exists():
        pytest.skip("the ONNX Runtime plugin is not built (configure --with-onnxruntime=PREFIX)")
    made = {}
    try:
        for name, plugin in (("cv-1", "opencv"), ("ort-1", "onnxruntime")):
            a = Agent(tmp_base / f"rq-{name}", srv.url, plugin=plugin)
            made[name] = a
            a.enroll(srv.make_enroll_token(labels={"fleet": "rq"})["token"], name=name)
            a.start()
        for a in made.values():
            # enroll loads the plugin (it checks runtime-options); run reports it not loaded
            assert wait_for(lambda: runtime_of(srv, a.device_id).get("loaded") is False, 60, 0.2), a.log()[-3000:]
        yield made
    finally:
        errors = []
        for a in made.values():
            errors += a.stop(check=False)
            print(f"\n--- agent log ({a.logfile}) ---\n{a.log()[-6000:]}")
        assert not errors, errors


def test_agents_report_their_runtime_before_loading_it(srv, fleet):
    """Each agent reports its plugin's name, version and targets with their memory, and the host's
    OS, architecture and RAM, at its first check-in; the plugin itself was probed in a child process
    and is not mapped into the agent. `ganglion devices show` prints them."""
    for name, want in (("cv-1", "opencv-dnn"), ("ort-1", "onnxruntime")):
        a = fleet[name]
        facts = srv.api("GET", f"/v1/devices/{a.device_id}").json()["facts"]
        rt = facts["runtime"]
        assert rt["name"] == want and rt["loaded"] is False, facts
        cpu = next(t for t in rt["targets"] if t["name"] == "cpu")
        # Total memory only: free memory changes all the time, and a changed fact is a database write
        # and a check-in the server cannot answer from memory.
        assert cpu["mem_total_bytes"] > 0 and "mem_available_bytes" not in cpu, rt
        assert facts["arch"] == platform.machine() and facts["ram_bytes"] > 0, facts
        # The highest ONNX opset: OpenCV 4.6 names 13 (agents/runtimes/opencv_dnn.cpp says where
        # from); ONNX Runtime is asked, and 1.29 is past 1.20, whose documented figure is 21.
        assert (rt["onnx_opset"] == 13) if want == "opencv-dnn" else (rt["onnx_opset"] >= 21), rt
        assert str(a.plugin) not in Path(f"/proc/{a.proc.pid}/maps").read_text(), "plugin loaded in the agent"
        out = srv.cli("devices", "show", a.device_id)
        assert out.returncode == 0, out.stderr
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("Runtime"))
        assert f"{want} " in line and "cpu (" in line and "GiB" in line and "not loaded" in line, line
        assert f"; ONNX opsets up to {rt['onnx_opset']};" in line, line
        assert platform.machine() in out.stdout and "RAM" in out.stdout, out.stdout


def test_assignment_is_refused_for_a_device_that_lacks_the_runtime(srv, fleet):
    cv, ort = fleet["cv-1"], fleet["ort-1"]
    release(srv, "rq-one", "1.0.0", "v1", NEEDS_ORT)
    r = srv.api("PUT", f"/v1/devices/{cv.device_id}/desired", json={"model": "rq-one", "version": "1.0.0"})
    assert_problem(r, 409, "it runs opencv-dnn; the release needs onnxruntime")
    assert "cv-1" in r.json()["detail"] and cv.device_id in r.json()["detail"], r.text
    # By selector: refused as a whole, naming only the device that cannot.
    r = srv.api("POST", "/v1/desired", json={"selector": "fleet=rq", "model": "rq-one", "version": "1.0.0"})
    assert_problem(r, 409, "1 device(s)")
    assert "cv-1" in r.json()["detail"] and "ort-1" not in r.json()["detail"], r.text
    # Selectors read the facts: narrowed to the devices that run ONNX Runtime, it is accepted.
    r = srv.api("POST", "/v1/desired",
                json={"selector": "fleet=rq,facts.runtime=onnxruntime", "model": "rq-one", "version": "1.0.0"})
    assert r.status_code == 200 and r.json()["devices"] == [ort.device_id], r.text
    assert wait_for(lambda: any(m["name"] == "rq-one" and m["version"] == "1.0.0" for m in ort.models()), 90, 0.2)
    assert srv.api("DELETE", f"/v1/devices/{ort.device_id}/desired?model=rq-one").status_code in (200, 204)


def test_selectors_read_the_reported_facts(srv, fleet):
    """facts.runtime, facts.arch, facts.os and facts.target.KIND select devices by what they
    reported; a label may not take a facts. key."""
    cv, ort = fleet["cv-1"], fleet["ort-1"]

    def names(selector):
        r = srv.api("GET", "/v1/devices", params={"selector": f"fleet=rq,{selector}"})
        assert r.status_code == 200, r.text
        return sorted(d["name"] for d in r.json()["items"])

    assert names("facts.runtime=onnxruntime") == ["ort-1"]
    assert names("facts.runtime!=onnxruntime") == ["cv-1"]
    assert names(f"facts.arch={platform.machine()},facts.os=Linux,facts.target.cpu") == ["cv-1", "ort-1"]
    assert names("facts.target.cuda") == [] and names("!facts.target.tensorrt") == ["cv-1", "ort-1"]
    r = srv.api("PATCH", f"/v1/devices/{cv.device_id}", json={"labels": {"facts.runtime": "onnxruntime"}})
    assert_problem(r, 400, "starts with 'facts.'")
    r = srv.api("POST", "/v1/enroll-tokens", json={"labels": {"facts.arch": "x"}})
    assert_problem(r, 400, "starts with 'facts.'")
    assert names("facts.runtime=onnxruntime") == ["ort-1"]


def test_deployments_refuse_and_the_dry_run_names_the_devices(srv, fleet):
    """A deployment of a version one device cannot run is refused, naming it; a dry run of a change
    to that version lists it (API and CLI); so does the change itself. Where the controller moves
    devices on its own (the alias the deployment follows moved), the OpenCV agent checks the signed
    requirements, reports a failed install and downloads nothing, while ONNX Runtime installs."""
    cv, ort = fleet["cv-1"], fleet["ort-1"]
    release(srv, "rq", "1.0.0", "v1", EITHER)
    release(srv, "rq", "2.0.0", "v2", NEEDS_ORT)
    body = {"name": "rq-dep", "model": "rq", "selector": "fleet=rq", "follow": "2.0.0"}
    r = srv.api("POST", "/v1/deployments", json=body)
    assert_problem(r, 409, "cv-1")
    assert "ort-1" not in r.json()["detail"] and "facts.runtime" in r.json()["detail"], r.text
    assert srv.api("GET", "/v1/deployments/rq-dep").status_code == 404  # nothing half-written

    assert srv.api("PUT", "/v1/models/rq/aliases/stable", json={"version": "1.0.0"}).status_code == 200
    r = srv.api("POST", "/v1/deployments", json=dict(body, follow="stable"))
    assert r.status_code == 201, r.text
    for a in (cv, ort):
        assert wait_for(lambda: any(m["name"] == "rq" and m["version"] == "1.0.0" for m in a.models()), 90, 0.2)

    plan = srv.api("GET", "/v1/deployments/rq-dep/plan").json()
    assert plan["version"] == "1.0.0" and plan["refused"] == [] and plan["unreported"] == 0, plan
    plan = srv.api("GET", "/v1/deployments/rq-dep/plan", params={"version": "2.0.0"}).json()
    assert plan["version"] == "2.0.0" and plan["unreported"] == 0, plan
    assert [(x["device"], x["name"]) for x in plan["refused"]] == [(cv.device_id, "cv-1")], plan
    assert "it runs opencv-dnn" in plan["refused"][0]["reason"], plan
    out = srv.cli("rollout", "plan", "rq-dep", "--follow", "2.0.0")
    assert out.returncode == 0 and "1 device(s) the selector matches cannot run 2.0.0" in out.stdout, out
    assert "cv-1" in out.stdout and "ort-1" not in out.stdout, out.stdout
    assert_problem(srv.api("GET", "/v1/deployments/rq-dep/plan", params={"version": "9.9.9"}), 404)
    assert_problem(srv.api("GET", "/v1/deployments/rq-dep/plan", params={"version": "v" * 65}), 400, "1 to 64 bytes")

    r = srv.api("PATCH", "/v1/deployments/rq-dep", json={"follow": "2.0.0"})
    assert_problem(r, 409, "cv-1")
    assert srv.api("GET", "/v1/deployments/rq-dep").json()["follow"] == "stable"

    # The controller follows the alias on its own: the agents decide.
    since = last_event_id(srv, cv.device_id)
    assert srv.api("PUT", "/v1/models/rq/aliases/stable", json={"version": "2.0.0"}).status_code == 200
    wait_event(srv, cv.device_id, lambda o: o["state"] == "failed" and o.get("version") == "2.0.0",
               after_id=since, what="cv-1 refusing 2.0.0")
    events = [op for i, op in device_events(srv, cv.device_id, with_ids=True) if i > since]
    failed = next(e for e in events if e["state"] == "failed")
    assert "cannot run rq 2.0.0, so it was not downloaded: it runs opencv-dnn" in failed["detail"], failed
    assert not any(e["state"] == "downloading" and e.get("version") == "2.0.0" for e in events), events
    sha2 = srv.api("GET", "/v1/models/rq/versions/2.0.0").json()["artifact"]["sha256"]
    assert not [p for d in ("models", "downloads") for p in (cv.data_dir / d).glob(f"{sha2}*")]
    assert wait_for(lambda: any(m["name"] == "rq" and m["version"] == "2.0.0" for m in ort.models()), 90, 0.2)
    assert any(m["name"] == "rq" and m["version"] == "1.0.0" for m in cv.models()), cv.models()


def test_a_swap_without_room_for_both_versions_pauses_and_fails_no_request(srv, tmp_base):
    """The release declares 64 MiB (requirements.min_memory_mb) and the target has 10 MiB free (the
    agent is told so with test-free-memory-mb, as no accelerator is here): instead of loading the new
    version beside the old one, the agent announces a pause swap, unloads the old version, loads the
    new one and resumes. Requests sent meanwhile wait; none fails."""
    a = Agent(tmp_base / "rq-pause", srv.url, extra_args=["--test-free-memory-mb", "10"])
    try:
        a.enroll(srv.make_enroll_token()["token"])
        a.start()
        need = {"runtimes": ["opencv-dnn", "onnxruntime"], "min_memory_mb": 64}
        release(srv, "rqp", "1.0.0", "v1", need)
        release(srv, "rqp", "2.0.0", "v2", need)
        x = json.loads((TEST_MODELS / "v1.json").read_text())["sample"]["inputs"]
        assign = lambda v: srv.api("PUT", f"/v1/devices/{a.device_id}/desired", json={"model": "rqp", "version": v})
        assert assign("1.0.0").status_code == 200
        assert wait_for(lambda: [m["version"] for m in a.models()] == ["1.0.0"], 90, 0.1), a.log()[-3000:]

        results, stop = [], threading.Event()

        def load():
            body = json.dumps({"inputs": x}).encode()
            while not stop.is_set():
                try:
                    status, _, resp = a.request("POST", "/v1/models/rqp/infer", body,
                                                {"Content-Type": "application/json"}, timeout=90)
                    results.append((status, json.loads(resp).get("version") if status == 200 else resp[:200]))
                except Exception as e:  # a failed request is a finding
                    results.append((None, repr(e)))

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            assert wait_for(lambda: len(results) > 20, 30, 0.02)
            since = last_event_id(srv, a.device_id)
            assert assign("2.0.0").status_code == 200
            assert wait_for(lambda: any(r == (200, "2.0.0") for r in results), 90, 0.05), a.log()[-3000:]
            n = len(results)
            assert wait_for(lambda: len(results) > n + 20, 30, 0.02)
        finally:
            stop.set()
            for t in threads:
                t.join(120)
        bad = [r for r in results if r[0] != 200]
        assert not bad, f"{len(bad)} of {len(results)} requests failed during the pause swap: {bad[:3]}"
        assert {r[1] for r in results} == {"1.0.0", "2.0.0"}, {r[1] for r in results}
        pause = wait_event(srv, a.device_id, lambda o: o["state"] == "loading" and "pause swap" in o.get("detail", ""),
                           after_id=since, what="the announced pause swap")
        assert "10 MiB free on cpu, rqp 2.0.0 needs 64 MiB" in pause["detail"], pause
        assert "event=swap_pause model=rqp from=1.0.0 to=2.0.0" in a.log(), a.log()[-3000:]
        # The version taken out is the one kept for a rollback.
        status, _, body = a.request("POST", "/v1/models/rqp/rollback")
        assert status == 200 and json.loads(body)["version"] == "1.0.0", (status, body)
    finally:
        errors = a.stop(check=False)
        print(f"\n--- agent log ({a.logfile}) ---\n{a.log()[-6000:]}")
        assert not errors, errors


def test_a_release_above_the_runtimes_opset_is_refused_and_the_dry_run_says_so(srv, fleet, tmp_path):
    """`models push` reads the opset from a third-party .onnx file (libonnx-testdata, opset 17 as the
    onnx package reads it) into requirements.opset; an assignment to the OpenCV device (13) is
    refused, the ONNX Runtime device is not, and the dry run of rq-dep (the deployment above) names
    only the OpenCV device. A stated opset below the file's is refused by the CLI before upload."""
    import onnx

    cv, ort = fleet["cv-1"], fleet["ort-1"]
    model = Path("/usr/share/libonnx-testdata/data/node/test_layer_normalization_2d_axis0/model.onnx")
    assert [(o.domain, o.version) for o in onnx.load(model).opset_import] == [("", 17)]
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"requirements": {"runtimes": ["opencv-dnn", "onnxruntime"], "opset": 13}}))
    out = srv.cli("models", "push", model, "--name", "rq", "--version", "3.0.0", "--format", "onnx", "--meta", meta,
                  "--no-self-test", "--no-progress")
    assert out.returncode == 2 and "requirements.opset is 13 but" in out.stderr and "opset 17" in out.stderr, out
    assert srv.api("GET", "/v1/models/rq/versions/3.0.0").status_code == 404
    meta.write_text(json.dumps({"requirements": {"runtimes": ["opencv-dnn", "onnxruntime"]}}))
    out = srv.cli("models", "push", model, "--name", "rq", "--version", "3.0.0", "--format", "onnx", "--meta", meta,
                  "--no-self-test", "--no-progress")
    assert out.returncode == 0, out
    v = srv.api("GET", "/v1/models/rq/versions/3.0.0").json()
    assert v["requirements"] == {"runtimes": ["opencv-dnn", "onnxruntime"], "opset": 17}, v

    r = srv.api("PUT", f"/v1/devices/{cv.device_id}/desired", json={"model": "rq", "version": "3.0.0"})
    assert_problem(r, 409, "its runtime opencv-dnn runs ONNX opsets up to 13; the release needs opset 17")
    r = srv.api("POST", "/v1/desired", json={"selector": "fleet=rq", "model": "rq", "version": "3.0.0"})
    assert_problem(r, 409, "1 device(s)")
    assert "cv-1" in r.json()["detail"] and "ort-1" not in r.json()["detail"], r.text
    plan = srv.api("GET", "/v1/deployments/rq-dep/plan", params={"version": "3.0.0"}).json()
    assert [(x["name"], x["reason"]) for x in plan["refused"]] == [
        ("cv-1", "its runtime opencv-dnn runs ONNX opsets up to 13; the release needs opset 17")], plan
    out = srv.cli("rollout", "plan", "rq-dep", "--follow", "3.0.0")
    assert out.returncode == 0 and "cv-1" in out.stdout and "ort-1" not in out.stdout, out
    assert "up to 13" in out.stdout, out.stdout

    # The alias the deployment follows moves (the controller sends it on its own): the OpenCV agent
    # checks the opset itself and downloads nothing; ONNX Runtime installs it.
    since = last_event_id(srv, cv.device_id)
    assert srv.api("PUT", "/v1/models/rq/aliases/stable", json={"version": "3.0.0"}).status_code == 200
    failed = wait_event(srv, cv.device_id, lambda o: o["state"] == "failed" and o.get("version") == "3.0.0",
                        after_id=since, what="cv-1 refusing 3.0.0")
    assert "so it was not downloaded: its runtime opencv-dnn runs ONNX opsets up to 13" in failed["detail"], failed
    sha = v["artifact"]["sha256"]
    assert not [p for d in ("models", "downloads") for p in (cv.data_dir / d).glob(f"{sha}*")]
    assert wait_for(lambda: any(m["name"] == "rq" and m["version"] == "3.0.0" for m in ort.models()), 90, 0.2)


TESTDATA = Path("/usr/share/libonnx-testdata/data/node")


def _default_opset(path):
    """The default-domain opset as the onnx package reads it (not our code), or None."""
    import onnx

    v = [o.version for o in onnx.load(path, load_external_data=False).opset_import if o.domain in ("", "ai.onnx")]
    return max(v) if v else None


def test_the_server_checks_an_onnx_uploads_opset_against_the_file(srv, tmp_path):
    """A CI pipeline that calls the REST API itself: gangliond reads the opset an ONNX artifact
    declares as it streams in, refuses (422, naming both) a requirements.opset that says anything
    else, lower or higher, or one stated for a file that is not ONNX or declares none; nothing is
    stored. Left out, it is filled in from the file. The CLI says the same before uploading."""
    from onnx import helper

    norm, absf = TESTDATA / "test_layer_normalization_2d_axis0/model.onnx", TESTDATA / "test_abs/model.onnx"
    assert (_default_opset(norm), _default_opset(absf)) == (17, 13)
    ml_only = tmp_path / "ml.onnx"  # a well-formed model that imports only ai.onnx.ml
    ml_only.write_bytes(helper.make_model(helper.make_graph([], "g", [], []),
                                          opset_imports=[helper.make_opsetid("ai.onnx.ml", 3)]).SerializeToString())
    assert _default_opset(ml_only) is None

    def meta(version, **req):
        return model_meta(version, format="onnx", requirements={"runtimes": ["onnxruntime"], **req}, sample=None,
                          reference_profile=None, no_self_test=True)

    before = artifact_files(srv.data_dir)
    for version, data, opset, why in (
            ("4.0.0", norm.read_bytes(), 13, "requirements.opset is 13 but the artifact declares ONNX opset 17"),
            ("4.0.1", absf.read_bytes(), 17, "requirements.opset is 17 but the artifact declares ONNX opset 13"),
            ("4.0.2", b"not a model at all, only text", 13,
             "requirements.opset is 13 but the artifact cannot be read as an ONNX model: "
             "not an ONNX model"),
            ("4.0.3", norm.read_bytes()[:-3], 17, "cannot be read as an ONNX model: not an ONNX model"),
            ("4.0.4", ml_only.read_bytes(), 13, "the artifact declares no ONNX opset for the default domain")):
        r = publish(srv, "opset", data, meta=meta(version, opset=opset))
        assert_problem(r, 422, why)
        assert "nothing was stored" in r.json()["detail"], r.text
        assert srv.api("GET", f"/v1/models/opset/versions/{version}").status_code == 404
    assert artifact_files(srv.data_dir) == before, "a refused upload left a file behind"

    # Left out: filled in from the file, in the stored version and in the signed target.
    r = publish(srv, "opset", norm.read_bytes(), meta=meta("4.1.0"))
    assert r.status_code == 201, r.text
    v = srv.api("GET", "/v1/models/opset/versions/4.1.0").json()
    assert v["requirements"] == {"runtimes": ["onnxruntime"], "opset": 17}, v
    targets = srv.api("GET", "/v1/tuf/image/targets.json").json()["signed"]["targets"]
    assert targets[v["target"]]["custom"]["requirements"]["opset"] == 17, targets[v["target"]]
    # Stated right: kept. A file that declares no default-domain opset gets none.
    r = publish(srv, "opset", absf.read_bytes(), meta=meta("4.1.1", opset=13))
    assert r.status_code == 201 and r.json()["requirements"]["opset"] == 13, r.text
    r = publish(srv, "opset", ml_only.read_bytes(), meta=meta("4.1.2"))
    assert r.status_code == 201 and "opset" not in r.json()["requirements"], r.text
    # Not ONNX and no opset stated: stored without one, as before the server read files (the
    # devices' load and self-test refuse it); the log says so.
    r = publish(srv, "opset", b"not a model either", meta=meta("4.1.3"))
    assert r.status_code == 201 and "opset" not in r.json()["requirements"], r.text
    assert "event=model_not_onnx model=opset version=4.1.3" in srv.log()

    # The CLI refuses the same before it uploads anything.
    m = tmp_path / "meta.json"
    for file, opset, why in ((absf, 17, f"requirements.opset is 17 but {absf} declares ONNX opset 13"),
                             (ml_only, 13, f"requirements.opset is 13 but {ml_only} declares no ONNX opset"),
                             (Path("/etc/os-release"), 13,
                              "requirements.opset is 13 but /etc/os-release cannot be read as an ONNX model: not an ONNX")):
        m.write_text(json.dumps({"requirements": {"opset": opset}}))
        out = srv.cli("models", "push", file, "--name", "opset", "--version", "4.2.0", "--format", "onnx", "--meta", m,
                      "--no-self-test", "--no-progress")
        assert out.returncode == 2 and why in out.stderr, out
    assert srv.api("GET", "/v1/models/opset/versions/4.2.0").status_code == 404
