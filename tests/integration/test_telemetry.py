"""Telemetry and drift end to end: reference profiles from training data (`ganglion models
profile`, checked against numpy), profiles published with a version, devices posting window
summaries over the real protocol, the fleet's drift merged across devices (checked against a PSI
computed here from every raw sample), alert rules opened and resolved by the job, and the
refusals of bad telemetry. Expected values come from numpy, not from the code under test."""

import collections
import csv
import gzip
import json
import re
import subprocess
import socket
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

import pytest

from ganglion_harness import (
    GANGLION_CLI,
    NO_TOKEN,
    TEST_MODELS,
    Agent,
    assert_problem,
    child_env,
    enroll_device,
    list_all,
    make_dir,
    metric_value,
    model_meta,
    parse_metrics,
    publish,
    wait_for,
)
from hostile_server import HostileProxy

FLOOR = 1e-4


def _profile_cli(workdir, *args):
    """Runs `ganglion models profile` (no server needed); returns the CompletedProcess."""
    xdg = make_dir(workdir / "xdg", 0o700)
    return subprocess.run([str(GANGLION_CLI), "models", "profile", *[str(a) for a in args]],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
                          env=child_env(XDG_CONFIG_HOME=str(xdg), HOME=str(xdg)), stdin=subprocess.DEVNULL)


def _edges(x, k):
    """numpy's quantile edges, repeated ones dropped (the rule docs/TELEMETRY.md states)."""
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    out = []
    for e in np.quantile(x, np.linspace(0, 1, k + 1)):
        if not out or e > out[-1]:
            out.append(e)
    return np.array(out), x


def _check_numeric(feature, values, k):
    edges, clean = _edges(values, k)
    counts, _ = np.histogram(clean, bins=edges)
    assert np.allclose(feature["edges"], edges, rtol=1e-12, atol=0), feature["name"]
    assert np.allclose(feature["proportions"], counts / len(clean), rtol=1e-12, atol=1e-15), feature["name"]
    assert feature["samples"] == len(clean)


def test_profile_from_csv_matches_numpy(workdir):
    rng = np.random.default_rng(7)
    n = 500
    a = rng.normal(3.0, 2.0, n)
    b = rng.integers(0, 4, n)
    colour = rng.choice(["red", "green", "blue", "grey"], n, p=[0.5, 0.3, 0.15, 0.05])
    path = workdir / "train.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "colour", "id"])
        for i in range(n):
            w.writerow([repr(float(a[i])) if i % 97 else "", int(b[i]), colour[i], i])
    out = workdir / "profile.json"
    p = _profile_cli(workdir, path, "--bins", 8, "--categorical", "b", "--skip", "id", "--max-vocab", 3,
                     "--out", out)
    assert p.returncode == 0, p.stderr
    assert "colour" in p.stdout and "categorical" in p.stdout  # the summary table
    prof = json.loads(out.read_text())
    names = [f["name"] for f in prof["features"]]
    assert names == ["a", "b", "colour"]
    a_missing = np.array([np.nan if i % 97 == 0 else a[i] for i in range(n)])
    _check_numeric(prof["features"][0], a_missing, 8)
    for f, col in ((prof["features"][1], [str(v) for v in b]), (prof["features"][2], list(colour))):
        c = collections.Counter(col)
        order = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
        assert f["kind"] == "categorical"
        assert f["vocabulary"] == [v for v, _ in order[:3]]
        want = [c[v] / n for v, _ in order[:3]] + [sum(k for _, k in order[3:]) / n]
        assert np.allclose(f["proportions"], want, rtol=1e-12)


def test_profile_from_npy_with_outputs_and_images(workdir):
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, (400, 3)).astype(np.float32)
    x[:, 2] = np.round(x[:, 2])  # few distinct values: fewer bins
    scores = rng.dirichlet([1.0, 2.0, 3.0], 400)
    np.save(workdir / "x.npy", x)
    np.save(workdir / "y.npy", scores)
    p = _profile_cli(workdir, workdir / "x.npy", "--outputs", workdir / "y.npy", "--bins", 12)
    assert p.returncode == 0, p.stderr
    prof = json.loads(p.stdout)
    for i in range(3):
        assert prof["features"][i]["name"] == f"x{i}"
        _check_numeric(prof["features"][i], x[:, i].astype(float), 12)
    assert len(prof["features"][2]["edges"]) < 13
    cls, conf = prof["outputs"]
    assert cls["reduce"] == "argmax" and conf["reduce"] == "max"
    c = collections.Counter(str(v) for v in scores.argmax(axis=1))
    assert dict(zip(cls["vocabulary"], cls["proportions"])) == {k: v / 400 for k, v in c.items()}
    _check_numeric(conf, scores.max(axis=1), 10)  # confidence deciles

    img = rng.uniform(0, 255, (6, 12, 12, 3)).astype(np.uint8)
    np.save(workdir / "img.npy", img)
    p = _profile_cli(workdir, workdir / "img.npy", "--bins", 5)
    assert p.returncode == 0, p.stderr
    im = json.loads(p.stdout)["image"]
    assert im["layout"] == "nhwc" and len(im["channels"]) == 3
    for ch in range(3):
        v = img[..., ch].astype(float)
        assert abs(im["channels"][ch]["mean"] - v.mean()) < 1e-9 * 255
        assert abs(im["channels"][ch]["variance"] - v.var()) < 1e-6 * v.var()
    _check_numeric(im["intensity"], img.astype(float).ravel(), 5)


def test_profile_refusals(workdir):
    np.save(workdir / "cube.npy", np.zeros((2, 3, 4)))
    np.save(workdir / "square.npy", np.zeros((2, 3, 8, 3)))
    np.save(workdir / "fortran.npy", np.asfortranarray(np.zeros((3, 2))))
    np.save(workdir / "big.npy", np.zeros((3, 2), dtype=">f8"))
    (workdir / "ragged.csv").write_text("a,b\n1,2\n3\n")
    (workdir / "ok.csv").write_text("a,b\n1,2\n3,4\n")
    cases = [
        ((workdir / "ok.csv", "--bins", 0), "--bins"),
        ((workdir / "ok.csv", "--bins", 101), "--bins"),
        ((workdir / "ok.csv", "--skip", "c"), "--skip c: no such column (the columns are a, b)"),
        ((workdir / "ok.csv", "--skip", "a", "--skip", "b"), "no feature left"),
        ((workdir / "ragged.csv",), "ragged.csv:3: 1 fields; the first row has 2"),
        ((workdir / "cube.npy",), "3 dimensions"),
        ((workdir / "square.npy",), "--layout"),
        ((workdir / "fortran.npy",), "fortran_order True is not supported"),
        ((workdir / "big.npy",), "dtype '>f8' is not supported"),
        ((workdir / "ok.csv", "--layout", "nchw"), "--layout is for images"),
        ((workdir / "nothing.txt",), "give a .csv or a .npy file"),
        ((workdir / "missing.csv",), "cannot open"),
    ]
    for args, msg in cases:
        p = _profile_cli(workdir, *args)
        assert p.returncode == 2 and msg in p.stderr, (args, p.returncode, p.stderr)


def test_profile_into_metadata_is_published(server, workdir):
    rng = np.random.default_rng(3)
    np.save(workdir / "x.npy", rng.normal(0, 1, (300, 4)).astype(np.float32))
    meta = workdir / "meta.json"
    meta.write_text(json.dumps(model_meta("1.0.0", reference_profile=None)))
    p = _profile_cli(workdir, workdir / "x.npy", "--meta", meta)
    assert p.returncode == 0, p.stderr
    m = json.loads(meta.read_text())
    assert [f["name"] for f in m["reference_profile"]["features"]] == ["x0", "x1", "x2", "x3"]
    r = publish(server, "prof", b"model-bytes", meta=m)
    assert r.status_code == 201, r.text
    assert r.json()["reference_profile"] == m["reference_profile"]
    # a profile whose features read past the input tensor ([1, 4]) is refused on publish
    m5 = dict(m, version="1.0.1")
    m5["reference_profile"] = dict(m["reference_profile"], features=m["reference_profile"]["features"] +
                                   [dict(m["reference_profile"]["features"][0], name="x4")])
    r = publish(server, "prof", b"model-bytes-2", meta=m5)
    assert r.status_code == 400 and "features[4] reads element 4 of 'x'" in r.json()["detail"], r.text


# --- the server: ingestion, the fleet's drift, alerts ------------------------------------------------

WINDOW = 300
RNG_REF = np.random.default_rng(2024)
REF_X0 = RNG_REF.normal(0.0, 1.0, 5000)
REF_X1 = RNG_REF.choice(["0", "1", "2"], 5000, p=[0.6, 0.3, 0.1])


def _profile():
    """A profile made here with numpy: x0 numeric (10 quantile bins), x1 categorical, and the
    predicted class of output y."""
    edges, _ = _edges(REF_X0, 10)
    counts, _ = np.histogram(REF_X0, bins=edges)
    c = collections.Counter(REF_X1)
    return {"features": [
        {"name": "x0", "edges": edges.tolist(), "proportions": (counts / len(REF_X0)).tolist()},
        {"name": "x1", "kind": "categorical", "vocabulary": ["0", "1", "2"],
         "proportions": [c["0"] / 5000, c["1"] / 5000, c["2"] / 5000, 0.0]}],
        "outputs": [{"name": "class", "kind": "categorical", "vocabulary": ["0", "1"],
                     "proportions": [0.5, 0.5, 0.0], "reduce": "argmax"}]}


PROFILE = _profile()
EDGES = np.array(PROFILE["features"][0]["edges"])


def _numeric_counts(values):
    """What a device counts for x0: counts on the profile's bins, underflow, overflow, NaN, moments."""
    v = np.asarray(values, float)
    nan = int(np.isnan(v).sum())
    v = v[~np.isnan(v)]
    inside, _ = np.histogram(v[(v >= EDGES[0]) & (v <= EDGES[-1])], bins=EDGES)
    out = {"counts": inside.tolist(), "underflow": int((v < EDGES[0]).sum()), "overflow": int((v > EDGES[-1]).sum()),
           "nan": nan, "n": int(len(v))}
    if len(v):
        out.update(mean=float(v.mean()), variance=float(v.var()), min=float(v.min()), max=float(v.max()))
    return out


def _categorical_counts(values, vocab):
    c = collections.Counter(values)
    counts = [c[v] for v in vocab] + [sum(k for v, k in c.items() if v not in vocab)]
    codes = np.array([float(x) for x in values])
    return {"counts": counts, "n": len(values), "mean": float(codes.mean()), "variance": float(codes.var()),
            "min": float(codes.min()), "max": float(codes.max())}


def _window(start, x0, x1=None, classes=None, requests=None, errors=0, version="1.0.0"):
    n = len(x0)
    w = {"model": "cam", "version": version, "start": int(start), "seconds": WINDOW,
         "requests": requests if requests is not None else n, "errors": errors,
         "latency_us_buckets": [0, 0, 0, n] + [0] * 13, "features": {"x0": _numeric_counts(x0)}}
    if x1 is not None:
        w["features"]["x1"] = _categorical_counts(list(x1), ["0", "1", "2"])
    if classes is not None:
        w["outputs"] = {"class": _categorical_counts(list(classes), ["0", "1"])}
    return w


def _psi(p, q):
    p = np.maximum(np.asarray(p, float), FLOOR)
    q = np.maximum(np.asarray(q, float), FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def _js(p, q):
    p = np.asarray(p, float) / np.sum(p)
    q = np.asarray(q, float) / np.sum(q)
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return np.sum(a[nz] * np.log2(a[nz] / m[nz]))
    return float(np.sqrt((kl(p) + kl(q)) / 2))


def _fleet(server, n_devices=3, sites=("north", "north", "south"), version="1.0.0"):
    """Publishes cam@version with PROFILE, enrolls devices (label site) and assigns it to them;
    returns [(device, token)]."""
    if server.api("GET", f"/v1/models/cam/versions/{version}").status_code == 404:
        r = publish(server, "cam", f"cam-{version}".encode(), meta=model_meta(version, reference_profile=PROFILE))
        assert r.status_code == 201, r.text
    fleet = []
    for i in range(n_devices):
        dev = enroll_device(server, labels={"site": sites[i % len(sites)]})
        r = server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "cam", "version": version})
        assert r.status_code == 200, r.text
        fleet.append((dev, dev.authenticate(server)))
    return fleet


def _post(server, token, windows, **extra):
    return server.api("POST", "/v1/agent/telemetry", token=token, json=dict(extra, windows=windows))


_test_began = [None]  # when the running test began (set by _pin_the_windows)


@pytest.fixture(autouse=True)
def _pin_the_windows():
    """Pins the windows of _now_window to the time the test began: a window boundary (every five
    minutes) passing while a test runs would otherwise move the windows it names later onto those it
    named earlier (a window sent as new then counts as a duplicate, a time compared is one off)."""
    _test_began[0] = time.time()
    yield
    _test_began[0] = None


def _now_window(k=1):
    """The start of the window k windows before the one current when the test began."""
    now = _test_began[0] if _test_began[0] is not None else time.time()
    return (int(now) // WINDOW - k) * WINDOW


def test_fleet_drift_is_the_drift_of_every_sample(server, contract):
    fleet = _fleet(server)
    rng = np.random.default_rng(5)
    samples, by_site = [], {"north": [], "south": []}
    for i, (dev, tok) in enumerate(fleet):
        windows = []
        for k in (3, 2):
            x0 = rng.normal(0.3 * i, 1.0 + 0.2 * i, 400 + 50 * i)
            x0[:3] = np.nan if i == 1 else x0[:3]
            samples.append(x0)
            by_site[dev.labels["site"]].append(x0)
            x1 = rng.choice(["0", "1", "2", "3"], 200, p=[0.5, 0.3, 0.15, 0.05])
            windows.append(_window(_now_window(k), x0, x1, classes=rng.choice(["0", "1"], 100)))
        r = contract.check_response("POST", "/v1/agent/telemetry", _post(server, tok, windows), 200)
        assert r.json() == {"accepted": 2, "duplicates": 0, "expired": 0}
        # the same batch again (an answer lost on the way): stored once
        r = _post(server, tok, windows, device_id=dev.id)
        assert r.status_code == 200 and r.json() == {"accepted": 0, "duplicates": 2, "expired": 0}, r.text

    r = contract.check_response("GET", "/v1/models/{name}/versions/{version}/drift", server.api(
        "GET", "/v1/models/cam/versions/1.0.0/drift", params={"since": "2h"}), 200)
    (g,) = r.json()["groups"]
    assert (g["group"], g["devices"], g["windows"]) == (None, 3, 6)
    every = np.concatenate(samples)
    want = _numeric_counts(every)
    x0 = next(f for f in g["features"] if f["feature"] == "input:x0")
    for k in ("counts", "underflow", "overflow", "nan", "n"):
        assert x0[k] == want[k], k
    assert abs(x0["mean"] - want["mean"]) < 1e-9 and abs(x0["variance"] - want["variance"]) < 1e-9
    assert (x0["min"], x0["max"]) == (want["min"], want["max"])
    clean = every[~np.isnan(every)]
    p = [0.0] + PROFILE["features"][0]["proportions"] + [0.0]
    q = np.array([want["underflow"]] + want["counts"] + [want["overflow"]]) / len(clean)
    assert abs(x0["psi"] - _psi(p, q)) < 1e-9 and abs(x0["js"] - _js(p, q)) < 1e-9
    assert x0["psi"] > 0.05 and x0["linf"] is None  # the devices drew from shifted distributions
    x1 = next(f for f in g["features"] if f["feature"] == "input:x1")
    assert x1["kind"] == "categorical" and x1["linf"] is not None and x1["n"] == 1200
    assert [f["feature"] for f in g["features"]] == ["input:x0", "input:x1", "output:class"]

    # per site, and a selector: each group is the drift of its own devices' samples
    r = server.api("GET", "/v1/models/cam/versions/1.0.0/drift", params={"since": "2h", "by": "site"})
    groups = {g["group"]: g for g in r.json()["groups"]}
    assert sorted(groups) == ["north", "south"] and groups["north"]["devices"] == 2
    for site, vals in by_site.items():
        f = next(f for f in groups[site]["features"] if f["feature"] == "input:x0")
        assert f["counts"] == _numeric_counts(np.concatenate(vals))["counts"], site
    r = server.api("GET", "/v1/models/cam/versions/1.0.0/drift", params={"since": "2h", "selector": "site=south"})
    (g,) = r.json()["groups"]
    assert g["devices"] == 1 and g["features"][0]["counts"] == _numeric_counts(np.concatenate(by_site["south"]))["counts"]
    # a time range with nothing in it
    r = server.api("GET", "/v1/models/cam/versions/1.0.0/drift", params={"since": "2h", "until": "1h"})
    assert r.json()["groups"] == []

    # the CLI: a table per group, with the histograms when asked
    p = server.cli("models", "drift", "cam", "1.0.0", "--since", "2h", "--by", "site", "--histograms")
    assert p.returncode == 0, p.stderr
    assert "site=north: 2 devices, 4 windows" in p.stdout and "input:x0" in p.stdout and "#" in p.stdout
    p = server.cli("models", "drift", "cam", "9.9.9")
    assert p.returncode == 4 and "9.9.9" in p.stderr, p.stderr


def test_drift_query_refusals(server, contract):
    _fleet(server, n_devices=1)
    path = "/v1/models/{name}/versions/{version}/drift"
    for params, msg in (({"since": "yesterday"}, "since"), ({"until": "5x"}, "until"),
                        ({"since": "1h", "until": "2h"}, "before"), ({"selector": "=x"}, "selector"),
                        ({"by": "a b"}, "by")):
        r = contract.check_response("GET", path, server.api("GET", "/v1/models/cam/versions/1.0.0/drift",
                                                            params=params), 400)
        assert msg in r.json()["detail"] or msg == "selector", (params, r.json())
    contract.check_response("GET", path, server.api("GET", "/v1/models/cam/versions/2.0.0/drift"), 404)
    contract.check_response("GET", path, server.api("GET", "/v1/models/cam/versions/1.0.0/drift",
                                                    token=NO_TOKEN), 401)
    assert publish(server, "plain", b"plain", meta=model_meta(reference_profile=None)).status_code == 201
    assert_problem(server.api("GET", "/v1/models/plain/versions/1.0.0/drift"), 409, "without a reference profile")


def test_bad_telemetry_is_refused_and_nothing_is_stored(gangliond, contract):
    server = gangliond(extra_args=["--telemetry-max-windows", "4"])
    (dev, tok), (other, other_tok) = _fleet(server, n_devices=2)
    assert publish(server, "cam", b"cam-2", meta=model_meta("2.0.0", reference_profile=PROFILE)).status_code == 201
    rng = np.random.default_rng(1)
    good = _window(_now_window(2), rng.normal(0, 1, 50))

    def bad(**change):
        w = json.loads(json.dumps(good))
        w["start"] = _now_window(3)
        for k, v in change.items():
            w[k] = v
        return w

    def bad_x0(**change):
        x0 = dict(good["features"]["x0"], **change)
        return bad(features={"x0": x0})

    cases = [
        # (windows, status, message)
        ([good, bad(colour="red")], 400, "windows[1]: unknown field 'colour'"),
        ([good, bad_x0(counts=good["features"]["x0"]["counts"][:-1])], 400, "has 9 bins; the model version's"),
        ([good, bad_x0(counts=["NaN"] + good["features"]["x0"]["counts"][1:])], 400, "non-negative integers"),
        ([good, bad_x0(counts=[1.5] + good["features"]["x0"]["counts"][1:])], 400, "non-negative integers"),
        ([good, bad_x0(n=1)], 400, "n is 1, but the counts"),
        ([good, bad_x0(mean=None)], 400, "mean must be a finite number"),
        ([good, bad(features={"x9": good["features"]["x0"]})], 400, "'x9', which is not a feature"),
        ([good, bad(image={"channels": [], "intensity": good["features"]["x0"]})], 400, "has no image"),
        ([good, bad(start=_now_window(3) + 7)], 400, "multiple of its seconds"),
        ([good, bad(start=_now_window(-3))], 400, "ends after the server's clock"),
        ([good, bad(seconds=5, start=_now_window(3))], 400, "seconds must be 10 to 86400"),
        ([good, bad(errors=10**6)], 400, "errors must not exceed requests"),
        ([good, bad(latency_us_buckets=[1] * 16)], 400, "17 counts"),
        ([good, bad(latency_us_buckets=[10**6] + [0] * 16)], 400, "more requests"),
        ([good, bad(requests=-1)], 400, "must not be negative"),
        ([good, bad(resources={"gpu": 1})], 400, "resources: unknown field 'gpu'"),
        ([good, bad(start=good["start"])], 400, "repeats windows[0]"),
        ([good, bad(model="Cam")], 400, "model name"),
        ([good, bad(version="1.0")], 400, "version"),
        ([good, bad(version="2.0.0")], 403, "does not run cam@2.0.0"),
        ([good, bad(version="3.0.0")], 403, "does not run cam@3.0.0"),
        ([good, bad(model="other")], 403, "does not run other@1.0.0"),
        ([good] + [bad(start=_now_window(3 + k)) for k in range(4)], 413, "at most 4 (telemetry-max-windows)"),
    ]
    for windows, status, msg in cases:
        r = contract.check_response("POST", "/v1/agent/telemetry", _post(server, tok, windows), status)
        assert msg in r.json()["detail"], (msg, r.json()["detail"])
    r = _post(server, tok, [good], device_id=other.id)
    assert_problem(r, 403, "reports for itself only")
    assert_problem(server.api("POST", "/v1/agent/telemetry", token=tok, json={"windows": [good], "x": 1}), 400, "x")
    assert_problem(server.api("POST", "/v1/agent/telemetry", token=tok, data=b'{"windows": [NaN]}',
                              headers={"Content-Type": "application/json"}), 400)
    assert_problem(server.api("POST", "/v1/agent/telemetry", json={"windows": [good]}), 403)  # an API token
    assert_problem(server.api("POST", "/v1/agent/telemetry", token=NO_TOKEN, json={"windows": [good]}), 401)
    # nothing of any refused batch was stored, not even its good window
    r = server.api("GET", "/v1/models/cam/versions/1.0.0/drift", params={"since": "3h"})
    assert r.json()["groups"] == [], r.json()
    # the good window alone is accepted; a version without a profile takes windows without counts
    assert _post(server, tok, [good]).json()["accepted"] == 1
    r = server.api("GET", "/v1/models/cam/versions/1.0.0/drift", params={"since": "3h"})
    assert r.json()["groups"][0]["windows"] == 1


def _vm_hwm(pid):
    """The process's peak resident memory in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _zip_bomb(mb):
    """A gzip stream of mb MiB of spaces (JSON whitespace) after '{"windows": [', made without
    holding it inflated."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(b'{"windows": [')]
    chunk = b" " * (1 << 20)
    out += [z.compress(chunk) for _ in range(mb)]
    out.append(z.flush())
    return b"".join(out)


def test_gzip_batches_and_their_refusals(gangliond, contract):
    server = gangliond()
    ((dev, tok),) = _fleet(server, n_devices=1)
    rng = np.random.default_rng(9)
    w1 = _window(_now_window(2), rng.normal(0, 1, 50))
    w2 = _window(_now_window(3), rng.normal(0, 1, 50))
    plain = json.dumps({"windows": [w1]}).encode()
    gz = {"Content-Type": "application/json", "Content-Encoding": "gzip"}

    def post(data, headers=gz):
        return server.api("POST", "/v1/agent/telemetry", token=tok, data=data, headers=headers)

    def stored():
        r = server.api("GET", "/v1/models/cam/versions/1.0.0/drift", params={"since": "3h"})
        return sum(g["windows"] for g in r.json()["groups"])

    bomb = _zip_bomb(100)
    assert len(bomb) < 1 << 20  # under max-body as sent: only inflating finds the bomb
    hwm = _vm_hwm(server.proc.pid)
    r = contract.check_response("POST", "/v1/agent/telemetry", post(bomb), 413)
    assert "inflates to more than the 1048576-byte limit" in r.json()["detail"], r.json()
    assert _vm_hwm(server.proc.pid) - hwm < 16 << 20  # bounded: the 100 MiB were never held
    whole = gzip.compress(plain)
    corrupt = whole[:20] + bytes(b ^ 0x55 for b in whole[20:40]) + whole[40:]
    cases = [
        (corrupt, gz, 400, "not valid gzip"),
        (whole[:-6], gz, 400, "truncated"),
        (whole + b"xx", gz, 400, "2 bytes follow the gzip stream"),
        (plain, gz, 400, "not valid gzip"),
        (b"", gz, 400, "truncated"),
        (whole, dict(gz, **{"Content-Encoding": "br"}), 415, "only Content-Encoding accepted here is gzip"),
    ]
    for data, headers, status, msg in cases:
        r = contract.check_response("POST", "/v1/agent/telemetry", post(data, headers), status)
        assert msg in r.json()["detail"], (msg, r.json()["detail"])
    # other routes take no encoded bodies
    r = server.api("POST", "/v1/alert-rules", data=gzip.compress(b"{}"), headers=gz)
    assert_problem(r, 415, "without Content-Encoding")
    assert stored() == 0  # nothing of a refused body was stored
    # a gzip batch is stored as its plain body would be; a plain one still is (older agents)
    r = contract.check_response("POST", "/v1/agent/telemetry", post(whole), 200)
    assert r.json()["accepted"] == 1, r.json()
    assert post(whole).json()["accepted"] == 0  # a duplicate, counted once
    r = post(json.dumps({"windows": [w2]}).encode(), {"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert stored() == 2


def test_partitions_retention_and_expired_windows(gangliond, pg, db):
    server = gangliond(extra_args=["--telemetry-retention", "2d", "--housekeeping-interval", "1s"])
    ((dev, tok),) = _fleet(server, n_devices=1)

    def partitions():
        out = pg.sql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                     " WHERE i.inhparent = 'telemetry_features'::regclass ORDER BY 1", dbname=db)
        return [ln.strip() for ln in out.splitlines() if ln.strip()]

    def days():  # yesterday to the day after tomorrow, as of now
        return [f"telemetry_features_{time.strftime('%Y%m%d', time.gmtime(time.time() + d * 86400))}"
                for d in range(-1, 3)]

    # Made at start-up, and by the job (each second here) as the days go by: a start just before
    # midnight UTC made one day fewer ahead than the test, run just after it, looks for.
    assert wait_for(lambda: all(p in partitions() for p in days()), timeout=30), (days(), partitions())
    # an old day's partition (as if made a week ago) goes once the job runs
    old = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 6 * 86400))
    pg.sql(f"SELECT gn_telemetry_partition('{old}')", dbname=db)
    assert f"telemetry_features_{old.replace('-', '')}" in partitions()
    assert wait_for(lambda: f"telemetry_features_{old.replace('-', '')}" not in partitions(), timeout=30), partitions()
    assert f"telemetry_features_{time.strftime('%Y%m%d', time.gmtime())}" in partitions(), partitions()
    # a window older than the retention is acknowledged and not stored; a recent one is
    rng = np.random.default_rng(2)
    stale = _window(_now_window(3 * 86400 // WINDOW), rng.normal(0, 1, 20))
    fresh = _window(_now_window(1), rng.normal(0, 1, 20))
    r = _post(server, tok, [stale, fresh])
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0, "expired": 1}, r.text
    assert pg.sql("SELECT count(*) FROM telemetry_windows", dbname=db).strip() == "1"


def test_a_failure_half_way_through_the_copy_stores_nothing(gangliond, pg, db):
    """A batch's features go in by COPY after its windows, in one transaction: a row the database
    refuses half-way through the COPY (a trigger stands in for a full disk) leaves neither windows
    nor features, and the same batch is taken whole once the fault is gone. A batch mixing windows
    already stored with a new one gets only the new window's features copied in."""
    server = gangliond()
    ((dev, tok),) = _fleet(server, n_devices=1)
    rng = np.random.default_rng(3)
    windows = [_window(_now_window(k), rng.normal(0, 1, 50), rng.choice(["0", "1", "2"], 30),
                       classes=rng.choice(["0", "1"], 20)) for k in (1, 2, 3)]
    stored = ("SELECT (SELECT count(*) FROM telemetry_windows) || ' ' || (SELECT count(*) FROM telemetry_features)")
    # the second window's output row fails: the first window's rows and the second's inputs went before it
    pg.sql("CREATE FUNCTION t_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
           f" IF NEW.part = 'output' AND NEW.window_start = to_timestamp({windows[1]['start']}) THEN"
           " RAISE EXCEPTION 'disk full (a fault the test made)'; END IF; RETURN NEW; END $$;"
           " CREATE TRIGGER t_fault BEFORE INSERT ON telemetry_features FOR EACH ROW EXECUTE FUNCTION t_fault()",
           dbname=db)
    assert_problem(_post(server, tok, windows), 500, "request id")
    assert pg.sql(stored, dbname=db) == "0 0"
    pg.sql("DROP TRIGGER t_fault ON telemetry_features", dbname=db)
    r = _post(server, tok, windows)
    assert r.status_code == 200 and r.json() == {"accepted": 3, "duplicates": 0, "expired": 0}, r.text
    assert pg.sql(stored, dbname=db) == "3 9"
    # two of those again with a new one: only the new window's features are copied in
    new = _window(_now_window(4), rng.normal(0, 1, 50), rng.choice(["0", "1", "2"], 30),
                  classes=rng.choice(["0", "1"], 20))
    r = _post(server, tok, [windows[2], new, windows[0]])
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 2, "expired": 0}, r.text
    assert pg.sql(stored, dbname=db) == "4 12"
    assert pg.sql("SELECT count(DISTINCT window_start) FROM telemetry_features", dbname=db) == "4"


def _wait_alerts(server, want, state="open", timeout=30):
    def check():
        items, _ = list_all(server, "/v1/alerts", params={"state": state})
        return items if len(items) == want else None
    items = wait_for(check, timeout=timeout, interval=0.3)
    assert items is not None, list_all(server, "/v1/alerts", params={"state": "all"})[0]
    return items


def test_drift_alert_opens_after_its_windows_and_resolves(gangliond, contract):
    server = gangliond(extra_args=["--alert-interval", "1s"])
    fleet = _fleet(server, n_devices=4, sites=("north", "south"))
    rule = {"name": "x0-shift", "model": "cam", "feature": "x0", "threshold": 0.25, "min_samples": 500,
            "windows": 2, "group_by": "site"}
    r = contract.check_response("POST", "/v1/alert-rules", server.api("POST", "/v1/alert-rules", json=rule), 201)
    assert r.json()["metric"] == "psi" and r.json()["version"] is None
    p = server.cli("alerts", "create-rule", "class-js", "--model", "cam", "--version", "1.0.0", "--feature",
                   "output:class", "--metric", "js", "--windows", "2", "--min-samples", "100")
    assert p.returncode == 0, p.stderr
    rng = np.random.default_rng(9)

    def send(k, shift_north, n=300):
        for dev, tok in fleet:
            mu = 1.5 if shift_north and dev.labels["site"] == "north" else 0.0
            w = _window(_now_window(k), rng.normal(mu, 1.0, n), classes=rng.choice(["0", "1"], 50))
            assert _post(server, tok, [w]).status_code == 200

    send(8, True)  # one shifted window: not enough for windows=2
    send(7, True, n=100)  # a newer one with too few values (2 x 100 < 500): not judged
    time.sleep(2.5)
    assert list_all(server, "/v1/alerts", params={"state": "all"})[0] == []
    send(6, True)  # the second judged window: north alerts, south does not
    (a,) = _wait_alerts(server, 1)
    contract.check_response("GET", "/v1/alerts", server.api("GET", "/v1/alerts"), 200)
    assert (a["rule"], a["feature"], a["group"], a["state"], a["samples"]) == ("x0-shift", "input:x0", "north", "open",
                                                                              600)
    assert a["value"] > 0.25 and a["last_window"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_now_window(6)))
    p = server.cli("alerts", "list")
    assert p.returncode == 0 and "x0-shift" in p.stdout and "north" in p.stdout, p.stdout
    send(5, False)  # one window back to normal: still open
    time.sleep(2.5)
    assert len(list_all(server, "/v1/alerts")[0]) == 1
    send(4, False)
    (a,) = _wait_alerts(server, 1, state="resolved")
    assert a["value"] <= 0.25 and list_all(server, "/v1/alerts")[0] == []
    audit = [(e["action"], e["actor"]) for e in list_all(server, "/v1/audit", params={"action": "alert"})[0]]
    assert audit == [("alert.resolve", "alerts"), ("alert.open", "alerts")], audit
    rules = [e["action"] for e in list_all(server, "/v1/audit", params={"action": "alert_rule"})[0]]
    assert rules == ["alert_rule.create", "alert_rule.create"]

    # deleting a rule resolves what it holds open
    send(3, True)
    send(2, True)
    _wait_alerts(server, 1)
    assert server.cli("alerts", "delete-rule", "x0-shift").returncode == 0
    assert list_all(server, "/v1/alerts")[0] == []
    assert [r["name"] for r in list_all(server, "/v1/alert-rules")[0]] == ["class-js"]


class _Receiver:
    """A webhook receiver on a local port that answers the first POST 500 and the rest 200."""

    def __init__(self, port=0, fail_first=True):
        self.got = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append((json.loads(body), self.headers.get("Content-Type")))
                self.send_response(500 if fail_first and len(outer.got) == 1 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_alert_webhook_is_retried_and_delivered_once(gangliond, contract):
    """A rule with a webhook: the alert's opening is POSTed, answered 500, retried, answered 200,
    and not sent again; deleting the rule resolves the alert, which is POSTed too."""
    hook = _Receiver()
    try:
        server = gangliond(extra_args=["--alert-interval", "1s"])
        fleet = _fleet(server, n_devices=2, sites=("north",))
        rule = {"name": "hooked", "model": "cam", "feature": "x0", "min_samples": 100, "windows": 1,
                "webhook": hook.url}
        r = contract.check_response("POST", "/v1/alert-rules", server.api("POST", "/v1/alert-rules", json=rule), 201)
        assert r.json()["webhook"] == hook.url
        rng = np.random.default_rng(4)
        for _, tok in fleet:
            assert _post(server, tok, [_window(_now_window(2), rng.normal(2.0, 1.0, 300))]).status_code == 200
        (a,) = _wait_alerts(server, 1)
        assert wait_for(lambda: len(hook.got) >= 2, timeout=60, interval=0.2), hook.got
        time.sleep(3)  # nothing more once delivered
        assert len(hook.got) == 2, hook.got
        (first, ctype), (second, _) = hook.got
        assert first == second and ctype == "application/json", hook.got
        assert first["event"] == "alert.open" and first["alert"]["id"] == a["id"], first
        assert first["alert"]["feature"] == "input:x0" and first["alert"]["state"] == "open", first
        labels = {"rule": "hooked", "model": "cam", "version": "1.0.0", "feature": "input:x0", "metric": "psi"}
        m = parse_metrics(server.api("GET", "/metrics", token=NO_TOKEN).text)
        assert metric_value(m, "gangliond_alerts_open", **labels) == 1, m
        assert metric_value(m, "gangliond_alert_value", **labels) == pytest.approx(a["value"]), m
        assert metric_value(m, "gangliond_alert_webhook_deliveries", state="pending") == 0
        assert server.cli("alerts", "delete-rule", "hooked").returncode == 0
        assert wait_for(lambda: len(hook.got) == 3, timeout=60, interval=0.2), hook.got
        last = hook.got[2][0]
        assert last["event"] == "alert.resolve" and last["alert"]["state"] == "resolved", last
        assert last["delivery"] != first["delivery"]
        # /metrics reads the alerts at most every 5 s: the resolution shows within that, and so
        # does the delivery. (The receiver holds the POST before the server has its 200 and marks
        # it delivered: a read of /metrics in between still counts it pending for 5 s.)
        scrape = lambda: parse_metrics(server.api("GET", "/metrics", token=NO_TOKEN).text)  # noqa: E731

        def settled():
            m = scrape()
            return (not [x for x in m if x[0] == "gangliond_alerts_open"]
                    and metric_value(m, "gangliond_alert_webhook_deliveries", state="pending") == 0)

        assert wait_for(settled, timeout=30, interval=0.5), scrape()
    finally:
        hook.close()


def test_alert_webhook_survives_a_restart(gangliond, pg, db):
    """The receiver is down when the alert opens: the delivery waits in the database through a
    restart of gangliond and arrives once the receiver listens."""
    with socket.socket() as s:  # a port nothing listens on yet
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = gangliond(extra_args=["--alert-interval", "1s"])
    fleet = _fleet(server, n_devices=1)
    # The URL's user information and path are the receiver's secrets: only its scheme and host
    # may show, to readers of the rule and in the logged and stored error of a failed delivery.
    rule = {"name": "later", "model": "cam", "min_samples": 100, "windows": 1,
            "webhook": f"http://hook:pa55word@127.0.0.1:{port}/hook/T0KEN-s3cr3t?sig=abc"}
    assert server.api("POST", "/v1/alert-rules", json=rule).json()["webhook"] == rule["webhook"]
    reader = server.make_token(["read"])["token"]
    (shown,) = server.api("GET", "/v1/alert-rules", token=reader).json()["items"]
    assert shown["webhook"] == f"http://127.0.0.1:{port}/...", shown
    rng = np.random.default_rng(6)
    assert _post(server, fleet[0][1], [_window(_now_window(2), rng.normal(2.0, 1.0, 300))]).status_code == 200
    _wait_alerts(server, 1)
    tries = "SELECT attempts FROM alert_deliveries WHERE delivered_at IS NULL"
    assert wait_for(lambda: int(pg.sql(tries, dbname=db).strip() or 0) >= 1, timeout=60), "no attempt made"
    stored = pg.sql("SELECT last_error FROM alert_deliveries", dbname=db)
    assert f"127.0.0.1:{port}/..." in stored or "HTTP" in stored, stored
    for secret in ("s3cr3t", "pa55word", "sig=abc"):
        assert secret not in stored and secret not in server.log(limit=10**6), secret
    server.stop()
    server.start()
    hook = _Receiver(port=port, fail_first=False)
    try:
        # Each failed attempt doubled the wait before the next (1, 2, 4, ... s): after a slow stop
        # and start under ASan the next one may be half a minute or more away.
        assert wait_for(lambda: len(hook.got) == 1, timeout=120, interval=0.2), hook.got
        assert hook.got[0][0]["event"] == "alert.open"
        # The receiver has the POST before the server has its answer and records the delivery.
        row = lambda: pg.sql("SELECT attempts > 1, delivered_at IS NOT NULL, last_status FROM alert_deliveries",  # noqa: E731
                             dbname=db).strip()
        assert wait_for(lambda: row() == "t|t|200", timeout=30, interval=0.1), row()
    finally:
        hook.close()


def test_alert_rule_refusals(server, contract):
    _fleet(server, n_devices=1)
    reader = server.make_token(["read"])["token"]
    cases = [
        ({"name": "Bad", "model": "cam"}, 400, "rule name"),
        ({"name": "r", "model": "cam", "metric": "kl"}, 400, "metric"),
        ({"name": "r", "model": "cam", "threshold": 0}, 400, "threshold"),
        ({"name": "r", "model": "cam", "windows": 101}, 400, "windows"),
        ({"name": "r", "model": "cam", "min_samples": 0}, 400, "min_samples"),
        ({"name": "r", "model": "cam", "group_by": "a b"}, 400, "group_by"),
        ({"name": "r", "model": "cam", "version": "1.0.0", "feature": "x7"}, 400, "not in the reference profile"),
        ({"name": "r", "model": "cam", "extra": 1}, 400, "extra"),
        ({"name": "r", "model": "cam", "webhook": "ftp://example.com/x"}, 400, "webhook must be an http"),
        ({"name": "r", "model": "cam", "webhook": "http://"}, 400, "webhook must be an http"),
        ({"name": "r", "model": "cam", "webhook": "hooks.example.com/x"}, 400, "webhook must be an http"),
        ({"name": "r", "model": "cam", "webhook": "https://h/" + "x" * 2048}, 400, "webhook must be an http"),
        ({"name": "r", "model": "nope"}, 404, "nope"),
        ({"name": "r", "model": "cam", "version": "9.0.0"}, 404, "9.0.0"),
    ]
    for body, status, msg in cases:
        r = contract.check_response("POST", "/v1/alert-rules", server.api("POST", "/v1/alert-rules", json=body), status)
        assert msg in r.json()["detail"], (body, r.json())
    assert server.api("POST", "/v1/alert-rules", json={"name": "r", "model": "cam"}).status_code == 201
    contract.check_response("POST", "/v1/alert-rules", server.api("POST", "/v1/alert-rules",
                                                                  json={"name": "r", "model": "cam"}), 409)
    contract.check_response("POST", "/v1/alert-rules", server.api("POST", "/v1/alert-rules", token=reader,
                                                                  json={"name": "s", "model": "cam"}), 403)
    contract.check_response("GET", "/v1/alert-rules", server.api("GET", "/v1/alert-rules", token=reader), 200)
    contract.check_response("DELETE", "/v1/alert-rules/{name}", server.api("DELETE", "/v1/alert-rules/r",
                                                                           token=reader), 403)
    contract.check_response("DELETE", "/v1/alert-rules/{name}", server.api("DELETE", "/v1/alert-rules/zz"), 404)
    contract.check_response("DELETE", "/v1/alert-rules/{name}", server.api("DELETE", "/v1/alert-rules/r"), 204)
    contract.check_response("GET", "/v1/alerts", server.api("GET", "/v1/alerts", params={"state": "x"}), 400)
    contract.check_response("GET", "/v1/alerts", server.api("GET", "/v1/alerts", params={"state": "all"}), 200)
    p = server.cli("alerts", "create-rule", "q", "--model", "cma")
    assert p.returncode == 4 and "cam" in p.stderr, p.stderr  # did you mean


def test_telemetry_show_device(server, contract):
    """A device's last windows, newest first, with latency percentiles, resources and the drift of
    each feature of that window alone (the PSI the test computes from the samples it sent)."""
    ((dev, tok),) = _fleet(server, n_devices=1)
    rng = np.random.default_rng(21)
    x_old, x_new = rng.normal(0, 1, 400), rng.normal(1.0, 1, 400)
    old = _window(_now_window(3), x_old, requests=400, errors=4)
    new = _window(_now_window(2), x_new, classes=rng.choice(["0", "1"], 40), requests=400, errors=0)
    new["resources"] = {"cpu_seconds": 12.5, "rss_bytes": 52428800}
    assert _post(server, tok, [old, new]).status_code == 200
    path = "/v1/devices/{id}/telemetry"
    r = contract.check_response("GET", path, server.api("GET", f"/v1/devices/{dev.id}/telemetry"), 200)
    j = r.json()
    assert j["device"] == dev.id and [w["start"] for w in j["windows"]] == [
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (_now_window(2), _now_window(3))]
    w0, w1 = j["windows"]
    assert (w0["requests"], w0["errors"], w0["error_rate"], w1["error_rate"]) == (400, 0, 0.0, 0.01), j
    assert w0["latency_us"] == {"p50": 1000, "p95": 1000, "p99": 1000} and w0["resources"]["rss_bytes"] == 52428800
    x0 = {f["feature"]: f for f in w0["features"]}["input:x0"]
    want = _numeric_counts(x_new)
    q = np.array([want["underflow"]] + want["counts"] + [want["overflow"]]) / 400
    assert x0["n"] == 400 and abs(x0["psi"] - _psi([0.0] + PROFILE["features"][0]["proportions"] + [0.0], q)) < 1e-9
    assert {f["feature"] for f in w0["features"]} == {"input:x0", "output:class"}
    r = server.api("GET", f"/v1/devices/{dev.id}/telemetry", params={"limit": 1, "since": "1h"})
    assert [w["start"] for w in r.json()["windows"]] == [w0["start"]]
    p = server.cli("telemetry", "show", dev.id)
    assert p.returncode == 0 and "cam@1.0.0" in p.stdout and "input:x0" in p.stdout and "50.0" in p.stdout, p.stdout
    p = server.cli("telemetry", "show", dev.id, "--limit", "1", output="json")
    assert p.returncode == 0 and len(json.loads(p.stdout)["windows"]) == 1, p.stdout
    for params, status in (({"limit": 0}, 400), ({"limit": "x"}, 400), ({"since": "soon"}, 400)):
        contract.check_response("GET", path, server.api("GET", f"/v1/devices/{dev.id}/telemetry", params=params),
                                status)
    # A bad limit gets the same problem as on the paged lists.
    for bad in ("0", "1001", "x", ""):
        r, other = (server.api("GET", p, params={"limit": bad}) for p in (f"/v1/devices/{dev.id}/telemetry",
                                                                           "/v1/devices"))
        assert r.status_code == other.status_code == 400 and r.json()["detail"] == other.json()["detail"], (bad, r.text)
    contract.check_response("GET", path, server.api("GET", f"/v1/devices/{uuid.uuid4()}/telemetry"), 404)
    p = server.cli("telemetry", "show", "no-such-device")
    assert p.returncode != 0 and "no-such-device" in p.stderr, p.stderr


def test_image_windows(server):
    prof = {"features": [], "image": {"layout": "nchw", "channels": [{"mean": 0.5, "variance": 0.08}],
                                      "intensity": {"edges": [0.0, 0.5, 1.0], "proportions": [0.5, 0.5]}}}
    r = publish(server, "cam", b"cam-img", meta=model_meta("1.0.0", reference_profile=prof))
    assert r.status_code == 201, r.text
    ((dev, tok),) = _fleet(server, n_devices=1)
    chan = {"counts": [], "n": 400, "mean": 0.9, "variance": 0.01, "min": 0.6, "max": 1.0}
    w = {"model": "cam", "version": "1.0.0", "start": _now_window(1), "seconds": WINDOW, "requests": 4, "errors": 0,
         "latency_us_buckets": [4] + [0] * 16, "image": {"channels": [chan],
                                                          "intensity": {"counts": [40, 360], "n": 400, "mean": 0.9,
                                                                        "variance": 0.01, "min": 0.6, "max": 1.0}}}
    assert _post(server, tok, [dict(w, image=dict(w["image"], channels=[chan, chan]))]).status_code == 400
    r = _post(server, tok, [w])
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    (g,) = server.api("GET", "/v1/models/cam/versions/1.0.0/drift").json()["groups"]
    (f,) = g["features"]
    assert f["feature"] == "image:intensity" and f["counts"] == [40, 360]
    assert abs(f["psi"] - _psi([0, 0.5, 0.5, 0], [0, 0.1, 0.9, 0])) < 1e-9


# --- a real agent: counting, windows, the spool across an outage and a kill -9 -------------------

AGENT_WINDOW = 10


@pytest.fixture
def agent(tmp_base, request):
    made = []

    def make(server, window=AGENT_WINDOW):
        a = Agent(tmp_base / f"tel-ag-{len(made)}-{request.node.name[:20]}", server.url,
                  extra_args=["--telemetry-window", f"{window}s"])
        made.append(a)
        return a
    yield make
    errors = []
    for a in made:
        errors += a.stop(check=False)
        print(f"\n--- agent log ({a.logfile}) ---\n{a.log()[-6000:]}")
    assert not errors, errors


def _agent_profile():
    """x0..x3 on 8 quantile bins of N(0, 1) (numpy), and the predicted class of y."""
    rng = np.random.default_rng(77)
    feats = []
    for i in range(4):
        ref = rng.normal(0, 1, 4000)
        edges, _ = _edges(ref, 8)
        counts, _ = np.histogram(ref, bins=edges)
        feats.append({"name": f"x{i}", "edges": edges.tolist(), "proportions": (counts / 4000).tolist()})
    return {"features": feats, "outputs": [{"name": "class", "kind": "categorical", "vocabulary": ["0", "1", "2"],
                                            "proportions": [0.4, 0.3, 0.3, 0.0], "reduce": "argmax"}]}


def _spooled(agent):
    return sorted(p.name for p in (agent.data_dir / "telemetry").glob("*.json"))


def _requests(server):
    r = server.api("GET", "/v1/models/cam/versions/1.0.0/drift", params={"since": "1h"})
    groups = r.json()["groups"]
    return groups[0] if groups else None


def _publish_cam(server, prof):
    """Publishes the test model as cam@1.0.0 with reference profile prof."""
    meta = dict(json.loads((TEST_MODELS / "v1.json").read_text()), version="1.0.0", reference_profile=prof)
    r = publish(server, "cam", (TEST_MODELS / "v1.onnx").read_bytes(), meta=meta)
    assert r.status_code == 201, r.text


def _serve_cam(server, a):
    """Enrolls and starts agent a (talking to server, or to a proxy in front of it), assigns it
    cam@1.0.0 and waits until it serves it; returns a."""
    a.enroll(server.make_enroll_token()["token"])
    a.start()
    assert server.api("PUT", f"/v1/devices/{a.device_id}/desired",
                      json={"model": "cam", "version": "1.0.0"}).status_code == 200
    assert wait_for(lambda: a.serving() is not None, timeout=90), a.log()
    return a


def test_agent_counts_on_the_profile_and_its_spool_survives_an_outage_and_kill_9(gangliond, agent):
    server = gangliond(extra_args=["--agent-poll-interval", "1s"])
    prof = _agent_profile()
    _publish_cam(server, prof)
    a = _serve_cam(server, agent(server))
    assert (a.data_dir / "profiles").is_dir() and list((a.data_dir / "profiles").glob("*.json"))

    rng = np.random.default_rng(3)
    sent, classes = [], []

    def feed(n, shift=0.0):
        for _ in range(n):
            x = (rng.normal(shift, 1, 4)).astype(np.float32)
            y = a.infer("cam", {"x": x.tolist()})["outputs"]["y"]
            sent.append(x)
            classes.append(str(int(np.argmax(y))))

    # 1. counted on the profile's bins and uploaded when the window ends
    feed(60)
    g = wait_for(lambda: (lambda g: g if g and g["requests"] == 60 else None)(_requests(server)),
                 timeout=AGENT_WINDOW * 4, interval=0.5)
    assert g, (_requests(server), a.log()[-3000:])
    xs = np.array(sent, dtype=float)
    for i in range(4):
        f = next(f for f in g["features"] if f["feature"] == f"input:x{i}")
        edges = np.array(prof["features"][i]["edges"])
        inside, _ = np.histogram(xs[(xs[:, i] >= edges[0]) & (xs[:, i] <= edges[-1]), i], bins=edges)
        assert f["counts"] == inside.tolist(), i
        assert f["underflow"] == int((xs[:, i] < edges[0]).sum()) and f["overflow"] == int((xs[:, i] > edges[-1]).sum())
        assert abs(f["mean"] - xs[:, i].astype(np.float32).astype(float).mean()) < 1e-6
    cls = next(f for f in g["features"] if f["feature"] == "output:class")
    c = collections.Counter(classes)
    assert cls["counts"] == [c["0"], c["1"], c["2"], 0], (cls["counts"], c)

    # 2. the server goes away: windows wait in the spool; a kill -9 loses none of them
    server.stop()
    feed(40)
    before = _spooled(a)
    assert wait_for(lambda: len(_spooled(a)) > len(before), timeout=AGENT_WINDOW * 3, interval=0.5), a.log()[-3000:]
    a.kill()
    a.start()
    feed(25)
    time.sleep(1)
    server.start()
    g = wait_for(lambda: (lambda g: g if g and g["requests"] == 125 else None)(_requests(server)),
                 timeout=AGENT_WINDOW * 6, interval=0.5)
    assert g, (_requests(server), _spooled(a), a.log()[-4000:])
    assert wait_for(lambda: _spooled(a) == [], timeout=30), _spooled(a)
    assert g["dropped"] == 0


def test_agent_sends_plain_batches_after_a_415_to_gzip(gangliond, agent):
    """A server (or proxy) on the way answers 415 to gzip bodies: the agent sends that batch again
    uncompressed and the next ones too, and every window arrives (the hour after which it tries
    gzip again: test_gzip_fallback in tests/unit/agent/test_telemetry.c)."""
    server = gangliond(extra_args=["--agent-poll-interval", "1s"])
    _publish_cam(server, _agent_profile())
    batches = []  # Content-Encoding of each telemetry POST, in order

    def no_gzip(method, path, headers):
        if method == "POST" and path == "/v1/agent/telemetry":
            batches.append(headers.get("Content-Encoding"))
            if headers.get("Content-Encoding"):
                return 415, b'{"title":"Unsupported Media Type","status":415,"detail":"no Content-Encoding here"}'
        return None

    proxy = HostileProxy(server.port, None)
    proxy.answer = no_gzip
    try:
        a = _serve_cam(server, agent(proxy))
        for total in (3, 6):  # two windows, two batches at least
            for _ in range(3):
                a.infer("cam", {"x": [0.0, 0.1, 0.2, 0.3]})
            g = wait_for(lambda: (lambda g: g if g and g["requests"] == total else None)(_requests(server)),
                         timeout=AGENT_WINDOW * 4, interval=0.5)
            assert g, (_requests(server), batches, a.log()[-3000:])
    finally:
        proxy.close()
    assert batches[0] == "gzip" and len(batches) >= 3 and set(batches[1:]) == {None}, batches
    assert "event=telemetry_gzip_refused" in a.log()


def test_agent_metrics_endpoint_shows_counters_and_the_open_windows_drift(server, agent):
    """GET /metrics on the agent's socket: counters and latency histogram per model version, and the
    PSI / JS distance of the open window, checked against numpy on the inputs sent here. Feature
    names with a quote, a backslash and a newline check the label escaping."""
    prof = _agent_profile()
    names = ["x0", 'x"1', "x\\2", "x\n3"]
    for f, name in zip(prof["features"], names):
        f["name"] = name
    _publish_cam(server, prof)
    window = 3600  # one window for the whole test: not within a minute of its end
    a = _serve_cam(server, agent(server, window=window))
    left = window - time.time() % window
    if left < 60:
        time.sleep(left + 1)

    def metrics():
        status, headers, body = a.request("GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4"), (status, headers)
        text = body.decode()
        for line in text.splitlines():  # strict: every line a comment or `name{labels} value`
            assert line.startswith("# HELP ") or line.startswith("# TYPE ") or \
                re.fullmatch(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"'
                             r'(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})? [^ ]+', line), line
        return parse_metrics(text)

    m0 = metrics()
    start = metric_value(m0, "ganglion_agent_drift_window_start_seconds", model="cam", version="1.0.0")
    assert metric_value(m0, "ganglion_agent_requests_total", model="cam", version="1.0.0") == 0
    rng = np.random.default_rng(9)
    xs = rng.normal(3.0, 1, (50, 4)).astype(np.float32)  # far from the reference N(0, 1)
    for x in xs:
        a.infer("cam", {"x": x.tolist()})
    m = metrics()
    lab = {"model": "cam", "version": "1.0.0"}
    assert metric_value(m, "ganglion_agent_requests_total", **lab) == 50
    assert metric_value(m, "ganglion_agent_errors_total", **lab) == 0
    assert metric_value(m, "ganglion_agent_latency_seconds_count", **lab) == 50
    buckets = [(float(l["le"]), v) for n, l, v in m if n == "ganglion_agent_latency_seconds_bucket"]
    assert len(buckets) == 17 and buckets[-1] == (float("inf"), 50)
    assert all(b[1] <= c[1] for b, c in zip(buckets, buckets[1:])), buckets  # cumulative
    assert metric_value(m, "ganglion_agent_latency_seconds_sum", **lab) > 0
    assert metric_value(m, "ganglion_agent_drift_window_start_seconds", **lab) == start
    xf = xs.astype(float)
    for i, name in enumerate(names):
        feat = {"feature": f"input:{name}", **lab}
        assert metric_value(m, "ganglion_agent_drift_samples", **feat) == 50, name
        edges = np.array(prof["features"][i]["edges"])
        v = xf[:, i]
        inside, _ = np.histogram(v[(v >= edges[0]) & (v <= edges[-1])], bins=edges)
        q = np.concatenate([[(v < edges[0]).sum()], inside, [(v > edges[-1]).sum()]]) / len(v)
        p = np.concatenate([[0.0], prof["features"][i]["proportions"], [0.0]])
        psi = metric_value(m, "ganglion_agent_drift_psi", **feat)
        assert psi > 0.25 and abs(psi - _psi(p, q)) < 1e-6, (name, psi, _psi(p, q))
        assert abs(metric_value(m, "ganglion_agent_drift_js_distance", **feat) - _js(p, q)) < 1e-6, name
    assert [l for n, l, v in m if n == "ganglion_agent_drift_psi" and l["feature"] == "output:class"]
    assert [l for n, l, v in m if n == "ganglion_agent_drift_linf" and l["feature"] == "output:class"]
    assert ("ganglion_agent_telemetry_spool_reports", {}, 0.0) in m
    status, _, _ = a.request("POST", "/metrics")
    assert status == 405


# --- canary against control ------------------------------------------------------------------------

def _cohorts(server, model, n=6):
    """model@1.0.0 (control) and @2.0.0 (canary), PROFILE on both; n devices on each; returns
    ([(dev, token)] control, [(dev, token)] canary)."""
    for v in ("1.0.0", "2.0.0"):
        r = publish(server, model, f"{model}-{v}".encode(), meta=model_meta(v, reference_profile=PROFILE))
        assert r.status_code == 201, r.text
    sides = []
    for v in ("1.0.0", "2.0.0"):
        side = []
        for _ in range(n):
            dev = enroll_device(server)
            assert server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": model, "version": v}).status_code == 200
            side.append((dev, dev.authenticate(server)))
        sides.append(side)
    return sides


def _cohort_windows(server, model, version, side, rng, error_rate, windows=2, requests=200, slow=False):
    for dev, tok in side:
        ws = []
        for k in range(windows):
            errors = int(rng.binomial(requests, error_rate))
            lat = [0, 0, 0, requests // 2, requests - requests // 2] + [0] * 12
            if slow:
                lat = [0] * 6 + [requests // 2, requests - requests // 2] + [0] * 9
            w = _window(_now_window(k + 1), rng.normal(0, 1, 100), classes=rng.choice(["0", "1"], requests - errors),
                        requests=requests, errors=errors, version=version)
            w.update(model=model, latency_us_buckets=lat)
            ws.append(w)
        r = _post(server, tok, ws)
        assert r.status_code == 200 and r.json()["accepted"] == windows, r.text


def test_canary_judgement(server, contract):
    rng = np.random.default_rng(12)
    path = "/v1/models/{name}/canary"

    # a canary whose error rate is clearly above the control's fails
    control, canary = _cohorts(server, "bad")
    _cohort_windows(server, "bad", "1.0.0", control, rng, 0.01)
    _cohort_windows(server, "bad", "2.0.0", canary, rng, 0.10)
    r = contract.check_response("GET", path, server.api("GET", "/v1/models/bad/canary", params={
        "canary": "2.0.0", "control": "1.0.0", "since": "1h"}), 200)
    j = r.json()
    m = {x["name"]: x for x in j["metrics"]}
    assert m["error_rate"]["verdict"] == "fail" and m["error_rate"]["n_canary"] == 12, m
    assert m["error_rate"]["p"] < 0.02 and m["p95_latency_us"]["verdict"] == "pass", m
    assert j["verdict"] == "fail" and j["score"] == 50, j  # 2 of 4 by weight

    # the same behaviour passes; a slower canary alone is marginal
    control, canary = _cohorts(server, "same")
    _cohort_windows(server, "same", "1.0.0", control, rng, 0.02)
    _cohort_windows(server, "same", "2.0.0", canary, rng, 0.02)
    j = server.api("GET", "/v1/models/same/canary", params={"canary": "2.0.0", "control": "1.0.0"}).json()
    assert j["verdict"] == "pass" and j["score"] == 100, j
    assert {x["name"] for x in j["metrics"]} == {"error_rate", "p95_latency_us", "output_drift"}
    control, canary = _cohorts(server, "slow")
    _cohort_windows(server, "slow", "1.0.0", control, rng, 0.02)
    _cohort_windows(server, "slow", "2.0.0", canary, rng, 0.02, slow=True)
    j = server.api("GET", "/v1/models/slow/canary", params={"canary": "2.0.0", "control": "1.0.0"}).json()
    assert j["verdict"] == "marginal" and j["score"] == 75, j

    # too little traffic is inconclusive, not a pass
    control, canary = _cohorts(server, "thin", n=2)
    _cohort_windows(server, "thin", "1.0.0", control, rng, 0.0)
    _cohort_windows(server, "thin", "2.0.0", canary, rng, 0.0)
    j = server.api("GET", "/v1/models/thin/canary", params={"canary": "2.0.0", "control": "1.0.0"}).json()
    assert j["verdict"] == "inconclusive" and j["score"] is None, j
    p = server.cli("models", "canary", "thin", "2.0.0", "1.0.0")
    assert p.returncode == 0 and "inconclusive" in p.stdout, p.stdout + p.stderr

    for params, status in (({"canary": "2.0.0"}, 400), ({"canary": "2.0.0", "control": "2.0.0"}, 400),
                           ({"canary": "9.0.0", "control": "1.0.0"}, 404),
                           ({"canary": "2.0.0", "control": "1.0.0", "since": "x"}, 400)):
        contract.check_response("GET", path, server.api("GET", "/v1/models/bad/canary", params=params), status)
