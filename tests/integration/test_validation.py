"""Bad request bodies get a clear 400/413 problem and change nothing."""

import json

import pytest

from ganglion_harness import NO_TOKEN, assert_problem, dumps, nested, new_key, public_hex


def _tokens(server):
    r = server.api("GET", "/v1/tokens")
    assert r.status_code == 200
    return r.json()["items"]


@pytest.mark.parametrize(
    "raw, mention",
    [
        (b'{"name": "x", "scopes": ["read"]', None),  # truncated
        (b'{"name": "x", "scopes": ["read"],}', None),  # trailing comma
        (b"{name: 'x'}", None),
        (b"", None),
        (b"not json at all", None),
        (b'"just a string"', None),  # not an object
        (b'[{"name": "x", "scopes": ["read"]}]', None),
        (b'{"name": "x\xff\xfe", "scopes": ["read"]}', None),  # invalid UTF-8
    ],
    ids=["truncated", "trailing-comma", "js-literal", "empty", "garbage", "string", "array", "bad-utf8"],
)
def test_malformed_json_is_400(server, raw, mention):
    before = _tokens(server)
    r = server.api("POST", "/v1/tokens", data=raw)
    assert_problem(r, 400, mention)
    assert _tokens(server) == before


@pytest.mark.parametrize(
    "body, mention",
    [
        ({"name": "x", "scopes": ["read"], "colour": "blue"}, "colour"),
        ({"name": 5, "scopes": ["read"]}, "name"),
        ({"name": "x", "scopes": "read"}, "scopes"),
        ({"name": "x", "scopes": [1]}, "scopes"),
        ({"name": "x", "scopes": ["read"], "expires_in": "soon"}, "expires_in"),
        ({"name": "x", "scopes": ["read"], "expires_in": 0}, "expires_in"),
        ({"scopes": ["read"]}, "name"),
        ({"name": "x"}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["root"]}, "scopes"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "n" * 65, "scopes": ["read"]}, "name"),
        ({"name": None, "scopes": ["read"]}, "name"),
    ],
    ids=["unknown-field", "name-int", "scopes-str", "scopes-int", "expires-str", "expires-0",
         "missing-name", "missing-scopes", "no-scopes", "bad-scope", "empty-name", "long-name", "null-name"],
)
def test_invalid_token_body_is_400_naming_the_field(server, body, mention):
    before = _tokens(server)
    assert_problem(server.api("POST", "/v1/tokens", json=body), 400, mention)
    assert _tokens(server) == before


@pytest.mark.parametrize(
    "body, mention",
    [
        ({"labels": {"site": 3}}, "labels"),
        ({"labels": ["site=north"]}, "labels"),
        ({"labels": {"bad key": "x"}}, None),
        ({"labels": {"": "x"}}, None),
        ({"labels": {"k": "v" * 254}}, None),
        ({"labels": {"k" * 64: "v"}}, None),
        ({"expires_in": -5}, "expires_in"),
        ({"maxuses": 3}, "maxuses"),
    ],
    ids=["label-int", "labels-array", "key-space", "key-empty", "value-long", "key-long", "expires-neg", "typo"],
)
def test_invalid_enroll_token_body_is_400(server, body, mention):
    assert_problem(server.api("POST", "/v1/enroll-tokens", json=body), 400, mention)
    assert server.api("GET", "/v1/enroll-tokens").json()["items"] == []


def test_duplicate_key_is_400(server):
    before = _tokens(server)
    raw = b'{"name": "a", "scopes": ["read"], "name": "b"}'
    assert_problem(server.api("POST", "/v1/tokens", data=raw), 400)
    raw = b'{"labels": {"site": "north", "site": "south"}}'
    assert_problem(server.api("POST", "/v1/enroll-tokens", data=raw), 400)
    assert _tokens(server) == before
    assert server.api("GET", "/v1/enroll-tokens").json()["items"] == []


def test_deep_nesting_is_400_but_moderate_nesting_is_fine(server):
    et = server.make_enroll_token(max_uses=3)

    def enroll(facts):
        body = {"token": et["token"], "public_key": public_hex(new_key()), "facts": facts}
        return server.api("POST", "/v1/enroll", token=NO_TOKEN, data=dumps(body))

    assert enroll(nested(10)).status_code == 201
    assert_problem(enroll(nested(100)), 400)
    # arrays count too
    deep_list = 1
    for _ in range(100):
        deep_list = [deep_list]
    assert_problem(enroll(deep_list), 400)
    # and a pathological one: far deeper than any stack should be asked to recurse
    raw = ('{"token":"%s","public_key":"%s","facts":' % (et["token"], public_hex(new_key()))
           + "[" * 100000 + "]" * 100000 + "}")
    assert_problem(server.api("POST", "/v1/enroll", token=NO_TOKEN, data=raw.encode()), 400)
    assert server.api("GET", "/healthz", token=NO_TOKEN).status_code == 200
    listed = {t["id"]: t for t in server.api("GET", "/v1/enroll-tokens").json()["items"]}
    assert listed[et["id"]]["uses"] == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_body_is_413(server, chunked):
    raw = b'{"name":"' + b"x" * (2 * 1024 * 1024) + b'"}'
    status, headers, body = server.raw_request(
        "POST", "/v1/enroll-tokens", raw, chunked=chunked,
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert status == 413, body[:300]
    assert headers.get("content-type", "").startswith("application/problem+json"), headers
    assert json.loads(body)["status"] == 413
    # the server is fine afterwards and nothing was created
    assert server.api("GET", "/v1/enroll-tokens").json()["items"] == []


def test_body_just_under_the_limit_is_accepted(server):
    # 1 MiB is the default max-body; a legitimate 900 KiB body must get through the size check
    facts = {"blob": "x" * (900 * 1024)}
    et = server.make_enroll_token()
    body = {"token": et["token"], "public_key": public_hex(new_key()), "facts": facts}
    r = server.api("POST", "/v1/enroll", token=NO_TOKEN, json=body)
    assert r.status_code == 201, r.text[:300]

