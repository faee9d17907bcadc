"""api/openapi.yaml is the contract: the server serves exactly its routes, and what it answers
fits its schemas."""

import re
import uuid

from ganglion_harness import GANGLIOND, NO_TOKEN, enroll_device, run


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
    missing = sorted(documented - served)
    undocumented = sorted(served - documented)
    assert not missing and not undocumented, (
        f"in openapi.yaml but not served: {missing}\nserved but not in openapi.yaml: {undocumented}"
    )


def test_contract_names_the_documented_routes(contract):
    # The contract itself: the v1 routes of docs/API.md, each with its responses.
    expected = {
        ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
        ("POST", "/v1/tokens"), ("GET", "/v1/tokens"), ("DELETE", "/v1/tokens/{id}"),
        ("POST", "/v1/enroll-tokens"), ("GET", "/v1/enroll-tokens"), ("DELETE", "/v1/enroll-tokens/{id}"),
        ("POST", "/v1/enroll"), ("POST", "/v1/agent/auth/challenge"), ("POST", "/v1/agent/auth/token"),
        ("GET", "/v1/agent/self"), ("GET", "/v1/devices"), ("GET", "/v1/devices/{id}"),
        ("PATCH", "/v1/devices/{id}"), ("DELETE", "/v1/devices/{id}"), ("GET", "/v1/audit"),
        ("GET", "/v1/models"), ("GET", "/v1/models/{name}"), ("POST", "/v1/models/{name}/versions"),
        ("GET", "/v1/models/{name}/versions/{version}"), ("GET", "/v1/models/{name}/versions/{version}/sample"),
        ("GET", "/v1/models/{name}/versions/{version}/reference-profile"),
        ("PUT", "/v1/models/{name}/aliases/{alias}"), ("DELETE", "/v1/models/{name}/aliases/{alias}"),
        ("GET", "/v1/artifacts/sha256/{digest}"), ("GET", "/v1/tuf/image/{file}"),
        ("GET", "/v1/tuf/image/root/draft"), ("POST", "/v1/tuf/image/root"),
        ("GET", "/v1/keys"), ("POST", "/v1/keys/rotate"),
        ("POST", "/v1/agent/checkin"), ("PUT", "/v1/devices/{id}/desired"), ("DELETE", "/v1/devices/{id}/desired"),
        ("GET", "/v1/devices/{id}/events"), ("POST", "/v1/desired"), ("GET", "/v1/tuf/director/{file}"),
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

    check("GET", "/healthz", s.api("GET", "/healthz", token=NO_TOKEN))
    check("GET", "/readyz", s.api("GET", "/readyz", token=NO_TOKEN))
    check("GET", "/metrics", s.api("GET", "/metrics", token=NO_TOKEN))

    r = s.api("POST", "/v1/tokens", json={"name": "c", "scopes": ["read", "ci"], "expires_in": 600})
    check("POST", "/v1/tokens", r)
    tid = r.json()["id"]
    check("POST", "/v1/tokens", s.api("POST", "/v1/tokens", json={"name": 1, "scopes": ["read"]}))
    check("POST", "/v1/tokens", s.api("POST", "/v1/tokens", token=NO_TOKEN, json={}))
    check("POST", "/v1/tokens", s.api("POST", "/v1/tokens", token=r.json()["token"],
                                      json={"name": "x", "scopes": ["read"]}))
    check("GET", "/v1/tokens", s.api("GET", "/v1/tokens"))
    check("DELETE", "/v1/tokens/{id}", s.api("DELETE", f"/v1/tokens/{tid}"))
    check("DELETE", "/v1/tokens/{id}", s.api("DELETE", f"/v1/tokens/{missing}"))
    check("GET", "/v1/tokens", s.api("GET", "/v1/tokens"))  # now with revoked_at set

    r = s.api("POST", "/v1/enroll-tokens", json={"name": "n", "labels": {"site": "north"}, "max_uses": 3})
    check("POST", "/v1/enroll-tokens", r)
    et = r.json()
    check("POST", "/v1/enroll-tokens", s.api("POST", "/v1/enroll-tokens", json={}))
    check("GET", "/v1/enroll-tokens", s.api("GET", "/v1/enroll-tokens"))

    dev = enroll_device(s, enroll_token=et["token"], name="contract", facts={"os": "linux"})
    r = s.api("POST", "/v1/enroll", token=NO_TOKEN, json={"token": et["token"], "public_key": dev.public_hex})
    check("POST", "/v1/enroll", r)  # 409
    r = s.api("POST", "/v1/enroll", token=NO_TOKEN, json={"token": "gne_nope", "public_key": dev.public_hex})
    check("POST", "/v1/enroll", r)  # 401

    r = dev.challenge(s)
    check("POST", "/v1/agent/auth/challenge", r)
    nonce = r.json()["nonce"]
    r = dev.exchange(s, nonce)
    check("POST", "/v1/agent/auth/token", r)
    dtok = r.json()["token"]
    check("POST", "/v1/agent/auth/token", dev.exchange(s, nonce))  # 401 replay
    check("POST", "/v1/agent/auth/challenge",
          s.api("POST", "/v1/agent/auth/challenge", token=NO_TOKEN, json={"device_id": missing}))
    check("GET", "/v1/agent/self", s.api("GET", "/v1/agent/self", token=dtok))
    check("GET", "/v1/agent/self", s.api("GET", "/v1/agent/self", token=NO_TOKEN))

    check("GET", "/v1/devices", s.api("GET", "/v1/devices", params={"selector": "site=north", "limit": 1}))
    check("GET", "/v1/devices", s.api("GET", "/v1/devices", params={"selector": "=x"}))
    check("GET", "/v1/devices/{id}", s.api("GET", f"/v1/devices/{dev.id}"))
    check("GET", "/v1/devices/{id}", s.api("GET", f"/v1/devices/{missing}"))
    check("PATCH", "/v1/devices/{id}", s.api("PATCH", f"/v1/devices/{dev.id}", json={"labels": {"a": "b"}}))
    check("PATCH", "/v1/devices/{id}", s.api("PATCH", f"/v1/devices/{dev.id}", json={"labels": {"a": 1}}))
    check("DELETE", "/v1/devices/{id}", s.api("DELETE", f"/v1/devices/{dev.id}"))
    check("POST", "/v1/agent/auth/challenge", dev.challenge(s))  # 403

    check("DELETE", "/v1/enroll-tokens/{id}", s.api("DELETE", f"/v1/enroll-tokens/{et['id']}"))
    check("GET", "/v1/audit", s.api("GET", "/v1/audit", params={"limit": 3}))
    check("GET", "/v1/audit", s.api("GET", "/v1/audit"))
