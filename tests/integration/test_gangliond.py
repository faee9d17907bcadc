"""gangliond as an operator runs it (README "Running gangliond", the configuration table):
`migrate`, SIGINT, `shutdown-grace`, the data-dir lock, `log-file` (and its reopening on SIGHUP),
`connection-timeout`, `per-ip-connection-limit`, `threads` / `db-pool-size`, `max-json-depth`."""

import os
import signal
import socket
import subprocess
import threading
import time

from ganglion_harness import (
    GANGLIOND,
    NO_TOKEN,
    SRCDIR,
    assert_problem,
    child_env,
    enroll_device,
    free_port,
    metric_value,
    model_meta,
    multipart,
    nested,
    new_key,
    parse_metrics,
    public_hex,
    run,
    wait_for,
)


def _migrations(pg, db):
    out = pg.sql("SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') FROM schema_migrations", db)
    return [int(v) for v in out.split(",") if v]


def test_migrate_applies_the_schema_and_exits(pg, db, workdir):
    cmd = [GANGLIOND, "--data-dir", workdir / "data", "--database-url", pg.dsn(db), "migrate"]
    p = run(cmd, check=False, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "event=migrated" in p.stderr, p.stderr
    applied = _migrations(pg, db)
    files = sorted(int(f.name[:4]) for f in (SRCDIR / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))
    assert applied and applied == files, (applied, files)
    # Idempotent: nothing to do the second time, same rows.
    checksums = pg.sql("SELECT string_agg(checksum, ',' ORDER BY version) FROM schema_migrations", db)
    p = run(cmd, check=False, timeout=120)
    assert p.returncode == 0, p.stderr
    assert pg.sql("SELECT string_agg(checksum, ',' ORDER BY version) FROM schema_migrations", db) == checksums
    # migrate does not serve and mints no admin token.
    assert not (workdir / "data" / "admin.token").exists()
    # An applied migration whose recorded checksum differs (its file was edited after release):
    # migrate and serve both refuse.
    pg.sql("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1", db)
    p = run(cmd, check=False, timeout=120)
    assert p.returncode != 0 and "checksum" in (p.stderr + p.stdout).lower(), p.stderr


def test_sigint_stops_like_sigterm(gangliond):
    s = gangliond()
    assert s.api("GET", "/v1/devices").status_code == 200
    s.stop(sig=signal.SIGINT)  # exit status 0, no sanitizer report
    log = s.log()
    assert "event=shutdown signal=INT" in log and "event=stopped" in log, log[-2000:]


def test_shutdown_grace_bounds_the_wait_for_requests_in_flight(gangliond):
    """An upload that stalls mid-body: SIGTERM waits for it at most shutdown-grace (2 s here),
    then gangliond stops anyway, and cleanly."""
    s = gangliond(extra_args=["--shutdown-grace", "2s"])
    body, ctype = multipart(model_meta("1.0.0"), b"m" * 200_000)
    head = (f"POST /v1/models/stall/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.admin_token}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    conn = socket.create_connection(("127.0.0.1", s.port))
    try:
        conn.sendall(head + body[:1000])
        assert wait_for(lambda: any((s.data_dir / "artifacts" / "tmp").iterdir())
                        if (s.data_dir / "artifacts" / "tmp").exists() else False, 60, 0.02), "upload never started"
        t = time.monotonic()
        s.stop()  # SIGTERM; exit status 0 within STOP_TIMEOUT, no sanitizer report
        took = time.monotonic() - t
    finally:
        conn.close()
    assert 1.5 <= took < 20, f"stopped {took:.1f} s after SIGTERM with shutdown-grace 2s"
    assert "event=shutdown signal=TERM grace_s=2" in s.log()


def test_data_dir_is_locked_against_a_second_gangliond(gangliond):
    a = gangliond()
    b = gangliond(data_dir=a.data_dir, wait=False)
    assert b.proc.wait(60) != 0, "a second gangliond started on the same data dir"
    b.start_failed = True  # expected; the teardown need not complain
    assert "is in use by another gangliond" in b.log(), b.log()
    assert a.api("GET", "/v1/devices").status_code == 200


def test_log_file_and_its_reopening_on_sighup(gangliond, workdir):
    logfile = workdir / "gangliond.log"
    s = gangliond(extra_args=["--log-file", str(logfile)])
    r = s.api("GET", "/v1/devices")
    rid = r.headers["X-Request-Id"]
    assert wait_for(lambda: logfile.exists() and f"req={rid}" in logfile.read_text(), 30), "request not in log-file"
    assert f"req={rid}" not in s.log(), "with log-file the lines still go to stderr"
    # logrotate: move the file away, SIGHUP, and the next lines go to a new file of that name.
    rotated = workdir / "gangliond.log.1"
    os.rename(logfile, rotated)
    s.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: logfile.exists(), 30, 0.05), "log-file not reopened after SIGHUP"
    r = s.api("GET", "/v1/devices")
    rid2 = r.headers["X-Request-Id"]
    assert wait_for(lambda: f"req={rid2}" in logfile.read_text(), 30), logfile.read_text()[-2000:]
    assert f"req={rid2}" not in rotated.read_text()


def _closed_by_peer(sock, timeout):
    """Waits up to timeout for the server to close sock; returns the seconds it took, or None."""
    sock.settimeout(timeout)
    t = time.monotonic()
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return None
    except ConnectionResetError:
        return time.monotonic() - t
    return time.monotonic() - t if data == b"" or data.startswith(b"HTTP/1.1 408") else None


def test_connection_timeout_closes_idle_connections(gangliond):
    s = gangliond(extra_args=["--connection-timeout", "2s"])
    idle = socket.create_connection(("127.0.0.1", s.port))
    try:
        took = _closed_by_peer(idle, 60)
    finally:
        idle.close()
    assert took is not None, "an idle connection was not closed within 60 s (connection-timeout 2s)"
    assert took >= 1.0, f"closed after {took:.1f} s, before the 2 s timeout"
    # The server still serves new connections (the session's pooled ones were cut too).
    status, _, _ = s.raw_request("GET", "/healthz")
    assert status == 200


def test_per_ip_connection_limit(gangliond):
    s = gangliond(extra_args=["--per-ip-connection-limit", "3"])
    held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]
    try:
        # Wait until the server holds all three (accepted), then a fourth is closed at once.
        fourth = socket.create_connection(("127.0.0.1", s.port))
        try:
            fourth.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            fourth.settimeout(30)
            try:
                answer = fourth.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/1.1 200"), "a fourth connection from one address was served"
        finally:
            fourth.close()
    finally:
        for h in held:
            h.close()
    # Once they are closed, connections are accepted again.
    assert wait_for(lambda: _healthz_ok(s), 30, 0.1), "no connection accepted after the others closed"


def _healthz_ok(s):
    try:
        return s.api("GET", "/healthz", token=NO_TOKEN, timeout=5).status_code == 200
    except Exception:
        return False


def _threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def test_threads_and_db_pool_size(gangliond):
    small = gangliond(extra_args=["--threads", "2", "--db-pool-size", "2"])
    large = gangliond(extra_args=["--threads", "6", "--db-pool-size", "5"])
    m = parse_metrics(small.api("GET", "/metrics", token=NO_TOKEN).text)
    assert metric_value(m, "gangliond_db_pool_connections") <= 2
    # 4 more HTTP worker threads with --threads 6 than with --threads 2.
    assert _threads(large.proc.pid) - _threads(small.proc.pid) >= 4, (_threads(large.proc.pid), _threads(small.proc.pid))
    # The small pool serves more concurrent requests than it has connections: they wait, none fails.
    results = []

    def go():
        for _ in range(10):
            results.append(small.api("GET", "/v1/devices").status_code)

    workers = [threading.Thread(target=go) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert results == [200] * 80, sorted(set(results))
    m = parse_metrics(small.api("GET", "/metrics", token=NO_TOKEN).text)
    assert metric_value(m, "gangliond_db_pool_connections") <= 2
    assert metric_value(large_metrics := parse_metrics(large.api("GET", "/metrics", token=NO_TOKEN).text),
                        "gangliond_db_pool_connections") <= 5, large_metrics
    # Out of range: refused at start-up with exit status 2.
    for bad in (["--threads", "1"], ["--db-pool-size", "0"]):
        p = subprocess.run([str(GANGLIOND), "--data-dir", str(small.workdir / "x"), *bad], capture_output=True,
                           text=True, timeout=60, env=child_env())
        assert p.returncode == 2 and bad[0][2:] in p.stderr, (bad, p.returncode, p.stderr)


def test_max_json_depth(gangliond):
    s = gangliond(extra_args=["--max-json-depth", "6"])
    et = s.make_enroll_token(max_uses=5)

    def enroll(facts):
        body = {"token": et["token"], "public_key": public_hex(new_key()), "facts": facts}
        return s.api("POST", "/v1/enroll", token=NO_TOKEN, json=body)

    # The body object is one level, "facts" another: facts nested 5 deep is a depth of 6.
    r = enroll(nested(4))
    assert r.status_code == 201, r.text
    assert_problem(enroll(nested(6)), 400, "deep")
    assert_problem(enroll([[[[[[[1]]]]]]]), 400, "deep")
    # The default (32) takes what 6 refuses.
    d = gangliond(admin_token=s.admin_token)
    et2 = d.make_enroll_token()
    r = d.api("POST", "/v1/enroll", token=NO_TOKEN,
              json={"token": et2["token"], "public_key": public_hex(new_key()), "facts": nested(20)})
    assert r.status_code == 201, r.text


# --- start-up failures say what they are (issue 14) ---------------------------------------------
def _start_fails(cmd, *want):
    """Runs gangliond expecting a start-up failure; returns its stderr after checking that it names
    each of want and does not blame another gangliond."""
    p = run(cmd, check=False, timeout=60)
    assert p.returncode != 0, p.stderr
    for w in want:
        assert w in p.stderr, p.stderr
    assert "in use by another gangliond" not in p.stderr, p.stderr
    return p.stderr


def test_a_data_dir_that_is_a_file_is_said_so(pg, db, workdir):
    f = workdir / "state"
    f.write_text("not a directory")
    base = [GANGLIOND, "--listen", f"127.0.0.1:{free_port()}", "--database-url", pg.dsn(db)]
    _start_fails(base + ["--data-dir", f], f"data-dir {f} is not a directory (a file is there)")
    _start_fails(base + ["--data-dir", f / "sub"], f"cannot create data-dir {f / 'sub'}: Not a directory")


def test_a_data_dir_on_a_read_only_file_system_is_said_so(pg, db, workdir):
    ro = workdir / "ro"
    (ro / "data").mkdir(parents=True)
    cmd = [GANGLIOND, "--listen", f"127.0.0.1:{free_port()}", "--database-url", pg.dsn(db)]
    # A read-only bind mount in a mount namespace of its own (a user namespace too when not root).
    ns = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    mount = f"mount --bind -o ro {ro} {ro} && mount -o remount,bind,ro {ro} && exec \"$@\""
    for data, what in ((ro / "data", "lock"), (ro / "new", "create")):
        _start_fails(ns + ["sh", "-c", mount, "sh"] + cmd + ["--data-dir", data],
                     f"cannot {what} data-dir {data}: it is on a read-only file system")


def test_a_taken_address_fails_before_the_database_is_touched(gangliond, pg):
    a = gangliond()
    fresh = pg.create_database()
    b = gangliond(database=fresh, extra_args=["--listen", f"127.0.0.1:{a.port}"], wait=False)
    assert b.proc.wait(60) != 0, "a second gangliond started on a taken address"
    b.start_failed = True  # expected; the teardown need not complain
    log = b.log()
    assert f"cannot listen on 127.0.0.1:{a.port}: Address already in use" in log, log
    assert "port 0" not in log, log
    for event in ("migration_applied", "admin_token_created", "tuf_root_key_created"):
        assert f"event={event}" not in log, log
    assert not (b.data_dir / "admin.token").exists() and not (b.data_dir / "keys").exists()
    assert pg.sql("SELECT to_regclass('schema_migrations') IS NULL", fresh) == "t"
    assert a.api("GET", "/readyz").status_code == 200


def test_a_restart_prints_no_raw_postgresql_notice(gangliond):
    s = gangliond(extra_args=["--log-level", "debug"])
    s.stop()
    s.start()
    lines = s.log().splitlines()
    # What PostgreSQL said (CREATE TABLE IF NOT EXISTS of an existing table) is a log line at
    # debug, not libpq's raw "NOTICE:  ..." on stderr.
    said = [line for line in lines if "NOTICE" in line or "already exists" in line]
    assert said and all(line.startswith("ts=") and "level=debug event=pg_notice severity=NOTICE" in line
                        for line in said), said


def test_sighup_names_changed_settings_that_cannot_reload(gangliond, workdir):
    conf = workdir / "gangliond.conf"
    conf.write_text("threads = 4\ndb-pool-size = 8\nmax-body = 1M\n")
    s = gangliond(extra_args=["--config", conf])
    conf.write_text("threads = 6\ndb-pool-size = 8\nmax-body = 2M\n")
    s.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=reloaded" in s.log(), 60, 0.1), s.log()
    ignored = [line for line in s.log().splitlines() if "event=reload_setting_ignored" in line]
    assert len(ignored) == 1 and "level=warn" in ignored[0] and "key=threads" in ignored[0], ignored
    assert "restart" in ignored[0], ignored


def test_routine_check_ins_are_logged_at_debug(gangliond):
    s = gangliond(extra_args=["--log-level", "debug"])
    dev = enroll_device(s)
    tok = dev.authenticate(s)
    report = {"agent_version": "t", "models": []}

    def checkin(body, etag=None):
        return s.api("POST", "/v1/agent/checkin", token=tok, json=body,
                     headers={"If-None-Match": etag} if etag else None)

    def level_of(r):
        # The access-log line is written once the answer has gone out, so the client can hold the
        # answer before the line exists: wait for this request's own line (by its X-Request-Id).
        rid = r.headers["X-Request-Id"]

        def line():
            return next((ln for ln in s.log(limit=10**7).splitlines()
                         if f"req={rid} " in ln and "route=/v1/agent/checkin" in ln), None)
        found = wait_for(line, 30, 0.05)
        assert found, f"no log line for request {rid}"
        return found.split("level=")[1].split()[0]

    def checked_in_at(body, etag, status):
        r = checkin(body, etag)
        assert r.status_code == status, r.text
        return level_of(r)

    first = checkin(report)
    assert first.status_code == 200, first.text
    assert level_of(first) == "info"  # the first one: new targets for the device
    etag = first.headers["ETag"]
    # Once the server answers from memory, a check-in that changes nothing is at debug.
    assert wait_for(lambda: checked_in_at(report, etag, 304) == "debug", 30, 0.1)
    assert checked_in_at(report, etag, 304) == "debug"
    # A changed report (an update attempt that failed) and a refused check-in are at info.
    failed = dict(report, last_operation={"state": "failed", "model": "m", "version": "1.0.0", "detail": "x"})
    assert checked_in_at(failed, etag, 304) == "info"
    assert checked_in_at(failed, etag, 304) == "debug"
    assert checked_in_at({"agent_version": 7}, etag, 400) == "info"
