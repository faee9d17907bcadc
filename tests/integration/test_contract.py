"""api/openapi.yaml is the contract: the server serves exactly its routes, and what it answers
fits its schemas."""

import re
import uuid

from ganglion_harness import GANGLIOND, NO_TOKEN, assert_problem, enroll_device, publish, run


def _server_routes():
    p = run([GANGLIOND, "routes"], timeout=30)
    routes = set()
    for line in p.stdout.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"([A-Z]+)\s+(/\S*)", line.strip())
        assert m, f"unexpected line from 'gangliond routes': {line!r}"
        routes.add((m.group(1), m.group(2)))
    return routes


def test_routes_match_the_contract(contract):
    served = _server_routes()
    documented = contract.routes()
    # gangliond answers HEAD on every GET route; the contract declares it where clients use it.
    heads = {(m, p) for m, p in documented if m == "HEAD"}
    assert all(("GET", p) in served for _, p in heads), f"HEAD declared without a GET route: {heads}"
    documented -= heads
    missing = sorted(documented - served)
    undocumented = sorted(served - documented)
    assert not missing and not undocumented, (
        f"in openapi.yaml but not served: {missing}\nserved but not in openapi.yaml: {undocumented}"
    )


def test_contract_names_the_documented_routes(contract):
    # The contract itself: the v1 routes of docs/API.md, each with its responses.
    expected = {
        ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
        ("POST", "/v1/tokens"), ("GET", "/v1/tokens"), ("DELETE", "/v1/tokens/{id}"), ("GET", "/v1/whoami"),
        ("POST", "/v1/enroll-tokens"), ("GET", "/v1/enroll-tokens"), ("DELETE", "/v1/enroll-tokens/{id}"),
        ("POST", "/v1/enroll"), ("POST", "/v1/agent/auth/challenge"), ("POST", "/v1/agent/auth/token"),
        ("GET", "/v1/agent/self"), ("GET", "/v1/devices"), ("GET", "/v1/devices/{id}"),
        ("PATCH", "/v1/devices/{id}"), ("DELETE", "/v1/devices/{id}"), ("GET", "/v1/audit"),
        ("POST", "/v1/devices/{id}/rotate-token"),
        ("GET", "/v1/device-token-keys"), ("POST", "/v1/device-token-keys/rotate"),
        ("GET", "/v1/models"), ("GET", "/v1/models/{name}"), ("POST", "/v1/models/{name}/versions"),
        ("GET", "/v1/models/{name}/versions/{version}"), ("GET", "/v1/models/{name}/versions/{version}/sample"),
        ("GET", "/v1/models/{name}/versions/{version}/reference-profile"),
        ("PUT", "/v1/models/{name}/aliases/{alias}"), ("DELETE", "/v1/models/{name}/aliases/{alias}"),
        ("PUT", "/v1/models/{name}/versions/{version}/yank"), ("DELETE", "/v1/models/{name}/versions/{version}/yank"),
        ("GET", "/v1/artifacts/sha256/{digest}"), ("HEAD", "/v1/artifacts/sha256/{digest}"),
        ("GET", "/v1/tuf/image/{file}"), ("GET", "/v1/tuf/image/targets/models/{name}/{version}/{file}"),
        ("GET", "/v1/tuf/image/root/draft"), ("POST", "/v1/tuf/image/root"), ("POST", "/v1/tuf/image/targets"),
        ("POST", "/v1/tuf/image/release-draft"), ("POST", "/v1/tuf/image/roles/{role}"),
        ("GET", "/v1/keys"), ("POST", "/v1/keys/rotate"),
        ("POST", "/v1/agent/checkin"), ("PUT", "/v1/devices/{id}/desired"), ("DELETE", "/v1/devices/{id}/desired"),
        ("GET", "/v1/devices/{id}/events"), ("POST", "/v1/desired"), ("GET", "/v1/tuf/director/{file}"),
        ("GET", "/v1/tuf/director/root/draft"), ("POST", "/v1/tuf/director/root"),
        ("POST", "/v1/deployments"), ("GET", "/v1/deployments"), ("GET", "/v1/deployments/{name}"),
        ("PATCH", "/v1/deployments/{name}"), ("DELETE", "/v1/deployments/{name}"),
        ("GET", "/v1/deployments/{name}/plan"), ("GET", "/v1/rollouts"), ("GET", "/v1/rollouts/{id}"),
        ("GET", "/v1/rollouts/{id}/events"), ("POST", "/v1/rollouts/{id}/{action}"),
        ("GET", "/v1/gitops"), ("POST", "/v1/gitops/sync"), ("POST", "/v1/gitops/plan"),
        ("POST", "/v1/gitops/suspend"), ("POST", "/v1/gitops/resume"), ("POST", "/v1/gitops/hook"),
        ("POST", "/v1/agent/telemetry"), ("GET", "/v1/models/{name}/versions/{version}/drift"),
        ("POST", "/v1/alert-rules"), ("GET", "/v1/alert-rules"), ("DELETE", "/v1/alert-rules/{name}"),
        ("GET", "/v1/alerts"), ("GET", "/v1/models/{name}/canary"), ("GET", "/v1/status"),
        ("GET", "/ui"), ("GET", "/ui/"), ("GET", "/ui/{asset}"),
        ("GET", "/v1/devices/{id}/telemetry"),
    }
    assert contract.routes() == expected
    for path, item in contract.doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            body = op.get("requestBody")
            for media in (body or {}).get("content", {}).values():  # JSON, or the multipart upload
                schema = contract.resolve(media["schema"])
                assert schema.get("additionalProperties") is False, f"{method} {path}: body allows unknown fields"


def test_responses_fit_the_contract(server, contract):
    """Drive every route through its usual answers and check each against the schema."""
    s = server
    check = contract.check_response
    missing = str(uuid.uuid4())

    check("GET", "/healthz", s.api("GET", "/healthz", token=NO_TOKEN), 200)
    check("GET", "/readyz", s.api("GET", "/readyz", token=NO_TOKEN), 200)
    check("GET", "/metrics", s.api("GET", "/metrics", token=NO_TOKEN), 200)

    r = check("POST", "/v1/tokens", s.api("POST", "/v1/tokens", json={"name": "c", "scopes": ["read", "ci"],
                                                                     "expires_in": 600}), 201)
    tid = r.json()["id"]
    check("POST", "/v1/tokens", s.api("POST", "/v1/tokens", json={"name": 1, "scopes": ["read"]}), 400)
    check("POST", "/v1/tokens", s.api("POST", "/v1/tokens", token=NO_TOKEN, json={}), 401)
    check("POST", "/v1/tokens", s.api("POST", "/v1/tokens", token=r.json()["token"],
                                      json={"name": "x", "scopes": ["read"]}), 403)
    check("GET", "/v1/tokens", s.api("GET", "/v1/tokens"), 200)
    me = check("GET", "/v1/whoami", s.api("GET", "/v1/whoami", token=r.json()["token"]), 200).json()
    assert (me["id"], me["name"], me["scopes"]) == (tid, "c", ["read", "ci"]) and me["expires_at"], me
    check("GET", "/v1/whoami", s.api("GET", "/v1/whoami", token=NO_TOKEN), 401)
    check("DELETE", "/v1/tokens/{id}", s.api("DELETE", f"/v1/tokens/{tid}"), 204)
    check("GET", "/v1/whoami", s.api("GET", "/v1/whoami", token=r.json()["token"]), 401)  # revoked
    check("DELETE", "/v1/tokens/{id}", s.api("DELETE", f"/v1/tokens/{missing}"), 404)
    check("GET", "/v1/tokens", s.api("GET", "/v1/tokens"), 200)  # now with revoked_at set

    r = check("POST", "/v1/enroll-tokens", s.api("POST", "/v1/enroll-tokens",
                                                 json={"name": "n", "labels": {"site": "north"}, "max_uses": 3}), 201)
    et = r.json()
    check("POST", "/v1/enroll-tokens", s.api("POST", "/v1/enroll-tokens", json={}), 201)  # all defaults
    check("POST", "/v1/enroll-tokens", s.api("POST", "/v1/enroll-tokens", json={"max_uses": 0}), 400)
    check("GET", "/v1/enroll-tokens", s.api("GET", "/v1/enroll-tokens"), 200)

    dev = enroll_device(s, enroll_token=et["token"], name="contract", facts={"os": "linux"})
    check("POST", "/v1/enroll", s.api("POST", "/v1/enroll", token=NO_TOKEN,
                                      json={"token": et["token"], "public_key": dev.public_hex}), 409)
    check("POST", "/v1/enroll", s.api("POST", "/v1/enroll", token=NO_TOKEN,
                                      json={"token": "gne_nope", "public_key": dev.public_hex}), 401)
    check("POST", "/v1/enroll", s.api("POST", "/v1/enroll", token=NO_TOKEN,
                                      json={"token": et["token"], "public_key": "xy"}), 400)

    r = check("POST", "/v1/agent/auth/challenge", dev.challenge(s), 200)
    nonce = r.json()["nonce"]
    r = check("POST", "/v1/agent/auth/token", dev.exchange(s, nonce), 200)
    dtok = r.json()["token"]
    check("POST", "/v1/agent/auth/token", dev.exchange(s, nonce), 401)  # a replayed nonce
    check("POST", "/v1/agent/auth/challenge",
          s.api("POST", "/v1/agent/auth/challenge", token=NO_TOKEN, json={"device_id": missing}), 404)
    check("GET", "/v1/agent/self", s.api("GET", "/v1/agent/self", token=dtok), 200)
    check("GET", "/v1/agent/self", s.api("GET", "/v1/agent/self", token=NO_TOKEN), 401)
    check("GET", "/v1/whoami", s.api("GET", "/v1/whoami", token=dtok), 403)
    check("POST", "/v1/agent/checkin", s.api("POST", "/v1/agent/checkin", token=dtok, json={}), 200)

    check("GET", "/v1/devices", s.api("GET", "/v1/devices", params={"selector": "site=north", "limit": 1}), 200)
    check("GET", "/v1/devices", s.api("GET", "/v1/devices", params={"selector": "=x"}), 400)
    check("GET", "/v1/devices/{id}", s.api("GET", f"/v1/devices/{dev.id}"), 200)
    check("GET", "/v1/devices/{id}", s.api("GET", f"/v1/devices/{missing}"), 404)
    check("GET", "/v1/devices/{id}/events", s.api("GET", f"/v1/devices/{dev.id}/events"), 200)
    check("PATCH", "/v1/devices/{id}", s.api("PATCH", f"/v1/devices/{dev.id}", json={"labels": {"a": "b"}}), 200)
    check("PATCH", "/v1/devices/{id}", s.api("PATCH", f"/v1/devices/{dev.id}", json={"labels": {"a": 1}}), 400)
    other = enroll_device(s, name="other")
    check("PATCH", "/v1/devices/{id}", s.api("PATCH", f"/v1/devices/{other.id}", json={"name": "contract"}), 409)
    check("GET", "/v1/devices", s.api("GET", "/v1/devices", params={"name": "contract"}), 200)
    check("POST", "/v1/devices/{id}/rotate-token", s.api("POST", f"/v1/devices/{other.id}/rotate-token"), 200)
    check("POST", "/v1/devices/{id}/rotate-token", s.api("POST", f"/v1/devices/{missing}/rotate-token"), 404)
    keys, rotate = "/v1/device-token-keys", "/v1/device-token-keys/rotate"
    check("GET", keys, s.api("GET", keys), 200)
    check("GET", keys, s.api("GET", keys, token=dtok), 403)
    check("POST", rotate, s.api("POST", rotate, json={"retire_previous": "no"}), 400)
    check("POST", rotate, s.api("POST", rotate, token=dtok), 403)
    check("POST", rotate, s.api("POST", rotate), 200)  # no body; dtok's key verifies on
    check("GET", keys, s.api("GET", keys), 200)  # with a verifying key
    check("GET", "/v1/status", s.api("GET", "/v1/status"), 200)
    check("GET", "/v1/status", s.api("GET", "/v1/status", token=dtok), 403)
    check("DELETE", "/v1/devices/{id}", s.api("DELETE", f"/v1/devices/{dev.id}"), 200)
    check("POST", "/v1/agent/auth/challenge", dev.challenge(s), 403)  # decommissioned
    check("POST", "/v1/devices/{id}/rotate-token", s.api("POST", f"/v1/devices/{dev.id}/rotate-token"), 409)

    check("DELETE", "/v1/enroll-tokens/{id}", s.api("DELETE", f"/v1/enroll-tokens/{et['id']}"), 204)
    check("DELETE", "/v1/enroll-tokens/{id}", s.api("DELETE", f"/v1/enroll-tokens/{missing}"), 404)
    check("GET", "/v1/audit", s.api("GET", "/v1/audit", params={"limit": 3}), 200)
    check("GET", "/v1/audit", s.api("GET", "/v1/audit"), 200)
    check("GET", "/v1/audit", s.api("GET", "/v1/audit", token=dtok), 401)

    # HEAD on an artifact: GET's headers and status, no body.
    art = "/v1/artifacts/sha256/{digest}"
    assert publish(s, "contract", b"contract-bytes").status_code == 201
    digest = s.api("GET", "/v1/models/contract/versions/1.0.0").json()["artifact"]["sha256"]
    r = check("HEAD", art, s.api("HEAD", f"/v1/artifacts/sha256/{digest}"), 200)
    assert r.headers["Content-Length"] == str(len(b"contract-bytes")), r.headers
    assert r.headers["ETag"] == f'"sha256:{digest}"' and r.headers["Accept-Ranges"] == "bytes", r.headers
    check("HEAD", art, s.api("HEAD", f"/v1/artifacts/sha256/{digest}", headers={"If-None-Match": r.headers["ETag"]}),
          304)
    check("HEAD", art, s.api("HEAD", f"/v1/artifacts/sha256/{'0' * 64}"), 404)
    check("HEAD", art, s.api("HEAD", f"/v1/artifacts/sha256/{digest}", token=NO_TOKEN), 401)
    check("HEAD", art, s.api("HEAD", f"/v1/artifacts/sha256/{digest}", token=dtok), 401)  # decommissioned

    # GitOps off (test_gitops.py checks the answers of a working sync against the contract too).
    check("GET", "/v1/gitops", s.api("GET", "/v1/gitops"), 200)
    check("GET", "/v1/gitops", s.api("GET", "/v1/gitops", token=NO_TOKEN), 401)
    check("POST", "/v1/gitops/sync", s.api("POST", "/v1/gitops/sync"), 409)
    check("POST", "/v1/gitops/sync", s.api("POST", "/v1/gitops/sync", json={"force": 1}), 400)
    check("POST", "/v1/gitops/plan", s.api("POST", "/v1/gitops/plan", json={"ref": "main"}), 409)
    check("POST", "/v1/gitops/suspend", s.api("POST", "/v1/gitops/suspend"), 409)
    check("POST", "/v1/gitops/resume", s.api("POST", "/v1/gitops/resume", token=dtok), 401)
    check("POST", "/v1/gitops/hook", s.api("POST", "/v1/gitops/hook", token=NO_TOKEN, json={}), 404)


# --- the served routes, probed over HTTP ---------------------------------------------------------
_SAMPLE = {"id": None, "name": "probe", "version": "1.0.0", "alias": "stable", "digest": "0" * 64,
           "file": "root.json", "action": "pause", "asset": "app.js", "role": "ci"}
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _concrete(pattern):
    return re.sub(r"\{(\w+)\}", lambda m: _SAMPLE[m.group(1)] or str(uuid.uuid4()), pattern)


def _matches(pattern, path):
    return re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(pattern)), path) is not None


def test_served_routes_answer_by_method_over_http(server):
    """`gangliond routes` is what the contract test compares; this checks what the server does
    with it: every route answers its declared method (a routing 404 or a 405 would mean the table
    and the router disagree), every other method on a served path is 405 with an Allow header that
    lists exactly the declared ones, and paths that are not routes are 404 for every method."""
    served = _server_routes()
    assert len(served) >= 30, served
    for method, pattern in sorted(served):
        path = _concrete(pattern)
        declared = {m for m, p in served if _matches(p, path)}
        assert method in declared, (method, pattern, path)
        r = server.api(method, path, json={} if method in ("POST", "PUT", "PATCH") else None)
        routed = not (r.status_code == 404 and "no such endpoint" in r.text) and r.status_code != 405
        assert routed, f"{method} {path} (route {pattern}) -> {r.status_code} {r.text[:200]}"
        for other in _METHODS:
            if other in declared:
                continue
            r = server.api(other, path, json={} if other in ("POST", "PUT", "PATCH") else None)
            assert_problem(r, 405)
            allow = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
            assert allow == declared, f"{other} {path}: Allow {r.headers.get('Allow')!r}, declared {declared}"
    some_id = str(uuid.uuid4())
    for path in ("/", "/v1", "/v1/", "/v1/nothing", "/v1/devices/", f"/v1/devices/{some_id}/nothing",
                 f"/v1/devices/{some_id}/desired/x", "/healthz/x", "/v1/tuf/image/", "/v1/tuf/image/a/b/c",
                 "/v1/models/probe/versions/1.0.0/nothing", "/V1/devices", "/v2/devices"):
        for method in _METHODS:
            r = server.api(method, path, json={} if method in ("POST", "PUT", "PATCH") else None)
            assert_problem(r, 404, "no such endpoint")
