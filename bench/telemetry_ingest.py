#!/usr/bin/python3
"""gangliond's telemetry ingestion against a plain COPY of the same rows into the same database.

Starts a throwaway PostgreSQL (the integration tests' cluster settings) and gangliond, publishes a
model version whose reference profile has 16 numeric features of 10 bins, enrolls DEVICES devices
and has THREADS clients post their windows over the real protocol (POST /v1/agent/telemetry,
BATCH windows a request, each window one row of telemetry_windows and 16 of telemetry_features).
Then it copies those very rows out and COPYs them into tables made like gangliond's (partitioned
by day, the same primary key and BRIN indexes) in the same database, and compares rows per second.

Usage (Debian's python3 for its modules):
    GANGLION_BUILDDIR=build /usr/bin/python3 bench/telemetry_ingest.py [--devices 20] [--windows 300]
        [--batch 100] [--threads 4]
"""
import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from ganglion_harness import (  # noqa: E402
    PG_BINDIR, Gangliond, Postgres, enroll_device, make_dir, model_meta, publish)

FEATURES, BINS, WINDOW = 16, 10, 300


def profile():
    feats = []
    for i in range(FEATURES):
        edges = np.linspace(-2.5, 2.5, BINS + 1)
        feats.append({"name": f"x{i}", "edges": edges.tolist(), "proportions": [1.0 / BINS] * BINS})
    return {"features": feats}


def window(rng, start):
    feats = {}
    for i in range(FEATURES):
        counts = rng.integers(0, 400, BINS)
        n = int(counts.sum())
        feats[f"x{i}"] = {"counts": counts.tolist(), "n": n, "mean": float(rng.normal(0, 0.1)),
                          "variance": 1.0, "min": -2.5, "max": 2.5}
    return {"model": "bench", "version": "1.0.0", "start": start, "seconds": WINDOW, "requests": 3000,
            "errors": 3, "latency_us_buckets": [0, 100, 2000, 897] + [0] * 13, "features": feats}


def psql(pg, db, sql):
    return subprocess.run([str(PG_BINDIR / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                           str(pg.sockdir), "-p", str(pg.port), "-U", pg.user, "-d", db, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--windows", type=int, default=300, help="windows per device")
    ap.add_argument("--batch", type=int, default=100, help="windows per request")
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gn-bench-tel-"))
    make_dir(base, 0o711)
    pg = Postgres(base / "pg")
    srv = None
    try:
        pg.initdb()
        pg.start()
        db = pg.create_database()
        srv = Gangliond(make_dir(base / "srv"), database_url=pg.dsn(db),
                        extra_args=["--max-body", "16M", "--threads", "4", "--db-pool-size", "8"])
        srv.start()
        r = publish(srv, "bench", b"bench-model", meta=model_meta("1.0.0", reference_profile=profile(), inputs=[
            {"name": "x", "dtype": "float32", "shape": [1, FEATURES]}], sample=None, no_self_test=True))
        assert r.status_code == 201, r.text
        rng = np.random.default_rng(1)
        now = int(time.time()) // WINDOW * WINDOW
        jobs = []
        for d in range(args.devices):
            dev = enroll_device(srv)
            assert srv.api("PUT", f"/v1/devices/{dev.id}/desired",
                           json={"model": "bench", "version": "1.0.0"}).status_code == 200
            tok = dev.authenticate(srv)
            starts = [now - WINDOW * (k + 1) for k in range(args.windows)]
            for b in range(0, len(starts), args.batch):
                body = json.dumps({"windows": [window(rng, s) for s in starts[b:b + args.batch]]})
                jobs.append((tok, body))
        # the partitions of those days exist before the clock starts, as they would (the job)
        days = {time.strftime("%Y-%m-%d", time.gmtime(now - WINDOW * k)) for k in range(args.windows + 1)}
        psql(pg, db, "SELECT " + ",".join(f"gn_telemetry_partition('{d}')" for d in sorted(days)))
        lock = threading.Lock()
        failures = []

        def worker():
            import requests
            s = requests.Session()
            s.trust_env = False
            while True:
                with lock:
                    if not jobs:
                        return
                    tok, body = jobs.pop()
                r = s.post(srv.url + "/v1/agent/telemetry", data=body, timeout=120,
                           headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"})
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")

        nbatches = len(jobs)
        t0 = time.monotonic()
        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        api_s = time.monotonic() - t0
        assert not failures, failures[:3]
        nw = int(psql(pg, db, "SELECT count(*) FROM telemetry_windows"))
        nf = int(psql(pg, db, "SELECT count(*) FROM telemetry_features"))
        assert nw == args.devices * args.windows, nw
        rows = nw + nf

        # The same rows, COPYed into tables made like gangliond's.
        wcsv, fcsv = base / "w.csv", base / "f.csv"
        psql(pg, db, f"\\copy (SELECT * FROM telemetry_windows) TO '{wcsv}' CSV")
        psql(pg, db, f"\\copy (SELECT * FROM telemetry_features) TO '{fcsv}' CSV")
        ddl = ["CREATE TABLE cw (LIKE telemetry_windows INCLUDING DEFAULTS INCLUDING CONSTRAINTS,"
               " PRIMARY KEY (device_id, model, version, window_start)) PARTITION BY RANGE (window_start)",
               "CREATE INDEX ON cw USING brin (window_start)",
               "CREATE TABLE cf (LIKE telemetry_features INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
               " PARTITION BY RANGE (window_start)",
               "CREATE INDEX ON cf USING brin (window_start)"]
        for d in sorted(days):
            nxt = (datetime.date.fromisoformat(d) + datetime.timedelta(days=1)).isoformat()
            for t in ("cw", "cf"):
                ddl.append(f"CREATE TABLE {t}_{d.replace('-', '')} PARTITION OF {t} FOR VALUES FROM "
                           f"('{d} 00:00:00+00') TO ('{nxt} 00:00:00+00')")
        psql(pg, db, "; ".join(ddl))
        t0 = time.monotonic()
        psql(pg, db, f"\\copy cw FROM '{wcsv}' CSV")
        psql(pg, db, f"\\copy cf FROM '{fcsv}' CSV")
        copy_s = time.monotonic() - t0
        print(f"devices={args.devices} windows={nw} feature_rows={nf} batches={nbatches} batch={args.batch} "
              f"threads={args.threads}")
        print(f"api: {api_s:.2f} s, {rows / api_s:,.0f} rows/s ({nw / api_s:,.0f} windows/s)")
        print(f"copy: {copy_s:.2f} s, {rows / copy_s:,.0f} rows/s")
        print(f"api/copy: {copy_s / api_s:.0%}")
    finally:
        if srv:
            srv.stop(check=False)
        pg.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)


if __name__ == "__main__":
    main()
