#!/usr/bin/python3
"""What a web dashboard left open on the fleet view costs the server, against polling naively.

Starts a throwaway PostgreSQL (the integration tests' cluster settings) and gangliond, enrolls
DEVICES devices that check in once with a model report (so each device object carries what it
runs), then repeats the fleet view's poll (GET /v1/status and GET /v1/devices?status=active&limit=1000,
which ui/app.js asks every 2 s) POLLS times three ways: both requests every time without
If-None-Match (the reference), both with If-None-Match (304 while unchanged), and as the dashboard
does (the status every time, the device list only when the status changed or every 15th poll).
It reports per poll the wall time seen by the client, the bytes received, and the CPU time of
gangliond and of PostgreSQL's backends (from /proc, utime + stime). The fleet does not change
during the run, so the dashboard's way is its steady state.

Usage (Debian's python3 for its modules):
    GANGLION_BUILDDIR=build /usr/bin/python3 bench/ui_poll.py [--devices 500] [--polls 200]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from ganglion_harness import (  # noqa: E402
    Gangliond, Postgres, enroll_device, make_dir, model_meta, postgres_pids_for, publish)

TICK = os.sysconf("SC_CLK_TCK")
VIEW = ["/v1/status", "/v1/devices?status=active&limit=1000"]
DEVICES_EVERY = 15  # ui/app.js: DEVICES_EVERY_MS / POLL_MS


def cpu_s(pids):
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICK


def run(srv, pg_pids, token, polls, mode):
    """mode "plain": both requests every poll, no ETag; "etag": both every poll with If-None-Match;
    "dashboard": what ui/app.js does: the status every poll and the device list only when the status
    changed or every DEVICES_EVERY polls, both with If-None-Match."""
    s = requests.Session()
    s.trust_env = False
    cache = {}
    statuses = {}
    nbytes = 0
    srv_cpu, pg_cpu = cpu_s([srv.proc.pid]), cpu_s(pg_pids)
    t0 = time.monotonic()
    for i in range(polls):
        status_changed = True
        for path in VIEW:
            if mode == "dashboard" and path != VIEW[0] and not status_changed and i % DEVICES_EVERY:
                continue
            h = {"Authorization": f"Bearer {token}"}
            if mode != "plain" and path in cache:
                h["If-None-Match"] = cache[path]
            r = s.get(srv.url + path, headers=h, timeout=30)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            nbytes += len(r.content)
            if path == VIEW[0]:
                status_changed = r.status_code != 304
            if r.status_code == 200 and "ETag" in r.headers:
                cache[path] = r.headers["ETag"]
    wall = time.monotonic() - t0
    return {"wall_ms": 1000 * wall / polls, "bytes": nbytes / polls,
            "srv_cpu_ms": 1000 * (cpu_s([srv.proc.pid]) - srv_cpu) / polls,
            "pg_cpu_ms": 1000 * (cpu_s(pg_pids) - pg_cpu) / polls, "statuses": statuses}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--polls", type=int, default=200)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gn-bench-ui-"))
    make_dir(base, 0o711)
    pg = Postgres(base / "pg")
    srv = None
    try:
        pg.initdb()
        pg.start()
        db = pg.create_database()
        srv = Gangliond(make_dir(base / "srv"), database_url=pg.dsn(db),
                        extra_args=["--rate-limit-identity", "100000", "--rate-limit-address", "100000"])
        srv.start()
        r = publish(srv, "det", b"bench-model", meta=model_meta("1.0.0"))
        assert r.status_code == 201, r.text
        enroll = srv.make_enroll_token(max_uses=args.devices)["token"]
        for i in range(args.devices):
            dev = enroll_device(srv, name=f"cam-{i:05d}", enroll_token=enroll)
            srv.api("PATCH", f"/v1/devices/{dev.id}", json={"labels": {"site": f"site-{i % 10}"}})
            tok = dev.authenticate(srv)
            body = {"seq": 1, "agent_version": "bench", "facts": {"arch": "x86_64"},
                    "models": [{"name": "det", "version": "1.0.0", "sha256": "0" * 64, "target": "cpu",
                                "state": "active", "requests": 100, "errors": 0, "latency_us_max": 900}]}
            r = srv.api("POST", "/v1/agent/checkin", token=tok, json=body)
            assert r.status_code == 200, r.text
        token = srv.make_token(["read"], name="dashboard")["token"]
        pg_pids = postgres_pids_for(pg.datadir)
        run(srv, pg_pids, token, 10, "plain")  # warm up the pool and the caches
        res = {m: run(srv, pg_pids, token, args.polls, m) for m in ("plain", "etag", "dashboard")}
        assert set(res["plain"]["statuses"]) == {200}, res["plain"]
        assert res["etag"]["statuses"].get(304, 0) >= 2 * (args.polls - 1), res["etag"]
        print(f"devices={args.devices} polls={args.polls} (the fleet view: GET {VIEW[0]}, GET {VIEW[1]})")
        print("| per poll | both, no ETag (reference) | both, If-None-Match | the dashboard's | dashboard / reference |")
        print("|---|---:|---:|---:|---:|")
        for k, label in (("wall_ms", "wall time, ms"), ("bytes", "bytes received"),
                         ("srv_cpu_ms", "gangliond CPU, ms"), ("pg_cpu_ms", "PostgreSQL CPU, ms")):
            p, e, d = res["plain"][k], res["etag"][k], res["dashboard"][k]
            print(f"| {label} | {p:,.2f} | {e:,.2f} | {d:,.2f} | {d / p if p else float('nan'):.2f} |")
    finally:
        if srv:
            srv.stop(check=False)
        pg.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)


if __name__ == "__main__":
    main()
