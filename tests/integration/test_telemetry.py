"""Telemetry and drift end to end: reference profiles from training data (`ganglion models
profile`, checked against numpy), profiles published with a version, devices posting window
summaries over the real protocol, the fleet's drift merged across devices (checked against a PSI
computed here from every raw sample), alert rules opened and resolved by the job, and the
refusals of bad telemetry. Expected values come from numpy, not from the code under test."""

import collections
import csv
import json
import subprocess

import numpy as np

from ganglion_harness import (
    GANGLION_CLI,
    child_env,
    make_dir,
    model_meta,
    publish,
)

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
