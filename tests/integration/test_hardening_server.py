"""The server's answers to the attacks and faults of issue 17 (items 9-16): replayed check-ins,
floods of unauthenticated requests, slow clients, a hung database, artifacts without a committed
version, devices reaching for models not meant for them, empty artifacts, and libmicrohttpd's own
refusals."""

import concurrent.futures
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import requests
import yaml

from ganglion_harness import (
    OPENAPI,
    Agent,
    NO_TOKEN,
    PG_BINDIR,
    Gangliond,
    Postgres,
    SRCDIR,
    as_pg_user,
    assert_problem,
    child_env,
    enroll_device,
    model_meta,
    new_key,
    postgres_pids_for,
    public_hex,
    publish,
    wait_for,
)


def _sha(data):
    return hashlib.sha256(data).hexdigest()


# --- 15: an empty artifact is not a model -------------------------------------------------------
def test_zero_byte_artifact_is_refused(server):
    r = publish(server, "empty", b"")
    assert_problem(r, 400, "empty")
    assert server.api("GET", "/v1/models/empty/versions/1.0.0").status_code == 404
    assert_problem(server.api("GET", f"/v1/artifacts/sha256/{_sha(b'')}"), 404)
    # Stating a length of 0 is refused before any byte arrives, with the same clear reason.
    assert_problem(publish(server, "empty", b"", meta=model_meta(length=0)), 400, "0")
    # One byte is a (tiny) model.
    assert publish(server, "empty", b"\0").status_code == 201


# --- 13: bytes no committed version references are never served, and are swept -------------------
DB_LOCK_TUF = 1734438505  # server/db.h: every writer of the TUF image repository takes it


class HeldLock:
    """A psql session holding a PostgreSQL advisory lock until release()."""

    def __init__(self, pg, dbname, key):
        self.proc = subprocess.Popen(
            as_pg_user([PG_BINDIR / "psql", "-X", "-q", "-A", "-t", "-h", pg.sockdir, "-p", str(pg.port),
                        "-U", pg.user, "-d", dbname]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(),
        )
        self.proc.stdin.write(f"SELECT pg_advisory_lock({key}), 'locked';\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert "locked" in line, line

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(10)


def test_a_publish_killed_before_its_commit_leaves_bytes_nobody_can_download(gangliond, pg, db):
    s = gangliond()
    reader = s.make_token(["read"])["token"]
    data = b"never released " * 1000
    digest = _sha(data)
    stored = s.data_dir / "artifacts" / "sha256" / digest[:2] / digest
    # Hold the TUF lock: the publish moves its file into place, then waits for the lock to sign the
    # targets, with its row not yet committed. kill -9 it right there.
    lock = HeldLock(pg, db, DB_LOCK_TUF)
    try:
        t = threading.Thread(target=lambda: _swallow(lambda: publish(s, "ghost", data, timeout=30)), daemon=True)
        t.start()
        assert wait_for(stored.exists, 20, 0.05), "the publish never moved its file into place"
        os.killpg(s.proc.pid, signal.SIGKILL)
        s.proc.wait(10)
    finally:
        lock.release()
    t.join(30)
    assert stored.exists()

    s.start()  # within the grace period: the file may be another replica's upload in flight
    assert stored.exists(), "swept a file younger than artifact-sweep-grace"
    assert_problem(s.api("GET", f"/v1/artifacts/sha256/{digest}", token=reader), 404)
    assert s.api("HEAD", f"/v1/artifacts/sha256/{digest}", token=reader).status_code == 404
    assert s.api("GET", "/v1/models/ghost/versions/1.0.0", token=reader).status_code == 404

    # Past the grace period, the next start-up removes it.
    old = time.time() - 7200
    os.utime(stored, (old, old))
    s.stop()
    s.start()
    assert not stored.exists(), "an unreferenced artifact outlived the start-up sweep"
    assert "event=artifact_swept" in s.log()
    # Published bytes stay, whatever their age, and can be published again once swept.
    r = publish(s, "ghost", data)
    assert r.status_code == 201, r.text
    os.utime(stored, (old, old))
    s.stop()
    s.start()
    assert s.api("GET", f"/v1/artifacts/sha256/{digest}", token=reader).content == data


def test_old_temp_files_are_removed_at_start_up_but_young_ones_are_kept(gangliond):
    s = gangliond()
    tmp = s.data_dir / "artifacts" / "tmp"
    young, old = tmp / "upload-young1", tmp / "upload-old123"
    young.write_bytes(b"x" * 100)
    old.write_bytes(b"y" * 100)
    t = time.time() - 7200
    os.utime(old, (t, t))
    s.stop()
    s.start()
    assert young.exists(), "removed a temp file another replica may still be writing"
    assert not old.exists()


def _swallow(fn):
    try:
        fn()
    except Exception:  # the server is killed under it
        pass


# --- 14: a device reads only the models its director metadata names -----------------------------
def _assign(server, device_id, model, version):
    r = server.api("PUT", f"/v1/devices/{device_id}/desired", json={"model": model, "version": version})
    assert r.status_code == 200, r.text


def test_a_device_downloads_only_what_its_director_names_now_or_named_before(server):
    ours1, ours2, secret = b"ours v1 " * 500, b"ours v2 " * 500, b"someone else's model " * 500
    for name, version, data in (("ours", "1.0.0", ours1), ("ours", "1.0.1", ours2), ("secret", "1.0.0", secret)):
        assert publish(server, name, data, meta=model_meta(version)).status_code == 201
    a, b = enroll_device(server), enroll_device(server)
    ta, tb = a.authenticate(server), b.authenticate(server)

    def get(token, data):
        return server.api("GET", f"/v1/artifacts/sha256/{_sha(data)}", token=token)

    # Nothing assigned yet: nothing to download.
    assert_problem(get(ta, ours1), 403, "director")
    _assign(server, a.id, "ours", "1.0.0")
    assert get(ta, ours1).content == ours1
    assert server.api("GET", "/v1/models/ours/versions/1.0.0/sample", token=ta).status_code == 200
    # Another model, another version, another device's assignment: refused, with or without Range.
    assert_problem(get(ta, secret), 403)
    assert_problem(server.api("GET", f"/v1/artifacts/sha256/{_sha(secret)}", token=ta,
                              headers={"Range": "bytes=0-9"}), 403)
    assert_problem(get(ta, ours2), 403)
    assert_problem(get(tb, ours1), 403)
    for part in ("", "/sample", "/reference-profile"):
        assert_problem(server.api("GET", f"/v1/models/secret/versions/1.0.0{part}", token=ta), 403)
    # A new assignment opens the new version and keeps the old one (the device may roll back to it).
    _assign(server, a.id, "ours", "1.0.1")
    assert get(ta, ours2).content == ours2
    assert get(ta, ours1).content == ours1
    assert server.api("GET", "/v1/models/ours/versions/1.0.0", token=ta).status_code == 200
    assert_problem(get(ta, secret), 403)
    # API tokens with read scope still read everything.
    assert get(server.make_token(["read"])["token"], secret).content == secret


# --- 16: libmicrohttpd's own refusals are the documented exception -------------------------------
MHD_REFUSALS = {
    400: [b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
          b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
          b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
    413: [b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"],
    414: [b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"],
    431: [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n"],
    505: [b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n"],
}


def _raw(port, request, timeout=5):
    """Sends raw bytes; returns (status, {header: value}) of the first answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(request)
        except OSError:
            pass  # it may answer and close before reading it all
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    assert head and head[0].startswith("HTTP/1."), data[:200]
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in head[1:])}
    return int(head[0].split()[1]), headers


def test_refusals_libmicrohttpd_sends_itself_are_documented_exactly(server):
    with open(OPENAPI) as f:
        listed = {e["status"]: e["when"] for e in yaml.safe_load(f).get("x-transport-refusals", [])}
    assert set(listed) == set(MHD_REFUSALS), f"x-transport-refusals lists {sorted(listed)}"
    api_md = (SRCDIR / "docs" / "API.md").read_text()
    assert "## Refusals that libmicrohttpd sends itself" in api_md
    for status, requests in MHD_REFUSALS.items():
        assert f"| {status} |" in api_md, f"docs/API.md does not list {status}"
        for req in requests:
            got, headers = _raw(server.port, req)
            assert got == status, (req[:80], got)
            # Exactly the documented shape: not problem+json, no request id, connection closed.
            assert "problem+json" not in headers.get("content-type", ""), headers
            assert "x-request-id" not in headers, headers
            assert headers.get("connection", "").lower() == "close", headers
    # Everything else, however odd, is gangliond's own problem+json.
    for req in (b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
                b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
                b"DELETE /healthz HTTP/1.0\r\n\r\n"):
        got, headers = _raw(server.port, req)
        assert headers.get("content-type", "").startswith("application/problem+json"), (req, got, headers)
        assert headers.get("x-request-id"), headers
    assert server.api("GET", "/healthz").status_code == 200


# --- 10: unauthenticated floods: bounded nonces, rate limits -----------------------------------
def test_open_challenges_per_device_are_bounded(server, pg, db):
    dev = enroll_device(server)
    nonces = []
    for _ in range(25):
        r = dev.challenge(server)
        assert r.status_code == 200, r.text
        nonces.append(r.json()["nonce"])
    rows = int(pg.sql(f"SELECT count(*) FROM device_challenges WHERE device_id = '{dev.id}'", db))
    assert rows <= 4, f"{rows} open challenges kept for one device"
    # The oldest is gone; the newest works.
    assert_problem(dev.exchange(server, nonces[0]), 401, "nonce")
    assert dev.exchange(server, nonces[-1]).status_code == 200


def _post_from(source, port, path, body, headers=None):
    """POSTs JSON from a given local address (127.0.0.x); returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json",
                                                                     **(headers or {})})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _assert_429(r, by):
    body = assert_problem(r, 429, by)
    wait = int(r.headers["Retry-After"])
    assert 1 <= wait <= 60, wait
    return body


def test_rate_limits_per_identity_and_per_address(gangliond):
    s = gangliond(extra_args=["--rate-limit-identity", "3", "--rate-limit-address", "8"])
    a, b, c = (enroll_device(s) for _ in range(3))
    # challenge: 3 for one device, the 4th is refused for that device only, whatever the case of
    # the hex digits its id is sent in (they all name it)...
    spellings = [a.id, a.id.upper(), a.id[:18].upper() + a.id[18:], a.id[:9] + a.id[9:].upper()]

    def challenge(device_id):
        return s.api("POST", "/v1/agent/auth/challenge", token=NO_TOKEN, json={"device_id": device_id})

    for spelling in spellings[:3]:
        assert challenge(spelling).status_code == 200
    _assert_429(challenge(spellings[3]), "identity")
    for _ in range(3):
        assert b.challenge(s).status_code == 200
    assert c.challenge(s).status_code == 200
    # ...and the 9th from this address is refused whoever it names.
    _assert_429(c.challenge(s), "address")
    status, headers, body = _post_from("127.0.0.2", s.port, "/v1/agent/auth/challenge", {"device_id": c.id})
    assert status == 200, body
    # An id that is no UUID names no device: refused as such, counted by its address only.
    for _ in range(4):
        status, headers, body = _post_from("127.0.0.3", s.port, "/v1/agent/auth/challenge", {"device_id": "nope"})
        assert status == 404, body
    # token: counted per device too (failed attempts count), in any case.
    for spelling in spellings[:3]:
        assert_problem(a.exchange(s, "0" * 64, device_id=spelling), 401)
    _assert_429(a.exchange(s, "0" * 64, device_id=spellings[3]), "identity")
    assert_problem(b.exchange(s, "1" * 64), 401)
    # enroll: per enrollment token.
    et = s.make_enroll_token(max_uses=10)["token"]
    for _ in range(3):
        assert s.api("POST", "/v1/enroll", token=NO_TOKEN,
                     json={"token": et, "public_key": public_hex(new_key())}).status_code == 201
    _assert_429(s.api("POST", "/v1/enroll", token=NO_TOKEN, json={"token": et, "public_key": public_hex(new_key())}),
                "identity")
    other = s.make_enroll_token()["token"]
    assert s.api("POST", "/v1/enroll", token=NO_TOKEN,
                 json={"token": other, "public_key": public_hex(new_key())}).status_code == 201
    # upload: per API token, refused before the body is read; nothing is published.
    for i in range(3):
        assert publish(s, "rl", b"m%d" % i, meta=model_meta(f"1.0.{i}")).status_code == 201
    _assert_429(publish(s, "rl", b"m3", meta=model_meta("1.0.3")), "identity")
    assert s.api("GET", "/v1/models/rl/versions/1.0.3").status_code == 404
    ci = s.make_token(["ci"])["token"]
    assert publish(s, "rl", b"m4", meta=model_meta("1.0.4"), token=ci).status_code == 201
    # Routes without a limit are not counted.
    for _ in range(20):
        assert s.api("GET", "/v1/devices").status_code == 200


def test_an_auth_failure_allowance_within_the_threads_is_refused(gangliond):
    """Each request checked holds one of the allowance, and `threads` are checked at once: an
    allowance that small would refuse good requests sent in parallel, so gangliond will not start."""
    b = gangliond(extra_args=["--rate-limit-auth-failures", "4", "--threads", "4"], wait=False)
    assert b.proc.wait(60) != 0, "gangliond started with rate-limit-auth-failures = threads"
    b.start_failed = True  # expected; the teardown need not complain
    assert "rate-limit-auth-failures (4) must be 0 (no limit) or more than threads (4)" in b.log(), b.log()


def test_failed_authentications_are_limited_per_address(gangliond):
    """60 failed authentications a minute from one address (one a second back): then every
    request of that address that needs a token gets 429, a good token too (it is not looked at),
    until the allowance refills; another address is not concerned."""
    s = gangliond(extra_args=["--rate-limit-auth-failures", "60"])
    dev = enroll_device(s)
    device_token = dev.authenticate(s)
    bad = "gna_" + "0" * 40

    def exhaust():
        """Fails authentication until the address is refused; the 401s it took."""
        for n in range(300):
            r = s.api("GET", "/v1/devices", token=bad)
            if r.status_code == 429:
                _assert_429(r, "failed authentications from this address")
                return n
            assert_problem(r, 401)
        raise AssertionError("300 failed authentications and never a 429")

    def refused(request, by):
        """request(), made right after the address was refused, gets 429. The allowance refills
        continuously (one failure's worth a second): the refusal left it anywhere below one, so
        even a request milliseconds later finds it full again now and then (a few runs in a
        hundred under ASan). Such a request is made again after another refusal; a server that
        let a good token through an exceeded limit would do so every time."""
        for _ in range(20):
            exhaust()
            r = request()
            if r.status_code == 429:
                return _assert_429(r, by)
        return _assert_429(r, by)

    t0 = time.monotonic()
    n = exhaust()
    assert 60 <= n <= 61 + (time.monotonic() - t0), n  # the allowance, plus what refilled meanwhile
    refused(lambda: s.api("GET", "/v1/devices"), "failed authentications from this address")
    # A signed device token is checked in memory, at no cost to the database: it still passes, so
    # a guesser behind the same NAT or balancer does not lock the fleet out. A forged one counts.
    r = s.api("POST", "/v1/agent/checkin", token=device_token, json={"agent_version": "t"})
    assert r.status_code in (200, 304), (r.status_code, r.text)
    forged = device_token[:-1] + ("0" if device_token[-1] != "0" else "1")
    refused(lambda: s.api("GET", "/v1/devices"), "failed authentications")
    assert_problem(s.api("POST", "/v1/agent/checkin", token=forged, json={"agent_version": "t"}), 401)
    status, _, body = _post_from("127.0.0.2", s.port, "/v1/tokens", {}, {"Authorization": f"Bearer {bad}"})
    assert status == 401, body
    assert s.api("GET", "/healthz", token=None).status_code == 200  # public routes are not limited
    exhaust()
    time.sleep(1.5)  # one failure's worth refills in a second
    assert s.api("GET", "/v1/devices").status_code == 200
    assert exhaust() >= 1
    refused(lambda: s.api("GET", "/v1/devices"), "failed authentications")

    # Parallel guesses get the allowance, no more: letting a request in takes from the allowance
    # in the step that decides (a peek, then a count after the 401, let each of 8 threads through
    # on the last tokens and on each one that refilled).
    def guess(_):
        return _post_from("127.0.0.4", s.port, "/v1/tokens", {}, {"Authorization": f"Bearer {bad}"})[0]

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(guess, range(160)))
    refilled = time.monotonic() - t0  # one a second
    assert set(statuses) == {401, 429}, statuses
    assert 60 <= statuses.count(401) <= 60 + refilled + 1, (statuses.count(401), refilled)


# --- 12: a hung database (postmaster and backends stopped) -------------------------------------
def _timed(fn):
    t0 = time.monotonic()
    try:
        r = fn()
    except requests.RequestException as e:
        r = e
    return r, time.monotonic() - t0


def test_a_hung_database_gets_quick_503s_and_healthz_never_waits(workdir):
    # A cluster of its own: the session's is shared with other tests and must not be stopped.
    hung = Postgres(workdir / "pg-hung")
    hung.initdb()
    hung.start()
    s = None
    try:
        hung.sql("CREATE DATABASE gn")
        s = Gangliond(workdir / "srv", database_url=hung.dsn("gn"),
                      extra_args=["--threads", "2", "--db-pool-size", "4", "--db-connect-timeout", "1s",
                                  "--db-statement-timeout", "2s", "--db-pool-wait", "1s"])
        s.start()
        assert s.api("GET", "/v1/devices").status_code == 200
        stopped = postgres_pids_for(hung.datadir)
        assert len(stopped) >= 2, stopped
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            # Requests that were waiting on the database when it stopped (more than the threads).
            inflight = []
            threads = [threading.Thread(target=lambda: inflight.append(_timed(
                lambda: s.api("GET", "/v1/devices", timeout=30))), daemon=True) for _ in range(6)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            r, took = _timed(lambda: s.api("GET", "/healthz", token=NO_TOKEN, timeout=20))
            assert not isinstance(r, Exception) and r.status_code == 200, r
            assert took < 5, f"/healthz took {took:.1f} s while the database hung"
            for t in threads:
                t.join(20)
            assert len(inflight) == 6, "requests in flight never got an answer"
            for r, took in inflight:
                assert not isinstance(r, Exception), r
                assert_problem(r, 503)
                assert took < 8, f"a request in flight took {took:.1f} s to get its 503"
            # Now that it is known to hang, a request gets 503 at once, and says to come back.
            r, took = _timed(lambda: s.api("GET", "/v1/devices", timeout=20))
            assert_problem(r, 503, "database")
            assert took < 1.5, f"503 took {took:.1f} s"
            assert int(r.headers["Retry-After"]) > 0
            r, took = _timed(lambda: s.api("GET", "/readyz", token=NO_TOKEN, timeout=20))
            assert_problem(r, 503, "database")
            assert took < 1.5
            for _ in range(5):
                r, took = _timed(lambda: s.api("GET", "/healthz", token=NO_TOKEN, timeout=20))
                assert r.status_code == 200 and took < 1, (r, took)
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        # Back: everything recovers without a restart.
        assert wait_for(lambda: s.api("GET", "/v1/devices").status_code == 200, 20, 0.2)
        assert wait_for(lambda: s.api("GET", "/readyz", token=NO_TOKEN).status_code == 200, 20, 0.2)
        assert "event=db_unavailable" in s.log() and "event=db_available" in s.log()
    finally:
        try:
            if s is not None:
                s.stop(check=True)
        finally:
            hung.stop()


# --- 11: slow clients (slowloris) ------------------------------------------------------------------
def _trickle_until_cut(sock, first, piece, every, limit):
    """Sends first, then piece every `every` seconds, until the server closes the connection
    (returns the seconds it took) or limit seconds pass (returns None)."""
    t0 = time.monotonic()
    sock.settimeout(every)
    try:
        sock.sendall(first)
        while time.monotonic() - t0 < limit:
            try:
                if sock.recv(4096) == b"":
                    return time.monotonic() - t0
            except socket.timeout:
                pass
            sock.sendall(piece)
    except (BrokenPipeError, ConnectionResetError):
        return time.monotonic() - t0
    return None


def test_trickled_headers_and_bodies_are_cut_at_their_deadlines(gangliond):
    s = gangliond(extra_args=["--request-header-timeout", "2s", "--request-body-timeout", "2s",
                              "--min-body-rate", "1K", "--connection-timeout", "30s"])
    # A header line every 0.3 s: never idle, so connection-timeout alone never cuts it.
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        took = _trickle_until_cut(c, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-A: b\r\n", 0.3, 10)
    assert took is not None and took < 4, f"trickling headers were not cut (took {took})"
    # A body at a few bytes a second: cut at request-body-timeout (plus a second per KiB).
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        took = _trickle_until_cut(c, b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: 100000\r\n\r\n", b"    ", 0.3, 10)
    assert took is not None and took < 4, f"a trickling body was not cut (took {took})"
    # An honest request and a kept-alive connection that is reused promptly are untouched.
    with requests.Session() as sess:
        for _ in range(3):
            assert sess.get(f"{s.url}/healthz", timeout=5).status_code == 200
            time.sleep(0.5)
    assert "event=connections_cut" in s.log()


class Slowloris:
    """Holds connections from several local addresses, each sending one header line a second and
    never finishing its headers; reopens whatever the server closes."""

    def __init__(self, port, sources, per_source):
        self.port, self.targets = port, [src for src in sources for _ in range(per_source)]
        self.socks = {}  # index -> socket
        self.started = set()  # indexes whose request line went out
        self.stop_flag = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i):
        c = socket.socket()
        try:
            c.setblocking(False)
            c.bind((self.targets[i], 0))
            c.connect_ex(("127.0.0.1", self.port))
        except OSError:
            c.close()
            return
        self.socks[i] = c
        self.started.discard(i)
        self.opened += 1

    def _poke(self, i, c, first):
        """Sends the next piece; False when the server has closed the connection."""
        try:
            if c.recv(4096) == b"":
                return False
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        try:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" if first else b"X-A: b\r\n")
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        return True

    def _run(self):
        while not self.stop_flag.is_set():
            for i in range(len(self.targets)):
                c = self.socks.get(i)
                if c is None:
                    self._open(i)
                elif not self._poke(i, c, i not in self.started):
                    c.close()
                    del self.socks[i]
                    self.started.discard(i)
                else:
                    self.started.add(i)
            self.stop_flag.wait(1.0)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stop_flag.set()
        self.thread.join(10)
        for c in self.socks.values():
            c.close()


def test_slowloris_from_several_addresses_does_not_starve_real_clients(gangliond):
    # Scaled down from the report (4,200 connections, 17 addresses, a 4,096 limit): 5 addresses
    # x 60 connections against a limit of 200, each adding a header line every second.
    s = gangliond(extra_args=["--connection-limit", "200", "--per-ip-connection-limit", "60",
                              "--request-header-timeout", "5s", "--threads", "2"])
    attack = Slowloris(s.port, [f"127.0.0.{i}" for i in range(2, 7)], 60).start()
    try:
        assert wait_for(lambda: attack.opened >= 250, 60, 0.2), f"the attack opened only {attack.opened}"
        time.sleep(2)  # the server is full of trickling connections now
        # Each request on a new connection, as a client arriving now would: the harness's pooled
        # keep-alive connection sat idle while the attack filled the server, and the server may
        # cut it (the oldest waiting for headers) just as it is reused.
        def fresh(path, **kw):
            with requests.Session() as sess:
                sess.trust_env = False
                return sess.get(f"{s.url}{path}", timeout=5, **kw)

        for _ in range(6):
            r, took = _timed(lambda: fresh("/healthz"))
            assert not isinstance(r, Exception), f"a real client got {r!r} during the attack"
            assert r.status_code == 200 and took < 2, (r.status_code, took)
            r, took = _timed(lambda: fresh("/v1/devices", headers={"Authorization": f"Bearer {s.admin_token}"}))
            assert not isinstance(r, Exception) and r.status_code == 200 and took < 2, (r, took)
            time.sleep(0.5)
    finally:
        attack.stop()
    assert "event=connections_cut" in s.log()


# --- 9: replayed check-ins are not recorded; what a device can record is bounded -------------------
def _checkin(server, token, body):
    return server.api("POST", "/v1/agent/checkin", token=token, json=body)


def _events(pg, db, device_id):
    return int(pg.sql(f"SELECT count(*) FROM device_events WHERE device_id = '{device_id}'", db))


def _report(seq, state, blob=""):
    body = {"agent_version": "t", "models": [{"name": "m", "blob": blob}],
            "last_operation": {"state": state, "model": "m", "version": "1.0.0"}}
    if seq is not None:
        body["seq"] = seq
    return body


def test_replayed_check_ins_are_refused_and_record_nothing(server, pg, db):
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    a, b = _report(1, "downloading"), _report(2, "active")
    assert _checkin(server, tok, a).status_code == 200
    assert _checkin(server, tok, b).status_code == 200
    assert _events(pg, db, dev.id) == 2
    # A recorded request replayed: the older one is refused and says where the device stands...
    body = assert_problem(_checkin(server, tok, a), 409, "sequence")
    assert body["last_seq"] == 2
    # ...the newest one is answered, but records nothing a second time.
    assert _checkin(server, tok, b).status_code == 200
    # 200 check-ins alternating the two recorded requests record nothing.
    for i in range(100):
        _checkin(server, tok, a)
        _checkin(server, tok, b)
    assert _events(pg, db, dev.id) == 2
    reported = server.api("GET", f"/v1/devices/{dev.id}").json()["reported"]
    assert reported["last_operation"]["state"] == "active"
    # Once a device has sent sequence numbers, a report without one is answered, never recorded.
    assert _checkin(server, tok, _report(None, "failed")).status_code == 200
    assert _events(pg, db, dev.id) == 2
    # The next number goes on as before; 0 and negatives are malformed.
    assert _checkin(server, tok, _report(3, "failed")).status_code == 200
    assert _events(pg, db, dev.id) == 3
    assert_problem(_checkin(server, tok, _report(0, "active")), 400, "seq")


def test_what_one_device_can_record_is_bounded(gangliond, pg, db):
    s = gangliond(extra_args=["--device-reports-per-hour", "10", "--max-report-size", "16K"])
    dev = enroll_device(s)
    tok = dev.authenticate(s)
    # An agent without sequence numbers still works, within the same bounds.
    for i in range(30):
        assert _checkin(s, tok, _report(None, "downloading" if i % 2 else "active", blob=f"{i}" * 100)).status_code == 200
    assert _events(pg, db, dev.id) <= 10
    assert "event=report_budget_exceeded" in s.log()
    # Over max-report-size: 413, nothing recorded.
    before = _events(pg, db, dev.id)
    assert_problem(_checkin(s, tok, _report(None, "failed", blob="x" * 20000)), 413, "max-report-size")
    assert _events(pg, db, dev.id) == before


def test_an_old_agent_without_sequence_numbers_keeps_working(server, pg, db):
    dev = enroll_device(server)
    tok = dev.authenticate(server)
    for i, state in enumerate(["downloading", "verifying", "active"]):
        assert _checkin(server, tok, _report(None, state)).status_code == 200
    assert _events(pg, db, dev.id) == 3
    # the same report again is not a new event
    assert _checkin(server, tok, _report(None, "active")).status_code == 200
    assert _events(pg, db, dev.id) == 3


def test_the_agent_keeps_its_sequence_across_restarts_and_catches_up(gangliond, pg, db, workdir):
    s = gangliond(extra_args=["--agent-poll-interval", "1s"])
    agent = Agent(workdir / "ag", s.url)
    agent.enroll(s.make_enroll_token()["token"])

    def last_seq():
        v = pg.sql(f"SELECT coalesce(report_seq, 0) FROM devices WHERE id = '{agent.device_id}'", db)
        return int(v or 0)

    try:
        agent.start()
        assert wait_for(lambda: last_seq() > 0, 30, 0.2), "the agent's check-ins carry no sequence number"
        assert (agent.data_dir / "identity" / "report-seq").exists()
        ceiling = int((agent.data_dir / "identity" / "report-seq").read_text())
        agent.stop()
        first = last_seq()
        assert 0 < first < ceiling
        # Drop the answer the server remembers for the device, so that the next check-in reaches the
        # database (a check-in answered 304 from memory records nothing).
        forget = f"NOTIFY gn_director, '{agent.device_id}'"
        pg.sql(forget, db)
        agent.start()
        assert wait_for(lambda: last_seq() >= ceiling, 30, 0.2), "after a restart the numbers went back"
        assert "report_seq_behind" not in agent.log()
        # A data directory restored from an old backup: the server has seen higher numbers.
        agent.stop()
        pg.sql(f"UPDATE devices SET report_seq = 5000000 WHERE id = '{agent.device_id}'; " + forget, db)
        agent.start()
        assert wait_for(lambda: last_seq() > 5000000, 30, 0.2), "the agent did not catch up with the server"
        assert "event=report_seq_behind" in agent.log()
    finally:
        agent.stop()
