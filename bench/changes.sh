#!/usr/bin/env bash
# Check-ins that change desired state, and a rollout's fan-out, with N simulated devices
# (bench/fleetsim.c, the real agent protocol) checking in back to back against a gangliond this
# script starts (as bench/fleet.sh does: its own PostgreSQL, rate limits off).
#   1. A deployment of model `bench` 1.0.0 to every device (selector site=bench): each device's next
#      check-in is answered 200 with director targets signed afresh for the new desired state.
#      Reported: how many, their rate (first to last such answer), p50/p99 latency, and the time
#      from the deployment's creation to the last device's answer.
#   2. The deployment follows 2.0.0: a rollout whose first stage is 1 % of the devices (bake one
#      hour, so no second stage starts). Reported: the time from the rollout's start to the 200
#      that named 2.0.0 to the last device of stage 1. Reference, the same run: one check-in round
#      (N devices / the fleet's check-in rate over the whole run), the time a device may wait
#      before it next asks.
# Fails (exit 1) when anything does not happen in time, when a device outside stage 1 is told
# 2.0.0, or when fleetsim counts any error. Not part of the test suite.
#
# usage: bench/changes.sh [DEVICES] [CONCURRENCY]     (default 100000 64)
#   needs a build in build/ (scripts/build.sh); keeps nothing (a temp dir, removed at exit).
#   The last two lines are for bench/run.sh:
#     changed: ANSWERS DEVICES RATE P50_MS P99_MS SECONDS_FROM_CREATE
#     fanout: SECONDS STAGE1_DEVICES ROUND_SECONDS
set -euo pipefail
n=${1:-100000} conc=${2:-64}
top=$(cd "$(dirname "$0")/.." && pwd)
b=${GANGLION_BUILDDIR:-$top/build}
dir=$(mktemp -d /tmp/gn-changes-XXXXXX)
chmod 711 "$dir"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
"$b/server/gangliond" --data-dir "$dir/d" --listen "127.0.0.1:$port" --log-level warn \
	--rate-limit-address 0 --rate-limit-identity 0 2>"$dir/gangliond.log" &
pid=$!
sim=
cleanup() {
	[ -n "$sim" ] && kill "$sim" 2>/dev/null && wait "$sim" 2>/dev/null
	kill $pid 2>/dev/null
	wait $pid 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
die() {
	echo "changes.sh: $*" >&2
	tail -5 "$dir/gangliond.log" "$dir/fleetsim.err" >&2 2>/dev/null || true
	exit 1
}
for _ in $(seq 240); do curl -sf "$url/readyz" >/dev/null && break; sleep 0.5; done
curl -sf "$url/readyz" >/dev/null || die "gangliond did not become ready"
cli() { "$b/cli/ganglion" --url "$url" --token "@$dir/d/admin.token" "$@"; }
api() { curl -sf -H "Authorization: Bearer $(cat "$dir/d/admin.token")" "$url$1"; }
now() { date +%s.%N; }
# Waits (at most $1 seconds) until the command in the other arguments succeeds.
wait_until() {
	local limit=$1
	shift
	local end=$(($(date +%s) + limit))
	until "$@"; do
		kill -0 "$sim" 2>/dev/null || die "fleetsim stopped early"
		[ "$(date +%s)" -lt "$end" ] || die "not done in $limit s: $*"
		sleep 0.1
	done
}
# Devices told MODEL/VERSION $1 in a check-in answer (INM 1: a change since their last check-in).
told() { awk -v mv="$1" '$4 == 1 && $5 == mv && !seen[$3]++ { k++ } END { print k + 0 }' "$dir/changes"; }
told_at_least() { [ "$(told "$1")" -ge "$2" ]; }
all_checked_in() { [ "$(awk '!seen[$3]++ { k++ } END { print k + 0 }' "$dir/changes")" -ge "$n" ]; }
limit=$((600 + n / 20))

cli -o json enroll-tokens create --name fleet --label site=bench --max-uses "$n" --expires-in 24h |
	/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$dir/enroll.token"
for v in 1.0.0 2.0.0; do
	printf 'model bench %s' "$v" >"$dir/$v.onnx"
	cli models push "$dir/$v.onnx" --name bench --version "$v" --format onnx --no-progress --no-self-test >/dev/null
done
: >"$dir/changes"
echo "== $n devices, $conc connections, checking in back to back"
"$b/bench/fleetsim" --url "$url" --enroll-token "@$dir/enroll.token" --devices "$n" --concurrency "$conc" \
	--duration 86400 --interval 0 --changes "$dir/changes" >"$dir/fleetsim.out" 2>"$dir/fleetsim.err" &
sim=$!
wait_until "$limit" all_checked_in
echo "all $n devices checked in once"

echo "== a deployment of bench 1.0.0 to all $n devices"
t0=$(now)
cli deploy create bench --model bench --selector site=bench --follow 1.0.0 \
	--strategy '{"stages": [{"percent": 1, "bake": 3600}, {"percent": 100, "bake": 0}]}' >/dev/null
wait_until "$limit" told_at_least bench/1.0.0 "$n"
changed=$(awk -v t0="$t0" '$4 == 1 && $5 == "bench/1.0.0" {
		if (!k++) first = $1; last = $1; d[$3] = 1; print $2 > "/dev/stderr" }
	END { nd = 0; for (i in d) nd++; printf "%d %d %.1f %.3f\n", k, nd, k / (last - first), last - t0 }' \
	"$dir/changes" 2>"$dir/lat")
sort -n "$dir/lat" >"$dir/lat.sorted"
nl=$(wc -l <"$dir/lat.sorted")
p50=$(sed -n "$((nl / 2 + 1))p" "$dir/lat.sorted")
p99=$(sed -n "$((nl * 99 / 100 + 1))p" "$dir/lat.sorted")
read -r answers devices rate since <<<"$changed"
echo "$answers answers (200, targets signed for the new version) to $devices devices, $rate/s, p50 $p50 ms," \
	"p99 $p99 ms; the last $since s after the deployment was created"
changed_line="changed: $answers $devices $rate $p50 $p99 $since"

echo "== a rollout to 2.0.0, first stage 1 %"
t1=$(now)
cli deploy set bench --follow 2.0.0 >/dev/null
rid=$(api /v1/deployments/bench | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)["rollout"]
print(r["id"] if isinstance(r, dict) else r)')
want=$(api "/v1/rollouts/$rid" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["progress"]["devices"])')
[ "$want" -ge 1 ] || die "the rollout's first stage holds no device"
wait_until "$limit" told_at_least bench/2.0.0 "$want"
last=$(awk '$4 == 1 && $5 == "bench/2.0.0" { t = $1 } END { print t }' "$dir/changes")
fanout=$(awk -v a="$last" -v b="$t1" 'BEGIN { printf "%.3f", a - b }')
echo "stage 1 ($want devices) told 2.0.0 $fanout s after the rollout started"

kill -TERM "$sim"
rc=0
wait "$sim" || rc=$?
sim=
cat "$dir/fleetsim.out"
[ "$rc" = 0 ] || die "fleetsim counted errors (exit $rc)"
got=$(told bench/2.0.0)
[ "$got" = "$want" ] || die "$got devices were told 2.0.0; stage 1 holds $want"
rate=$(awk '$1 == "checkin" { print $4 }' "$dir/fleetsim.out" | tr -d '/s')
[ -n "$rate" ] || die "no check-in rate in fleetsim's report"
round=$(awk -v n="$n" -v r="$rate" 'BEGIN { printf "%.3f", n / r }')
echo "one check-in round of $n devices at $rate check-ins/s: $round s"
echo "$changed_line"
echo "fanout: $fanout $want $round"
