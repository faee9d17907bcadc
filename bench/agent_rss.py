#!/usr/bin/python3
"""ganglion-agent memory: resident set (VmRSS) of an enrolled agent with no model assigned, with a
model per runtime plugin, and after the model is unassigned again; what the idle RSS is made of.

Starts a throwaway PostgreSQL and gangliond (the integration-test harness) and, for each runtime
plugin built (opencv; onnxruntime with --with-onnxruntime), an agent on the local inference
socket. For each it reports:
  - VmRSS, RssAnon and RssFile (/proc/PID/status) 4 s after start with no model assigned, and the
    mappings that hold most of it (/proc/PID/smaps), and whether any runtime library (the plugin,
    libopencv*, libonnxruntime*) is mapped then (it must not be: the runtime loads with the first
    model that needs it);
  - VmRSS with v1 (tests/models, x[1,4] -> y[1,3]) serving;
  - with v1 assigned and nothing else happening, the CPU time the agent uses (utime + stime from
    /proc/PID/stat) over --idle-seconds (default 60), and VmRSS at the end of it; the server tells
    it to check in every second (--agent-poll-interval 1s, so that the model arrives quickly),
    60 times more often than by default, so this is an upper bound;
  - VmRSS after v1 is unassigned (the plugin stays loaded: see agents/runtimes/README.md).
References, in the same run: the RSS of `sleep` (a process with libc alone), bench/rss_floor
(built with the rest): a process that links what the agent links for its network and checks
(libcurl, OpenSSL's libcrypto, libmicrohttpd, jansson), at the start of main, after one SHA-256
(OpenSSL 3 loads its default provider) and after curl_global_init: the floor under the agent; and
bench/rss_layers: the same floor built up one library at a time (libc, + libcrypto, + libcurl with
its dependencies, + libmicrohttpd, + jansson).

Every figure comes as Rss and as Pss and Private (/proc/PID/smaps_rollup). Rss counts each mapped
page of a shared library in full, though the page cache holds it once for every process that maps
it; Private (pages no other process maps) is what the agent alone adds to the device's memory, and
Pss (shared pages divided among their users) what it pays of the total. On this build machine many
processes map the same libraries, so its Pss is lower than on a device where the agent is the only
user of, say, libcurl's dependencies: there Pss approaches Rss for those. The idle agent's mappings
are listed with Rss, Pss and Private each, and summed by where they come from
(idle_by_origin_rss_pss_private_kib). --env K=V runs the agents with K=V in their environment (to
try MALLOC_ARENA_MAX, OPENSSL_CONF, GNUTLS_NO_IMPLICIT_INIT, LD_BIND_NOW); --plugin limits the run
to one plugin.

Usage (Debian's python3 for its modules; the models come from `make tests/models/stamp`):
    GANGLION_BUILDDIR=build /usr/bin/python3 bench/agent_rss.py [--json FILE]
"""
import argparse
import os
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from ganglion_harness import (  # noqa: E402
    AGENT, RUNTIME_PLUGINS, TEST_MODELS, Agent, Gangliond, Postgres, make_dir, publish, wait_for)

RUNTIME_LIBS = ("ganglion-runtime-", "libopencv", "libonnxruntime")


def status_kib(pid):
    """VmRSS and its parts (/proc/PID/status), and from /proc/PID/smaps_rollup what the device really
    pays: Pss (each shared page divided among the processes that map it) and Private (pages no other
    process maps: Private_Clean + Private_Dirty). Rss counts a page of libc as whole in every process
    that maps it; Private is what this process alone adds to the machine's memory."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k = line.split(":")[0]
        if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
            out[k] = int(line.split()[1])
    roll = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, v = line.split(":", 1)
        roll[k] = int(v.split()[0])
    out.update(Pss=roll["Pss"], Pss_Anon=roll.get("Pss_Anon", 0), Pss_File=roll.get("Pss_File", 0),
               Private=roll["Private_Clean"] + roll["Private_Dirty"], Private_Dirty=roll["Private_Dirty"])
    return out


def top_mappings(pid, n=14):
    """The mappings with the most resident pages, summed per file: [Rss, Pss, Private KiB, name]."""
    per, name = {}, None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 5 and not line.endswith(" kB"):
            name = parts[5] if len(parts) > 5 else "[anon]"
            name = Path(name).name if name.startswith("/") else name
            per.setdefault(name, [0, 0, 0])
        elif parts[0] in ("Rss:", "Pss:", "Private_Clean:", "Private_Dirty:"):
            per[name][{"Rss:": 0, "Pss:": 1}.get(parts[0], 2)] += int(parts[1])
    return sorted(([*v, k] for k, v in per.items()), reverse=True)[:n]


GROUPS = (("the agent's own: its binary, heap, other anonymous memory, stack",
           ("ganglion-agent", "[heap]", "[anon]", "[stack]")),
          ("libc, libm, the dynamic loader", ("libc.so", "libm.so", "ld-linux")),
          ("OpenSSL: libcrypto, libssl", ("libcrypto.so", "libssl.so")),
          ("what the agent links itself: libcurl, libmicrohttpd, jansson, zlib",
           ("libcurl.so", "libmicrohttpd.so", "libjansson.so", "libz.so")))


def grouped(mappings):
    """Sums [Rss, Pss, Private] of mappings by GROUPS; the rest is what Debian's libcurl (and
    libmicrohttpd) pull in and the agent never calls: GnuTLS, Kerberos, LDAP, SSH, RTMP, ..."""
    out = {g: [0, 0, 0] for g, _ in GROUPS}
    rest = "pulled in by Debian's libcurl and libmicrohttpd (GnuTLS, p11-kit, Kerberos, LDAP, SSH, RTMP, ...)"
    out[rest] = [0, 0, 0]
    for rss, pss, priv, name in mappings:
        g = next((g for g, names in GROUPS if any(name.startswith(n) for n in names)), rest)
        out[g] = [a + b for a, b in zip(out[g], (rss, pss, priv))]
    return out


def cpu_seconds(pid):
    """utime + stime of the process (fields 14 and 15 of /proc/PID/stat), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runtime_mapped(pid):
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({Path(line.split()[-1]).name for line in maps.splitlines()
                   if any(r in line for r in RUNTIME_LIBS)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--idle-seconds", type=float, default=60,
                    help="how long to measure the CPU time of the agent idle with v1 assigned (default 60)")
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="run the agents with this in their environment (repeatable), e.g. MALLOC_ARENA_MAX=1")
    ap.add_argument("--plugin", action="append", default=[], help="only this runtime plugin (repeatable)")
    args = ap.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    base = Path(tempfile.mkdtemp(prefix="gn-rss-"))
    base.chmod(0o711)
    res = {}
    ref = subprocess.Popen(["sleep", "30"])
    time.sleep(0.5)
    res["reference_sleep"] = status_kib(ref.pid)
    ref.kill()
    ref.wait()
    floor = Path(AGENT).parent.parent / "bench" / "rss_floor"
    res["reference_rss_floor"] = json.loads(subprocess.run([str(floor)], check=True, capture_output=True,
                                                           text=True).stdout)
    layers = Path(AGENT).parent.parent / "bench" / "rss_layers"
    res["reference_rss_layers"] = json.loads(subprocess.run([str(layers)], check=True, capture_output=True,
                                                            text=True).stdout)
    pg = Postgres(base / "pg")
    srv = None
    agents = []
    try:
        pg.initdb()
        pg.start()
        srv = Gangliond(make_dir(base / "srv"), database_url=pg.dsn(pg.create_database()),
                        extra_args=["--agent-poll-interval", "1s"])
        srv.start()
        meta = json.loads((TEST_MODELS / "v1.json").read_text())
        r = publish(srv, "det", (TEST_MODELS / "v1.onnx").read_bytes(), meta=meta)
        assert r.status_code == 201, r.text
        for plugin, path in sorted(RUNTIME_PLUGINS.items()):
            if args.plugin and plugin not in args.plugin:
                continue
            if not path.exists():
                res[plugin] = "not built"
                continue
            a = Agent(base / f"ag-{plugin}", srv.url, plugin=plugin, env=env)
            agents.append(a)
            a.enroll(srv.make_enroll_token()["token"])
            a.start()
            time.sleep(4)
            pid = a.proc.pid
            maps = top_mappings(pid, 100)
            row = {"env": env, "idle": status_kib(pid), "idle_runtime_mapped": runtime_mapped(pid),
                   "idle_by_origin_rss_pss_private_kib": grouped(maps), "idle_mappings_kib": maps}
            r = srv.api("PUT", f"/v1/devices/{a.device_id}/desired", json={"model": "det", "version": "1.0.0"})
            assert r.status_code == 200, r.text
            assert wait_for(lambda: any(m["version"] == "1.0.0" for m in a.models()), 120, 0.1), a.log()[-3000:]
            time.sleep(1)
            row["v1"] = status_kib(pid)
            row["v1_runtime_mapped"] = runtime_mapped(pid)
            c0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(args.idle_seconds)
            c1, t1 = cpu_seconds(pid), time.monotonic()
            row["v1_idle"] = {"seconds": round(t1 - t0, 3), "cpu_seconds": round(c1 - c0, 3),
                              "cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 4), **status_kib(pid)}
            r = srv.api("DELETE", f"/v1/devices/{a.device_id}/desired", params={"model": "det"})
            assert r.status_code in (200, 204), r.text
            assert wait_for(lambda: a.models() == [], 60, 0.1)
            time.sleep(1)
            row["after_unassign"] = status_kib(pid)
            res[plugin] = row
            a.stop()
    finally:
        for a in agents:
            a.stop(check=False)
        if srv:
            srv.stop(check=False)
        pg.stop()
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
