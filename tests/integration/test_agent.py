"""ganglion-agent end to end, with the real gangliond, PostgreSQL and the runtime plugins (OpenCV;
ONNX Runtime for the tests that take dev_rt, and where OpenCV cannot load a model):
enrollment and a first install, zero-downtime swaps under load (cpu and opencl), every refusal an
agent must make (tampered artifacts, targets the image repository did not sign, expired, replayed
and forged director metadata, a threshold reached with duplicate signatures, downloads that are
too long or too slow, a failed self-test) with the old model serving on, kill -9 at each step of
an update, and a server outage.

One gangliond (and one device, "agent A") serves most of the module. Each test sets up what it
needs itself (baseline(): the server and the agent running, a version assigned and serving;
ensure_version(): a release published), so the tests pass alone, in any order, and one failure
does not cascade into the next. Waits are on conditions with generous deadlines, never on sleeps.
Models: BUILD/tests/models/{v1,v2,bad,conv}.{onnx,json} (`make check` builds them first);
variants with other bytes but the same function are made here by changing the ONNX doc string."""

import hashlib
import http.client
import http.server
import json
import os
import re
import signal
import socketserver
import subprocess
import struct
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import onnx
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from onnx import TensorProto, helper, numpy_helper

from hostile_server import key_object, keyid, sign, tuf_time
from ganglion_harness import (
    AGENT,
    GANGLION_CLI,
    GANGLIOND,
    RUNTIME_PLUGINS,
    SANITIZER_PATTERNS,
    TEST_MODELS,
    Agent,
    Gangliond,
    child_env,
    device_events,
    device_reported,
    free_port,
    last_event_id,
    make_dir,
    new_key,
    publish,
    run,
    wait_event,
    wait_for,
    wait_operation,
)

MODEL = "det"


# --- models ---------------------------------------------------------------------------------
def _meta(name):
    path = TEST_MODELS / f"{name}.json"
    # make check builds the models (check_DATA) before any test runs: a missing one is a broken
    # build, and a failure here, not a reason to skip.
    assert path.exists(), f"{path} missing: `make check` builds it (make tests/models/stamp)"
    return json.loads(path.read_text())


def _onnx(name):
    return (TEST_MODELS / f"{name}.onnx").read_bytes()


def variant(name, tag, pad=0):
    """The ONNX model `name` with another doc string (and pad bytes of it): other bytes, so
    another SHA-256 and artifact, the same function and sample."""
    m = onnx.load_from_string(_onnx(name))
    m.doc_string = f"ganglion test variant {tag} " + "#" * pad
    return m.SerializeToString()


def heavy_variant(tag, size=160, layers=30):
    """v2's function, y = relu(x W2 + b2), plus a branch that does real work and adds exactly
    zero: x -> [1,16,size,size] -> `layers` 3x3 convolutions -> pooled -> times a zero matrix.
    Loading it (the plugin's warm-up plus the agent's two self-test runs) takes long enough to
    kill the agent in the middle."""
    src = onnx.load_from_string(_onnx("v2"))
    inits = {i.name: numpy_helper.to_array(i) for i in src.graph.initializer}
    rng = np.random.default_rng(7)
    c = 16
    arrays = {
        "W1": inits["W1"], "b1": inits["b1"],
        "Wa": rng.normal(0, 0.1, (4, c * size * size)).astype(np.float32),
        "shape": np.array([1, c, size, size], dtype=np.int64),
        "Wz": np.zeros((c, 3), dtype=np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["xw"]),
        helper.make_node("Add", ["xw", "b1"], ["xwb"]),
        helper.make_node("Relu", ["xwb"], ["dense"]),
        helper.make_node("MatMul", ["x", "Wa"], ["wide"]),
        helper.make_node("Reshape", ["wide", "shape"], ["h0"]),
    ]
    for i in range(layers):
        arrays[f"cw{i}"] = rng.normal(0, 0.05, (c, c, 3, 3)).astype(np.float32)
        arrays[f"cb{i}"] = np.zeros(c, dtype=np.float32)
        nodes.append(helper.make_node("Conv", [f"h{i}", f"cw{i}", f"cb{i}"], [f"h{i + 1}"],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    nodes += [
        helper.make_node("GlobalAveragePool", [f"h{layers}"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "Wz"], ["zero"]),
        helper.make_node("Add", ["dense", "zero"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, f"heavy-{tag}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(a, n) for n, a in arrays.items()])
    model = helper.make_model(graph, producer_name="ganglion-tests", opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    return model.SerializeToString()


def push(srv, version, artifact, like="v1"):
    """Publishes artifact as det/version with the metadata (and so the sample) of `like`;
    returns its SHA-256."""
    meta = dict(_meta(like), version=version)
    r = publish(srv, MODEL, artifact, meta=meta)
    assert r.status_code == 201, f"publish {MODEL} {version} -> {r.status_code} {r.text[:300]}"
    return hashlib.sha256(artifact).hexdigest()


# Releases some tests start from, made the same way whichever test needs one first.
RELEASES = {
    "1.0.0": (lambda: _onnx("v1"), "v1"),
    "2.0.0": (lambda: _onnx("v2"), "v2"),
}


def ensure_version(srv, refs, version):
    """Publishes det/version (one of RELEASES) unless it is published already; adds its reference."""
    make, like = RELEASES[version]
    refs.add(version, like)
    if srv.api("GET", f"/v1/models/{MODEL}/versions/{version}").status_code == 200:
        return
    push(srv, version, make(), like)


def close_to(got, want, tol):
    return len(got) == len(want) and all(abs(g - w) <= tol for g, w in zip(got, want))


class Refs:
    """The expected answer to the sample input of each release, by version."""

    def __init__(self):
        self.by_version = {}

    def add(self, version, like):
        s = _meta(like)["sample"]
        self.by_version[version] = (s["inputs"]["x"], s["outputs"]["y"], s["tolerance"])

    def x(self, version):
        return self.by_version[version][0]

    def check(self, answer):
        """Asserts that an inference answer matches its own version's reference; returns the version."""
        v = answer["version"]
        assert v in self.by_version, f"answer from unknown version {v}: {answer}"
        _, want, tol = self.by_version[v]
        assert close_to(answer["outputs"]["y"], want, tol), f"{v} answered {answer['outputs']['y']}, expected {want}"
        return v


def assign(srv, device_id, version, model=MODEL):
    r = srv.api("PUT", f"/v1/devices/{device_id}/desired", json={"model": model, "version": version})
    assert r.status_code == 200, f"PUT desired {model} {version} -> {r.status_code} {r.text[:300]}"
    return r.json()


def unassign(srv, device_id, model):
    """Drops the device's assignment of model (a device may be assigned several)."""
    r = srv.api("DELETE", f"/v1/devices/{device_id}/desired?model={model}")
    assert r.status_code in (200, 204, 404), f"DELETE desired {model} -> {r.status_code} {r.text[:300]}"


def wait_serving(agent, version, timeout=90):
    """Waits until the socket reports version as serving; returns (version, target)."""
    def check():
        s = agent.serving()
        return s if s and s[0] == version else None

    got = wait_for(check, timeout, 0.1)
    assert got, f"agent does not serve {version} within {timeout} s (serves {agent.serving()})\n{agent.log()[-4000:]}"
    return got


def assert_serves(agent, refs, version, model=MODEL):
    """The socket answers the sample with `version`, matching its reference (JSON and raw float32)."""
    assert agent.serving()[0] == version, agent.serving()
    a = agent.infer(model, {"x": refs.x(version)})
    assert refs.check(a) == version
    status, headers, body = agent.request("POST", f"/v1/models/{model}/infer", struct.pack("<4f", *refs.x(version)),
                                          {"Content-Type": "application/octet-stream"})
    assert status == 200 and headers.get("x-model-version") == version, (status, headers, body[:200])
    _, want, tol = refs.by_version[version]
    assert close_to(struct.unpack(f"<{len(body) // 4}f", body), want, tol)


def model_state(state, model=MODEL):
    """One model's entry of an agent's state.json: {"current", "previous", "held"}."""
    assert state and state.get("format") == 2, state
    return state["models"][model]


def verified_files(agent):
    """Checks every file in models/ hashes to its name (nothing partial is ever kept there);
    returns the names."""
    names = sorted(p.name for p in (agent.data_dir / "models").iterdir())
    for n in names:
        assert hashlib.sha256((agent.data_dir / "models" / n).read_bytes()).hexdigest() == n, f"models/{n} is not what it claims"
    return names


class Load:
    """Threads that call the socket's infer endpoint without pause. Each result is
    (t_sent, t_answered, version or None, error or None)."""

    def __init__(self, agent, refs, threads=4, model=MODEL, x_version=None):
        self.agent, self.refs, self.model = agent, refs, model
        self.x = refs.x(x_version) if x_version else None
        self.results = []
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        body = json.dumps({"inputs": {"x": self.x or next(iter(self.refs.by_version.values()))[0]}}).encode()
        out = self.results  # list.append is atomic under the GIL: results grow while the load runs
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            try:
                status, _, resp = self.agent.request("POST", f"/v1/models/{self.model}/infer", body,
                                                     {"Content-Type": "application/json"}, timeout=30)
                t1 = time.monotonic()
                if status != 200:
                    out.append((t0, t1, None, f"HTTP {status} {resp[:200]!r}"))
                    continue
                a = json.loads(resp)
                try:
                    out.append((t0, t1, self.refs.check(a), None))
                except AssertionError as e:
                    out.append((t0, t1, a.get("version"), f"wrong answer: {e}"))
            except Exception as e:  # a failed request is a finding, never a crash of the test
                out.append((t0, time.monotonic(), None, repr(e)))

    def wait_answers(self, n, version=None, timeout=60):
        """Waits until n requests (answered by version, if given) have come back."""
        ok = wait_for(lambda: sum(1 for r in list(self.results) if version is None or r[2] == version) >= n,
                      timeout, 0.02)
        assert ok, f"fewer than {n} answers{' from ' + version if version else ''} within {timeout} s " \
                   f"({len(self.results)} in all)"

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(60)


def check_swap(results, old, new):
    """Zero failures, every answer from old or new and right, and once an answer from new has
    come back, every request sent later is answered by new."""
    errors = [r for r in results if r[3]]
    assert not errors, f"{len(errors)} of {len(results)} requests failed during the swap, e.g. {errors[:3]}"
    versions = {r[2] for r in results}
    assert versions <= {old, new}, versions
    first_new = min((r[1] for r in results if r[2] == new), default=None)
    assert first_new is not None, f"no answer from {new} among {len(results)}"
    late_old = [r for r in results if r[0] > first_new and r[2] == old]
    assert not late_old, f"{len(late_old)} requests sent after the first {new} answer were answered by {old}"
    assert any(r[2] == old for r in results), "the load started after the swap: nothing was tested"
    return first_new


# --- a proxy in front of gangliond that can trickle artifact downloads ------------------------
class TrickleProxy:
    """HTTP proxy to gangliond that records every request (path, Range header, status, body
    bytes sent) and sends /v1/artifacts/ bodies at `rate` bytes/s (None: full speed)."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.rate = None
        self.log = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                up = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                entry = {"path": self.path, "range": self.headers.get("Range"), "status": None, "sent": 0}
                with proxy.lock:
                    proxy.log.append(entry)
                try:
                    up.request(self.command, self.path, body=body, headers=hdrs)
                    r = up.getresponse()
                    entry["status"] = r.status
                    trickle = self.path.startswith("/v1/artifacts/") and proxy.rate
                    data = b"" if trickle else r.read()
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(k, v)
                    length = int(r.getheader("Content-Length") or 0) if trickle else len(data)
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    if not trickle:
                        self.wfile.write(data)
                        entry["sent"] = len(data)
                        return
                    chunk = max(1, int(proxy.rate) // 20)
                    while entry["sent"] < length:
                        piece = r.read(min(chunk, length - entry["sent"]))
                        if not piece:
                            break
                        self.wfile.write(piece)
                        self.wfile.flush()
                        entry["sent"] += len(piece)
                        time.sleep(len(piece) / (proxy.rate or 1e12))
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    up.close()

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.httpd = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def artifact_requests(self, sha):
        with self.lock:
            return [dict(e) for e in self.log if e["path"] == f"/v1/artifacts/sha256/{sha}"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- TUF metadata made by the test ----------------------------------------------------------
# canonical, key_object, keyid, sign and tuf_time: the TUF signing helpers in hostile_server.py.


def sql(srv, text):
    return srv.pg.sql(text, srv.db)


def director_key(srv, role="targets"):
    pem = sql(srv, f"SELECT private_pem FROM tuf_keys WHERE repo = 'director' AND role = '{role}' AND active"
                   " ORDER BY created_at DESC LIMIT 1")
    return load_pem_private_key(pem.encode() + b"\n", password=None)


def director_rows(srv, device_id):
    """The device's signed director targets, newest first: dicts of version, body (parsed), model, model_version."""
    out = sql(srv, "SELECT coalesce(json_agg(json_build_object('version', version, 'body', body, 'model', model,"
                   f" 'model_version', model_version) ORDER BY version DESC), '[]') FROM director_targets"
                   f" WHERE device_id = '{device_id}'")
    rows = json.loads(out)
    for r in rows:
        r["body"] = json.loads(r["body"])
    return rows


def director_chain(srv, version, env):
    """The stored forms of targets env and of a snapshot and a timestamp over it, both at version
    and signed by the director's online keys, as the server signs them: {role: text}."""
    chain = {"targets": json.dumps(env, separators=(",", ":"), sort_keys=True)}
    exp = tuf_time(datetime.now(timezone.utc) + timedelta(days=30))
    for role, listed, v in (("snapshot", "targets", env["signed"]["version"]), ("timestamp", "snapshot", version)):
        raw = chain[listed].encode()
        signed = {"_type": role, "spec_version": "1.0.31", "version": version, "expires": exp,
                  "meta": {f"{listed}.json": {"version": v, "length": len(raw),
                                              "hashes": {"sha256": hashlib.sha256(raw).hexdigest()}}}}
        chain[role] = json.dumps(sign(signed, director_key(srv, role)), separators=(",", ":"), sort_keys=True)
    assert not any("$gn$" in t for t in chain.values())
    return chain


def insert_director(srv, device_id, version, env, model, model_version):
    """Stores env as the device's director targets `version`, with a snapshot and a timestamp over
    it (signed by the director's online keys, at that version, as the server signs them), the
    row's model columns set to what is desired and a long expiry, so that the server serves it as
    is (no re-signing)."""
    chain = director_chain(srv, version, env)
    body = chain["targets"]
    # assigned_at too: the server re-signs when it differs from the desired state's.
    sql(srv, "INSERT INTO director_targets (device_id, version, body, snapshot_body, timestamp_body, model,"
             f" model_version, expires_at, assigned_at) VALUES ('{device_id}', {version}, $gn${body}$gn$,"
             f" $gn${chain['snapshot']}$gn$, $gn${chain['timestamp']}$gn$, '{model}', '{model_version}',"
             f" now() + interval '30 days', (SELECT assigned_at FROM device_desired WHERE device_id = '{device_id}'))")


def delete_director_above(srv, device_id, version):
    sql(srv, f"DELETE FROM director_targets WHERE device_id = '{device_id}' AND version > {version}")


def artifact_path(srv, sha):
    return srv.data_dir / "artifacts" / "sha256" / sha[:2] / sha


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srv(pg, tmp_base):
    """One gangliond for the module, agents told to check in every second. Agent A installs
    dozens of releases within minutes, far more than the per-device report budget of a real
    fleet (device-reports-per-hour, 120): the budget is raised so that its reports keep counting."""
    db = pg.create_database()
    # At debug, so that routine check-ins are in its log too (checkins_since counts them).
    s = Gangliond(make_dir(tmp_base / "agsrv", 0o711), database_url=pg.dsn(db),
                  extra_args=["--agent-poll-interval", "1s", "--device-reports-per-hour", "100000",
                              "--log-level", "debug"])
    s.pg, s.db = pg, db
    s.start()
    try:
        yield s
    finally:
        try:
            s.stop(check=True)
        finally:
            print(f"\n--- gangliond log ({s.logfile}) ---\n{s.log()}")


@pytest.fixture(scope="module")
def refs(srv):
    """det 1.0.0 (v1) and 2.0.0 (v2) published; the references by version."""
    r = Refs()
    push(srv, "1.0.0", _onnx("v1"), "v1")
    push(srv, "2.0.0", _onnx("v2"), "v2")
    r.add("1.0.0", "v1")
    r.add("2.0.0", "v2")
    return r


@pytest.fixture(scope="module")
def agents(tmp_base):
    """Factory: agents(server_url, target=..., extra_args=..., env=...) makes an Agent (not yet
    enrolled). At the end every agent still running gets SIGTERM and must exit 0."""
    made = []
    n = [0]

    def make(server_url, **kw):
        n[0] += 1
        a = Agent(tmp_base / f"ag{n[0]}", server_url, **kw)
        made.append(a)
        return a

    yield make
    errors = list(_agent_deaths)
    for a in made:
        errors += a.stop(check=False)
    for a in made:
        print(f"\n--- agent log ({a.logfile}) ---\n{a.log()[-6000:]}")
    assert not errors, errors


def runtime_mapped(agent):
    """Whether the agent process has its runtime plugin, or a runtime's library (OpenCV, ONNX
    Runtime), mapped (/proc/PID/maps): an agent with no model must have neither."""
    maps = Path(f"/proc/{agent.proc.pid}/maps").read_text()
    return str(agent.plugin) in maps or "/libopencv_" in maps or "/libonnxruntime" in maps


def enroll_and_start(srv, agent, **start_kw):
    token = srv.make_enroll_token()["token"]
    agent.enroll(token)
    agent.start(**start_kw)
    return agent.device_id


@pytest.fixture(scope="module")
def dev_a(srv, refs, agents):
    """Agent A: enrolled on the module's server, cpu target, v1 assigned and serving."""
    a = agents(srv.url)
    enroll_and_start(srv, a)
    assert a.healthz() == {"status": "ok", "serving": False}
    assert a.models() == []
    status, _, body = a.request("POST", f"/v1/models/{MODEL}/infer", {"inputs": {"x": refs.x("1.0.0")}})
    assert status == 503, (status, body)
    nothing = rollback(a)
    plugin_before = runtime_mapped(a)
    assign(srv, a.device_id, "1.0.0")
    wait_serving(a, "1.0.0")
    # What the first install left, recorded now: the test of it may run after others.
    op = wait_operation(srv, a.device_id, lambda o: o["state"] == "active" and o["version"] == "1.0.0")
    a.first = {"models": a.models(), "op": op, "device": device_reported(srv, a.device_id),
               "events": device_events(srv, a.device_id), "state": a.state(), "files": verified_files(a),
               "rollback_before": nothing, "rollback_after": rollback(a),
               "plugin_mapped": (plugin_before, runtime_mapped(a))}
    return a


@pytest.fixture(scope="module", params=sorted(RUNTIME_PLUGINS))
def dev_rt(request, srv, refs, agents):
    """An agent per runtime plugin, with v1 assigned and serving: agent A itself for OpenCV, and an
    agent like it on ONNX Runtime. The tests that take it run once per plugin."""
    if request.param == "opencv":
        return request.getfixturevalue("dev_a")
    if not RUNTIME_PLUGINS[request.param].exists():
        pytest.skip(f"{RUNTIME_PLUGINS[request.param]} not built (configure --with-onnxruntime=PREFIX; "
                    "scripts/deps.sh onnxruntime prints one)")
    a = agents(srv.url, plugin=request.param)
    enroll_and_start(srv, a)
    assign(srv, a.device_id, "1.0.0")
    wait_serving(a, "1.0.0")
    return a


# --- the command line ------------------------------------------------------------------------
def test_every_command_takes_help_and_version_and_the_token_from_a_file(srv, agents, workdir):
    a = agents(srv.url)
    for cmd in ("enroll", "run", "status", "sample-config", "man", "man-config", "completion"):
        p = run(a.command(cmd, "--help"), env=child_env(**a.env))
        assert p.stdout.startswith(f"usage: ganglion-agent [OPTIONS] {cmd}"), (cmd, p.stdout)
        p = run(a.command(cmd, "--version"), env=child_env(**a.env))
        assert p.stdout.startswith("ganglion-agent "), (cmd, p.stdout)
    assert not a.data_dir.exists(), "a command's --help created the data dir"
    for prog in (GANGLIOND, GANGLION_CLI, AGENT):
        p = run([prog, "--version"])
        assert p.stdout.startswith(f"{Path(prog).name} ") and "commit" in p.stdout, p.stdout
    p = run(a.command("status", "extra"), check=False, env=child_env(**a.env))
    assert p.returncode == 2 and "unexpected argument 'extra'" in p.stderr, p.stderr

    # --token @FILE: trimmed, one word; the token never needs to be in argv.
    tokfile = workdir / "enroll.token"
    for content, why in (("", "is empty"), ("gne_a gne_b\n", "more than one word")):
        tokfile.write_text(content)
        p = run(a.command("enroll", "--token", f"@{tokfile}"), check=False, env=child_env(**a.env))
        assert p.returncode == 2 and str(tokfile) in p.stderr and why in p.stderr, p.stderr
    p = run(a.command("enroll", "--token", f"@{workdir / 'missing'}"), check=False, env=child_env(**a.env))
    assert p.returncode == 2 and "cannot open" in p.stderr, p.stderr
    tokfile.write_text(f"\n  {srv.make_enroll_token()['token']}\n")
    p = run(a.command("enroll", "--token", f"@{tokfile}"), env=child_env(**a.env))
    device = json.loads((a.data_dir / "identity" / "device.json").read_text())["device_id"]
    assert device in p.stdout and srv.api("GET", f"/v1/devices/{device}").status_code == 200
    out = run(a.command("status"), env=child_env(**a.env)).stdout
    assert "no model installed yet" in out and "last failed attempt: none" in out, out


# --- 1. enroll, assign, serve ---------------------------------------------------------------
def test_enroll_assign_v1_serves_the_reference(srv, refs, dev_a):
    a = dev_a
    first = a.first
    (item,) = first["models"]
    assert item["name"] == MODEL and item["version"] == "1.0.0" and item["target"] == "cpu"
    assert item["sha256"] == hashlib.sha256(_onnx("v1")).hexdigest()
    assert first["op"]["model"] == MODEL
    d = first["device"]
    (desired,) = d["desired"]
    assert desired["model"] == MODEL and desired["version"] == "1.0.0"
    assert [m["version"] for m in d["reported"]["models"]] == ["1.0.0"]
    # The history: the install of 1.0.0 ended active (the intermediate states of a fast install
    # fall between two check-ins; see test_progress_reported_during_a_long_download).
    events = first["events"]
    assert [e["state"] for e in events if e.get("version") == "1.0.0"][-1:] == ["active"], events
    assert not [e for e in events if e["state"] == "failed"], events
    st = model_state(first["state"])
    assert st["current"]["version"] == "1.0.0" and st["previous"] is None
    assert first["files"] == [item["sha256"]]
    # Nothing to roll back to: before the first install, and with no previous version.
    for (status, headers, body), why in ((first["rollback_before"], "nothing installed"),
                                         (first["rollback_after"], "no previous version")):
        assert status == 404 and headers["content-type"] == "application/problem+json", (status, body)
        assert why in json.loads(body)["detail"], body
    # The runtime (and OpenCV with it) is loaded when the first model needs it, not before.
    assert first["plugin_mapped"] == (False, True)

    baseline(srv, refs, a, "1.0.0")
    (item,) = a.models()
    assert item["name"] == MODEL and item["version"] == "1.0.0" and item["target"] == "cpu"
    assert item["sha256"] == hashlib.sha256(_onnx("v1")).hexdigest()
    ans = a.infer(MODEL, {"x": refs.x("1.0.0")})
    assert ans["model"] == MODEL and ans["target"] == "cpu"
    assert refs.check(ans) == "1.0.0"
    assert_serves(a, refs, "1.0.0")
    # A model this device does not run, and bad bodies, are refused without harm.
    assert a.request("POST", "/v1/models/other/infer", {"inputs": {"x": refs.x("1.0.0")}})[0] == 404
    assert a.request("POST", f"/v1/models/{MODEL}/infer", {"inputs": {"x": [1, 2]}})[0] == 400
    assert a.request("POST", f"/v1/models/{MODEL}/infer", b"\x00" * 5, {"Content-Type": "application/octet-stream"})[0] == 400
    json_ct = {"Content-Type": "application/json"}
    for body in (b'{"inputs": ', b'{"inputs": {"x": [1, 2, 3, "4"]}}', b'{"inputs": {}, "extra": 1}', b"[]", b""):
        status, headers, text = a.request("POST", f"/v1/models/{MODEL}/infer", body, json_ct)
        assert status == 400 and headers["content-type"] == "application/problem+json", (body, status, text)
    status, headers, _ = a.request("GET", f"/v1/models/{MODEL}/infer")
    assert status == 405 and headers.get("allow") == "POST", (status, headers)
    status, headers, _ = a.request("GET", "/v1/rollback")
    assert status == 405 and headers.get("allow") == "POST", (status, headers)
    assert a.request("GET", "/v1/nothing-here")[0] == 404
    assert_serves(a, refs, "1.0.0")


# --- 2. swap under load ---------------------------------------------------------------------
def test_swap_to_v2_under_load_fails_no_request(srv, refs, dev_rt):
    a = dev_rt
    baseline(srv, refs, a, "1.0.0")
    with Load(a, refs, x_version="1.0.0") as load:
        load.wait_answers(25, "1.0.0")  # the load runs before the swap...
        assign(srv, a.device_id, "2.0.0")
        wait_serving(a, "2.0.0")
        load.wait_answers(25, "2.0.0")  # ...and after it
    # v1 and v2 share the sample input, so every answer is checked against its own version.
    assert refs.x("1.0.0") == refs.x("2.0.0")
    check_swap(load.results, "1.0.0", "2.0.0")
    assert len(load.results) >= 50, len(load.results)
    assert_serves(a, refs, "2.0.0")
    wait_operation(srv, a.device_id, lambda o: o["state"] == "active" and o["version"] == "2.0.0")
    st = model_state(a.state())
    assert st["current"]["version"] == "2.0.0" and st["previous"]["version"] == "1.0.0"
    # The current and the previous model are kept, both verified.
    assert len(verified_files(a)) == 2


# --- rollback on the socket -----------------------------------------------------------------
def rollback(agent, timeout=60):
    """POST /v1/rollback, again while it answers 409: the agent holds its update lock for every
    check-in (each second here), and a rollback then asks to be tried again."""
    answers = []

    def attempt():
        answers.append(agent.request("POST", "/v1/rollback"))
        return answers[-1][0] != 409

    assert wait_for(attempt, timeout, 0.05), f"rollback refused for {timeout} s: {answers[-1]}"
    return answers[-1]


def checkins_since(srv, device_id, offset):
    """The number of check-ins the server logged for the device after log offset (bytes)."""
    text = srv.logfile.read_text(errors="replace")[offset:]
    return sum(1 for l in text.splitlines()
               if "event=request" in l and "path=/v1/agent/checkin" in l and f"actor=device:{device_id}" in l)


def test_rollback_on_the_socket_restores_the_previous_version(srv, refs, dev_rt):
    a = dev_rt
    baseline(srv, refs, a, "1.0.0")
    baseline(srv, refs, a, "2.0.0")
    st = model_state(a.state())
    assert st["current"]["version"] == "2.0.0" and st["previous"]["version"] == "1.0.0", st
    after = last_event_id(srv, a.device_id)

    status, headers, body = rollback(a)
    assert status == 200, (status, body)
    assert json.loads(body) == {"status": "rolled_back", "model": MODEL, "version": "1.0.0"}
    assert_serves(a, refs, "1.0.0")
    st = model_state(a.state())
    assert st["current"]["version"] == "1.0.0" and st["previous"]["version"] == "2.0.0", st
    wait_event(srv, a.device_id, lambda o: o["state"] == "rolled_back" and o.get("version") == "1.0.0",
               after_id=after, what="rolled_back event")
    assert len(verified_files(a)) == 2

    # Held: the director still names 2.0.0, but the agent does not reinstall it, not even after
    # a restart (three check-ins later it still serves 1.0.0 and has not downloaded or loaded).
    a.stop()
    log_from = len(a.logfile.read_bytes())
    a.start()
    srv_from = len(srv.logfile.read_text(errors="replace"))
    assert wait_for(lambda: checkins_since(srv, a.device_id, srv_from) >= 3, 60, 0.2), srv.log()[-2000:]
    assert_serves(a, refs, "1.0.0")
    since_restart = a.logfile.read_bytes()[log_from:].decode(errors="replace")
    assert "version=2.0.0" not in since_restart, since_restart[-2000:]

    # A previous file that no longer matches its verified SHA-256 is refused: the current serves on.
    prev = a.data_dir / "models" / st["previous"]["sha256"]
    good = prev.read_bytes()
    os.chmod(prev, 0o600)
    try:
        prev.write_bytes(b"\0" + good[1:])
        status, headers, body = rollback(a)
        assert status == 500 and "no longer matches" in json.loads(body)["detail"], (status, body)
        assert_serves(a, refs, "1.0.0")
    finally:
        prev.write_bytes(good)
    verified_files(a)
    # The operator's next assignment is installed as usual.
    baseline(srv, refs, a, "2.0.0")


def test_enroll_with_roots_given_out_of_band(srv, refs, agents, workdir):
    """`enroll --trusted-root/--trusted-director-root`: roots fetched out of band are pinned as
    given (no trust on first use), and a root that does not verify is refused before the
    enrollment token is spent."""
    image_root = workdir / "image-root.json"
    director_root = workdir / "director-root.json"
    image_root.write_bytes(srv.api("GET", "/v1/tuf/image/root.json").content)
    director_root.write_bytes(srv.api("GET", "/v1/tuf/director/root.json").content)
    bad = workdir / "bad-root.json"
    env = json.loads(image_root.read_text())
    env["signed"]["expires"] = "2099-01-01T00:00:00Z"  # changed after signing
    bad.write_text(json.dumps(env))
    et = srv.make_enroll_token(max_uses=1)
    d = agents(srv.url)
    for args in (["--trusted-root", bad, "--trusted-director-root", director_root],
                 ["--trusted-root", image_root, "--trusted-director-root", bad],
                 ["--trusted-root", workdir / "missing.json"]):
        p = run(d.command("enroll", "--token", et["token"], *args), check=False, env=child_env(**d.env))
        assert p.returncode == 2 and "is not a usable root" in p.stderr, (p.returncode, p.stderr)
        assert not (d.data_dir / "identity" / "device.json").exists()
    uses = {t["id"]: t["uses"] for t in srv.api("GET", "/v1/enroll-tokens").json()["items"]}
    assert uses[et["id"]] == 0, "a refused root spent the enrollment token"

    p = run(d.command("enroll", "--token", et["token"], "--trusted-root", image_root,
                      "--trusted-director-root", director_root), env=child_env(**d.env))
    assert "enrolled as device" in p.stdout, p.stdout
    assert "trust_on_first_use" not in p.stdout + p.stderr, p.stderr
    d.device_id = json.loads((d.data_dir / "identity" / "device.json").read_text())["device_id"]
    for repo, given in (("image", image_root), ("director", director_root)):
        pinned = json.loads((d.data_dir / "trust" / repo / "root.json").read_text())
        assert pinned == json.loads(given.read_text()), repo
    # The pinned roots carry it: it installs what it is assigned.
    ensure_version(srv, refs, "1.0.0")
    d.start()
    assign(srv, d.device_id, "1.0.0")
    wait_serving(d, "1.0.0")
    assert_serves(d, refs, "1.0.0")
    d.stop()


# --- 3. the same on OpenCL ------------------------------------------------------------------
def test_opencl_target_serves_and_swaps_under_load(srv, refs, agents, tmp_base):
    # Empty kernel caches (PoCL's and OpenCV's own), out of $HOME.
    b = agents(srv.url, target="opencl", env={"POCL_CACHE_DIR": str(make_dir(tmp_base / "pocl-cache", 0o700)),
                                              "OPENCV_OPENCL_CACHE_DIR": str(make_dir(tmp_base / "ocv-cache", 0o700))})
    enroll_and_start(srv, b)
    assign(srv, b.device_id, "1.0.0")
    # The first OpenCL load compiles kernels: seconds.
    assert wait_serving(b, "1.0.0", timeout=120) == ("1.0.0", "opencl"), b.log()[-3000:]
    (item,) = b.models()
    assert item["requested_target"] == "opencl"
    ans = b.infer(MODEL, {"x": refs.x("1.0.0")})
    assert ans["target"] == "opencl" and refs.check(ans) == "1.0.0"
    with Load(b, refs, x_version="1.0.0") as load:
        load.wait_answers(25, "1.0.0")
        assign(srv, b.device_id, "2.0.0")
        assert wait_serving(b, "2.0.0", timeout=120) == ("2.0.0", "opencl")
        load.wait_answers(25, "2.0.0")
    check_swap(load.results, "1.0.0", "2.0.0")
    assert_serves(b, refs, "2.0.0")
    reported = wait_for(lambda: [m for m in device_reported(srv, b.device_id)["reported"]["models"]
                                 if m["version"] == "2.0.0"], 60, 0.2)
    assert [(m["version"], m["target"]) for m in reported or []] == [("2.0.0", "opencl")], \
        device_reported(srv, b.device_id)["reported"]
    # A model with real convolutions: OpenCL kernels run it and agree with numpy.
    conv = _meta("conv")
    r = publish(srv, "conv", _onnx("conv"), meta=conv)
    assert r.status_code == 201, r.text
    assign(srv, b.device_id, "1.0.0", model="conv")
    got = wait_for(lambda: next((m for m in b.models() if m["name"] == "conv"), None), 120, 0.2)
    assert got and got["target"] == "opencl", (got, b.log()[-3000:])
    assert_serves(b, refs, "2.0.0")  # the other model serves on beside it
    ans = b.infer("conv", conv["sample"]["inputs"])
    assert ans["target"] == "opencl"
    assert close_to(ans["outputs"]["y"], conv["sample"]["outputs"]["y"], conv["sample"]["tolerance"]), ans
    b.stop()



# --- 4. refusals: the old model serves on, the failure is reported ----------------------------
_last_attack_end = [0.0]
_agent_deaths = []


def baseline(srv, refs, a, version="2.0.0"):
    """What every test on agent A starts from, whatever ran before it: the server and the agent
    running, `version` (published here if it is not yet) assigned and serving as its only model,
    and the agent trusting the server's newest director targets. Returns the newest event id and the time.
    Starts at least a second after the previous attack ended, so that failures reported late for
    it (an operation is reported at the check-in after it, its time to the second) are older than
    anything now."""
    if not srv.running():
        srv.start()
    if a.proc is not None and a.proc.poll() is not None:
        # Not stopped by a test: a crash. Reported at the end of the module, restarted here.
        _agent_deaths.append(f"agent {a.workdir.name} exited by itself (status {a.proc.returncode})")
        a.proc = None
    if a.proc is None:
        a.start()
    ensure_version(srv, refs, version)
    time.sleep(max(0.0, _last_attack_end[0] + 1.05 - time.time()))
    # Only det: another model a test gave the agent (a device runs several) goes.
    for d in device_reported(srv, a.device_id)["desired"]:
        if d["model"] != MODEL:
            r = srv.api("DELETE", f"/v1/devices/{a.device_id}/desired", params={"model": d["model"]})
            assert r.status_code == 204, r.text
    assign(srv, a.device_id, version)
    wait_serving(a, version)
    ok = wait_for(lambda: [m["name"] for m in a.models()] == [MODEL], 60, 0.1)
    assert ok, f"agent still serves {a.models()}"
    top = director_rows(srv, a.device_id)[0]["version"]
    ok = wait_for(lambda: json.loads((a.data_dir / "trust" / "director" / "targets.json").read_text())
                  ["signed"]["version"] == top, 60, 0.1)
    assert ok, f"agent never accepted director targets version {top}"
    return last_event_id(srv, a.device_id), tuf_time(datetime.now(timezone.utc))


def expect_refusal(srv, refs, a, after, before, detail, version=None):
    """Waits for a failed operation (newer than event after) whose detail contains `detail`;
    checks the server shows it as reported.last_operation and that `before` still serves."""
    after_id, since = after
    op = wait_event(srv, a.device_id,
                    lambda o: o["state"] == "failed" and detail in o.get("detail", "") and o["at"] >= since
                    and (version is None or o.get("version") == version),
                    after_id=after_id, what=f"failed operation ({detail})")
    last = device_reported(srv, a.device_id)["reported"]["last_operation"]
    assert last["state"] == "failed" and detail in last["detail"], last
    assert_serves(a, refs, before)
    return op


@pytest.mark.parametrize("how", ["same-length", "longer"])
def test_refuses_an_artifact_changed_on_the_server_disk(srv, refs, dev_a, how):
    a = dev_a
    after = baseline(srv, refs, a)
    version = {"same-length": "2.0.1", "longer": "2.0.2"}[how]
    art = variant("v2", f"tamper-{how}")
    sha = push(srv, version, art, "v2")
    refs.add(version, "v2")
    path = artifact_path(srv, sha)
    assert path.read_bytes() == art
    os.chmod(path, 0o600)
    bad = bytearray(art)
    if how == "same-length":
        bad[len(bad) // 2] ^= 0x5A
    else:
        bad += b"\0" * 4096
    path.write_bytes(bytes(bad))
    assign(srv, a.device_id, version)
    detail = "downloaded bytes hash to" if how == "same-length" else f"more than the signed {len(art)} bytes"
    expect_refusal(srv, refs, a, after, "2.0.0", detail, version)
    assert sha not in verified_files(a)
    part = a.data_dir / "downloads" / f"{sha}.part"
    assert not part.exists() or part.stat().st_size == 0, "refused bytes were kept for a resume"


def test_refuses_a_target_the_image_repository_did_not_sign(srv, refs, dev_a):
    """A version that reached the database without being published (so without an image
    targets signature), artifact in place: the director names it, the agent refuses it."""
    a = dev_a
    after = baseline(srv, refs, a)
    art = variant("v2", "unsigned")
    sha = hashlib.sha256(art).hexdigest()
    path = artifact_path(srv, sha)
    make_dir(path.parent, 0o755)
    path.write_bytes(art)
    sql(srv, "INSERT INTO model_versions (model, version, major, minor, patch, prerelease, format, filename, sha256,"
             " length, metadata, sample_json, profile_json, custom, published_by)"
             f" SELECT model, '2.0.3', 2, 0, 3, NULL, format, filename, '{sha}', {len(art)}, metadata, sample_json,"
             " profile_json, custom, 'intruder' FROM model_versions WHERE model = 'det' AND version = '2.0.0'")
    refs.add("2.0.3", "v2")
    try:
        assign(srv, a.device_id, "2.0.3")
        expect_refusal(srv, refs, a, after, "2.0.0", "the image repository has not signed target models/det/2.0.3/", "2.0.3")
        assert sha not in verified_files(a)
        assert not [e for e in srv.api("GET", "/v1/tuf/image/targets.json").json()["signed"]["targets"] if "2.0.3" in e]
    finally:
        # Out of the database before any publish re-signs the image targets from it.
        assign(srv, a.device_id, "2.0.0")
        sql(srv, "DELETE FROM model_versions WHERE model = 'det' AND version = '2.0.3'")
        path.unlink()


def test_refuses_a_model_that_fails_its_self_test(srv, refs, dev_rt):
    a = dev_rt
    after = baseline(srv, refs, a)
    meta = _meta("bad")
    if srv.api("GET", f"/v1/models/{MODEL}/versions/{meta['version']}").status_code != 200:  # once per module
        r = publish(srv, MODEL, _onnx("bad"), meta=meta)
        assert r.status_code == 201, r.text
    assign(srv, a.device_id, meta["version"])
    expect_refusal(srv, refs, a, after, "2.0.0", "self-test failed", meta["version"])
    assert model_state(a.state())["current"]["version"] == "2.0.0"
    # `status` (its own process, reading the data dir) shows the failed attempt.
    out = run(a.command("status"), env=child_env(**a.env)).stdout
    failed = next(line for line in out.splitlines() if line.startswith("last failed attempt: "))
    assert f"failed {MODEL} {meta['version']} at " in failed and "self-test failed" in failed, out
    assert a.device_id in out and "last update attempt: " in out, out


# --- samples as .npy tensor files ------------------------------------------------------------
def _image_model():
    """x[1,3,224,224] -> global average pool -> y[1,3]: the mean of each channel."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["gap"]), helper.make_node("Flatten", ["gap"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "image-mean", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, producer_name="ganglion-tests", opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _push_npy_release(srv, d, version, x, y):
    """Writes x.npy and y.npy (numpy's own files) beside meta.json in d, pushes img/version with
    the CLI; returns the version object and the files' SHA-256."""
    make_dir(d, 0o755)
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    meta = {"version": version, "format": "onnx",
            "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 3, 224, 224]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 3]}],
            "sample": {"inputs": {"x": "x.npy"}, "outputs": {"y": "y.npy"}, "tolerance": 1e-4}}
    (d / "meta.json").write_text(json.dumps(meta))
    (d / "model.onnx").write_bytes(_image_model())
    p = srv.cli("models", "push", "--name", "img", "--meta", d / "meta.json", "--no-progress", d / "model.onnx",
                output="json")
    assert p.returncode == 0, f"stdout: {p.stdout}\nstderr: {p.stderr}"
    shas = {n: hashlib.sha256((d / f"{n}.npy").read_bytes()).hexdigest() for n in ("x", "y")}
    return json.loads(p.stdout), shas


def _wait_img(a, version):
    ok = wait_for(lambda: any(m["name"] == "img" and m["version"] == version for m in a.models()), 90, 0.1)
    assert ok, f"img {version} never served: {a.models()}\n{a.log()[-3000:]}"


def test_npy_sample_self_tests_and_refusals(srv, refs, dev_a, tmp_base):
    """A release whose sample is a 1x3x224x224 float32 tensor (~600 KB as .npy, written by numpy)
    goes through the CLI, is stored content-addressed and bound by digest in the signed sample;
    the agent fetches it, checks it and self-tests on it. A .npy changed on the server's disk is
    refused (digest mismatch), and so is a release whose expected output is wrong."""
    a = dev_a
    after = baseline(srv, refs, a)
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    y = x.astype(np.float64).mean(axis=(2, 3))
    ver, shas = _push_npy_release(srv, tmp_base / "npy1", "1.0.0", x, y)
    assert 600_000 < (tmp_base / "npy1" / "x.npy").stat().st_size < 610_000
    assert ver["sample"]["inputs"]["x"] == {"format": "npy", "sha256": shas["x"], "length": 602_240}
    # The stored sample is what the signed target's sample_sha256 covers, file digests included.
    stored = srv.api("GET", "/v1/models/img/versions/1.0.0/sample").content
    target = srv.api("GET", "/v1/tuf/image/targets.json").json()["signed"]["targets"]
    custom = next(t["custom"] for k, t in target.items() if k.startswith("models/img/1.0.0/"))
    assert custom["sample_sha256"] == hashlib.sha256(stored).hexdigest() and shas["x"].encode() in stored
    assert artifact_path(srv, shas["x"]).read_bytes() == (tmp_base / "npy1" / "x.npy").read_bytes()
    assign(srv, a.device_id, "1.0.0", model="img")
    _wait_img(a, "1.0.0")
    assert next(m for m in a.models() if m["name"] == "img")["self_test"] == "passed"
    status, headers, body = a.request("POST", "/v1/models/img/infer", x.astype("<f4").tobytes(),
                                      {"Content-Type": "application/octet-stream"})
    assert status == 200 and headers.get("x-model-version") == "1.0.0", (status, headers, body[:200])
    assert close_to(np.frombuffer(body, "<f4").tolist(), y.ravel().tolist(), 1e-4), (body, y)

    # The same release again with other sample bytes, one changed on the server's disk.
    x2 = rng.uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    _, shas2 = _push_npy_release(srv, tmp_base / "npy2", "1.0.1", x2, x2.astype(np.float64).mean(axis=(2, 3)))
    path = artifact_path(srv, shas2["x"])
    bad = bytearray(path.read_bytes())
    bad[-7] ^= 0x40
    os.chmod(path, 0o600)
    path.write_bytes(bytes(bad))
    assign(srv, a.device_id, "1.0.1", model="img")
    wait_event(srv, a.device_id, lambda o: o["state"] == "failed" and o.get("version") == "1.0.1"
               and "the sample file of tensor x does not match its signed SHA-256" in o.get("detail", ""),
               after_id=after[0], what="refusal of a changed sample file")
    assert next(m for m in a.models() if m["name"] == "img")["version"] == "1.0.0"

    # An expected output that the model does not produce: the self-test refuses the swap.
    _push_npy_release(srv, tmp_base / "npy3", "1.0.2", x, y + 0.5)
    assign(srv, a.device_id, "1.0.2", model="img")
    op = wait_event(srv, a.device_id, lambda o: o["state"] == "failed" and o.get("version") == "1.0.2"
                    and "self-test failed: output y[0]" in o.get("detail", ""),
                    after_id=after[0], what="self-test refusal on the .npy sample")
    assert "tolerance 0.0001" in op["detail"], op
    assert next(m for m in a.models() if m["name"] == "img")["version"] == "1.0.0"
    unassign(srv, a.device_id, "img")


def test_a_model_only_onnxruntime_loads(srv, refs, dev_rt):
    """A third-party model (libonnx-testdata's Gemm whose B is an input) that OpenCV 4.6 cannot
    load: the OpenCV agent refuses it and serves on; the ONNX Runtime agent serves it, and its
    answer is the reference."""
    a = dev_rt
    after = baseline(srv, refs, a)
    meta = json.loads((TEST_MODELS / "thirdparty" / "test_gemm_default_no_bias.json").read_text())
    if srv.api("GET", "/v1/models/gemm/versions/1.0.0").status_code != 200:
        r = publish(srv, "gemm", (TEST_MODELS / "thirdparty" / "test_gemm_default_no_bias.onnx").read_bytes(),
                    meta=meta)
        assert r.status_code == 201, r.text
    assign(srv, a.device_id, "1.0.0", model="gemm")
    try:
        if a.plugin == RUNTIME_PLUGINS["opencv"]:
            expect_refusal(srv, refs, a, after, "2.0.0", "Blob b not found in const blobs", "1.0.0")
            return
        got = wait_for(lambda: next((m for m in a.models() if m["name"] == "gemm"), None), 90, 0.2)
        assert got and got["target"] == "cpu", (got, a.log()[-3000:])
        ans = a.infer("gemm", meta["sample"]["inputs"])
        s = meta["sample"]
        assert close_to(ans["outputs"]["y"], s["outputs"]["y"], s["tolerance"]), (ans, s["outputs"])
    finally:
        unassign(srv, a.device_id, "gemm")


def test_onnxruntime_reports_the_provider_that_really_runs(srv, refs, agents):
    """An agent on ONNX Runtime asked for cuda, on a machine without CUDA's provider libraries
    (GANGLION_EXPECT_CUDA=1 where they are): the model serves on cpu, and the socket and the
    server both say so and why. runtime-options reach the plugin: one it does not know fails the
    install with its name."""
    if not RUNTIME_PLUGINS["onnxruntime"].exists():
        pytest.skip("the ONNX Runtime plugin is not built (configure --with-onnxruntime=PREFIX)")
    cuda = os.environ.get("GANGLION_EXPECT_CUDA") == "1"
    ensure_version(srv, refs, "1.0.0")
    g = agents(srv.url, target="cuda", plugin="onnxruntime",
               extra_args=["--runtime-options", "threads=1,device=0,log-level=error"])
    enroll_and_start(srv, g)
    assign(srv, g.device_id, "1.0.0")
    version, target = wait_serving(g, "1.0.0")
    (item,) = g.models()
    assert item["requested_target"] == "cuda" and target == ("cuda" if cuda else "cpu"), item
    if not cuda:
        assert "requested cuda, running on cpu" in item["target_detail"], item
    assert refs.check(g.infer(MODEL, {"x": refs.x("1.0.0")})) == "1.0.0"
    # A report sent while the model was still installing names it with "state": "none" (no
    # target yet): wait for the one that says it serves.
    def serving():
        models = device_reported(srv, g.device_id)["reported"]["models"]
        return models if models and all(m["state"] == "active" for m in models) else None
    reported = wait_for(serving, 60, 0.2)
    assert reported, device_reported(srv, g.device_id)["reported"]
    assert [(m["target"], m["target_detail"]) for m in reported] == [(target, item["target_detail"])], reported
    g.stop()
    opts = ["--runtime-options", "threads=1,bogus=1"]
    bad = agents(srv.url, plugin="onnxruntime", extra_args=opts)
    p = run(bad.command("enroll", "--token", srv.make_enroll_token()["token"]), check=False, env=child_env(**bad.env))
    assert p.returncode != 0 and "unknown option 'bogus'" in p.stderr, (p.returncode, p.stderr)
    bad.extra_args = []  # enrolled without them, run with them: the first model meets the refusal
    enroll_and_start(srv, bad, extra_args=opts)
    assign(srv, bad.device_id, "1.0.0")
    wait_event(srv, bad.device_id, lambda o: o["state"] == "failed" and "unknown option 'bogus'" in o.get("detail", ""),
               what="failed install naming the option")
    assert bad.models() == []
    bad.stop()


def test_a_long_error_reaches_the_server_whole(srv, refs, dev_a):
    """A runtime's diagnosis can be long: OpenCV refuses a Gemm whose B is an input, naming that
    input, here a name of 1,500 characters. The failed operation the server shows carries all of
    the message, not its first 500 characters."""
    a = dev_a
    after = baseline(srv, refs, a)
    bname = "b_" + "x" * 1500
    rng = np.random.default_rng(3)
    av, bv = rng.normal(size=(2, 10)).astype(np.float32), rng.normal(size=(10, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["a", bname], ["y"])], "gemm-long",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 10]),
         helper.make_tensor_value_info(bname, TensorProto.FLOAT, [10, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    spec = lambda n, s: {"name": n, "dtype": "float32", "shape": s}  # noqa: E731
    meta = {"version": "1.0.0", "format": "onnx", "inputs": [spec("a", [2, 10]), spec(bname, [10, 3])],
            "outputs": [spec("y", [2, 3])],
            "sample": {"inputs": {"a": av.ravel().tolist(), bname: bv.ravel().tolist()},
                       "outputs": {"y": (av @ bv).ravel().tolist()}, "tolerance": 1e-4}}
    r = publish(srv, "gemm-long", model.SerializeToString(), meta=meta)
    assert r.status_code == 201, r.text[:300]
    assign(srv, a.device_id, "1.0.0", model="gemm-long")
    try:
        op = expect_refusal(srv, refs, a, after, "2.0.0", "not found in const blobs", "1.0.0")
    finally:
        unassign(srv, a.device_id, "gemm-long")
    assert bname in op["detail"] and len(op["detail"]) > len(bname), op["detail"][:300]


def target_entry(srv, device_id, version, model=MODEL):
    """(path, entry) of a published model version as the director would name it for the device."""
    row = json.loads(sql(srv, "SELECT json_build_object('filename', filename, 'sha256', sha256, 'length', length)"
                              f" FROM model_versions WHERE model = '{model}' AND version = '{version}'"))
    return (f"models/{model}/{version}/{row['filename']}",
            {"length": row["length"], "hashes": {"sha256": row["sha256"]},
             "custom": {"device_id": device_id, "model": model, "version": version}})


def crafted(srv, a, top, target_version="1.0.0", expires=None, version=None):
    """The signed part of director targets for agent a: version top+1 (or version), naming
    target_version (published, signed by the image repository, the agent has it), fresh times."""
    path, entry = target_entry(srv, a.device_id, target_version)
    now = datetime.now(timezone.utc)
    return {
        "_type": "targets", "spec_version": top["body"]["signed"]["spec_version"],
        "version": version or top["version"] + 1,
        "expires": tuf_time(expires or now + timedelta(days=1)),
        "targets": {path: entry},
        "custom": {"device_id": a.device_id, "issued_at": tuf_time(now)},
    }


@pytest.mark.parametrize("attack", ["expired", "replayed-older-version", "unknown-key", "unknown-key-claiming-the-known-id",
                                    "other-device"])
def test_refuses_forged_director_metadata(srv, refs, dev_a, attack):
    """Director targets signed here and stored as the newest version for the device (as a
    compromised database or a replaying mirror would serve them); each names 1.0.0, which the
    agent would install at once if it accepted them."""
    a = dev_a
    after = baseline(srv, refs, a)
    rows = director_rows(srv, a.device_id)
    top = rows[0]
    key = director_key(srv)
    assert keyid(key) in [s["keyid"] for s in top["body"]["signatures"]], "not the director's online key"
    if attack == "expired":
        env = sign(crafted(srv, a, top, expires=datetime.now(timezone.utc) - timedelta(minutes=5)), key)
        detail = f"targets metadata version {top['version'] + 1} expired at"
    elif attack == "replayed-older-version":
        old = next(r for r in rows if r["model_version"] == "1.0.0")
        env = old["body"]
        detail = f"targets version {old['version']} is older than the trusted version {top['version']} (rollback)"
    elif attack == "unknown-key":
        env = sign(crafted(srv, a, top), new_key())
        detail = "targets metadata has 0 valid signature(s), the threshold is 1"
    elif attack == "unknown-key-claiming-the-known-id":
        env = sign(crafted(srv, a, top), new_key())
        env["signatures"][0]["keyid"] = keyid(key)
        detail = "targets metadata has 0 valid signature(s), the threshold is 1"
    else:
        # Properly signed, but for another device: it must not be installed here.
        s = crafted(srv, a, top)
        s["custom"]["device_id"] = "00000000-0000-4000-8000-000000000000"
        env = sign(s, key)
        detail = "director metadata is for device 00000000-0000-4000-8000-000000000000"
    insert_director(srv, a.device_id, top["version"] + 1, env, top["model"], top["model_version"])
    try:
        expect_refusal(srv, refs, a, after, "2.0.0", detail)
        trusted = json.loads((a.data_dir / "trust" / "director" / "targets.json").read_text())
        assert trusted["signed"]["version"] == top["version"], "refused metadata became trusted"
    finally:
        delete_director_above(srv, a.device_id, top["version"])
        _last_attack_end[0] = time.time()


def test_far_future_issued_at_does_not_freeze_the_clock(srv, refs, dev_a):
    """A stolen online director key signs issued_at in 2100. If the agent raised its clock floor
    to it, every later metadata file would look expired for good; it must ignore such a time."""
    a = dev_a
    baseline(srv, refs, a)
    top = director_rows(srv, a.device_id)[0]
    far = datetime(2100, 1, 1, tzinfo=timezone.utc)
    signed = crafted(srv, a, top, target_version="2.0.0", expires=far + timedelta(days=1))
    signed["custom"]["issued_at"] = tuf_time(far)
    insert_director(srv, a.device_id, top["version"] + 1, sign(signed, director_key(srv)), top["model"],
                    top["model_version"])
    try:
        ok = wait_for(lambda: json.loads((a.data_dir / "trust" / "director" / "targets.json").read_text())
                      ["signed"]["version"] == top["version"] + 1, 60, 0.1)
        assert ok, "the (validly signed) metadata was not accepted"
        # The clock is looked at once the metadata is stored (the targets first of three).
        assert wait_for(lambda: "event=issued_at_ignored" in a.log(), 30, 0.1), a.log()[-3000:]
        clock = a.data_dir / "trust" / "clock"
        floor = int(clock.read_text()) if clock.exists() else 0
        assert floor <= time.time() + 86400, f"clock floor moved to {floor}"
    finally:
        # The row stays: the agent trusts that version now, so the server must sign past it.
        _last_attack_end[0] = time.time()
    # Not frozen: fresh metadata with ordinary times is accepted again (a re-assignment signs it).
    assign(srv, a.device_id, "1.0.0")
    wait_serving(a, "1.0.0")


def test_forged_director_metadata_control(srv, refs, dev_a):
    """The control for the refusals above: the same crafting, done right (the online key, a
    newer version, fresh), is accepted and installed, so the refusals are about what was wrong."""
    a = dev_a
    baseline(srv, refs, a)
    top = director_rows(srv, a.device_id)[0]
    insert_director(srv, a.device_id, top["version"] + 1, sign(crafted(srv, a, top), director_key(srv)),
                    top["model"], top["model_version"])
    wait_serving(a, "1.0.0")
    assert_serves(a, refs, "1.0.0")
    # The server signs over it (newer versions) when the operator's assignment changes.
    assign(srv, a.device_id, "1.0.0")
    assign(srv, a.device_id, "2.0.0")
    wait_serving(a, "2.0.0")
    assert director_rows(srv, a.device_id)[0]["version"] == top["version"] + 3


# --- downloads through a proxy: too long, too slow, resumed after kill -9 ----------------------
def stop_checked(agent, proxy):
    """Teardown of an agent behind a proxy: SIGTERM, exit 0, no sanitizer report; the proxy is
    closed whatever happens."""
    try:
        problems = agent.stop(check=False)
    finally:
        proxy.close()
    assert not problems, f"agent {agent.workdir.name}: " + "; ".join(problems) + f"\n{agent.log()[-4000:]}"


@pytest.fixture(scope="module")
def dev_c(srv, refs, agents):
    """Agent C: talks to gangliond through a TrickleProxy (full speed for now), v1 serving."""
    proxy = TrickleProxy(srv.port)
    c = agents(proxy.url)
    c.proxy = proxy
    enroll_and_start(srv, c)
    assign(srv, c.device_id, "1.0.0")
    wait_serving(c, "1.0.0")
    yield c
    stop_checked(c, proxy)


def c_baseline(srv, c, extra_args=None):
    """Agent C running (with extra_args, or none), the proxy at full speed, 1.0.0 assigned and serving."""
    c.proxy.rate = None
    if srv.api("GET", f"/v1/models/{MODEL}/versions/1.0.0").status_code != 200:
        push(srv, "1.0.0", _onnx("v1"), "v1")
    assign(srv, c.device_id, "1.0.0")
    if c.running():
        c.stop()
    c.start(extra_args=extra_args)
    wait_serving(c, "1.0.0")


@pytest.fixture(scope="module")
def slow_download(srv, refs, agents):
    """Agent S behind its own proxy at 8 KB/s with --download-min-rate 64K (the agent gives up on
    a download slower than that for 30 s): serves v1, then 1.1.0 (1 MB) is assigned. Started once,
    used by the tests that watch it; returns (agent, version, sha, start time)."""
    proxy = TrickleProxy(srv.port)
    s = agents(proxy.url, extra_args=["--download-min-rate", "64K"])
    s.proxy = proxy
    enroll_and_start(srv, s)
    ensure_version(srv, refs, "1.0.0")
    assign(srv, s.device_id, "1.0.0")
    wait_serving(s, "1.0.0")
    art = variant("v1", "slow", pad=1 << 20)
    sha = push(srv, "1.1.0", art, "v1")
    refs.add("1.1.0", "v1")
    proxy.rate = 8 * 1024
    t0 = time.monotonic()
    assign(srv, s.device_id, "1.1.0")
    yield s, "1.1.0", sha, t0
    stop_checked(s, proxy)


def test_progress_reported_during_a_long_download(srv, slow_download):
    s, version, sha, t0 = slow_download
    assert wait_for(lambda: (s.data_dir / "downloads" / f"{sha}.part").exists(), 60), s.log()[-2000:]
    # The agent pushes its progress: the server learns that this download is under way while
    # it is (not only once it has ended, well or badly).
    op = wait_operation(srv, s.device_id, lambda o: o["state"] == "downloading" and o.get("version") == version,
                        timeout=60, what="downloading operation")
    assert op["model"] == MODEL, op


def test_download_longer_than_the_deadline_is_abandoned(srv, refs, dev_c):
    c = dev_c
    c_baseline(srv, c, extra_args=["--download-deadline", "3s"])
    try:
        after = last_event_id(srv, c.device_id)
        art = variant("v1", "deadline", pad=1 << 20)
        sha = push(srv, "1.2.0", art, "v1")
        refs.add("1.2.0", "v1")
        c.proxy.rate = 20 * 1024
        assign(srv, c.device_id, "1.2.0")
        op = wait_event(srv, c.device_id, lambda o: o["state"] == "failed" and o.get("version") == "1.2.0",
                        after_id=after, timeout=90, what="failed download")
        assert "download stopped at" in op["detail"] and "timed out" in op["detail"].lower(), op
        assert_serves(c, refs, "1.0.0")
        # Abandoned, not lost: the next attempts go on from the bytes already on disk.
        ok = wait_for(lambda: [e for e in c.proxy.artifact_requests(sha) if e["range"] and e["status"] == 206], 90)
        assert ok, c.proxy.artifact_requests(sha)
        assert_serves(c, refs, "1.0.0")
        assert sha not in verified_files(c)
    finally:
        c_baseline(srv, c)


def test_kill_9_during_download_resumes_it(srv, refs, dev_c):
    c = dev_c
    c_baseline(srv, c)
    art = variant("v1", "big", pad=6 << 20)
    sha = push(srv, "1.3.0", art, "v1")
    refs.add("1.3.0", "v1")
    part = c.data_dir / "downloads" / f"{sha}.part"
    c.proxy.rate = 1 << 20
    assign(srv, c.device_id, "1.3.0")
    assert wait_for(lambda: part.exists() and part.stat().st_size >= 1_500_000, 90, 0.02), c.log()[-2000:]
    c.kill()
    have = part.stat().st_size
    assert 0 < have < len(art)
    assert model_state(c.state())["current"]["version"] == "1.0.0"
    assert sha not in verified_files(c)
    first = c.proxy.artifact_requests(sha)
    assert len(first) == 1 and first[0]["range"] is None, first

    c.proxy.rate = None
    c.start()
    v = c.serving()[0]
    assert v in ("1.0.0", "1.3.0")
    assert refs.check(c.infer(MODEL, {"x": refs.x(v)})) == v
    wait_serving(c, "1.3.0")
    assert_serves(c, refs, "1.3.0")
    resumed = c.proxy.artifact_requests(sha)[1:]
    assert [(e["range"], e["status"], e["sent"]) for e in resumed] == [(f"bytes={have}-", 206, len(art) - have)], resumed
    assert f"event=download_resume sha256={sha} have={have}" in c.log()
    assert sha in verified_files(c) and not part.exists()


def test_download_slower_than_the_minimum_rate_is_abandoned(srv, refs, slow_download):
    s, version, sha, t0 = slow_download
    if not s.running():
        s.start()
    # libcurl's low-speed limit: below --download-min-rate for 30 s. The deadline here only
    # bounds a broken run: the failure itself comes 30 s after the stall began.
    op = wait_operation(srv, s.device_id, lambda o: o["state"] == "failed" and o.get("version") == version,
                        timeout=180, what="failed slow download")
    assert "download stopped at" in op["detail"] and "too slow" in op["detail"].lower(), op
    assert time.monotonic() - t0 >= 30
    assert_serves(s, refs, "1.0.0")
    assert sha not in verified_files(s)


# --- 5. kill -9 while loading and at the swap -------------------------------------------------
def wait_log(agent, needle, timeout=90):
    """Polls the agent's log (every 2 ms) until it contains needle."""
    assert wait_for(lambda: needle in agent.logfile.read_text(errors="replace"), timeout, 0.002), \
        f"{needle!r} not logged within {timeout} s\n{agent.log()[-3000:]}"


def test_kill_9_while_loading_keeps_a_verified_model(srv, refs, dev_a):
    """kill -9 between "loading" and the swap. The load of a heavy model takes a second or more,
    but on a loaded machine the kill can still come too late: such a try proves nothing, so it is
    made again with a heavier model (at most three tries)."""
    a = dev_a
    for attempt in range(3):
        baseline(srv, refs, a)
        version = f"2.1.{10 + attempt}"
        if srv.api("GET", f"/v1/models/{MODEL}/versions/{version}").status_code != 200:
            push(srv, version, heavy_variant(f"load-{attempt}", layers=30 * (attempt + 1)), "v2")
        refs.add(version, "v2")
        assign(srv, a.device_id, version)
        wait_log(a, f"event=update state=loading model=det version={version}")
        a.kill()
        if f"model_swapped model=det version={version}" not in a.log():
            break
        print(f"try {attempt + 1}: the load of {version} finished before the kill; again, heavier")
    else:
        pytest.fail("the kill came after the swap three times: nothing was tested")
    assert model_state(a.state())["current"]["version"] == "2.0.0"
    verified_files(a)
    a.start()
    v = a.serving()[0]
    assert v in ("2.0.0", version)
    assert refs.check(a.infer(MODEL, {"x": refs.x(v)})) == v
    wait_serving(a, version)
    assert_serves(a, refs, version)
    verified_files(a)


def test_kill_9_at_the_swap_under_load_keeps_a_verified_model(srv, refs, dev_a):
    a = dev_a
    baseline(srv, refs, a, "2.0.0")
    if srv.api("GET", f"/v1/models/{MODEL}/versions/2.2.0").status_code != 200:
        push(srv, "2.2.0", heavy_variant("swap"), "v2")
    refs.add("2.2.0", "v2")
    with Load(a, refs, x_version="2.0.0") as load:
        load.wait_answers(25, "2.0.0")
        assign(srv, a.device_id, "2.2.0")
        wait_log(a, "event=model_swapped model=det version=2.2.0")
        t_kill = time.monotonic()  # before the kill: requests the kill itself cuts may fail
        a.kill()
    before_kill = [r for r in load.results if r[1] < t_kill - 0.05]
    errors = [r for r in before_kill if r[3]]
    assert before_kill and not errors, errors[:3]
    assert {r[2] for r in before_kill} <= {"2.0.0", "2.2.0"}
    # state.json names the new model before the swap is visible: the restart serves it at once.
    assert model_state(a.state())["current"]["version"] == "2.2.0"
    verified_files(a)
    a.start()
    assert_serves(a, refs, "2.2.0")
    assert "restored at start-up" in a.log()


def test_sigterm_during_a_download_stops_the_agent_promptly(slow_download):
    """systemd stops a unit with SIGTERM and kills it 90 s later: an agent in the middle of a
    slow download must still exit cleanly and well before that (the download resumes at the
    next start). Under ASan the exit includes the leak check: 30 s is generous, 90 s the limit."""
    s, version, sha, t0 = slow_download
    if not s.running():
        s.start()

    # In a download now (not in the back-off after a failed one): the last update line says so.
    def downloading():
        lines = [l for l in s.logfile.read_text(errors="replace").splitlines() if "event=update " in l]
        return lines and f"state=downloading model=det version={version}" in lines[-1]

    assert wait_for(downloading, 120, 0.01), s.log()[-2000:]
    t = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(60)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        s.kill()
    took = time.monotonic() - t
    assert rc == 0, f"SIGTERM during a download: status {rc} after {took:.1f} s\n{s.log()[-3000:]}"
    assert took < 30, f"SIGTERM during a download took {took:.1f} s"
    bad = [l for l in s.log().splitlines() if any(p in l for p in SANITIZER_PATTERNS)]
    assert not bad, bad[:20]


# --- 6. the server goes away and comes back ----------------------------------------------------
def test_agent_serves_through_a_server_outage_and_resumes(srv, refs, dev_a):
    a = dev_a
    baseline(srv, refs, a)
    before = a.serving()[0]
    # A short back-off cap so that the agent notices the server's return within the test.
    a.stop()
    a.start(extra_args=["--backoff-max", "2s"])
    seen = wait_for(lambda: device_reported(srv, a.device_id)["last_seen_at"], 60)
    assert seen, "the agent never checked in"
    srv.stop()
    try:
        # It goes on serving while its check-ins fail (and says so in its log).
        def failing():
            assert_serves(a, refs, before)
            return "event=checkin_failed" in a.log()

        assert wait_for(failing, 60, 0.1), a.log()[-2000:]
        for _ in range(10):
            assert_serves(a, refs, before)
    finally:
        srv.start()
    # The requests served during the outage change what the agent reports, so the server
    # records its first check-in after the return (last_seen_at moves past the outage).
    moved = wait_for(lambda: device_reported(srv, a.device_id)["last_seen_at"] > seen, 60, 0.2)
    assert moved, (seen, device_reported(srv, a.device_id)["last_seen_at"], a.log()[-2000:])
    if srv.api("GET", f"/v1/models/{MODEL}/versions/2.3.0").status_code != 200:
        push(srv, "2.3.0", variant("v2", "after-outage"), "v2")
    refs.add("2.3.0", "v2")
    assign(srv, a.device_id, "2.3.0")
    wait_serving(a, "2.3.0")
    assert_serves(a, refs, "2.3.0")
    wait_operation(srv, a.device_id, lambda o: o["state"] == "active" and o["version"] == "2.3.0")


def test_agent_takes_a_rotated_token(srv, dev_a):
    # `devices rotate-token` ends the agent's token; its next check-in is refused (401), it signs
    # a new challenge with its enrolled key and checks in again with the new token.
    a = dev_a
    before = len(a.log(10**8))  # the agent's log so far: earlier tests (a server outage) leave failures in it
    # The server's log from here on. (Not from the rotation's own request line: that is written
    # once its answer has gone out, and by then the agent's next check-in may be refused already
    # and logged before it.)
    srv_from = len(srv.log(10**8))
    p = srv.cli("devices", "rotate-token", a.device_id)
    assert p.returncode == 0, p.stderr

    def after_rotation():
        return srv.log(10**8)[srv_from:]

    def back():
        log = after_rotation()
        refused = log.find("path=/v1/agent/checkin route=/v1/agent/checkin status=401")
        token = log.find("path=/v1/agent/auth/token route=/v1/agent/auth/token status=200", refused)
        return refused >= 0 and token >= 0 and re.search(
            r"path=/v1/agent/checkin route=/v1/agent/checkin status=(200|304)", log[token:])

    assert wait_for(back, 30, 0.2), after_rotation()[-4000:]
    since = a.log(10**8)[before:]
    assert a.running() and "event=checkin_failed" not in since, since[-3000:]


# --- several models on one device --------------------------------------------------------------
def push_as(srv, model, version, artifact, like):
    """Publishes artifact as model/version with the metadata (and sample) of `like`; returns its SHA-256."""
    r = publish(srv, model, artifact, meta=dict(_meta(like), version=version))
    assert r.status_code == 201, f"publish {model} {version} -> {r.status_code} {r.text[:300]}"
    return hashlib.sha256(artifact).hexdigest()


def serving_versions(agent):
    """{model: version} of what the socket serves."""
    return {m["name"]: m["version"] for m in agent.models()}


def deploy(srv, name, model, selector, follow):
    r = srv.api("POST", "/v1/deployments", json={"name": name, "model": model, "selector": selector,
                                                 "follow": follow})
    assert r.status_code == 201, r.text


def test_two_models_from_two_deployments_serve_at_once_and_swap_alone(srv, refs, agents):
    """A detector and a classifier from two deployments on one agent: both serve on the socket at
    once, each is swapped under load without a failed request while the other serves on, each
    rolls back alone, the report carries each one's health, and a model the device is no longer
    told to run is unloaded (its files go, the other's stay)."""
    ensure_version(srv, refs, "1.0.0")
    ensure_version(srv, refs, "2.0.0")
    cls = {v: push_as(srv, "cls", v, variant(like, f"cls-{v}"), like) for v, like in (("1.0.0", "v1"), ("2.0.0", "v2"))}
    a = agents(srv.url)
    a.enroll(srv.make_enroll_token(labels={"rack": "two-models"})["token"])
    a.start()
    deploy(srv, "mm-det", MODEL, "rack=two-models", "1.0.0")
    deploy(srv, "mm-cls", "cls", "rack=two-models", "1.0.0")
    assert wait_for(lambda: serving_versions(a) == {MODEL: "1.0.0", "cls": "1.0.0"}, 120, 0.2), \
        (serving_versions(a), a.log()[-3000:])
    assert refs.check(a.infer(MODEL, {"x": refs.x("1.0.0")})) == "1.0.0"
    ans = a.infer("cls", {"x": refs.x("1.0.0")})
    assert ans["model"] == "cls" and refs.check(ans) == "1.0.0"
    # With two models, the unnamed rollback does not guess which.
    status, _, body = rollback(a)
    assert status == 400 and "POST /v1/models/NAME/rollback" in json.loads(body)["detail"], (status, body)

    # The classifier moves to 2.0.0 under load on both models: no request fails, the detector
    # answers 1.0.0 throughout.
    with Load(a, refs, model="cls", x_version="1.0.0") as cload, Load(a, refs, threads=2, x_version="1.0.0") as dload:
        cload.wait_answers(25, "1.0.0")
        dload.wait_answers(10, "1.0.0")
        assert srv.api("PATCH", "/v1/deployments/mm-cls", json={"follow": "2.0.0"}).status_code == 200
        assert wait_for(lambda: serving_versions(a)["cls"] == "2.0.0", 120, 0.2), a.log()[-3000:]
        cload.wait_answers(25, "2.0.0")
    check_swap(cload.results, "1.0.0", "2.0.0")
    assert not [r for r in dload.results if r[3] or r[2] != "1.0.0"], dload.results[:5]
    assert serving_versions(a) == {MODEL: "1.0.0", "cls": "2.0.0"}
    # Then the detector alone.
    assert srv.api("PATCH", "/v1/deployments/mm-det", json={"follow": "2.0.0"}).status_code == 200
    assert wait_for(lambda: serving_versions(a) == {MODEL: "2.0.0", "cls": "2.0.0"}, 120, 0.2), a.log()[-3000:]
    st = a.state()
    assert {m: (e["current"]["version"], e["previous"]["version"]) for m, e in st["models"].items()} == \
        {MODEL: ("2.0.0", "1.0.0"), "cls": ("2.0.0", "1.0.0")}, st
    assert set(verified_files(a)) == {cls["1.0.0"], cls["2.0.0"], hashlib.sha256(_onnx("v1")).hexdigest(),
                                      hashlib.sha256(_onnx("v2")).hexdigest()}

    # What the server sees: both models, each with its health since it went live.
    def reported():
        d = device_reported(srv, a.device_id)
        ms = {m["name"]: m for m in (d.get("reported") or {}).get("models", [])}
        return d if ms.get("cls", {}).get("version") == "2.0.0" and ms.get(MODEL, {}).get("version") == "2.0.0" \
            and ms["cls"].get("requests") else None

    d = wait_for(reported, 60, 0.2)
    assert d, device_reported(srv, a.device_id)
    ms = {m["name"]: m for m in d["reported"]["models"]}
    for m in ms.values():
        assert m["state"] == "active" and m["self_test"] == "passed" and m["since"], m
        assert len(m["latency_us_buckets"]) == 17 and sum(m["latency_us_buckets"]) <= m["requests"], m
        assert m["last_operation"]["state"] == "active" and m["last_operation"]["model"] == m["name"], m
    assert sum(ms["cls"]["latency_us_buckets"]) > 0
    show = srv.cli("devices", "show", a.device_id)
    assert show.returncode == 0, show.stderr
    assert "cls@2.0.0 (deployment mm-cls)" in show.stdout and f"{MODEL}@2.0.0 (deployment mm-det)" in show.stdout
    assert "req," in show.stdout and "passed" in show.stdout, show.stdout

    # One model rolls back on its own socket route; the other is untouched.
    status, _, body = a.request("POST", "/v1/models/cls/rollback")
    assert status == 200 and json.loads(body) == {"status": "rolled_back", "model": "cls", "version": "1.0.0"}, body
    assert serving_versions(a) == {MODEL: "2.0.0", "cls": "1.0.0"}
    assert a.request("POST", "/v1/models/nope/rollback")[0] == 404

    # The classifier's deployment goes: the agent unloads it, keeps the detector and its files.
    assert srv.api("DELETE", "/v1/deployments/mm-cls").status_code == 204
    assert wait_for(lambda: serving_versions(a) == {MODEL: "2.0.0"}, 120, 0.2), a.log()[-3000:]
    status, _, body = a.request("POST", "/v1/models/cls/infer", {"inputs": {"x": refs.x("1.0.0")}})
    assert status == 404 and "does not run model cls" in json.loads(body)["detail"], (status, body)
    assert refs.check(a.infer(MODEL, {"x": refs.x("2.0.0")})) == "2.0.0"
    assert list(a.state()["models"]) == [MODEL]
    assert set(verified_files(a)) == {hashlib.sha256(_onnx("v1")).hexdigest(), hashlib.sha256(_onnx("v2")).hexdigest()}
    wait_operation(srv, a.device_id, lambda o: o["state"] == "removed" and o["model"] == "cls")
    a.stop()


def test_same_bytes_as_a_new_version_or_another_model_are_installed(srv, refs, dev_a):
    """Issue 12's bug: a target whose bytes are those of the model that runs is still installed
    when its version or its model differs, and reported."""
    a = dev_a
    baseline(srv, refs, a, "2.0.0")
    if srv.api("GET", f"/v1/models/{MODEL}/versions/2.0.7").status_code != 200:
        push(srv, "2.0.7", _onnx("v2"), "v2")  # the very bytes of 2.0.0
    refs.add("2.0.7", "v2")
    assign(srv, a.device_id, "2.0.7")
    wait_serving(a, "2.0.7")
    assert_serves(a, refs, "2.0.7")
    wait_operation(srv, a.device_id, lambda o: o["state"] == "active" and o["version"] == "2.0.7")
    st = model_state(a.state())
    assert (st["current"]["version"], st["previous"]["version"]) == ("2.0.7", "2.0.0"), st
    # Another model with the same bytes serves beside it, under its own name.
    if srv.api("GET", "/v1/models/twin/versions/1.0.0").status_code != 200:
        push_as(srv, "twin", "1.0.0", _onnx("v2"), "v2")
    assign(srv, a.device_id, "1.0.0", model="twin")
    assert wait_for(lambda: serving_versions(a) == {MODEL: "2.0.7", "twin": "1.0.0"}, 90, 0.2), a.log()[-3000:]
    ans = a.infer("twin", {"x": refs.x("2.0.0")})
    assert ans["model"] == "twin" and ans["version"] == "1.0.0"
    assert close_to(ans["outputs"]["y"], refs.by_version["2.0.0"][1], refs.by_version["2.0.0"][2])
    wait_operation(srv, a.device_id, lambda o: o["state"] == "active" and o["model"] == "twin")
    assert hashlib.sha256(_onnx("v2")).hexdigest() in verified_files(a)
    # Unassigned, twin is unloaded; the file it shares with det stays.
    assert srv.api("DELETE", f"/v1/devices/{a.device_id}/desired", params={"model": "twin"}).status_code == 204
    assert wait_for(lambda: serving_versions(a) == {MODEL: "2.0.7"}, 90, 0.2), a.log()[-3000:]
    assert hashlib.sha256(_onnx("v2")).hexdigest() in verified_files(a)
    assert_serves(a, refs, "2.0.7")


def test_a_transient_install_failure_is_retried_with_backoff(srv, refs, dev_a):
    """An artifact the server cannot serve for a while (its file is gone): each attempt fails and is
    reported with its number and when the next one comes (exponential from poll-min, half of it
    random), the server shows the count, and once the file is back the next attempt installs it."""
    a = dev_a
    # A back-off cap of its own (another test may have left the agent with a shorter one).
    a.stop()
    a.start(extra_args=["--backoff-max", "20s"])
    after = baseline(srv, refs, a, "2.0.0")
    art = variant("v2", "retried")
    if srv.api("GET", f"/v1/models/{MODEL}/versions/2.0.8").status_code != 200:
        push(srv, "2.0.8", art, "v2")
    refs.add("2.0.8", "v2")
    path = artifact_path(srv, hashlib.sha256(art).hexdigest())
    away = path.with_name(path.name + ".away")
    path.rename(away)
    try:
        assign(srv, a.device_id, "2.0.8")
        third = wait_event(srv, a.device_id, lambda o: o["state"] == "failed" and o.get("version") == "2.0.8"
                           and o.get("attempts", 0) >= 3, after_id=after[0], what="a third failed attempt")
        # The fleet view counts the attempts (the last one may be failed or under way again).
        out = srv.cli("devices", "list")
        assert out.returncode == 0 and re.search(r"(FAILED|downloading) det@2\.0\.8 \([0-9]+ attempts\)", out.stdout), \
            out.stdout
        assert_serves(a, refs, "2.0.0")
    finally:
        away.rename(path)
    wait_serving(a, "2.0.8")
    done = wait_operation(srv, a.device_id, lambda o: o["state"] == "active" and o["version"] == "2.0.8")
    fails = [o for o in device_events(srv, a.device_id, limit=100) if o["state"] == "failed"
             and o.get("version") == "2.0.8" and o["at"] >= after[1]]
    assert [o["attempts"] for o in fails] == list(range(1, len(fails) + 1)), fails
    assert done.get("attempts", 0) > third["attempts"], done
    # Each wait is within [base/2, base], base = poll-min (1 s) doubling per attempt up to
    # backoff-max (both times are to the second, taken a moment apart: one second of slack below).
    for o in fails:
        base = min(2 ** (o["attempts"] - 1), 20)
        wait_s = (datetime.strptime(o["retry_at"], "%Y-%m-%dT%H:%M:%SZ") - datetime.strptime(o["at"], "%Y-%m-%dT%H:%M:%SZ")).total_seconds()
        assert base // 2 - 1 <= wait_s <= base, (o, base)
    assert_serves(a, refs, "2.0.8")
    a.stop()
    a.start()


def test_an_older_agents_state_json_is_migrated(srv, refs, dev_a):
    """An agent upgraded from the one-model state.json comes up serving its model before it
    reaches the server, and writes state.json in the current format."""
    a = dev_a
    baseline(srv, refs, a, "1.0.0")
    baseline(srv, refs, a, "2.0.0")
    st = model_state(a.state())
    a.stop()
    old = {"current": dict(st["current"], path=f"models/{MODEL}/2.0.0/model.onnx"), "previous": st["previous"],
           "held": ""}
    old["current"].pop("self_test", None)
    old["previous"].pop("self_test", None)
    (a.data_dir / "state.json").write_text(json.dumps(old))
    log_from = len(a.logfile.read_bytes())
    a.start(server_url="http://127.0.0.1:9")  # nothing listens there: it serves from its own state
    try:
        assert_serves(a, refs, "2.0.0")
        new = a.state()
        assert new["format"] == 2 and list(new["models"]) == [MODEL], new
        mine = new["models"][MODEL]
        assert (mine["current"]["version"], mine["current"]["sha256"], mine["previous"]["version"]) == \
            ("2.0.0", st["current"]["sha256"], "1.0.0"), new
        assert "event=state_migrated" in a.logfile.read_bytes()[log_from:].decode(errors="replace")
    finally:
        a.stop()
    a.start()
    baseline(srv, refs, a, "2.0.0")


# --- a threshold reached with duplicate signatures (a server of its own) -----------------------
def test_duplicate_signatures_do_not_reach_a_threshold(gangliond, pg, db, agents):
    """Director root 2 (signed with the director's root key) asks for 2 of {online key, K2} on
    targets. Director targets with the online key's signature twice are refused; with both keys,
    accepted."""
    s = gangliond(extra_args=["--agent-poll-interval", "1s"])
    s.pg, s.db = pg, db
    r = Refs()
    for version, like in (("1.0.0", "v1"), ("2.0.0", "v2")):
        push(s, version, _onnx(like), like)
        r.add(version, like)
    d = agents(s.url)
    enroll_and_start(s, d)
    assign(s, d.device_id, "1.0.0")
    wait_serving(d, "1.0.0")
    after = baseline(s, r, d, "1.0.0")

    root = s.api("GET", "/v1/tuf/director/root.json").json()["signed"]
    assert root["version"] == 1
    root_keys = [load_pem_private_key((s.data_dir / "keys" / f"director-root-{k}.pem").read_bytes(), password=None)
                 for k in root["roles"]["root"]["keyids"]]
    k2 = new_key()
    root2 = json.loads(json.dumps(root))
    root2["version"] = 2
    root2["keys"][keyid(k2)] = key_object(k2)
    root2["roles"]["targets"]["keyids"].append(keyid(k2))
    root2["roles"]["targets"]["threshold"] = 2
    body2 = json.dumps(sign(root2, *root_keys), separators=(",", ":"), sort_keys=True)
    online = director_key(s)
    top = director_rows(s, d.device_id)[0]
    dup = sign(crafted(s, d, top, target_version="2.0.0"), online, online)
    assert len({x["sig"] for x in dup["signatures"]}) == 1
    dup_chain = director_chain(s, top["version"] + 1, dup)
    # One transaction: the agent's next check-in sees the new root and the duplicate at once.
    sql(s, "BEGIN; INSERT INTO tuf_metadata (repo, role, version, body, expires_at) VALUES"
           f" ('director', 'root', 2, $gn${body2}$gn$, '{root2['expires']}');"
           "INSERT INTO director_targets (device_id, version, body, snapshot_body, timestamp_body, model,"
           f" model_version, expires_at, assigned_at) VALUES ('{d.device_id}', {top['version'] + 1},"
           f" $gn${dup_chain['targets']}$gn$, $gn${dup_chain['snapshot']}$gn$, $gn${dup_chain['timestamp']}$gn$,"
           f" '{top['model']}', '{top['model_version']}', now() + interval '30 days',"
           f" (SELECT assigned_at FROM device_desired WHERE device_id = '{d.device_id}'));"
           " COMMIT;")
    assert s.api("GET", "/v1/tuf/director/2.root.json").status_code == 200
    expect_refusal(s, r, d, after, "1.0.0", "targets metadata has 1 valid signature(s), the threshold is 2")
    assert json.loads((d.data_dir / "trust" / "director" / "root.json").read_text())["signed"]["version"] == 2

    # The control: two distinct keys.
    delete_director_above(s, d.device_id, top["version"])
    insert_director(s, d.device_id, top["version"] + 1, sign(crafted(s, d, top, target_version="2.0.0"), online, k2),
                    top["model"], top["model_version"])
    wait_serving(d, "2.0.0")
    assert_serves(d, r, "2.0.0")
    d.stop()
