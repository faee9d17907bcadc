"""Scale-out with real components: two gangliond replicas on one database behind HAProxy sharing
an artifact directory, with a real agent installing through the balancer while a replica is
killed; the S3 artifact store against Ceph's radosgw (a throwaway single-node Ceph: one monitor,
one OSD on memstore, one gateway); and a PostgreSQL primary with a synchronous streaming standby
promoted under load.

What radosgw checks here, as AWS S3 does: every request's SigV4 signature (a wrong secret key is
refused with SignatureDoesNotMatch, which this module asserts) and the body against its
x-amz-content-sha256 (XAmzContentSHA256Mismatch). What it does not stand for: AWS's IAM policies,
regions and network, nor a Ceph cluster of more than one OSD.

HAProxy, Ceph and the standby run as the unprivileged cluster user when the tests run as root."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from ganglion_harness import (
    IS_ROOT,
    PG_BINDIR,
    PG_USER,
    TEST_MODELS,
    Agent,
    Gangliond,
    Postgres,
    as_pg_user,
    assert_problem,
    child_env,
    enroll_device,
    free_port,
    make_dir,
    model_meta,
    multipart,
    publish,
    run,
    sign_device_token,
    wait_for,
)

MODEL = "det"


def _model(name):
    meta = TEST_MODELS / f"{name}.json"
    assert meta.exists(), f"{meta} missing: `make check` builds it (make tests/models/stamp)"
    return (TEST_MODELS / f"{name}.onnx").read_bytes(), json.loads(meta.read_text())


def push(server, version, like):
    data, meta = _model(like)
    r = publish(server, MODEL, data, meta=dict(meta, version=version))
    assert r.status_code == 201, f"publish {version} -> {r.status_code} {r.text[:300]}"
    return data


def wait_serving(agent, version, timeout=90):
    got = wait_for(lambda: (agent.serving() or (None,))[0] == version, timeout, 0.2)
    assert got, f"agent does not serve {version} (serves {agent.serving()})\n{agent.log()[-4000:]}"


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Daemon:
    """A foreground process started as the cluster user, killed at the end."""

    def __init__(self, cmd, log, cwd=None):
        self.log = log
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(as_pg_user(cmd), stdin=subprocess.DEVNULL, stdout=f,
                                         stderr=subprocess.STDOUT, cwd=cwd, env=child_env(),
                                         start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class HAProxy:
    """HAProxy in HTTP mode, round robin over the servers, health-checked on /readyz."""

    def __init__(self, base, servers):
        self.base = make_dir(base, 0o755)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        lines = [
            "global", "  maxconn 512",
            "defaults", "  mode http", "  timeout connect 2s", "  timeout client 120s",
            "  timeout server 120s", "  option redispatch", "  retries 3",
            "frontend api", f"  bind 127.0.0.1:{self.port}", "  default_backend replicas",
            "backend replicas", "  balance roundrobin", "  option httpchk GET /readyz",
            "  http-check expect status 200", "  default-server inter 300ms fall 2 rise 1",
        ]
        lines += [f"  server r{i} 127.0.0.1:{port} check" for i, port in enumerate(servers)]
        cfg = self.base / "haproxy.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        os.chmod(cfg, 0o644)
        self.daemon = Daemon(["/usr/sbin/haproxy", "-db", "-f", cfg], self.base / "haproxy.log")
        ok = wait_for(lambda: self._ready(), 30, 0.1)
        assert ok, f"haproxy did not answer: {(self.base / 'haproxy.log').read_text()[-2000:]}"

    def _ready(self):
        try:
            return requests.get(self.url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        self.daemon.stop()


class Ceph:
    """A throwaway single-node Ceph with radosgw: S3 on 127.0.0.1, user AK/SK, bucket `ganglion`."""

    AK, SK = "GANGLIONTESTKEY", "ganglion-test-secret-key"

    def __init__(self, base):
        self.base = make_dir(base, 0o755, PG_USER)
        for d in ("run", "log", "mon.a", "osd0"):
            make_dir(self.base / d, 0o755, PG_USER)
        self.mon_port, self.port = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.conf = self.base / "ceph.conf"
        fsid = str(uuid.uuid4())
        b = self.base
        self.conf.write_text(f"""[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{self.mon_port}
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = 1073741824
osd data = {b}/osd$id
mon data = {b}/mon.$id
run dir = {b}/run
admin socket = {b}/run/$name.asok
log file = {b}/log/$name.log
pid file = {b}/run/$name.pid
keyring = {b}/keyring
ms bind ipv6 = false
ms bind msgr2 = false
osd crush chooseleaf type = 0
osd class update on start = false
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{self.port}
rgw thread pool size = 32
""")
        (self.base / "keyring").touch()
        if IS_ROOT:
            shutil.chown(self.base / "keyring", PG_USER, PG_USER)
        try:
            self._start(fsid)
        except BaseException:
            self.stop()
            raise

    def _start(self, fsid):
        c = ["-c", self.conf]
        run(as_pg_user(["ceph-mon", *c, "--mkfs", "-i", "a", "--fsid", fsid]))
        run(as_pg_user(["ceph-mon", *c, "-i", "a"]))  # daemonises once it listens
        # The monitor may refuse commands for a moment after it forks (EPERM while it settles);
        # creating osd.0 with its own uuid is idempotent, so trying again is safe.
        osd_uuid = str(uuid.uuid4())
        create = lambda: run(as_pg_user(["ceph", *c, "--connect-timeout", "10", "osd", "create", osd_uuid, "0"]),
                             check=False, timeout=30).returncode == 0
        assert wait_for(create, 60, 0.5), f"the monitor takes no commands\n{self.log_tail()}"
        run(as_pg_user(["ceph-osd", *c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid]))
        # At init an OSD may send its first command before it knows the cluster's fsid, and give
        # up ("wrong fsid"): the settings above spare it those commands, and it is tried again.
        start = lambda: run(as_pg_user(["ceph-osd", *c, "-i", "0"]), check=False).returncode == 0
        assert wait_for(start, 30, 0.5), f"the OSD does not start\n{self.log_tail()}"
        run(as_pg_user(["radosgw", *c, "-n", "client.rgw"]))
        ok = wait_for(lambda: self._answers(), 120, 0.25)
        assert ok, f"radosgw did not answer\n{self.log_tail()}"
        run(as_pg_user(["radosgw-admin", *c, "user", "create", "--uid=ganglion", "--display-name=ganglion",
                        f"--access-key={self.AK}", f"--secret={self.SK}"]), timeout=60)
        assert self.s3("PUT", "ganglion").returncode == 0
        # The first write creates the gateway's data pools (seconds): do it here, not in a test.
        self.s3("PUT", "ganglion/warm-up", b"x")
        self.s3("DELETE", "ganglion/warm-up")

    def _answers(self):
        try:
            return requests.get(self.endpoint + "/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def s3(self, method, path, data=None, secret=None, check=True):
        """One request signed by curl's own SigV4 (an independent client); returns the process,
        stdout the answer body, and the status after the last newline."""
        body = data or b""
        cmd = ["curl", "-sS", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{self.AK}:{secret or self.SK}",
               "-X", method, "-H", f"x-amz-content-sha256: {sha(body)}", "-w", "\n%{http_code}",
               f"{self.endpoint}/{path}"]
        if data is not None:
            cmd[1:1] = ["--data-binary", "@-"]
        p = subprocess.run(cmd, input=body, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                           env=child_env())
        p.status = int(p.stdout.rsplit(b"\n", 1)[-1] or 0)
        p.body = p.stdout.rsplit(b"\n", 1)[0]
        if check:
            assert p.status // 100 == 2, f"{method} {path} -> {p.status} {p.body[:300]!r}"
        return p

    def keys(self, prefix):
        p = self.s3("GET", f"ganglion?list-type=2&prefix={prefix.replace('/', '%2F')}")
        return sorted(k.split(b"</Key>")[0].decode() for k in p.body.split(b"<Key>")[1:])

    def log_tail(self):
        out = []
        for f in sorted((self.base / "log").glob("*.log")):
            out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)

    def stop(self):
        for name in ("client.rgw", "osd.0", "mon.a"):
            try:
                pid = int((self.base / "run" / f"{name}.pid").read_text())
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                continue
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), 30, 0.05)


@pytest.fixture
def agents(tmp_base):
    made = []

    def make(url, name):
        a = Agent(make_dir(tmp_base / f"so-{name}-{os.getpid()}", 0o700), url)
        made.append(a)
        return a

    yield make
    problems = []
    for a in made:
        problems += a.stop(check=False)
        print(f"\n--- agent log ({a.logfile}) ---\n{a.log()[-6000:]}")
    assert not problems, problems


def replicas(workdir, pg, db, n, extra=()):
    """Starts n gangliond replicas on one database; the first one bootstraps (admin token, keys)."""
    out = []
    for i in range(n):
        s = Gangliond(workdir / f"replica{i}", database_url=pg.dsn(db), extra_args=list(extra),
                      admin_token=out[0].admin_token if out else None)
        s.start()
        out.append(s)
    return out


def stop_all(servers):
    problems = []
    for s in servers:
        problems += s.stop(check=False) or []
        print(f"\n--- gangliond log ({s.logfile}) ---\n{s.log()}")
    return problems


def test_two_replicas_behind_haproxy_share_artifacts_and_hand_over(pg, db, workdir, agents):
    shared = make_dir(workdir / "shared-artifacts", 0o700)
    fast = ["--artifact-dir", str(shared), "--rollout-interval", "1s", "--agent-poll-interval", "1s"]
    servers = replicas(workdir, pg, db, 2, fast)
    a, b = servers
    lb = HAProxy(workdir / "haproxy", [a.port, b.port])
    via = Gangliond.__new__(Gangliond)  # the balancer, spoken to with the replicas' helpers
    via.url, via.admin_token, via.session = lb.url, a.admin_token, requests.Session()
    via.session.trust_env = False
    try:
        # Published through the balancer: both replicas serve the bytes, whole and by range.
        v1 = push(via, "1.0.0", "v1")
        v2 = push(via, "2.0.0", "v2")
        for s in servers:
            for data in (v1, v2):
                r = s.api("GET", f"/v1/artifacts/sha256/{sha(data)}")
                assert r.status_code == 200 and r.content == data, (s.url, r.status_code)
            r = s.api("GET", f"/v1/artifacts/sha256/{sha(v2)}", headers={"Range": "bytes=10-"})
            assert r.status_code == 206 and r.content == v2[10:], r.status_code
        assert not (a.data_dir / "artifacts").exists() and not (b.data_dir / "artifacts").exists()
        # A device enrolled through the balancer follows a deployment made on replica a.
        tok = via.make_enroll_token(labels={"site": "lb"})["token"]
        ag = agents(lb.url, "lb")
        ag.enroll(tok)
        ag.start()
        assert a.api("PUT", f"/v1/models/{MODEL}/aliases/production", json={"version": "1.0.0"}).status_code == 200
        r = a.api("POST", "/v1/deployments", json={"name": "lb", "model": MODEL, "selector": "site=lb",
                                                  "follow": "production"})
        assert r.status_code == 201, r.text
        wait_serving(ag, "1.0.0")
        # Both replicas answered the agent's check-ins through the balancer.
        for s in servers:
            assert "path=/v1/agent/checkin" in s.log(10**7), f"{s.url} got no check-in"
        # Replica a dies without a word; the balancer and replica b carry the next release.
        a.proc.kill()
        a.proc.wait()
        r = wait_for(lambda: via.api("PUT", f"/v1/models/{MODEL}/aliases/production",
                                     json={"version": "2.0.0"}).status_code == 200, 30, 0.3)
        assert r, "the balancer did not take the alias move after replica a died"
        wait_serving(ag, "2.0.0")
        assert wait_for(lambda: b.api("GET", "/v1/deployments/lb").json()["version"] == "2.0.0", 30, 0.2)
    finally:
        lb.stop()
        via.session.close()
        a.stop(check=False)  # killed on purpose
        problems = stop_all([b])
    assert not problems, problems


def _self(server, token):
    return server.api("GET", "/v1/agent/self", token=token)


def _checkin(server, token, etag=None):
    return server.api("POST", "/v1/agent/checkin", token=token, json={"agent_version": "so"},
                      headers={"If-None-Match": etag} if etag else None)


def _last_seen(pg, db, device_id):
    return pg.sql(f"SELECT extract(epoch FROM last_seen_at)::bigint FROM devices WHERE id = '{device_id}'", db)


def test_device_tokens_and_last_seen_across_replicas(pg, db, workdir):
    """Signed device tokens are checked in memory by every replica; a rotation or decommission
    made on one replica refuses the old tokens on the other at its very next request, also
    after the other's NOTIFY connection was cut; last-seen times of check-ins answered from
    memory are written in batches and flushed by a clean stop."""
    a, b = replicas(workdir, pg, db, 2)
    c = None
    try:
        devs = [enroll_device(a) for _ in range(4)]
        toks = [d.authenticate(a) for d in devs]
        # Minted by a, accepted by b (the key is shared through the database), and the reverse.
        assert all(_self(b, t).status_code == 200 for t in toks)
        tb = devs[0].authenticate(b)
        assert len(tb) < 128, tb  # agents keep at most 127 bytes
        assert _self(a, tb).status_code == 200
        # A token whose signature does not match: refused.
        forged = toks[0][:-32] + ("0" if toks[0][-32] != "0" else "1") + toks[0][-31:]
        assert_problem(_self(b, forged), 401, "malformed")

        # Rotated on a: both of its tokens die on b (and a) at once; a new challenge gets in.
        r = a.api("POST", f"/v1/devices/{devs[0].id}/rotate-token")
        assert r.status_code == 200 and r.json()["token_generation"] == 1, r.text
        for s in (b, a):
            for t in (toks[0], tb):
                assert_problem(_self(s, t), 401, "revoked")
        fresh = devs[0].authenticate(b)
        assert fresh.split(".")[2] == "1" and _self(a, fresh).status_code == 200, fresh
        assert all(_self(b, t).status_code == 200 for t in toks[1:])
        # One of the old generation with a good signature and expiry (the key is in the database): refused.
        assert_problem(_self(b, sign_device_token(pg, db, devs[0].id, 0, time.time() + 600)), 401, "revoked")

        # Decommissioned on b: refused on a at once.
        assert b.api("DELETE", f"/v1/devices/{devs[1].id}").status_code == 200
        assert_problem(_self(a, toks[1]), 401, "decommissioned")
        assert_problem(_checkin(a, toks[1]), 401, "decommissioned")

        # The CLI rotates too, and the audit log names it.
        p = a.cli("devices", "rotate-token", devs[2].id)
        assert p.returncode == 0 and "revoked on every replica" in p.stdout, p.stderr
        assert_problem(_self(b, toks[2]), 401, "revoked")
        audit = a.api("GET", "/v1/audit", params={"action": "device.token_rotate"}).json()["items"]
        assert sorted(e["object_id"] for e in audit) == sorted([devs[0].id, devs[2].id]), audit
        p = a.cli("devices", "rotate-token", devs[1].id)
        assert p.returncode != 0 and "decommissioned" in p.stderr, (p.stdout, p.stderr)
        p = a.cli("devices", "rotate-token", "no-such-device")
        assert p.returncode != 0, p.stdout

        # The replicas' NOTIFY connections are cut: until each is back and has read the state
        # again, its replica asks the database, so a rotation made meanwhile is not missed.
        listening = "FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'gangliond listener'"
        assert pg.sql(f"SELECT count(*) {listening}", db) == "2"  # one per replica
        pg.sql(f"SELECT pg_terminate_backend(pid) {listening}", db)
        lost = lambda s: "event=notify_listen_lost" in s.log(10**7)
        assert wait_for(lambda: lost(a) and lost(b), 30), "the listeners did not notice the cut"
        assert a.api("POST", f"/v1/devices/{devs[3].id}/rotate-token").status_code == 200
        for s in (a, b):
            assert_problem(_self(s, toks[3]), 401, "revoked")
        back = lambda: pg.sql(f"SELECT count(*) {listening}", db) == "2"
        assert wait_for(back, 60, 0.1), "the listeners did not come back"
        time.sleep(0.5)  # the reload after the reconnect
        for s in (a, b):
            assert_problem(_self(s, toks[3]), 401, "revoked")
            assert _self(s, fresh).status_code == 200

        # A replica started after all this knows it from its first request.
        c = Gangliond(workdir / "replica2", database_url=pg.dsn(db), admin_token=a.admin_token).start()
        assert_problem(_self(c, toks[0]), 401, "revoked")
        assert_problem(_self(c, toks[1]), 401, "decommissioned")
        assert _self(c, fresh).status_code == 200

        # Last seen: a check-in answered from memory (304) writes nothing itself; the batch
        # writer does within about a second, and a clean stop right after it loses none.
        r = _checkin(b, fresh)
        assert r.status_code == 200, r.text
        etag = r.headers["ETag"]
        for s in (b, c):
            assert _checkin(s, fresh, etag).status_code == 304  # c's cache warms from the database
        pg.sql(f"UPDATE devices SET last_seen_at = '2001-01-01Z' WHERE id = '{devs[0].id}'", db)
        assert _checkin(b, fresh, etag).status_code == 304
        # (About a second on a quiet machine; the deadline leaves room for ASan on a loaded one,
        # and still says the batch writer wrote it, with no check-in to do so.)
        assert wait_for(lambda: int(_last_seen(pg, db, devs[0].id)) > time.time() - 30, 15, 0.05), \
            "b did not write the last-seen time within 15 s"
        pg.sql(f"UPDATE devices SET last_seen_at = '2001-01-01Z' WHERE id = '{devs[0].id}'", db)
        t0 = time.time()
        assert _checkin(c, fresh, etag).status_code == 304
        problems = c.stop(check=False)  # SIGTERM at once
        assert not problems, problems
        seen = int(_last_seen(pg, db, devs[0].id))
        assert seen >= int(t0) - 1, (seen, t0)
        assert "event=last_seen_flush_failed" not in b.log(10**7) + a.log(10**7)
    finally:
        problems = stop_all([s for s in (a, b, c) if s])
    assert not problems, problems


@pytest.fixture(scope="module")
def ceph(tmp_base):
    c = None
    try:
        c = Ceph(tmp_base / "ceph")
        yield c
    finally:
        if c:
            c.stop()


def s3_args(ceph, workdir, secret=None, extra=()):
    key = workdir / f"s3-secret-{uuid.uuid4().hex[:6]}"
    key.write_text((secret or ceph.SK) + "\n")
    os.chmod(key, 0o600)
    return ["--artifact-store", "s3", "--artifact-s3-url", f"{ceph.endpoint}/ganglion/models",
            "--artifact-s3-access-key", ceph.AK, "--artifact-s3-secret-key-file", str(key),
            "--artifact-s3-part-size", "5M", *extra]


def test_s3_store_on_radosgw(pg, db, workdir, gangliond, ceph):
    # A wrong secret key: radosgw refuses the signature, and gangliond does not start.
    bad = Gangliond(workdir / "bad", database_url=pg.dsn(pg.create_database()),
                    extra_args=s3_args(ceph, workdir, "wrong-secret"))
    bad.start(wait=False)
    assert bad.proc.wait(60) != 0
    log = bad.log()
    assert "SignatureDoesNotMatch" in log and "does not answer to these credentials" in log, log
    bad.stop(check=False)

    # connection-timeout: see the cut upload below.
    s = gangliond(extra_args=s3_args(ceph, workdir, extra=["--connection-timeout", "10s"]))
    # gangliond reads no more of an upload while it sends a part to the store: a fresh connection,
    # so that the socket is not left with the 2 s timeout of the readiness poll.
    s.session.close()
    small = os.urandom(300_000)
    large = os.urandom(12 * 1024 * 1024 + 12345)  # three parts of 5 MiB
    for v, data in (("1.0.0", small), ("2.0.0", large)):
        r = publish(s, MODEL, data, meta=model_meta(v))
        assert r.status_code == 201, r.text
    assert ceph.keys("models/sha256/") == sorted(f"models/sha256/{sha(d)[:2]}/{sha(d)}" for d in (small, large))
    assert ceph.keys("models/tmp/") == []  # the multipart upload's temp object is gone
    # The stored bytes are the artifact's (read with an independent client).
    assert ceph.s3("GET", f"ganglion/models/sha256/{sha(large)[:2]}/{sha(large)}").body == large
    # Downloads proxied through gangliond, whole and by range.
    r = s.api("GET", f"/v1/artifacts/sha256/{sha(large)}")
    assert r.status_code == 200 and r.content == large and r.headers["Content-Length"] == str(len(large))
    r = s.api("GET", f"/v1/artifacts/sha256/{sha(large)}", headers={"Range": "bytes=5242000-5243000"})
    assert r.status_code == 206 and r.content == large[5242000:5243001], r.status_code
    assert r.headers["Content-Range"] == f"bytes 5242000-5243000/{len(large)}"
    # The same object at its TUF target path (the hash on the file name), by range too.
    r = s.api("GET", f"/v1/tuf/image/targets/models/{MODEL}/2.0.0/{sha(large)}.model.onnx",
              headers={"Range": "bytes=-1000"})
    assert r.status_code == 206 and r.content == large[-1000:], r.status_code
    r = s.api("GET", f"/v1/artifacts/sha256/{sha(small)}", headers={"Range": f"bytes={len(small)}-"})
    assert_problem(r, 416)
    # Same bytes again under another version: stored once.
    r = publish(s, MODEL, small, meta=model_meta("1.0.1"))
    assert r.status_code == 201, r.text
    assert len(ceph.keys("models/sha256/")) == 2
    # A refused publish (wrong stated digest) leaves no object behind, large or small.
    for data in (os.urandom(6 * 1024 * 1024), os.urandom(1000)):
        r = publish(s, MODEL, data, meta=model_meta("9.9.9", sha256="0" * 64))
        assert_problem(r, 400, "sha-256")
    assert len(ceph.keys("models/sha256/")) == 2 and ceph.keys("models/tmp/") == []
    # An upload cut off after a part went to the store: its multipart upload is aborted. (A client
    # that leaves while gangliond is sending a part is noticed only at connection-timeout:
    # libmicrohttpd misses the close then. The server above has a short one.)
    body, ctype = multipart(model_meta("9.9.8"), os.urandom(12 * 1024 * 1024))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(f"POST /v1/models/{MODEL}/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.admin_token}"
                  f"\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        c.sendall(body[:11 * 1024 * 1024])
        assert wait_for(lambda: b"<Upload>" in ceph.s3("GET", "ganglion?prefix=models%2Ftmp%2F&uploads=").body, 30, 0.2)
    assert wait_for(lambda: b"<Upload>" not in ceph.s3("GET", "ganglion?prefix=models%2Ftmp%2F&uploads=").body, 60,
                    0.2), "the cut upload's multipart upload was left behind"
    assert len(ceph.keys("models/sha256/")) == 2 and ceph.keys("models/tmp/") == []
    s.stop()

    # The sweep: an orphan (a publish cut between storing and committing), a temp object and an
    # unfinished multipart upload of a dead replica. Younger than the grace: kept (they may be
    # another replica's upload in flight); older: removed; what a version references: kept.
    orphan = os.urandom(1000)
    okey = f"ganglion/models/sha256/{sha(orphan)[:2]}/{sha(orphan)}"
    ceph.s3("PUT", okey, orphan)
    ceph.s3("PUT", "ganglion/models/tmp/upload-deadbeef", b"partial")
    ceph.s3("POST", "ganglion/models/tmp/upload-cafe?uploads=")
    s2 = gangliond(extra_args=s3_args(ceph, workdir), admin_token=s.admin_token)
    assert len(ceph.keys("models/sha256/")) == 3 and ceph.keys("models/tmp/") == ["models/tmp/upload-deadbeef"]
    s2.stop()
    time.sleep(1.1)  # the store's times have whole seconds
    s3 = gangliond(extra_args=s3_args(ceph, workdir, extra=["--artifact-sweep-grace", "0"]), admin_token=s.admin_token)
    assert ceph.keys("models/sha256/") == sorted(f"models/sha256/{sha(d)[:2]}/{sha(d)}" for d in (small, large))
    assert ceph.keys("models/tmp/") == []
    uploads = ceph.s3("GET", "ganglion?prefix=models%2Ftmp%2F&uploads=").body
    assert b"<Upload>" not in uploads, uploads
    assert "event=artifact_swept" in s3.log() and "event=artifact_upload_aborted" in s3.log()
    r = s3.api("GET", f"/v1/artifacts/sha256/{sha(small)}")
    assert r.status_code == 200 and r.content == small


def test_s3_settings_are_checked(pg, db, workdir, gangliond, ceph):
    base = s3_args(ceph, workdir)
    cases = [
        (["--artifact-store", "nfs"], "artifact-store must be dir or s3"),
        (["--artifact-s3-url", f"{ceph.endpoint}/ganglion"], "artifact-s3-* keys are set but artifact-store is dir"),
        (["--artifact-store", "s3"], "needs artifact-s3-url"),
        (base[:3] + ["ftp://x/gn"] + base[4:], "must start with https:// or http://"),
        (base[:3] + [f"{ceph.endpoint}/B_d"] + base[4:], "not a valid bucket name"),
        (base + ["--artifact-dir", str(workdir)], "artifact-dir is set but artifact-store is s3"),
        (base + ["--max-artifact-size", "6G"], "at most 5G"),
        (base[:3] + [f"{ceph.endpoint}/nosuchbucket"] + base[4:], "no such bucket"),
    ]
    for args, msg in cases:
        s = Gangliond(workdir / f"cfg{len(msg)}", database_url=pg.dsn(pg.create_database()), extra_args=args)
        s.start(wait=False)
        assert s.proc.wait(60) != 0, args
        assert msg in s.log(), (args, s.log())
        s.stop(check=False)


# --- database failover ------------------------------------------------------------------------
class Standby(Postgres):
    """A streaming standby of primary, made with pg_basebackup, in its own socket directory."""

    def __init__(self, base, primary, name):
        super().__init__(base)
        self.port = 5433
        run(as_pg_user([PG_BINDIR / "pg_basebackup", "-D", self.datadir, "-h", primary.sockdir,
                        "-p", primary.port, "-U", primary.user, "-X", "stream", "-c", "fast", "--no-sync"]), cwd=self.base)
        run(as_pg_user(["touch", self.datadir / "standby.signal"]))
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write(f"\nunix_socket_directories = '{self.sockdir}'\nport = {self.port}\nhot_standby = on\n"
                    f"primary_conninfo = 'host={primary.sockdir} port={primary.port} user={primary.user} "
                    f"application_name={name}'\n")

    def promote(self):
        run(as_pg_user([PG_BINDIR / "pg_ctl", "-D", self.datadir, "-w", "-t", "60", "promote"]), cwd=self.base)


def test_database_failover_to_a_promoted_standby(tmp_base, workdir):
    primary = Postgres(tmp_base / "failover-primary")
    primary.initdb()
    with open(primary.datadir / "postgresql.conf", "a") as f:
        # What is acknowledged is on the standby too (the harness's default is asynchronous).
        f.write("\nsynchronous_commit = on\nwal_level = replica\n")
    standby = None
    servers = []
    try:
        primary.start()
        primary.sql("CREATE DATABASE fo")
        standby = Standby(tmp_base / "failover-standby", primary, "standby1")
        standby.start()
        primary.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
        primary.sql("SELECT pg_reload_conf()")
        assert wait_for(lambda: primary.sql("SELECT sync_state FROM pg_stat_replication") == "sync", 30, 0.2)
        url = (f"host={primary.sockdir},{standby.sockdir} port={primary.port},{standby.port} dbname=fo "
               f"user={primary.user} target_session_attrs=read-write")
        s = Gangliond(workdir / "fo", database_url=url,
                      extra_args=["--db-connect-timeout", "2s", "--db-statement-timeout", "5s"])
        servers.append(s)
        s.start()

        acked, answers, stop = [], [], threading.Event()

        def writer(n):
            sess = requests.Session()
            sess.trust_env = False
            i = 0
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                try:
                    r = sess.post(s.url + "/v1/enroll-tokens", json={"name": f"w{n}-{i}"},
                                  headers={"Authorization": f"Bearer {s.admin_token}"}, timeout=30)
                except requests.RequestException as e:
                    answers.append(("error", repr(e), time.monotonic() - t0))
                    continue
                answers.append((r.status_code, r.headers.get("Content-Type", ""), time.monotonic() - t0))
                if r.status_code == 201:
                    acked.append(r.json()["id"])
                elif r.status_code == 503:
                    time.sleep(0.05)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            assert wait_for(lambda: len(acked) >= 30, 30, 0.05), answers[-5:]
            run(as_pg_user([PG_BINDIR / "pg_ctl", "-D", primary.datadir, "-m", "immediate", "-w", "stop"]))
            primary.started = False
            down_at = len(answers)
            assert wait_for(lambda: any(a[0] == 503 for a in answers[down_at:]), 60, 0.05), answers[down_at:][-5:]
            standby.promote()
            before = len(acked)
            assert wait_for(lambda: len(acked) >= before + 30, 60, 0.1), (
                f"no writes after the promotion: {answers[-5:]}\n{s.log()[-3000:]}")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        # Every answer was a success or a 503 problem, each within the deadlines; nothing hung.
        for status, ctype, took in answers:
            assert status in (201, 503), (status, ctype)
            assert status == 201 or ctype.startswith("application/problem+json"), ctype
            assert took < 15, f"a request took {took:.1f} s"
        # Nothing that was acknowledged is lost.
        have = set(standby.sql("SELECT id FROM enroll_tokens", dbname="fo").split())
        missing = [i for i in acked if i not in have]
        assert not missing, f"{len(missing)} acknowledged of {len(acked)} lost: {missing[:5]}"
        # The LISTEN connection found the new primary too.
        assert wait_for(lambda: standby.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'",
                                            dbname="fo") != "0", 20, 0.2)
        assert "event=db_unavailable" in s.log() and "event=db_available" in s.log()
    finally:
        problems = stop_all(servers)
        if standby:
            standby.stop()
        primary.stop()
    assert not problems, problems
