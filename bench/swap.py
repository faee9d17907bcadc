#!/usr/bin/python3
"""ganglion-agent: hot-swap time, request latency during swaps, memory and binary size.

Starts a throwaway PostgreSQL and gangliond (the integration-test harness), enrolls agents on the
local inference socket, and measures:
  - swap time: from the agent's log, "state=loading" to "event=model_swapped" (the plugin's load
    with its warm-up inference, then the agent's two self-test runs, then the swap), and
    "state=downloading" to "event=model_swapped" (everything, download and checks included);
  - request latency on the socket (JSON, keep-alive, THREADS client threads): p50/p99/max
    without a swap, then the slowest request during SWAPS swaps (v1 <-> v2, each a new install);
  - the agent's RSS (VmRSS) idle without a model, with the small model, with conv.onnx, and on
    the opencl target (PoCL);
  - the stripped size of ganglion-agent and of the runtime plugin.

With --plugins opencv,onnxruntime it measures instead, for each runtime plugin on the same server
and the same machine, one after the other:
  - the agent's RSS idle (no model assigned), with v1, and with a compute-bound model ("mid": v2's
    function plus 10 convolutions on 16x64x64 that add zero, tests/integration/test_agent.py's
    heavy_variant, ~10-40 ms per inference on one core);
  - throughput on that model with 1 and with 4 local clients (keep-alive, SECONDS each), and the
    cores the agent kept busy meanwhile (its utime + stime over the wall time, /proc/PID/stat);
  - swap time (log: loading -> swapped) and the slowest request overlapping a swap, for SWAPS
    swaps of v1 <-> v2 and 4 swaps between two versions of the compute-bound model, under 2
    clients; failed requests (must be 0).

Usage (Debian's python3 for its modules; the models come from `make tests/models/stamp`):
    GANGLION_BUILDDIR=build /usr/bin/python3 bench/swap.py [--swaps N] [--seconds S] [--threads T]
    GANGLION_BUILDDIR=build /usr/bin/python3 bench/swap.py --plugins opencv,onnxruntime [--swaps N] [--seconds S]
        [--autogroup-nice -20]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from ganglion_harness import (  # noqa: E402
    AGENT, RUNTIME_PLUGIN, RUNTIME_PLUGINS, TEST_MODELS, Agent, Gangliond, Postgres, UnixHTTPConnection, make_dir,
    publish, wait_for)


def log_times(agent, event):
    """Epoch seconds of each agent log line containing event."""
    out = []
    for line in agent.logfile.read_text(errors="replace").splitlines():
        if event in line and line.startswith("ts="):
            ts = line.split()[0][3:]
            out.append(datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp())
    return out


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def rss_parts_kib(pid):
    """RssAnon and RssFile (shared libraries' pages) of a process, KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Load:
    """THREADS threads, each with one keep-alive connection, posting the sample without pause;
    records (t_start_epoch, latency_s, version) and counts failures."""

    def __init__(self, agent, x, threads, model="det"):
        self.agent, self.body, self.n = agent, json.dumps({"inputs": {"x": x}}).encode(), threads
        self.path = f"/v1/models/{model}/infer"
        self.samples, self.failures, self.stop = [], [], threading.Event()

    def run(self):
        conn = UnixHTTPConnection(self.agent.socket_path)
        out = []
        while not self.stop.is_set():
            t0 = time.time()
            c0 = time.perf_counter()
            try:
                conn.request("POST", self.path, body=self.body, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                b = r.read()
                lat = time.perf_counter() - c0
                if r.status != 200:
                    self.failures.append(f"HTTP {r.status}")
                else:
                    out.append((t0, lat, json.loads(b)["version"]))
            except Exception as e:
                self.failures.append(repr(e))
                conn.close()
                conn = UnixHTTPConnection(self.agent.socket_path)
        conn.close()
        self.samples.extend(out)

    def __enter__(self):
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(self.n)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def stripped_size(path, tmp):
    out = Path(tmp) / (Path(path).name + ".stripped")
    subprocess.run(["strip", "--strip-unneeded", "-o", str(out), str(path)], check=True)
    return out.stat().st_size


def swaps_under_load(a, assign, serving, x, versions, n, threads=2):
    """n swaps of det between versions under `threads` clients: swap times and the slowest
    request overlapping a swap window (loading -> swapped, from the log)."""
    n_loading0 = len(log_times(a, "event=update state=loading"))
    t_begin = time.time()
    with Load(a, x, threads) as load:
        time.sleep(0.5)
        for i in range(n):
            assign(a, "det", versions[i % 2])
            serving(a, "det", versions[i % 2])
            time.sleep(0.5)
    loading = log_times(a, "event=update state=loading")[n_loading0:]
    swapped = [t for t in log_times(a, "event=model_swapped") if t >= t_begin]
    assert len(loading) == len(swapped) == n, (len(loading), len(swapped))
    windows = list(zip(loading, swapped))
    in_swap = [s[1] for s in load.samples if any(w0 - s[1] <= s[0] <= w1 for w0, w1 in windows)]
    lat = [s[1] for s in load.samples]
    return {"swaps": n, "requests": len(lat), "failures": len(load.failures),
            "swap_ms": sorted(round((w1 - w0) * 1e3, 1) for w0, w1 in windows),
            "requests_overlapping_a_swap": len(in_swap),
            "max_ms_overlapping_a_swap": round(max(in_swap) * 1e3, 1) if in_swap else None,
            "p50_ms_whole_run": round(pct(lat, 50) * 1e3, 2)}


def throughput(a, x, model, threads, seconds):
    """Requests per second with `threads` clients, and the cores the agent kept busy."""
    c0, t0 = cpu_seconds(a.proc.pid), time.time()
    with Load(a, x, threads, model) as load:
        time.sleep(seconds)
    wall, cpu = time.time() - t0, cpu_seconds(a.proc.pid) - c0
    lat = [s[1] for s in load.samples]
    return {"clients": threads, "requests": len(lat), "failures": len(load.failures),
            "req_per_s": round(len(lat) / wall, 1), "p50_ms": round(pct(lat, 50) * 1e3, 1),
            "agent_cores_busy": round(cpu / wall, 2)}


def set_autogroup_nice(pid, nice):
    """Gives the scheduling group of pid's session (kernel autogroup) this nice value. The agent
    runs in a session of its own: with autogroups, every session gets an equal share of the CPUs
    whatever its threads, so on a busy machine an agent would get the same fraction of a core
    with 1 client and with 4. Root only; a no-op where autogroups are off."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError as e:
        print(f"swap.py: cannot set the autogroup nice of {pid}: {e}", file=sys.stderr)


def compare_plugins(args, srv, base, agents, metas, assign, serving):
    """The per-plugin figures of --plugins (see the module's docstring)."""
    if args.autogroup_nice is not None:
        set_autogroup_nice(os.getpid(), args.autogroup_nice)  # the clients
    from test_agent import heavy_variant
    for i, v in enumerate(("5.0.0", "5.1.0")):
        r = publish(srv, "det", heavy_variant(f"mid{i}", size=64, layers=10), meta=dict(metas["v2"], version=v))
        assert r.status_code == 201, r.text
    x = metas["v1"]["sample"]["inputs"]["x"]
    out = {"cores": os.cpu_count()}
    for plugin in args.plugins.split(","):
        a = Agent(base / f"cmp-{plugin}", srv.url, plugin=plugin)
        agents.append(a)
        a.enroll(srv.make_enroll_token()["token"])
        a.start()
        if args.autogroup_nice is not None:
            set_autogroup_nice(a.proc.pid, args.autogroup_nice)
        time.sleep(2)
        res = {"rss_idle_no_model_kib": rss_kib(a.proc.pid), "rss_idle_parts_kib": rss_parts_kib(a.proc.pid),
               "load_average": os.getloadavg()[0]}
        assign(a, "det", "1.0.0")
        serving(a, "det", "1.0.0")
        time.sleep(1)
        res["rss_v1_kib"] = rss_kib(a.proc.pid)
        res["swap_small"] = swaps_under_load(a, assign, serving, x, ("2.0.0", "1.0.0"), args.swaps)
        assign(a, "det", "5.0.0")
        serving(a, "det", "5.0.0")
        time.sleep(1)
        res["rss_mid_kib"] = rss_kib(a.proc.pid)
        res["mid_1_client"] = throughput(a, x, "det", 1, args.seconds)
        res["mid_4_clients"] = throughput(a, x, "det", 4, args.seconds)
        res["load_average_after"] = os.getloadavg()[0]
        res["mid_4_vs_1"] = round(res["mid_4_clients"]["req_per_s"] / res["mid_1_client"]["req_per_s"], 2)
        res["swap_mid"] = swaps_under_load(a, assign, serving, x, ("5.1.0", "5.0.0"), 4)
        res["rss_after_kib"] = rss_kib(a.proc.pid)
        res["runtime"] = a.models()[0]["target"]
        a.stop()
        out[plugin] = res
    print(json.dumps(out, indent=2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swaps", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plugins", help="compare these runtime plugins (opencv,onnxruntime) instead")
    ap.add_argument("--autogroup-nice", type=int,
                    help="with --plugins: this nice for the agent's and the clients' scheduling groups (a "
                         "shared, busy machine: -20 lets them use the cores they can)")
    args = ap.parse_args()
    for p in (args.plugins or "").split(","):
        if p and (p not in RUNTIME_PLUGINS or not RUNTIME_PLUGINS[p].exists()):
            sys.exit(f"swap.py: no plugin {p} in this build ({', '.join(RUNTIME_PLUGINS)}; onnxruntime needs "
                     "configure --with-onnxruntime)")

    base = Path(tempfile.mkdtemp(prefix="gn-bench-swap-"))
    os.chmod(base, 0o711)
    pg = Postgres(base / "pg")
    srv = None
    agents = []
    try:
        pg.initdb()
        pg.start()
        srv = Gangliond(make_dir(base / "srv"), database_url=pg.dsn(pg.create_database()),
                        extra_args=["--agent-poll-interval", "1s"])
        srv.start()
        metas = {n: json.loads((TEST_MODELS / f"{n}.json").read_text()) for n in ("v1", "v2", "conv")}
        for name, model, version in (("v1", "det", "1.0.0"), ("v2", "det", "2.0.0"), ("conv", "conv", "1.0.0")):
            r = publish(srv, model, (TEST_MODELS / f"{name}.onnx").read_bytes(), meta=dict(metas[name], version=version))
            assert r.status_code == 201, r.text

        def new_agent(tag, target="cpu", env=None):
            a = Agent(base / tag, srv.url, target=target, env=env)
            agents.append(a)
            a.enroll(srv.make_enroll_token()["token"])
            a.start()
            return a

        def assign(a, model, version):
            r = srv.api("PUT", f"/v1/devices/{a.device_id}/desired", json={"model": model, "version": version})
            assert r.status_code == 200, r.text

        def serving(a, model, version, timeout=120):
            ok = wait_for(lambda: a.models() and (a.models()[0]["name"], a.models()[0]["version"]) == (model, version),
                          timeout, 0.05)
            assert ok, f"{model} {version} not served\n{a.log()[-3000:]}"

        if args.plugins:
            compare_plugins(args, srv, base, agents, metas, assign, serving)
            return
        res = {}
        # The plugin initializes OpenCL even for cpu; OpenCV's switch shows what that costs.
        nocl = new_agent("cpu-nocl", env={"OPENCV_OPENCL_RUNTIME": "disabled"})
        time.sleep(2)
        res["rss_idle_no_model_opencl_runtime_disabled_kib"] = rss_kib(nocl.proc.pid)
        nocl.stop()
        a = new_agent("cpu")
        time.sleep(2)
        res["rss_idle_no_model_kib"] = rss_kib(a.proc.pid)
        assign(a, "det", "1.0.0")
        serving(a, "det", "1.0.0")
        time.sleep(1)
        res["rss_small_model_kib"] = rss_kib(a.proc.pid)

        x = metas["v1"]["sample"]["inputs"]["x"]
        with Load(a, x, args.threads) as base_load:
            time.sleep(args.seconds)
        lat = [s[1] for s in base_load.samples]
        res["no_swap"] = {"requests": len(lat), "failures": len(base_load.failures), "p50_ms": pct(lat, 50) * 1e3,
                          "p99_ms": pct(lat, 99) * 1e3, "max_ms": max(lat) * 1e3,
                          "req_per_s": len(lat) / args.seconds}

        n_loading0 = len(log_times(a, "event=update state=loading"))
        t_begin = time.time()
        with Load(a, x, args.threads) as swap_load:
            time.sleep(0.5)
            for i in range(args.swaps):
                version = "2.0.0" if i % 2 == 0 else "1.0.0"
                assign(a, "det", version)
                serving(a, "det", version)
                time.sleep(0.5)
        t_end = time.time()
        loading = log_times(a, "event=update state=loading")[n_loading0:]
        swapped = [t for t in log_times(a, "event=model_swapped") if t >= t_begin]
        downloading = [t for t in log_times(a, "event=update state=downloading") if t >= t_begin]
        assert len(loading) == len(swapped) == args.swaps, (len(loading), len(swapped))
        windows = list(zip(loading, swapped))
        in_swap = [s[1] for s in swap_load.samples if any(w0 - s[1] <= s[0] <= w1 for w0, w1 in windows)]
        all_lat = [s[1] for s in swap_load.samples]
        res["swap_small"] = {
            "swaps": args.swaps, "requests": len(all_lat), "failures": len(swap_load.failures),
            "requests_overlapping_a_swap": len(in_swap),
            "max_ms_overlapping_a_swap": max(in_swap) * 1e3 if in_swap else None,
            "max_ms_whole_run": max(all_lat) * 1e3, "p99_ms_whole_run": pct(all_lat, 99) * 1e3,
            "load_selftest_swap_ms": sorted((w1 - w0) * 1e3 for w0, w1 in windows),
            "download_to_swap_ms": sorted((s - d) * 1e3 for d, s in zip(downloading, swapped)),
        }
        res["swap_small"]["wall_s"] = t_end - t_begin

        # conv.onnx (3x32x32 -> 2 convolutions): a model with real work, cpu.
        n0 = len(log_times(a, "event=update state=loading"))
        assign(a, "conv", "1.0.0")
        serving(a, "conv", "1.0.0")
        time.sleep(1)
        l0 = log_times(a, "event=update state=loading")[n0:]
        s0 = log_times(a, "event=model_swapped")[-1:]
        res["conv_cpu_load_selftest_swap_ms"] = (s0[0] - l0[0]) * 1e3
        res["rss_conv_kib"] = rss_kib(a.proc.pid)  # before the heavy model: RSS does not shrink after

        # A model whose load and self-test take long (tests/integration/test_agent.py's heavy
        # variant: v2's function plus 30 convolutions on 16x160x160 that add zero), swapped under load.
        from test_agent import heavy_variant
        for i, v in enumerate(("3.0.0", "3.1.0")):
            r = publish(srv, "det", heavy_variant(f"bench{i}"), meta=dict(metas["v2"], version=v))
            assert r.status_code == 201, r.text
        assign(a, "det", "3.0.0")
        serving(a, "det", "3.0.0")
        with Load(a, x, args.threads) as heavy_base:
            time.sleep(args.seconds / 2)
        hb = [s[1] for s in heavy_base.samples]
        n_loading0 = len(log_times(a, "event=update state=loading"))
        t_begin = time.time()
        heavy_swaps = 4
        with Load(a, x, args.threads) as heavy_load:
            time.sleep(0.5)
            for i in range(heavy_swaps):
                version = ("3.1.0", "3.0.0")[i % 2]
                assign(a, "det", version)
                serving(a, "det", version)
                time.sleep(0.5)
        loading = log_times(a, "event=update state=loading")[n_loading0:]
        swapped = [t for t in log_times(a, "event=model_swapped") if t >= t_begin]
        windows = list(zip(loading, swapped))
        in_swap = [s[1] for s in heavy_load.samples if any(w0 - s[1] <= s[0] <= w1 for w0, w1 in windows)]
        res["swap_heavy"] = {
            "no_swap": {"requests": len(hb), "failures": len(heavy_base.failures), "p50_ms": pct(hb, 50) * 1e3,
                        "p99_ms": pct(hb, 99) * 1e3, "max_ms": max(hb) * 1e3},
            "swaps": heavy_swaps, "requests": len(heavy_load.samples), "failures": len(heavy_load.failures),
            "requests_overlapping_a_swap": len(in_swap),
            "p50_ms_overlapping_a_swap": pct(in_swap, 50) * 1e3, "max_ms_overlapping_a_swap": max(in_swap) * 1e3,
            "load_selftest_swap_ms": sorted((w1 - w0) * 1e3 for w0, w1 in windows),
        }
        res["rss_heavy_model_kib"] = rss_kib(a.proc.pid)

        # opencl (PoCL), cold kernel caches (PoCL's and OpenCV's own binary cache), then the same
        # model again after a restart (warm caches).
        env = {"POCL_CACHE_DIR": str(make_dir(base / "pocl", 0o700)),
               "OPENCV_OPENCL_CACHE_DIR": str(make_dir(base / "ocvcl", 0o700))}
        o = new_agent("ocl", target="opencl", env=env)
        time.sleep(2)
        res["rss_opencl_idle_no_model_kib"] = rss_kib(o.proc.pid)
        assign(o, "conv", "1.0.0")
        serving(o, "conv", "1.0.0")
        assert o.models()[0]["target"] == "opencl", o.models()
        res["conv_opencl_cold_load_selftest_swap_ms"] = (log_times(o, "event=model_swapped")[-1]
                                                         - log_times(o, "event=update state=loading")[-1]) * 1e3
        time.sleep(1)
        res["rss_opencl_conv_kib"] = rss_kib(o.proc.pid)
        o.stop()
        t = time.time()
        o.start()
        res["opencl_restart_to_serving_warm_cache_ms"] = (time.time() - t) * 1e3

        tmp = base / "strip"
        tmp.mkdir()
        res["size_agent_bytes"] = AGENT.stat().st_size
        res["size_agent_stripped_bytes"] = stripped_size(AGENT, tmp)
        res["size_plugin_bytes"] = RUNTIME_PLUGIN.stat().st_size
        res["size_plugin_stripped_bytes"] = stripped_size(RUNTIME_PLUGIN, tmp)
        print(json.dumps(res, indent=2))
    finally:
        for a in agents:
            a.stop(check=False)
        if srv:
            srv.stop(check=False)
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
