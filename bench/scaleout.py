#!/usr/bin/python3
"""Scale-out figures, each beside its reference on the same machine in the same run:

  1. check-ins a second (unchanged reports, answered 304 from memory) through HAProxy over two
     gangliond replicas, against one replica directly: wrk, keep-alive, the same devices;
  2. an artifact download (curl -o /dev/null, best of RUNS) from gangliond on each artifact store
     (a directory; S3 on radosgw, proxied through gangliond) against nginx serving the same file,
     and against radosgw answering the same object directly.

On a 2-core machine both replicas, HAProxy and wrk share the same two cores: the first ratio shows
what the balancer costs, not what a second machine would add. Not part of the test suite.

Needs wrk, nginx (nginx-light), haproxy and the Ceph packages of test_scaleout.py. Usage:
    GANGLION_BUILDDIR=build /usr/bin/python3 bench/scaleout.py [--devices N] [--seconds S]
        [--connections C] [--size-mib M] [--runs R]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from ganglion_harness import (  # noqa: E402
    Gangliond, Postgres, enroll_device, free_port, make_dir, model_meta, publish)
from test_scaleout import Ceph, HAProxy, s3_args, sha  # noqa: E402

LUA = r"""
local devs, i = {}, 0
local body = '{"agent_version":"bench","models":[],"facts":{}}'
init = function(args)
  for line in io.lines(args[1]) do
    local tok, etag = line:match("^(%S+) (%S+)$")
    devs[#devs + 1] = {tok, etag}
  end
  i = math.random(#devs)
end
request = function()
  i = i % #devs + 1
  return wrk.format("POST", "/v1/agent/checkin", {["Authorization"] = "Bearer " .. devs[i][1],
    ["If-None-Match"] = devs[i][2], ["Content-Type"] = "application/json"}, body)
end
"""


def wrk(url, script, devices_file, conns, secs):
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "-s", script, url, "--", devices_file],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    rate = float(next(l.split()[1] for l in out.splitlines() if l.startswith("Requests/sec")))
    bad = next((int(l.split()[-1]) for l in out.splitlines() if "Non-2xx or 3xx" in l), 0)
    return rate, bad


def best_download(url, runs, args=()):
    best = 0.0
    for _ in range(runs):
        t0 = time.monotonic()
        p = subprocess.run(["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}", *args, url],
                           stdout=subprocess.PIPE, text=True, check=True)
        best = max(best, int(p.stdout) / (time.monotonic() - t0) / 1e6)
    return best


def nginx(base, root):
    port = free_port()
    conf = base / "nginx.conf"
    conf.write_text(f"""worker_processes 1; error_log {base}/error.log; pid {base}/nginx.pid;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on;
  client_body_temp_path {base}; proxy_temp_path {base}; fastcgi_temp_path {base};
  uwsgi_temp_path {base}; scgi_temp_path {base};
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    subprocess.run(["nginx", "-c", conf, "-p", base], check=True)
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gn-bench-scaleout-"))
    make_dir(tmp, 0o711)
    pg = Postgres(tmp / "pg")
    servers, others = [], []
    try:
        pg.initdb()
        pg.start()
        db = pg.create_database()
        shared = make_dir(tmp / "artifacts", 0o755)
        common = ["--artifact-dir", str(shared), "--log-level", "warn", "--rate-limit-address", "0",
                  "--rate-limit-identity", "0"]
        for i in range(2):
            s = Gangliond(tmp / f"r{i}", database_url=pg.dsn(db), extra_args=common,
                          admin_token=servers[0].admin_token if servers else None)
            s.start()
            servers.append(s)
        lb = HAProxy(tmp / "haproxy", [s.port for s in servers])
        others.append(lb)

        # 1. check-ins
        lines = []
        for _ in range(a.devices):
            d = enroll_device(servers[0])
            tok = d.authenticate(servers[0])
            r = servers[0].api("POST", "/v1/agent/checkin", token=tok,
                               json={"agent_version": "bench", "models": [], "facts": {}})
            assert r.status_code == 200, r.text
            lines.append(f"{tok} {r.headers['ETag']}")
        devs = tmp / "devices.txt"
        devs.write_text("\n".join(lines) + "\n")
        script = tmp / "checkin.lua"
        script.write_text(LUA)
        direct, bad1 = wrk(servers[0].url, script, devs, a.connections, a.seconds)
        via, bad2 = wrk(lb.url, script, devs, a.connections, a.seconds)
        print(f"check-ins, wrk -t2 -c{a.connections} -d{a.seconds}s, {a.devices} devices, unchanged reports (304):")
        print(f"  one replica directly:          {direct:9.0f} /s  (non-2xx/3xx: {bad1})")
        print(f"  HAProxy over two replicas:     {via:9.0f} /s  (non-2xx/3xx: {bad2})")
        print(f"  ratio balancer / direct:       {via / direct:9.2f}")

        # 2. downloads
        data = os.urandom(a.size_mib * 1024 * 1024)
        # Fresh connections: a pooled one keeps the 2 s timeout of the readiness poll, and an upload
        # to S3 pauses while each part goes to the store.
        servers[0].session.close()
        r = publish(servers[0], "bench", data, meta=model_meta("1.0.0"), timeout=600)
        assert r.status_code == 201, r.text
        digest = sha(data)
        www = make_dir(tmp / "www", 0o755)
        (www / "model.bin").write_bytes(data)
        ngx = make_dir(tmp / "nginx", 0o755)
        port = nginx(ngx, www)
        others.append(type("N", (), {"stop": lambda self: subprocess.run(
            ["kill", (ngx / "nginx.pid").read_text().strip()], check=False)})())
        ceph = Ceph(tmp / "ceph")
        others.append(ceph)
        s3 = Gangliond(tmp / "s3", database_url=pg.dsn(pg.create_database()),
                       extra_args=s3_args(ceph, tmp, extra=["--log-level", "warn"]))
        s3.start()
        servers.append(s3)
        s3.session.close()
        r = publish(s3, "bench", data, meta=model_meta("1.0.0"), timeout=600)
        assert r.status_code == 201, r.text
        key = f"ganglion/models/sha256/{digest[:2]}/{digest}"
        rows = [
            ("nginx, static file (sendfile)", f"http://127.0.0.1:{port}/model.bin", ()),
            ("gangliond, artifact-store dir", f"{servers[0].url}/v1/artifacts/sha256/{digest}",
             ("-H", f"Authorization: Bearer {servers[0].admin_token}")),
            ("gangliond, artifact-store s3 (proxied)", f"{s3.url}/v1/artifacts/sha256/{digest}",
             ("-H", f"Authorization: Bearer {s3.admin_token}")),
            ("radosgw directly (curl, SigV4)", f"{ceph.endpoint}/{key}",
             ("--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{ceph.AK}:{ceph.SK}",
              "-H", "x-amz-content-sha256: " + sha(b""))),
        ]
        print(f"downloads of {a.size_mib} MiB over loopback, curl -o /dev/null, best of {a.runs} (MB/s):")
        ref = None
        for name, url, args in rows:
            mbs = best_download(url, a.runs, args)
            ref = ref or mbs
            print(f"  {name:40s} {mbs:8.0f}   ({mbs / ref:.2f} of nginx)")
    finally:
        for s in servers:
            s.stop(check=False)
        for o in others:
            o.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
