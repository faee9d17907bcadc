"""Rotating the key that signs device tokens (server/device_tokens.c), with two gangliond replicas
on one database and a real agent: after a rotation the new key signs on every replica while the
tokens the previous key signed keep working; retiring the previous key refuses them at their next
request on every replica, and the agent gets a new token with its enrolled key by itself. Tokens
of the release before key ids (gnd_v2, no key id) keep verifying across the upgrade."""

import datetime
import re
import time

from ganglion_harness import (
    Agent,
    assert_problem,
    enroll_device,
    sign_device_token,
    wait_for,
)
from test_migrations import MIGRATIONS, _apply_as_release

KEYS, ROTATE = "/v1/device-token-keys", "/v1/device-token-keys/rotate"


def _self(server, token):
    return server.api("GET", "/v1/agent/self", token=token)


def _checkin(server, token):
    return server.api("POST", "/v1/agent/checkin", token=token, json={"agent_version": "keys"})


def _states(server):
    r = server.api("GET", KEYS)
    assert r.status_code == 200, r.text
    return [(k["id"], k["state"]) for k in r.json()["items"]]


def _time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def test_device_token_key_rotation_across_replicas(gangliond, pg, db, workdir):
    a = gangliond(extra_args=["--agent-poll-interval", "1s"])
    b = gangliond(extra_args=["--agent-poll-interval", "1s"], admin_token=a.admin_token)
    agent = Agent(workdir / "ag", b.url)
    try:
        devs = [enroll_device(a) for _ in range(2)]
        old = devs[0].authenticate(a)
        # The first key signs as the release before key ids did: no key id.
        assert old.startswith("gnd_v2."), old
        assert _states(a) == [(1, "signing")]
        agent.enroll(a.make_enroll_token()["token"])
        agent.start()
        assert wait_for(lambda: "path=/v1/agent/checkin route=/v1/agent/checkin status=200" in b.log(10**8), 30, 0.2)

        # Only the admin scope rotates or lists the keys; nothing changes on a refusal.
        op = a.make_token(["operator", "read", "ci"])["token"]
        assert_problem(a.api("POST", ROTATE, token=op), 403)
        assert_problem(b.api("GET", KEYS, token=op), 403)
        assert_problem(a.api("POST", ROTATE, token=old), 403)
        p = a.cli("tokens", "rotate-device-key", token=op)
        assert p.returncode != 0 and "admin" in p.stderr.lower(), (p.stdout, p.stderr)
        for body in ({"retire_previous": "yes"}, {"retire": True}, []):
            assert_problem(a.api("POST", ROTATE, json=body), 400)
        assert _states(b) == [(1, "signing")]

        # Rotated on b: a signs with key 2 at once, and key 1's tokens still work on both.
        t0 = time.time()
        r = b.api("POST", ROTATE)
        assert r.status_code == 200 and r.json()["key_id"] == 2, r.text
        k1 = r.json()["keys"][1]
        assert (k1["id"], k1["state"]) == (1, "verifying"), r.json()
        # Verifies for as long as a token it signed may live (device-token-ttl, 1 h by default).
        assert abs(_time(k1["verify_until"]) - (t0 + 3600)) < 30, k1
        assert _states(a) == [(2, "signing"), (1, "verifying")]
        for s in (a, b):
            assert _self(s, old).status_code == 200
            assert _checkin(s, old).status_code == 200
        new = devs[0].authenticate(a)
        assert new.startswith(f"gnd_v3.2.{devs[0].id}."), new
        assert _self(b, new).status_code == 200
        other = devs[1].authenticate(b)
        assert other.startswith("gnd_v3.2."), other
        assert_problem(_self(b, new[:-1] + ("0" if new[-1] != "0" else "1")), 401, "malformed")
        key2 = pg.sql("SELECT secret FROM device_token_keys WHERE id = 2", db)

        # Retired from the CLI on a (a key that may have leaked): every token of keys 1 and 2 is
        # refused on both replicas at its next request; the agent on b re-authenticates by itself.
        before = len(b.log(10**8))
        agent_before = len(agent.log(10**8))
        p = a.cli("tokens", "rotate-device-key", "--retire-previous")
        assert p.returncode == 0, p.stderr
        assert "Device token key 3 signs" in p.stdout and "retired" in p.stdout, p.stdout
        for s in (b, a):
            for t in (old, new, other):
                assert_problem(_self(s, t), 401, "retired key")
            assert_problem(_checkin(s, other), 401, "retired key")
        # Signed with key 2's secret as it was: still refused (the key, not only its tokens, is gone).
        assert_problem(_self(b, sign_device_token(pg, db, devs[1].id, 0, time.time() + 60, 2, key2)), 401)
        fresh = devs[0].authenticate(b)
        assert fresh.startswith("gnd_v3.3.") and _self(a, fresh).status_code == 200, fresh
        # Retired keys' secrets are erased, the copy of key 1 the previous release read too.
        assert pg.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM device_token_keys"
                      " WHERE secret IS NOT NULL", db) == "3"
        assert pg.sql("SELECT count(*) FROM server_secrets WHERE name = 'device_token_hmac'", db) == "0"

        def recovered():
            log = b.log(10**8)[before:]
            refused = log.find("path=/v1/agent/checkin route=/v1/agent/checkin status=401")
            token = log.find("path=/v1/agent/auth/token route=/v1/agent/auth/token status=200", refused)
            return refused >= 0 and token >= 0 and re.search(
                r"path=/v1/agent/checkin route=/v1/agent/checkin status=(200|304)", log[token:])

        assert wait_for(recovered, 30, 0.2), b.log(10**8)[before:][-4000:]
        since = agent.log(10**8)[agent_before:]
        assert agent.running() and "event=checkin_failed" not in since, since[-3000:]

        # The CLI lists the keys; the audit log names both rotations and who made them.
        p = a.cli("tokens", "device-keys")
        assert p.returncode == 0, p.stderr
        rows = [line.split()[:2] for line in p.stdout.splitlines()[1:]]
        assert rows == [["3", "signing"], ["2", "retired"], ["1", "retired"]], p.stdout
        audit = a.api("GET", "/v1/audit", params={"action": "device_token_key.rotate"}).json()["items"]
        got = [(e["object_id"], e["detail"]["retire_previous"], e["detail"].get("retired"),
                e["detail"].get("verifying")) for e in audit]
        assert got == [("3", True, [1, 2], None), ("2", False, None, [1])], audit
        assert all(e["actor"] == audit[0]["actor"] and e["token_id"] for e in audit), audit

        # The replicas' NOTIFY connections are cut: until each is back and has read the keys
        # again, it asks the database, so a retirement made meanwhile is not missed.
        listening = ("FROM pg_stat_activity WHERE datname = current_database()"
                     " AND application_name = 'gangliond listener'")
        lost = lambda s: "event=notify_listen_lost" in s.log(10**8)
        pg.sql(f"SELECT pg_terminate_backend(pid) {listening}", db)
        assert wait_for(lambda: lost(a) and lost(b), 30), "the listeners did not notice the cut"
        for s in (a, b):
            assert _self(s, fresh).status_code == 200
        # A notification a replica cannot read makes it distrust its memory until it has read the
        # state again (its background thread, within a second): the database decides meanwhile,
        # and decides the same.
        for _ in range(3):
            pg.sql("NOTIFY gn_device_tokens, 'unreadable'", db)
            for s in (a, b):
                assert _self(s, fresh).status_code == 200
                assert_problem(_self(s, new), 401, "retired key")
        r = b.api("POST", ROTATE, json={"retire_previous": True})
        assert r.status_code == 200 and r.json()["key_id"] == 4, r.text
        for s in (a, b):
            assert_problem(_self(s, fresh), 401, "retired key")
        latest = devs[0].authenticate(b)
        assert latest.startswith("gnd_v3.4.") and _self(a, latest).status_code == 200, latest
        assert wait_for(lambda: pg.sql(f"SELECT count(*) {listening}", db) == "2", 60, 0.1)

        # A replica started after all this signs with key 4 and refuses the retired keys.
        c = gangliond(admin_token=a.admin_token)
        assert_problem(_self(c, old), 401, "retired key")
        assert_problem(_self(c, fresh), 401, "retired key")
        assert _self(c, latest).status_code == 200
        assert devs[1].authenticate(c).startswith("gnd_v3.4.")
    finally:
        problems = agent.stop(check=False)
        print(f"\n--- agent log ({agent.logfile}) ---\n{agent.log()[-8000:]}")
    assert not problems, problems


def test_tokens_of_the_previous_release_survive_the_upgrade(gangliond, pg, db):
    """The database of the release before key ids, with its key in server_secrets: after the
    upgrade that key is key 1, and the tokens it signed (gnd_v2, no key id) still verify."""
    before = [m for m in MIGRATIONS if int(m.name[:4]) < 20]
    _apply_as_release(pg, db, before)
    secret = "ab" * 32
    pg.sql(f"INSERT INTO server_secrets (name, secret) VALUES ('device_token_hmac', '{secret}')", db)
    s = gangliond(extra_args=["--housekeeping-interval", "3600"])  # woken below
    dev = enroll_device(s)
    assert pg.sql("SELECT secret FROM device_token_keys WHERE id = 1", db) == secret
    # What the previous release minted, byte for byte: the same key, the same form.
    minted = dev.authenticate(s)
    _, dev_id, gen, exp, _ = minted.split(".")
    assert minted == sign_device_token(pg, db, dev_id, gen, exp, secret=secret), minted
    issued = sign_device_token(pg, db, dev.id, 0, time.time() + 600, secret=secret)
    assert _self(s, issued).status_code == 200
    assert s.api("POST", ROTATE).status_code == 200
    assert _self(s, issued).status_code == 200  # verifies on through the overlap

    # Past the overlap (made so here rather than waited for): refused, and the housekeeping job
    # then retires the key and erases its secret, the previous release's copy too.
    pg.sql("UPDATE device_token_keys SET superseded_at = now() - interval '2 hours',"
           " verify_until = now() - interval '1 second' WHERE id = 1", db)
    assert wait_for(lambda: _self(s, issued).status_code == 401, 30, 0.05)
    assert_problem(_self(s, issued), 401, "retired key")
    assert _states(s) == [(2, "signing"), (1, "expired")]
    pg.sql("NOTIFY gn_jobs, 'auth_gc'", db)
    assert wait_for(lambda: _states(s) == [(2, "signing"), (1, "retired")], 30, 0.1), _states(s)
    assert pg.sql("SELECT count(*) FROM device_token_keys WHERE secret IS NOT NULL", db) == "1"
    assert pg.sql("SELECT count(*) FROM server_secrets WHERE name = 'device_token_hmac'", db) == "0"
    assert _self(s, dev.authenticate(s)).status_code == 200
