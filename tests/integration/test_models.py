"""The model registry: publishing versions, validation of names, versions and metadata, scopes,
aliases, semantic-version ordering, the sample and reference profile, and the CLI."""

import hashlib
import io
import json
import os
import random
import time

import numpy as np
import pytest

from ganglion_harness import (
    NO_TOKEN,
    artifact_files,
    assert_problem,
    enroll_device,
    list_all,
    model_meta,
    multipart,
    publish,
)

VERSION_FIELDS = {"model", "version", "format", "filename", "requirements", "inputs", "outputs", "sample",
                  "reference_profile", "provenance", "artifact", "target", "published_by", "published_at",
                  "self_test", "yanked"}


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def _ok(r, status=201):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    return r.json() if r.content else None


def test_publish_and_read_back(server):
    meta = model_meta("1.2.0", filename="det.onnx")
    v = _ok(publish(server, "detector", b"weights-1", meta=meta))
    assert VERSION_FIELDS <= set(v), f"missing: {VERSION_FIELDS - set(v)}"
    assert v["model"] == "detector" and v["version"] == "1.2.0" and v["format"] == "onnx"
    assert v["filename"] == "det.onnx" and v["target"] == "models/detector/1.2.0/det.onnx"
    assert v["requirements"] == meta["requirements"]
    assert v["inputs"] == meta["inputs"] and v["outputs"] == meta["outputs"]
    assert v["provenance"] == meta["provenance"]
    assert v["sample"] == meta["sample"] and v["reference_profile"] == meta["reference_profile"]
    assert v["published_by"] == "admin"
    assert _ok(server.api("GET", "/v1/models/detector/versions/1.2.0"), 200) == v

    # Default file name from the format.
    v2 = _ok(publish(server, "detector", b"weights-2", meta=model_meta("1.3.0", format="tflite", filename=None)))
    assert v2["filename"] == "model.tflite"
    v3 = _ok(publish(server, "detector", b"weights-3", meta={"version": "1.4.0", "no_self_test": True}))
    assert v3["format"] == "other" and v3["filename"] == "model.bin"
    assert v3["sample"] is None and v3["reference_profile"] is None
    assert v3["self_test"] is False and v["self_test"] is True and v["yanked"] is None

    m = _ok(server.api("GET", "/v1/models/detector"), 200)
    assert m["name"] == "detector" and m["aliases"] == {}
    assert [x["version"] for x in m["versions"]] == ["1.4.0", "1.3.0", "1.2.0"]
    assert m["versions"][2]["sha256"] == _sha(b"weights-1") and m["versions"][2]["length"] == 9

    assert_problem(server.api("GET", "/v1/models/nope"), 404)
    assert_problem(server.api("GET", "/v1/models/detector/versions/9.9.9"), 404)


def test_publish_existing_version_is_409(server):
    first = _ok(publish(server, "imm", b"original"))
    r = publish(server, "imm", b"replacement")
    assert_problem(r, 409)
    again = _ok(server.api("GET", "/v1/models/imm/versions/1.0.0"), 200)
    assert again["artifact"] == first["artifact"]
    # The replacement's bytes were not kept.
    assert artifact_files(server.data_dir)[0] == [f"{first['artifact']['sha256'][:2]}/{first['artifact']['sha256']}"]
    # Same bytes as the existing version: still 409 (immutable, not idempotent).
    assert_problem(publish(server, "imm", b"original"), 409)


@pytest.mark.parametrize("name", ["Bad_Name", "-x", "x-", "a" * 64, "UPPER", "a.b", "a_b"])
def test_invalid_model_names(server, name):
    assert_problem(publish(server, name, b"x"), 400, "name")
    assert _ok(server.api("GET", "/v1/models"), 200)["items"] == []
    assert artifact_files(server.data_dir) == ([], [])


def test_longest_and_shortest_names(server):
    for name in ("a" * 63, "a", "0", "a-0"):
        _ok(publish(server, name, b"x"))
    assert sorted(m["name"] for m in list_all(server, "/v1/models")[0]) == sorted(["a" * 63, "a", "0", "a-0"])


@pytest.mark.parametrize("version", ["1.0", "01.0.0", "1.00.0", "1.0.0-", "v1.0.0", "1.0.0+", "1.0.0-a..b",
                                     "1", "", "1.0.0.0", " 1.0.0", "1.0.0-é"])
def test_invalid_versions(server, version):
    assert_problem(publish(server, "m", b"x", meta=model_meta(version)), 400, "version")
    assert_problem(server.api("GET", "/v1/models/m"), 404)
    assert artifact_files(server.data_dir) == ([], [])


def test_valid_versions(server):
    for v in ("0.0.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0+20130313144700",
              "1.0.0-beta+exp.sha.5114f85", "10.20.30"):
        _ok(publish(server, "m", v.encode(), meta=model_meta(v)))


def test_prerelease_with_leading_zero_is_invalid(server):
    assert_problem(publish(server, "m", b"x", meta=model_meta("1.0.0-01")), 400, "version")


BAD_METADATA = {
    "unknown field": model_meta(colour="blue"),
    "sample length vs shape": model_meta(sample={"inputs": {"x": [0.1, 0.2, 0.3]}, "outputs": {"y": [0.5, 0.6]}}),
    "sample output length": model_meta(sample={"inputs": {"x": [1, 2, 3, 4]}, "outputs": {"y": [0.5]}}),
    "sample names an unknown tensor": model_meta(sample={"inputs": {"z": [1, 2, 3, 4]}, "outputs": {"y": [1, 2]}}),
    "sample without tensor specs": model_meta(inputs=None),
    "proportions do not sum to 1": model_meta(
        reference_profile={"features": [{"name": "f", "edges": [0, 1, 2], "proportions": [0.5, 0.6]}]}),
    "edges not increasing": model_meta(
        reference_profile={"features": [{"name": "f", "edges": [0, 2, 1], "proportions": [0.5, 0.5]}]}),
    "edges equal": model_meta(
        reference_profile={"features": [{"name": "f", "edges": [0, 1, 1], "proportions": [0.5, 0.5]}]}),
    "k+1 edges, not k proportions": model_meta(
        reference_profile={"features": [{"name": "f", "edges": [0, 1, 2], "proportions": [1.0]}]}),
    "proportion out of range": model_meta(
        reference_profile={"features": [{"name": "f", "edges": [0, 1, 2], "proportions": [1.5, -0.5]}]}),
    "unknown format": model_meta(format="pickle"),
    "bad dtype": model_meta(inputs=[{"name": "x", "dtype": "float64", "shape": [1, 4]}]),
    "zero dimension": model_meta(inputs=[{"name": "x", "dtype": "float32", "shape": [0, 4]}], sample=None),
    "bad filename": model_meta(filename="../evil"),
    "negative tolerance": model_meta(sample={"inputs": {"x": [1, 2, 3, 4]}, "outputs": {"y": [1, 2]},
                                             "tolerance": -1}),
    "version not a string": model_meta(version=1),
    "missing version": {"format": "onnx"},
    "sha256 not hex": model_meta(sha256="z" * 64),
    "negative length": model_meta(length=-1),
    "requirements unknown field": model_meta(requirements={"gpu": True}),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_metadata_is_400(server, case):
    assert_problem(publish(server, "m", b"artifact", meta=BAD_METADATA[case]), 400)
    assert_problem(server.api("GET", "/v1/models/m"), 404)
    assert artifact_files(server.data_dir) == ([], [])


def test_malformed_metadata_json_is_400(server):
    for raw in (b"{", b"[]", b'{"version": "1.0.0", "version": "1.0.1"}', b"null"):
        assert_problem(publish(server, "m", b"artifact", meta=raw), 400)
    assert artifact_files(server.data_dir) == ([], [])


def test_tolerant_metadata(server):
    # Dynamic dimensions take any sample length; proportions may be off by up to 0.001.
    meta = model_meta(inputs=[{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
                      sample={"inputs": {"x": [1, 2]}, "outputs": {"y": [1, 2]}},
                      reference_profile={"features": [{"name": "f", "edges": [-1.5, 0, 2.5],
                                                       "proportions": [0.3333, 0.6662]}]})
    _ok(publish(server, "m", b"x", meta=meta))
    _ok(publish(server, "m", b"y", meta=model_meta("1.0.1", reference_profile=None)))


def test_scopes(server):
    read = server.make_token(["read"])["token"]
    ci = server.make_token(["ci"], name="ci-bot")["token"]
    operator = server.make_token(["operator"])["token"]

    assert_problem(publish(server, "m", b"x", token=read), 403)
    assert_problem(publish(server, "m", b"x", token=operator), 403)
    assert_problem(publish(server, "m", b"x", token=NO_TOKEN), 401)
    assert_problem(publish(server, "m", b"x", token="gna_" + "0" * 40), 401)
    assert artifact_files(server.data_dir) == ([], [])
    v = _ok(publish(server, "m", b"x", token=ci))
    assert v["published_by"] == "ci-bot"

    # ci implies read; read can read.
    for tok in (read, ci):
        _ok(server.api("GET", "/v1/models", token=tok), 200)
        _ok(server.api("GET", "/v1/models/m/versions/1.0.0", token=tok), 200)
    # Aliases: ci or operator, not read.
    assert_problem(server.api("PUT", "/v1/models/m/aliases/stable", token=read, json={"version": "1.0.0"}), 403)
    _ok(server.api("PUT", "/v1/models/m/aliases/stable", token=ci, json={"version": "1.0.0"}), 200)
    _ok(server.api("PUT", "/v1/models/m/aliases/prod", token=operator, json={"version": "1.0.0"}), 200)
    assert_problem(server.api("DELETE", "/v1/models/m/aliases/prod", token=read), 403)
    assert server.api("DELETE", "/v1/models/m/aliases/prod", token=operator).status_code == 204
    # Keys are admin only.
    assert_problem(server.api("GET", "/v1/keys", token=ci), 403)
    assert_problem(server.api("POST", "/v1/keys/rotate", token=operator, json={"role": "targets"}), 403)
    assert_problem(server.api("GET", "/v1/tuf/image/root/draft", token=ci), 403)

    # A device downloads artifacts and TUF metadata, reads the version it is told to run,
    # but cannot list the registry or publish.
    device = enroll_device(server)
    dt = device.authenticate(server)
    for f in ("timestamp.json", "root.json", "1.root.json", "targets.json", "snapshot.json"):
        assert server.api("GET", f"/v1/tuf/image/{f}", token=dt).status_code == 200, f
    # Only what its director names: nothing before an assignment...
    assert_problem(server.api("GET", v["artifact"]["url"], token=dt), 403)
    assert_problem(server.api("GET", "/v1/models/m/versions/1.0.0", token=dt), 403)
    assert_problem(server.api("GET", "/v1/models/m/versions/stable/sample", token=dt), 403)
    # ...the assigned version after it.
    _ok(server.api("PUT", f"/v1/devices/{device.id}/desired", json={"model": "m", "version": "1.0.0"}), 200)
    got = server.api("GET", v["artifact"]["url"], token=dt)
    assert got.status_code == 200 and got.content == b"x"
    _ok(server.api("GET", "/v1/models/m/versions/1.0.0", token=dt), 200)
    _ok(server.api("GET", "/v1/models/m/versions/stable/sample", token=dt), 200)
    assert_problem(server.api("GET", "/v1/models", token=dt), 403)
    assert_problem(server.api("GET", "/v1/models/m", token=dt), 403)
    assert_problem(server.api("GET", "/v1/keys", token=dt), 403)
    assert_problem(publish(server, "m", b"y", meta=model_meta("1.0.1"), token=dt), 403)
    # Without a token nothing is served.
    assert_problem(server.api("GET", v["artifact"]["url"], token=NO_TOKEN), 401)
    assert_problem(server.api("GET", "/v1/tuf/image/timestamp.json", token=NO_TOKEN), 401)


def _audit(server, action):
    return [e for e in list_all(server, "/v1/audit")[0] if e["action"] == action]


def test_aliases(server):
    for v in ("1.0.0", "1.1.0"):
        _ok(publish(server, "cls", v.encode(), meta=model_meta(v)))

    r = _ok(server.api("PUT", "/v1/models/cls/aliases/stable", json={"version": "1.0.0"}), 200)
    assert r == {"model": "cls", "alias": "stable", "version": "1.0.0"}
    assert _ok(server.api("GET", "/v1/models/cls/versions/stable"), 200)["version"] == "1.0.0"
    # Move it.
    _ok(server.api("PUT", "/v1/models/cls/aliases/stable", json={"version": "1.1.0"}), 200)
    v = _ok(server.api("GET", "/v1/models/cls/versions/stable"), 200)
    assert v["version"] == "1.1.0" and v["artifact"]["sha256"] == _sha(b"1.1.0")
    s = server.api("GET", "/v1/models/cls/versions/stable/sample")
    assert s.status_code == 200 and s.json() == model_meta()["sample"]
    _ok(server.api("PUT", "/v1/models/cls/aliases/canary.v2", json={"version": "1.0.0"}), 200)
    assert _ok(server.api("GET", "/v1/models/cls"), 200)["aliases"] == {"stable": "1.1.0", "canary.v2": "1.0.0"}
    listed = _ok(server.api("GET", "/v1/models"), 200)["items"]
    assert listed[0]["aliases"] == {"stable": "1.1.0", "canary.v2": "1.0.0"}

    # Errors: unknown version or model, bad alias, bad body.
    assert_problem(server.api("PUT", "/v1/models/cls/aliases/stable", json={"version": "9.0.0"}), 404)
    assert_problem(server.api("PUT", "/v1/models/nope/aliases/stable", json={"version": "1.0.0"}), 404)
    for bad in ("Stable", "-x", "a" * 64, "st%20able"):
        assert_problem(server.api("PUT", f"/v1/models/cls/aliases/{bad}", json={"version": "1.0.0"}), 400)
    assert_problem(server.api("PUT", "/v1/models/cls/aliases/x", json={"version": "1.0.0", "extra": 1}), 400)
    assert_problem(server.api("PUT", "/v1/models/cls/aliases/x", json={}), 400)
    assert _ok(server.api("GET", "/v1/models/cls/versions/stable"), 200)["version"] == "1.1.0"

    # Delete.
    r = server.api("DELETE", "/v1/models/cls/aliases/stable")
    assert r.status_code == 204 and r.content == b""
    assert_problem(server.api("GET", "/v1/models/cls/versions/stable"), 404)
    assert_problem(server.api("DELETE", "/v1/models/cls/aliases/stable"), 404)
    assert _ok(server.api("GET", "/v1/models/cls"), 200)["aliases"] == {"canary.v2": "1.0.0"}

    # Audited: two sets of stable (1.0.0 then 1.1.0), one of canary.v2, one delete.
    sets = [(e["object_id"], e["detail"]) for e in _audit(server, "model.alias")]
    assert sets == [("cls", {"alias": "canary.v2", "version": "1.0.0"}),
                    ("cls", {"alias": "stable", "version": "1.1.0"}),
                    ("cls", {"alias": "stable", "version": "1.0.0"})]
    deletes = _audit(server, "model.alias_delete")
    assert [(e["object_id"], e["detail"]) for e in deletes] == [("cls", {"alias": "stable"})]
    assert all("admin" in e["actor"] and e["token_id"] and e["request_id"] for e in deletes)
    assert len(_audit(server, "model.publish")) == 2


def test_alias_cannot_shadow_a_version(server):
    for v in ("1.0.0", "1.1.0"):
        _ok(publish(server, "sh", v.encode(), meta=model_meta(v)))
    # An alias spelled like a version would shadow that version in lookups: refused.
    for alias in ("1.0.0", "2.0.0", "1.0.0-rc.1"):
        assert_problem(server.api("PUT", f"/v1/models/sh/aliases/{alias}", json={"version": "1.1.0"}), 400, "version")
    assert _ok(server.api("GET", "/v1/models/sh/versions/1.0.0"), 200)["version"] == "1.0.0"
    assert _ok(server.api("GET", "/v1/models/sh"), 200)["aliases"] == {}


def test_semver_ordering(server):
    versions = ["0.9.0", "1.2.0", "1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0", "2.0.0-alpha"]
    shuffled = versions[:]
    random.Random(7).shuffle(shuffled)
    for v in shuffled:
        _ok(publish(server, "sem", v.encode(), meta=model_meta(v)))
    want = ["2.0.0", "2.0.0-rc.1", "2.0.0-alpha", "1.10.0", "1.9.0", "1.2.0", "0.9.0"]
    assert [x["version"] for x in _ok(server.api("GET", "/v1/models/sem"), 200)["versions"]] == want

    # A model whose newest is a pre-release of a higher version; one with a single version.
    for v in ("2.5.0", "3.0.0-beta"):
        _ok(publish(server, "pre", v.encode(), meta=model_meta(v)))
    _ok(publish(server, "aaa", b"x", meta=model_meta("0.0.1")))
    items = _ok(server.api("GET", "/v1/models"), 200)["items"]
    assert [(m["name"], m["latest_version"], m["versions"]) for m in items] == [
        ("aaa", "0.0.1", 1), ("pre", "3.0.0-beta", 2), ("sem", "2.0.0", 7)]
    # Paging keeps the order.
    paged, pages = list_all(server, "/v1/models", limit=1)
    assert [m["name"] for m in paged] == ["aaa", "pre", "sem"] and pages >= 3


def test_semver_prerelease_precedence(server):
    # The precedence example of SemVer 2.0.0, rule 11, lowest first.
    spec = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
            "1.0.0-rc.1", "1.0.0"]
    for v in reversed(spec):
        _ok(publish(server, "prec", v.encode(), meta=model_meta(v)))
    got = [x["version"] for x in _ok(server.api("GET", "/v1/models/prec"), 200)["versions"]]
    assert got == list(reversed(spec))


def test_sample_and_reference_profile_bytes(server):
    meta = model_meta(sample={"inputs": {"x": [0.1, -2, 3e-7, 1e300]}, "outputs": {"y": [0, 1]}, "tolerance": 0.5})
    v = _ok(publish(server, "smp", b"x", meta=meta))
    s = server.api("GET", "/v1/models/smp/versions/1.0.0/sample")
    p = server.api("GET", "/v1/models/smp/versions/1.0.0/reference-profile")
    assert s.status_code == 200 and p.status_code == 200
    assert s.headers["Content-Type"].startswith("application/json")
    assert s.json() == meta["sample"] and p.json() == meta["reference_profile"]
    # The image repository signs the digests of these exact bytes into the target's custom.
    targets = _ok(server.api("GET", "/v1/tuf/image/targets.json"), 200)["signed"]["targets"]
    custom = targets[v["target"]]["custom"]
    assert custom["sample_sha256"] == _sha(s.content)
    assert custom["reference_profile_sha256"] == _sha(p.content)
    # Fetched again: the same bytes.
    assert server.api("GET", "/v1/models/smp/versions/1.0.0/sample").content == s.content

    _ok(publish(server, "smp", b"y", meta={"version": "1.1.0", "no_self_test": True}))
    assert_problem(server.api("GET", "/v1/models/smp/versions/1.1.0/sample"), 404)
    assert_problem(server.api("GET", "/v1/models/smp/versions/1.1.0/reference-profile"), 404)
    assert_problem(server.api("GET", "/v1/models/smp/versions/7.0.0/sample"), 404)


def test_new_routes_fit_the_contract(server, contract):
    check = contract.check_response
    ci = server.make_token(["ci"])["token"]
    check("POST", "/v1/models/{name}/versions", publish(server, "c", b"x", token=ci), 201)
    check("POST", "/v1/models/{name}/versions", publish(server, "c", b"x", meta={"version": "1.1.0", "no_self_test": True}), 201)
    check("POST", "/v1/models/{name}/versions", publish(server, "c", b"x"), 409)
    check("POST", "/v1/models/{name}/versions", publish(server, "c", b"x", meta=model_meta(colour=1)), 400)
    check("POST", "/v1/models/{name}/versions", publish(server, "c", b"x", meta=model_meta("3.0.0"), token=NO_TOKEN), 401)
    check("GET", "/v1/models", server.api("GET", "/v1/models"), 200)
    check("GET", "/v1/models/{name}", server.api("GET", "/v1/models/c"), 200)
    check("GET", "/v1/models/{name}", server.api("GET", "/v1/models/none"), 404)
    check("GET", "/v1/models/{name}/versions/{version}", server.api("GET", "/v1/models/c/versions/1.0.0"), 200)
    check("GET", "/v1/models/{name}/versions/{version}", server.api("GET", "/v1/models/c/versions/1.1.0"), 200)
    check("GET", "/v1/models/{name}/versions/{version}/sample",
          server.api("GET", "/v1/models/c/versions/1.0.0/sample"), 200)
    check("GET", "/v1/models/{name}/versions/{version}/sample",
          server.api("GET", "/v1/models/c/versions/1.1.0/sample"), 404)  # published without one
    check("GET", "/v1/models/{name}/versions/{version}/reference-profile",
          server.api("GET", "/v1/models/c/versions/1.0.0/reference-profile"), 200)
    check("PUT", "/v1/models/{name}/aliases/{alias}",
          server.api("PUT", "/v1/models/c/aliases/stable", json={"version": "1.0.0"}), 200)
    check("PUT", "/v1/models/{name}/aliases/{alias}",
          server.api("PUT", "/v1/models/c/aliases/stable", json={"version": "5.0.0"}), 404)
    check("DELETE", "/v1/models/{name}/aliases/{alias}", server.api("DELETE", "/v1/models/c/aliases/stable"), 204)
    check("DELETE", "/v1/models/{name}/aliases/{alias}", server.api("DELETE", "/v1/models/c/aliases/stable"), 404)
    digest = _sha(b"x")
    check("GET", "/v1/artifacts/sha256/{digest}", server.api("GET", f"/v1/artifacts/sha256/{digest}"), 200)
    check("GET", "/v1/artifacts/sha256/{digest}", server.api("GET", f"/v1/artifacts/sha256/{digest}",
                                                            headers={"Range": "bytes=0-"}), 206)
    check("GET", "/v1/artifacts/sha256/{digest}", server.api("GET", f"/v1/artifacts/sha256/{'0' * 64}"), 404)
    for f in ("root.json", "1.root.json", "timestamp.json", "snapshot.json", "targets.json", "2.targets.json"):
        check("GET", "/v1/tuf/image/{file}", server.api("GET", f"/v1/tuf/image/{f}"), 200)
    check("GET", "/v1/tuf/image/{file}", server.api("GET", "/v1/tuf/image/99.root.json"), 404)
    check("GET", "/v1/tuf/image/root/draft", server.api("GET", "/v1/tuf/image/root/draft"), 200)
    check("GET", "/v1/tuf/director/{file}", server.api("GET", "/v1/tuf/director/root.json"), 200)
    check("GET", "/v1/tuf/director/{file}", server.api("GET", "/v1/tuf/director/1.root.json"), 200)
    # A device's own director targets: a device token only (404 for an API token).
    r = check("GET", "/v1/tuf/director/{file}", server.api("GET", "/v1/tuf/director/targets.json"), 404)
    assert_problem(r, 404, "device's token")
    check("GET", "/v1/keys", server.api("GET", "/v1/keys"), 200)
    check("POST", "/v1/keys/rotate", server.api("POST", "/v1/keys/rotate", json={"role": "snapshot"}), 200)
    check("POST", "/v1/keys/rotate", server.api("POST", "/v1/keys/rotate", json={"role": "root"}), 400)
    check("POST", "/v1/tuf/image/root", server.api("POST", "/v1/tuf/image/root",
                                                   json={"signed": {"_type": "root"}, "signatures": []}), 400)
    check("GET", "/v1/audit", server.api("GET", "/v1/audit"), 200)


# --- the CLI ------------------------------------------------------------------------------
def _cli_json(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return json.loads(p.stdout)


def test_cli_pushes_a_release_whose_sample_is_an_image(gangliond, workdir):
    """A 224x224x3 float32 sample is some 1.5 MB of JSON, over max-body (1 MiB): the CLI sends it
    (no cap of its own) and the server takes it (max-release-metadata, 16 MiB by default); with the
    limit lowered, the server's 413 names it."""
    rng = random.Random(7)
    meta = model_meta("1.0.0", format="onnx", filename=None)
    meta["inputs"] = [{"name": "x", "dtype": "float32", "shape": [1, 3, 224, 224]}]
    meta["sample"]["inputs"] = {"x": [round(rng.uniform(-1, 1), 6) for _ in range(3 * 224 * 224)]}
    metafile = workdir / "meta.json"
    metafile.write_text(json.dumps(meta))
    assert metafile.stat().st_size > 1024 * 1024
    art = workdir / "model.onnx"
    art.write_bytes(b"image-weights" * 100)
    server = gangliond()
    p = server.cli("models", "push", "--name", "img", "--meta", metafile, "--no-progress", art, output="json")
    assert p.returncode == 0, f"stdout: {p.stdout}\nstderr: {p.stderr}"
    assert _ok(server.api("GET", "/v1/models/img/versions/1.0.0"), 200)["sample"] == meta["sample"]
    small = gangliond(extra_args=["--max-release-metadata", "1M"])
    p = small.cli("models", "push", "--name", "img", "--meta", metafile, "--no-progress", art, token=server.admin_token)
    assert p.returncode != 0 and "max-release-metadata" in p.stderr, (p.returncode, p.stderr)


def _npy_publish(server, meta, artifact, samples):
    """POSTs a publish with 'sample' parts (bytes each) after the artifact."""
    body, ctype = multipart(meta, artifact)
    boundary = ctype.split("boundary=")[1]
    extra = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"sample\"; filename=\"s.npy\"\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + b + b"\r\n" for b in samples)
    body = body[: -len(f"--{boundary}--\r\n")] + extra + f"--{boundary}--\r\n".encode()
    return server.api("POST", "/v1/models/npy/versions", data=body, headers={"Content-Type": ctype})


def _npy_bytes(a):
    f = io.BytesIO()
    np.save(f, np.asarray(a))
    return f.getvalue()


def test_npy_sample_refusals(gangliond, workdir):
    """A sample tensor file must be a .npy the devices can read, with as many elements as its
    tensor, named by digest in the sample and sent as a 'sample' part; over max-sample-size the
    upload is a 413 naming the setting. Nothing is stored after a refusal. The CLI checks the
    files before it sends anything."""
    server = gangliond(extra_args=["--max-sample-size", "64K"])
    x, y = _npy_bytes(np.arange(4, dtype="<f4").reshape(1, 4)), _npy_bytes(np.array([[0.5, 0.25]]))

    def ref(b):
        return {"format": "npy", "sha256": _sha(b), "length": len(b)}

    def meta(xs=None, ys=None, version="1.0.0"):
        m = model_meta(version)
        m["sample"] = {"inputs": {"x": xs or ref(x)}, "outputs": {"y": ys or ref(y)}}
        return m

    before = artifact_files(server.data_dir)
    three = _npy_bytes(np.zeros((1, 3), dtype="<f4"))
    cases = [
        (meta(xs=ref(three)), [three, y], 400, "holds 3 elements (shape (1, 3)), the tensor's shape needs 4"),
        (meta(), [y], 400, f"sample.inputs.x names sha256 {_sha(x)}, but no 'sample' part"),
        (meta(), [x, y, three], 400, "'sample' part 3"),
        (meta(xs=ref(b"not numpy")), [b"not numpy", y], 400, "no \\x93NUMPY magic"),
        (meta(xs=dict(ref(x), length=5)), [x, y], 400, "states 5 bytes, its file has"),
        (meta(xs={"format": "npz", "sha256": _sha(x), "length": len(x)}), [x, y], 400, "format must be \"npy\""),
        (meta(), [x, y + b"\0"], 400, "its length is not that of its .npy header"),
        (meta(xs=ref(b"\0" * 70000)), [b"\0" * 70000, y], 413, "larger than 65536 bytes (max-sample-size)"),
    ]
    for m, parts, status, detail in cases:
        r = _npy_publish(server, m, b"weights", parts)
        assert r.status_code == status and detail in r.json()["detail"], (detail, r.status_code, r.text[:400])
        assert r.headers["Content-Type"].startswith("application/problem+json")
    assert server.api("GET", "/v1/models/npy").status_code == 404
    assert artifact_files(server.data_dir) == before
    r = _npy_publish(server, meta(), b"weights", [x, y])
    assert r.status_code == 201, r.text
    assert sorted(artifact_files(server.data_dir)[0]) == sorted(list(before[0]) + [
        f"{h[:2]}/{h}" for h in (_sha(b"weights"), _sha(x), _sha(y))])
    # A sample file is served by digest like the artifact.
    assert server.api("GET", f"/v1/artifacts/sha256/{_sha(x)}").content == x
    # The start-up sweep keeps sample files a version references, and removes an old stray file.
    store = server.data_dir / "artifacts" / "sha256"
    stray = b"stray bytes"
    (store / _sha(stray)[:2]).mkdir(exist_ok=True)
    (store / _sha(stray)[:2] / _sha(stray)).write_bytes(stray)
    old = time.time() - 7200
    for h in (_sha(x), _sha(y), _sha(stray)):
        os.utime(store / h[:2] / h, (old, old))
    server.stop()
    server.start()
    assert not (store / _sha(stray)[:2] / _sha(stray)).exists(), "the sweep did not run"
    assert (store / _sha(x)[:2] / _sha(x)).read_bytes() == x and (store / _sha(y)[:2] / _sha(y)).exists()

    # The CLI: a file numpy wrote in Fortran order, and one that is not .npy, never leave the machine.
    np.save(workdir / "xf.npy", np.asfortranarray(np.arange(4, dtype="<f4").reshape(2, 2)))
    (workdir / "xt.npy").write_bytes(b"text")
    (workdir / "m.onnx").write_bytes(b"weights2")
    for f, why in (("xf.npy", "fortran_order True"), ("xt.npy", "not a NumPy .npy file")):
        m = model_meta("2.0.0")
        m["sample"] = {"inputs": {"x": f}, "outputs": {"y": [1, 2]}}
        (workdir / "meta.json").write_text(json.dumps(m))
        p = server.cli("models", "push", "--name", "npy", "--meta", workdir / "meta.json", "--no-progress",
                       workdir / "m.onnx")
        assert p.returncode != 0 and f in p.stderr and why in p.stderr, (p.returncode, p.stderr)
    assert server.api("GET", "/v1/models/npy/versions/2.0.0").status_code == 404

    # An .npz (numpy.savez): each tensor is the array of its name, sent as that array's .npy bytes.
    xa, ya = np.arange(4, dtype="<f4").reshape(1, 4) / 3, np.array([[0.5, 0.25]])
    np.savez(workdir / "s.npz", x=xa, y=ya)
    np.savez_compressed(workdir / "c.npz", x=xa, y=ya)
    m = model_meta("3.0.0")
    m["sample"] = {"inputs": {"x": "s.npz"}, "outputs": {"y": "s.npz"}}
    (workdir / "meta.json").write_text(json.dumps(m))
    p = server.cli("models", "push", "--name", "npy", "--meta", workdir / "meta.json", "--no-progress",
                   workdir / "m.onnx", output="json")
    assert p.returncode == 0, p.stderr
    sample = json.loads(p.stdout)["sample"]
    for name, arr in (("x", xa), ("y", ya)):
        want = _npy_bytes(arr)
        ref_ = sample["inputs" if name == "x" else "outputs"][name]
        assert ref_ == {"format": "npy", "sha256": _sha(want), "length": len(want)}, (name, ref_)
        assert server.api("GET", f"/v1/artifacts/sha256/{_sha(want)}").content == want
    m["version"], m["sample"] = "3.0.1", {"inputs": {"x": "c.npz"}, "outputs": {"y": "s.npz"}}
    (workdir / "meta.json").write_text(json.dumps(m))
    p = server.cli("models", "push", "--name", "npy", "--meta", workdir / "meta.json", "--no-progress",
                   workdir / "m.onnx")
    assert p.returncode != 0 and "c.npz" in p.stderr and "numpy.savez_compressed" in p.stderr, p.stderr


def test_cli_push_list_show_alias(server, workdir):
    art = workdir / "model.onnx"
    art.write_bytes(b"cli-weights" * 1000)
    metafile = workdir / "meta.json"
    metafile.write_text(json.dumps(model_meta("3.1.4", format=None, filename=None)))
    ci = server.make_token(["ci"])["token"]
    p = server.cli("models", "push", "--name", "cli-model", "--version", "3.1.4", "--format", "onnx",
                   "--meta", metafile, "--no-progress", art, token=ci, output="json")
    assert p.returncode == 0, f"stdout: {p.stdout}\nstderr: {p.stderr}"
    v = _ok(server.api("GET", "/v1/models/cli-model/versions/3.1.4"), 200)
    assert v["artifact"]["sha256"] == _sha(art.read_bytes()) and v["artifact"]["length"] == art.stat().st_size
    assert v["format"] == "onnx" and v["sample"] == model_meta()["sample"]
    assert server.api("GET", v["artifact"]["url"]).content == art.read_bytes()
    assert json.loads(p.stdout)["version"] == "3.1.4"

    # Pushing the same version again fails with the conflict exit code and keeps the original.
    art2 = workdir / "other.onnx"
    art2.write_bytes(b"different")
    p = server.cli("models", "push", "--name", "cli-model", "--version", "3.1.4", "--no-progress", "--no-self-test",
                   art2, token=ci)
    assert p.returncode == 5, (p.returncode, p.stderr)
    assert _ok(server.api("GET", "/v1/models/cli-model/versions/3.1.4"), 200)["artifact"] == v["artifact"]

    # Read access: read token is enough for list and show.
    read = server.make_token(["read"])["token"]
    out = _cli_json(server.cli("models", "list", token=read, output="json"))
    assert [(m["name"], m["latest_version"]) for m in out["items"]] == [("cli-model", "3.1.4")]
    shown = _cli_json(server.cli("models", "show", "cli-model@3.1.4", token=read, output="json"))
    assert shown["artifact"] == v["artifact"]
    # models show NAME: the model with its versions and aliases.
    shown = _cli_json(server.cli("models", "show", "cli-model", token=read, output="json"))
    assert shown["name"] == "cli-model" and [x["version"] for x in shown["versions"]] == ["3.1.4"]
    assert shown["aliases"] == {}
    p = server.cli("models", "show", "cli-model", token=read)
    assert p.returncode == 0 and "3.1.4" in p.stdout and "cli-model" in p.stdout, (p.returncode, p.stdout, p.stderr)
    p = server.cli("models", "show", "cli-model@9.9.9", token=read)
    assert p.returncode == 4 and "404" in p.stderr, (p.returncode, p.stderr)
    p = server.cli("models", "show", "no-such-model", token=read)
    assert p.returncode == 4, (p.returncode, p.stderr)

    p = server.cli("models", "alias", "set", "cli-model", "stable", "3.1.4", token=ci)
    assert p.returncode == 0, p.stderr
    assert _ok(server.api("GET", "/v1/models/cli-model/versions/stable"), 200)["version"] == "3.1.4"
    shown = _cli_json(server.cli("models", "show", "cli-model@stable", token=read, output="json"))
    assert shown["version"] == "3.1.4"
    assert _cli_json(server.cli("models", "show", "cli-model", token=read, output="json"))["aliases"] == \
        {"stable": "3.1.4"}
    p = server.cli("models", "alias", "rm", "cli-model", "stable", token=ci)
    assert p.returncode == 0, p.stderr
    assert_problem(server.api("GET", "/v1/models/cli-model/versions/stable"), 404)


# --- yank and self-test ---------------------------------------------------------------------
def test_a_yanked_version_is_kept_where_it_runs_and_refused_as_a_new_target(server):
    for v in ("1.0.0", "2.0.0"):
        _ok(publish(server, "det", f"det-{v}".encode(), meta=model_meta(v)))
    _ok(server.api("PUT", "/v1/models/det/aliases/prod", json={"version": "2.0.0"}), 200)
    dev = enroll_device(server, labels={"site": "north"})
    _ok(server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "1.0.0"}), 200)
    dep = {"name": "north", "model": "det", "selector": "site=north", "follow": "1.0.0"}
    _ok(server.api("POST", "/v1/deployments", json=dep))
    ci = server.make_token(["ci"], name="release-bot")["token"]

    v = _ok(server.api("PUT", "/v1/models/det/versions/2.0.0/yank", token=ci, json={"reason": "bad recall"}), 200)
    assert v["yanked"]["by"] == "release-bot" and v["yanked"]["reason"] == "bad recall" and v["yanked"]["at"]
    assert _ok(server.api("GET", "/v1/models/det/versions/2.0.0"), 200)["yanked"] == v["yanked"]
    listed = {x["version"]: x for x in _ok(server.api("GET", "/v1/models/det"), 200)["versions"]}
    assert listed["2.0.0"]["yanked"] == v["yanked"] and listed["1.0.0"]["yanked"] is None
    # Yanking again keeps who and when; a new reason replaces the old one.
    again = _ok(server.api("PUT", "/v1/models/det/versions/2.0.0/yank", json={"reason": "worse"}), 200)["yanked"]
    assert (again["at"], again["by"], again["reason"]) == (v["yanked"]["at"], "release-bot", "worse")

    # Nothing may newly target it: an alias, a deployment (by version or by an alias naming it), a
    # device assignment, one by selector. Each refusal names the version and the reason.
    refused = [
        server.api("PUT", "/v1/models/det/aliases/stable", json={"version": "2.0.0"}),
        server.api("POST", "/v1/deployments", json={**dep, "name": "south", "selector": "site=south",
                                                   "follow": "2.0.0"}),
        server.api("POST", "/v1/deployments", json={**dep, "name": "west", "selector": "site=west",
                                                   "follow": "prod"}),
        server.api("PATCH", "/v1/deployments/north", json={"follow": "prod"}),
        server.api("PUT", f"/v1/devices/{dev.id}/desired", json={"model": "det", "version": "prod"}),
        server.api("POST", "/v1/desired", json={"selector": "site=north", "model": "det", "version": "2.0.0"}),
    ]
    for r in refused:
        assert_problem(r, 409, "det version 2.0.0 is yanked (worse)")
    assert server.api("GET", "/v1/models/det").json()["aliases"] == {"prod": "2.0.0"}
    assert {d["name"] for d in list_all(server, "/v1/deployments")[0]} == {"north"}
    assert server.api("GET", f"/v1/devices/{dev.id}").json()["desired"][0]["version"] == "1.0.0"

    # Yanking what a device runs and a deployment follows: the device keeps it, the deployment
    # may still change what does not move it.
    _ok(server.api("PUT", "/v1/models/det/versions/1.0.0/yank", json={}), 200)
    tok = dev.authenticate(server)
    targets = server.api("GET", "/v1/tuf/director/targets.json", token=tok).json()["signed"]["targets"]
    assert [t["custom"]["version"] for t in targets.values()] == ["1.0.0"], targets
    image = server.api("GET", "/v1/tuf/image/targets.json").json()["signed"]["targets"]
    assert "models/det/1.0.0/model.onnx" in image and "models/det/2.0.0/model.onnx" in image
    _ok(server.api("PATCH", "/v1/deployments/north", json={"selector": "site=north,!retired"}), 200)

    # Unyanked, it may be targeted again.
    u = _ok(server.api("DELETE", "/v1/models/det/versions/2.0.0/yank", token=ci), 200)
    assert u["yanked"] is None
    _ok(server.api("PUT", "/v1/models/det/aliases/stable", json={"version": "2.0.0"}), 200)
    audit = [(e["action"], e["object_id"], e["detail"].get("reason"))
             for e in list_all(server, "/v1/audit", params={"action": "model"})[0] if "yank" in e["action"]]
    assert audit == [("model.unyank", "det@2.0.0", None), ("model.yank", "det@1.0.0", None),
                     ("model.yank", "det@2.0.0", "worse"), ("model.yank", "det@2.0.0", "bad recall")], audit


def test_yank_refusals(server, contract):
    check = contract.check_response
    _ok(publish(server, "det", b"d", meta=model_meta("1.0.0")))
    _ok(server.api("PUT", "/v1/models/det/aliases/prod", json={"version": "1.0.0"}), 200)
    read = server.make_token(["read"])["token"]
    y = "/v1/models/{name}/versions/{version}/yank"
    check("PUT", y, server.api("PUT", "/v1/models/det/versions/1.0.0/yank", json={"reason": "r"}), 200)
    check("DELETE", y, server.api("DELETE", "/v1/models/det/versions/1.0.0/yank"), 200)
    check("DELETE", y, server.api("DELETE", "/v1/models/det/versions/1.0.0/yank"), 200)  # idempotent
    r = check("PUT", y, server.api("PUT", "/v1/models/det/versions/prod/yank", json={}), 404)
    assert "not an alias" in r.json()["detail"]
    check("PUT", y, server.api("PUT", "/v1/models/det/versions/9.0.0/yank", json={}), 404)
    check("DELETE", y, server.api("DELETE", "/v1/models/none/versions/1.0.0/yank"), 404)
    check("PUT", y, server.api("PUT", "/v1/models/det/versions/1.0.0/yank", json={"reason": "x" * 501}), 400)
    check("PUT", y, server.api("PUT", "/v1/models/det/versions/1.0.0/yank", json={"why": "x"}), 400)
    check("PUT", y, server.api("PUT", "/v1/models/det/versions/1.0.0/yank", json={"reason": 1}), 400)
    check("PUT", y, server.api("PUT", "/v1/models/det/versions/1.0.0/yank", token=read, json={}), 403)
    check("DELETE", y, server.api("DELETE", "/v1/models/det/versions/1.0.0/yank", token=NO_TOKEN), 401)
    assert server.api("GET", "/v1/models/det/versions/1.0.0").json()["yanked"] is None


def test_a_release_without_a_sample_needs_no_self_test_said(server, workdir):
    r = publish(server, "st", b"weights", meta=model_meta("1.0.0", sample=None))
    assert_problem(r, 400, '"no_self_test": true')
    r = publish(server, "st", b"weights", meta=model_meta("1.0.0", sample=None, no_self_test=False))
    assert_problem(r, 400, "no sample")
    assert_problem(publish(server, "st", b"weights", meta=model_meta("1.0.0", no_self_test=True)), 400,
                   "drop one of them")
    assert_problem(server.api("GET", "/v1/models/st"), 404)
    v = _ok(publish(server, "st", b"weights", meta=model_meta("1.0.0", sample=None, no_self_test=True)))
    assert v["self_test"] is False and v["sample"] is None
    target = server.api("GET", "/v1/tuf/image/targets.json").json()["signed"]["targets"][v["target"]]
    assert target["custom"]["sample_sha256"] is None

    # The CLI: refused before it reads the file, unless --no-self-test.
    art = workdir / "big.bin"
    art.write_bytes(b"w" * 1000)
    p = server.cli("models", "push", "--name", "st", "--version", "1.1.0", "--no-progress", art)
    assert p.returncode == 2 and "--no-self-test" in p.stderr and "no sample" in p.stderr, p.stderr
    p = server.cli("models", "push", "--name", "st", "--version", "1.1.0", "--no-progress", "--no-self-test", art)
    assert p.returncode == 0, p.stderr
    assert server.api("GET", "/v1/models/st/versions/1.1.0").json()["self_test"] is False
    p = server.cli("models", "show", "st@1.1.0")
    assert p.returncode == 0 and "none (published with no_self_test)" in p.stdout, p.stdout


def test_cli_yank_unyank_and_show(server):
    _ok(publish(server, "det", b"d1", meta=model_meta("1.0.0")))
    _ok(publish(server, "det", b"d2", meta=model_meta("2.0.0")))
    p = server.cli("models", "yank", "det", "2.0.0", "--reason", "bad recall")
    assert p.returncode == 0 and "yanked" in p.stdout, p.stdout + p.stderr
    p = server.cli("models", "show", "det")
    row = next(line for line in p.stdout.splitlines() if line.startswith("2.0.0"))
    assert "yanked" in row and "yes" in row, p.stdout
    assert "yanked" not in next(line for line in p.stdout.splitlines() if line.startswith("1.0.0"))
    p = server.cli("models", "show", "det@2.0.0")
    assert "bad recall" in p.stdout and "by admin" in p.stdout, p.stdout
    p = server.cli("models", "alias", "set", "det", "stable", "2.0.0")
    assert p.returncode == 5 and "yanked (bad recall)" in p.stderr, (p.returncode, p.stderr)
    p = server.cli("models", "yank", "det", "3.0.0")
    assert p.returncode == 4 and "no version '3.0.0'" in p.stderr, (p.returncode, p.stderr)
    assert server.cli("models", "yank", "det", "not-a-version").returncode == 2
    p = server.cli("models", "unyank", "det", "2.0.0", output="json")
    assert p.returncode == 0 and json.loads(p.stdout)["yanked"] is None, p.stdout + p.stderr
    assert server.cli("models", "alias", "set", "det", "stable", "2.0.0").returncode == 0
