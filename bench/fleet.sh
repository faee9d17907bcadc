#!/usr/bin/env bash
# A fleet of N simulated devices (bench/fleetsim.c: the real agent protocol, libcurl multi) against
# a gangliond this script starts (private-cluster mode, its own PostgreSQL, rate limits off so one
# address may enroll a fleet): enrolment, authentication and check-in rates with p50/p99/max, every
# error by kind, and gangliond's memory per device at steady state: after the devices have stopped,
# each idle, checked in and answered from memory (the check-in cache holds all N; /metrics says how
# many it holds, and the script says when it is not all). fleetsim's two settling rounds (one more
# check-in per device each, after SECS) make sure every device got past its first check-in, whose
# answer a signing NOTIFY drops. The figure is (RSS then - RSS before the first device) / N: fixed
# costs (thread arenas, the hash tables' pages) weigh on it at small N. Not part of the test suite.
#
# usage: bench/fleet.sh [DEVICES] [CHECK-IN SECONDS] [CONCURRENCY]     (default 100000 30 64)
#   needs a build in build/ (scripts/build.sh); keeps nothing (a temp dir, removed at exit).
set -euo pipefail
n=${1:-100000} secs=${2:-30} conc=${3:-64}
top=$(cd "$(dirname "$0")/.." && pwd)
b=${GANGLION_BUILDDIR:-$top/build}
dir=$(mktemp -d /tmp/gn-fleet-XXXXXX)
chmod 711 "$dir"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$b/server/gangliond" --data-dir "$dir/d" --listen "127.0.0.1:$port" --log-level warn \
	--rate-limit-address 0 --rate-limit-identity 0 2>"$dir/gangliond.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
for _ in $(seq 240); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.5; done
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"; }
rss0=$(rss)
"$b/cli/ganglion" --url "$url" --token "@$dir/d/admin.token" -o json enroll-tokens create --name fleet \
	--label site=bench --max-uses "$n" --expires-in 24h |
	/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$dir/enroll.token"
echo "== $n devices, $conc connections, check-ins back to back for $secs s (gangliond $(nproc)-core machine)"
"$b/bench/fleetsim" --url "$url" --enroll-token "@$dir/enroll.token" --devices "$n" --concurrency "$conc" \
	--duration "$secs" --interval 0 --settle 2
# Steady state: the simulated devices have stopped and sit idle; what they cost now is what an idle
# fleet costs. A second for requests still in flight and the last-seen flush (once a second).
sleep 2
metric() { { curl -sf "$url/metrics" || true; } | awk -v m="$1" '$1 == m { print $2 }'; }
cached=$(metric gangliond_checkin_cache_devices) seen=$(metric gangliond_last_seen_devices)
cbytes=$(metric gangliond_checkin_cache_bytes) sbytes=$(metric gangliond_last_seen_bytes)
rss1=$(rss)
echo "per-device structures: check-in cache ${cached:-?} devices, ${cbytes:-?} bytes;" \
	"last-seen ${seen:-?} devices, ${sbytes:-?} bytes"
if [ "${cached:-0}" -lt "$n" ]; then
	echo "NOT STEADY: only ${cached:-?} of $n devices are answered from memory; give the run more seconds" >&2
fi
echo "gangliond RSS: $rss0 KiB idle, $rss1 KiB with $n devices checked in, idle, ${cached:-?} answered from memory:" \
	"$(awk -v a="$rss0" -v b="$rss1" -v n="$n" 'BEGIN { printf "%.2f", (b - a) * 1024 / n }') bytes per device"
