"""API tokens and scopes: 401 for a missing/unknown/revoked/expired token, 403 for a valid token
without the scope; tokens are shown once and listed without secrets."""

import time
import uuid

import pytest

from ganglion_harness import NO_TOKEN, PG_BINDIR, assert_problem, enroll_device, file_mode, run


def test_admin_token_file_is_private(server):
    tokfile = server.data_dir / "admin.token"
    assert server.admin_token.startswith("gna_")
    assert file_mode(tokfile) & 0o077 == 0, f"{tokfile} mode {oct(file_mode(tokfile))}"


def test_missing_and_bad_tokens_are_401(server):
    for token, headers in [
        (NO_TOKEN, None),
        ("gna_" + "0" * 40, None),
        ("not-a-token", None),
        (server.admin_token + "x", None),
        (server.admin_token[:-1], None),
        (NO_TOKEN, {"Authorization": "Basic YWRtaW46YWRtaW4="}),
        (NO_TOKEN, {"Authorization": "Bearer"}),
        (NO_TOKEN, {"Authorization": server.admin_token}),  # no scheme
    ]:
        r = server.api("GET", "/v1/devices", token=token, headers=headers)
        assert_problem(r, 401)


def test_token_created_shown_once_and_works(server):
    t = server.make_token(["read"], name="dashboard")
    assert t["token"].startswith("gna_")
    assert t["scopes"] == ["read"] and t["name"] == "dashboard"
    assert t["expires_at"] is None and t["revoked_at"] is None
    assert server.api("GET", "/v1/devices", token=t["token"]).status_code == 200
    r = server.api("GET", "/v1/tokens")
    assert r.status_code == 200
    listed = {x["id"]: x for x in r.json()["items"]}
    assert listed[t["id"]]["name"] == "dashboard"
    assert "token" not in listed[t["id"]]
    assert t["token"] not in r.text


def test_revoked_token_is_401(server):
    t = server.make_token(["operator"])
    assert server.api("GET", "/v1/devices", token=t["token"]).status_code == 200
    r = server.api("DELETE", f"/v1/tokens/{t['id']}")
    assert r.status_code == 204, r.text
    assert_problem(server.api("GET", "/v1/devices", token=t["token"]), 401)
    assert_problem(server.api("POST", "/v1/enroll-tokens", token=t["token"], json={}), 401)
    # revoking again is fine (idempotent); an unknown id is 404
    assert server.api("DELETE", f"/v1/tokens/{t['id']}").status_code == 204
    assert_problem(server.api("DELETE", f"/v1/tokens/{uuid.uuid4()}"), 404)
    listed = {x["id"]: x for x in server.api("GET", "/v1/tokens").json()["items"]}
    assert listed[t["id"]]["revoked_at"] is not None


@pytest.mark.slow
def test_expired_token_is_401(server):
    t = server.make_token(["admin"], expires_in=1)
    assert t["expires_at"] is not None
    short = server.make_token(["read"], expires_in=3600)
    time.sleep(2)
    assert_problem(server.api("GET", "/v1/devices", token=t["token"]), 401)
    assert server.api("GET", "/v1/devices", token=short["token"]).status_code == 200


def test_read_scope_is_read_only(server):
    read = server.make_token(["read"])["token"]
    assert server.api("GET", "/v1/devices", token=read).status_code == 200
    for method, path, body in [
        ("POST", "/v1/enroll-tokens", {}),
        ("DELETE", "/v1/devices/x", None),
        ("DELETE", f"/v1/devices/{uuid.uuid4()}", None),
        ("PATCH", f"/v1/devices/{uuid.uuid4()}", {"name": "n"}),
        ("GET", "/v1/tokens", None),
        ("POST", "/v1/tokens", {"name": "escalate", "scopes": ["admin"]}),
        ("GET", "/v1/audit", None),
        ("GET", "/v1/enroll-tokens", None),
    ]:
        r = server.api(method, path, token=read, json=body)
        assert_problem(r, 403)
    assert server.api("GET", "/v1/enroll-tokens").json()["items"] == []
    assert len(server.api("GET", "/v1/tokens").json()["items"]) == 2  # admin + read


def test_operator_and_ci_scopes(server):
    op = server.make_token(["operator"])["token"]
    ci = server.make_token(["ci"])["token"]
    # operator: devices and enrollment tokens, and reading
    assert server.api("POST", "/v1/enroll-tokens", token=op, json={}).status_code == 201
    assert server.api("GET", "/v1/enroll-tokens", token=op).status_code == 200
    assert server.api("GET", "/v1/devices", token=op).status_code == 200
    # but not tokens or the audit log
    assert_problem(server.api("GET", "/v1/tokens", token=op), 403)
    assert_problem(server.api("POST", "/v1/tokens", token=op, json={"name": "x", "scopes": ["read"]}), 403)
    assert_problem(server.api("GET", "/v1/audit", token=op), 403)
    # ci reads the inventory but does not manage enrollment
    assert server.api("GET", "/v1/devices", token=ci).status_code == 200
    assert_problem(server.api("POST", "/v1/enroll-tokens", token=ci, json={}), 403)


def test_401_carries_www_authenticate(server):
    r = server.api("GET", "/v1/devices", token=NO_TOKEN)
    assert r.status_code == 401
    assert "bearer" in r.headers.get("WWW-Authenticate", "").lower(), r.headers


def test_secrets_are_stored_hashed(server, pg, db):
    """A copy of the database does not hand out working credentials."""
    api = server.make_token(["admin"])["token"]
    enroll = server.make_enroll_token(max_uses=5)["token"]
    dev = enroll_device(server, enroll_token=enroll)
    device_token = dev.authenticate(server)
    dump = run([PG_BINDIR / "pg_dump", "--data-only", "-h", pg.sockdir, "-p", pg.port,
                "-U", pg.user, db]).stdout
    assert "devices" in dump or dev.id in dump, "pg_dump did not dump the ganglion tables"
    for secret in (server.admin_token, api, enroll, device_token):
        body = secret.split("_", 1)[1]
        assert body not in dump, f"a {secret[:4]} secret is stored in clear in the database"


def test_token_names_are_unique_among_live_tokens(server, pg, db):
    first = server.make_token(["read"], name="grafana")
    # a live token of that name: refused, naming it; nothing written
    before = len(server.api("GET", "/v1/tokens").json()["items"])
    p = assert_problem(server.api("POST", "/v1/tokens", json={"name": "grafana", "scopes": ["ci"]}), 409)
    assert "'grafana'" in p["detail"] and first["id"] in p["detail"], p
    assert len(server.api("GET", "/v1/tokens").json()["items"]) == before
    # once it is revoked, or expired, the name is free again
    assert server.api("DELETE", f"/v1/tokens/{first['id']}").status_code == 204
    second = server.make_token(["read"], name="grafana")
    pg.sql(f"UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = '{second['id']}'", db)
    third = server.make_token(["read"], name="grafana")
    assert_problem(server.api("POST", "/v1/tokens", json={"name": "grafana", "scopes": ["read"]}), 409, third["id"])
    # the CLI shows the refusal with its own conflict exit code
    p = server.cli("tokens", "create", "--name", "grafana", "--scope", "read")
    assert p.returncode != 0 and third["id"] in p.stderr, p.stderr


def test_the_migration_renames_live_duplicate_token_names(pg, db, gangliond):
    from test_migrations import MIGRATIONS, _apply_as_release
    _apply_as_release(pg, db, [m for m in MIGRATIONS if int(m.name[:4]) < 9])
    ids = {}
    for tag, created, extra in (("oldest", "2020-01-01", ""), ("later", "2020-02-01", ""),
                                ("latest", "2020-03-01", ""), ("revoked", "2020-04-01", "revoked_at"),
                                ("expired", "2020-05-01", "expires_at")):
        cols = "name, hash, scopes, created_at" + (f", {extra}" if extra else "")
        vals = f"'ci', '{uuid.uuid4().hex * 2}', ARRAY['ci'], '{created}'" + (", '2020-06-01'" if extra else "")
        ids[tag] = pg.sql(f"INSERT INTO api_tokens ({cols}) VALUES ({vals}) RETURNING id", db).splitlines()[0]
    s = gangliond()
    names = {t["id"]: t["name"] for t in s.api("GET", "/v1/tokens").json()["items"]}
    assert names[ids["oldest"]] == names[ids["revoked"]] == names[ids["expired"]] == "ci", names
    for tag in ("later", "latest"):
        assert names[ids[tag]] == "ci~" + ids[tag][:8], names
    renames = [e for e in s.api("GET", "/v1/audit", params={"action": "token.rename"}).json()["items"]]
    assert sorted(e["object_id"] for e in renames) == sorted([ids["later"], ids["latest"]]), renames
    assert all(e["actor"] == "migration" and e["detail"]["from"] == "ci" for e in renames), renames
