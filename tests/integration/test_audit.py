"""The audit log: every change is recorded with who, which token and which request, newest
first, and the database refuses to rewrite history."""

import json

import pytest

from ganglion_harness import NO_TOKEN, assert_problem, list_all, new_key, public_hex


def _change(server, method, path, token, json=None, ok=(200, 201, 204)):
    r = server.api(method, path, token=token, json=json)
    assert r.status_code in ok, f"{method} {path} -> {r.status_code} {r.text}"
    rid = r.headers.get("X-Request-Id")
    assert rid
    return r, rid


def test_every_change_is_audited(server):
    alice = server.make_token(["admin"], name="alice")
    bob = server.make_token(["operator"], name="bob")
    A, B = alice["token"], bob["token"]
    expected = []  # (action, object_id, request_id, token_id or None)

    r, rid = _change(server, "POST", "/v1/tokens", A, {"name": "ci-bot", "scopes": ["ci"]})
    ci_id = r.json()["id"]
    expected.append(("token.create", ci_id, rid, alice["id"]))
    r, rid = _change(server, "DELETE", f"/v1/tokens/{ci_id}", A)
    expected.append(("token.revoke", ci_id, rid, alice["id"]))

    r, rid = _change(server, "POST", "/v1/enroll-tokens", B, {"labels": {"site": "north"}, "max_uses": 2})
    et = r.json()
    expected.append(("enroll_token.create", et["id"], rid, bob["id"]))

    r = server.api("POST", "/v1/enroll", token=NO_TOKEN,
                   json={"token": et["token"], "public_key": public_hex(new_key()), "name": "cam"})
    assert r.status_code == 201, r.text
    dev_id = r.json()["device_id"]
    expected.append(("device.enroll", dev_id, r.headers["X-Request-Id"], None))

    r, rid = _change(server, "PATCH", f"/v1/devices/{dev_id}", B, {"labels": {"floor": "2"}})
    expected.append(("device.update", dev_id, rid, bob["id"]))
    r, rid = _change(server, "DELETE", f"/v1/enroll-tokens/{et['id']}", B)
    expected.append(("enroll_token.revoke", et["id"], rid, bob["id"]))
    r, rid = _change(server, "DELETE", f"/v1/devices/{dev_id}", A)
    expected.append(("device.decommission", dev_id, rid, alice["id"]))

    # reads and refused requests are not changes
    server.api("GET", "/v1/devices", token=B)
    server.api("PATCH", f"/v1/devices/{dev_id}", token=B, json={"labels": {"bad key": "x"}})

    entries, _ = list_all(server, "/v1/audit", token=A)
    by_rid = {}
    for e in entries:
        assert e["request_id"] not in by_rid or e["request_id"] is None, f"two entries for one request: {e}"
        by_rid[e["request_id"]] = e
    for action, obj, rid, tok in expected:
        assert rid in by_rid, f"no audit entry for {action} (request {rid}); entries: {entries}"
        e = by_rid[rid]
        assert e["action"] == action, e
        assert e["object_id"] == obj, e
        assert e["object_type"], e
        assert isinstance(e["actor"], str) and e["actor"], e
        assert e["at"].endswith("Z"), e
        if tok is not None:
            assert e["token_id"] == tok, e
    # who did it is visible: alice's entries share one actor, bob's another
    actors = {tok: {by_rid[rid]["actor"] for a, o, rid, t in expected if t == tok}
              for tok in (alice["id"], bob["id"])}
    assert len(actors[alice["id"]]) == 1 and len(actors[bob["id"]]) == 1, actors
    assert actors[alice["id"]] != actors[bob["id"]], actors
    # newest first
    ours = [e for e in entries if e["request_id"] in {x[2] for x in expected}]
    assert [e["request_id"] for e in ours] == [x[2] for x in reversed(expected)]
    # nothing for the read or the refused PATCH
    assert sum(1 for e in entries if e["action"] == "device.update") == 1


def test_audit_pagination_newest_first(server):
    made = [server.make_token(["read"], name=f"p{i}")["id"] for i in range(12)]
    all_items, _ = list_all(server, "/v1/audit")
    paged, pages = list_all(server, "/v1/audit", limit=5)
    assert [e["id"] for e in paged] == [e["id"] for e in all_items]
    assert pages >= 3
    # the tokens' creations come back newest first, on one page or across several
    created = [e["object_id"] for e in paged if e["action"] == "token.create" and e["object_id"] in made]
    assert created == list(reversed(made))


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET action = 'nothing.happened'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
])
def test_audit_log_is_append_only_in_the_database(server, pg, db, statement):
    server.make_token(["read"], name="witness")
    count = pg.sql("SELECT count(*) FROM audit_log", db)
    assert int(count) >= 1
    r = pg.psql(statement, db, check=False)
    assert r.returncode != 0, f"{statement!r} succeeded: {r.stdout}"
    assert "ERROR" in r.stderr, r.stderr
    assert pg.sql("SELECT count(*) FROM audit_log", db) == count
    assert pg.sql("SELECT count(*) FROM audit_log WHERE action = 'nothing.happened'", db) == "0"
    actions = [e["action"] for e in list_all(server, "/v1/audit")[0]]
    assert "token.create" in actions


def test_audit_needs_admin(server):
    op = server.make_token(["operator"])["token"]
    assert_problem(server.api("GET", "/v1/audit", token=op), 403)
    assert_problem(server.api("GET", "/v1/audit", token=NO_TOKEN), 401)


def _ids(server, **params):
    return [e["id"] for e in list_all(server, "/v1/audit", params=params)[0]]


def test_audit_filters_by_actor_action_object_and_time(server, pg, db):
    alice, bob = server.make_token(["admin"], name="alice"), server.make_token(["operator"], name="bob")
    r, _ = _change(server, "POST", "/v1/tokens", alice["token"], {"name": "ci-bot", "scopes": ["ci"]})
    ci = r.json()["id"]
    _change(server, "DELETE", f"/v1/tokens/{ci}", alice["token"])
    et = _change(server, "POST", "/v1/enroll-tokens", bob["token"], {"labels": {"site": "x"}})[0].json()
    # Three entries with known times, an hour before and after midnight UTC of 2021-01-01.
    for at, action in (("2020-12-31T23:00:00Z", "old.one"), ("2021-01-01T00:00:00Z", "old.two"),
                       ("2021-01-01T01:00:00Z", "old.three")):
        pg.sql(f"INSERT INTO audit_log (at, actor, action, object_type, object_id) "
               f"VALUES ('{at}', 'controller', '{action}', 'thing', 't1')", db)
    entries = {e["id"]: e for e in list_all(server, "/v1/audit")[0]}

    def want(pred):
        return sorted((i for i, e in entries.items() if pred(e)), reverse=True)

    by_alice = want(lambda e: e["token_id"] == alice["id"])
    assert len(by_alice) == 2  # ci-bot's creation and revocation
    # actor: a token's name, the actor as shown, or the token's id
    for who in ("alice", "token:alice", alice["id"]):
        assert _ids(server, actor=who) == by_alice, who
    assert _ids(server, actor="controller") == want(lambda e: e["actor"] == "controller")
    assert _ids(server, actor="nobody") == []
    # action: exact, or its group before the dot
    assert _ids(server, action="token.revoke") == want(lambda e: e["action"] == "token.revoke")
    assert _ids(server, action="token") == want(lambda e: e["action"] in ("token.create", "token.revoke"))
    assert len(_ids(server, action="token")) == 5 and _ids(server, action="token.rev") == []
    # object: the id alone, or type/id
    assert _ids(server, object=ci) == _ids(server, object=f"token/{ci}") == want(lambda e: e["object_id"] == ci)
    assert len(_ids(server, object=ci)) == 2
    assert _ids(server, object=f"enroll_token/{et['id']}") == want(lambda e: e["object_id"] == et["id"])
    # since <= at < until; offsets and dates are understood
    old = {e["action"]: i for i, e in entries.items() if e["action"].startswith("old.")}
    assert _ids(server, since="2021-01-01T00:00:00Z", until="2021-01-01T01:00:00Z") == [old["old.two"]]
    assert _ids(server, until="2021-01-01") == [old["old.one"]]
    assert _ids(server, since="2020-12-31T23:30:00-01:00", until="2021-01-01T02:00:00.5+01:00") == \
        [old["old.three"]]
    assert _ids(server, since="2021-01-01T00:00:00.000001Z", until="2022-01-01") == [old["old.three"]]
    assert _ids(server, since="2022-01-01") == want(lambda e: not e["action"].startswith("old."))
    # filters combine, and pages follow them
    assert _ids(server, actor="controller", action="old", since="2021-01-01") == [old["old.three"], old["old.two"]]
    paged, pages = list_all(server, "/v1/audit", params={"actor": "alice"}, limit=1)
    assert [e["id"] for e in paged] == by_alice and pages >= 2


@pytest.mark.parametrize("params, name", [
    ({"since": "yesterday"}, "since"), ({"until": "2021-02-30"}, "until"), ({"since": "2021-01-01T25:00:00Z"}, "since"),
    ({"since": "2021-01-01T10:00:00"}, "since"), ({"until": "2021-01-01T10:00:00+0100"}, "until"),
    ({"since": "2021-1-1"}, "since"), ({"since": "2021-01-01T00:00:00Z", "until": "2020-01-01"}, "since"),
    ({"actor": ""}, "actor"), ({"action": "a" * 201}, "action"), ({"object": ""}, "object"),
])
def test_audit_filters_refuse_bad_values_naming_them(server, params, name):
    assert_problem(server.api("GET", "/v1/audit", params=params), 400, f"'{name}'")


def test_cli_audit_filters(server):
    server.make_token(["read"], name="reader")
    p = server.cli("audit", "list", "--actor", "admin", "--action", "token.create", "--since", "1h", output="json")
    assert p.returncode == 0, p.stderr
    items = json.loads(p.stdout)["items"]
    assert [e["detail"]["name"] for e in items] == ["reader"], items
    p = server.cli("audit", "list", "--object", "token/nope", "--until", "2021-01-01")
    assert p.returncode == 0 and "reader" not in p.stdout, p.stdout + p.stderr
    assert server.cli("audit", "list", "--since", "1h", "--until", "10m", output="json").returncode == 0
    p = server.cli("audit", "list", "--since", "soon")
    assert p.returncode == 2 and "--since" in p.stderr and "'soon'" in p.stderr, p.stderr
    p = server.cli("audit", "list", "--until", "2021-13-01")
    assert p.returncode != 0 and "'until'" in p.stderr, p.stderr
