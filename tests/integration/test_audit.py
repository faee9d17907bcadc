"""The audit log: every change is recorded with who, which token and which request, newest
first, and the database refuses to rewrite history."""

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
