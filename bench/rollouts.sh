#!/usr/bin/env bash
# Rollouts at fleet scale: with N simulated devices (default 100000, inserted straight into
# PostgreSQL), how long the controller takes to apply a new deployment to all of them, how long the
# dry-run plan takes, how long a rollout takes until every device of its first stage (1 %) has the
# new desired state (its director targets are signed from it at the device's next check-in), and
# how long the rollout's status (its stage statistics over every device) takes to read.
# Reference, same machine and database: PostgreSQL inserting N rows of the same shape in one
# statement (the floor for writing N devices' desired state).
# Each step is given in wall-clock seconds and in CPU seconds spent by PostgreSQL (every process of
# its cluster; not the benchmark's own queries) and by gangliond (with GANGLIOND_PID): on a shared
# machine the wall clock follows the load of others, the CPU time follows the work.
# Usage: [GANGLIOND_PID=PID] bench/rollouts.sh URL TOKEN DATABASE_URL [N]
#   URL and TOKEN: a running gangliond (admin token) whose database is DATABASE_URL (psql conninfo),
#   on this machine. Devices are never authenticated: a device's director targets are signed at its
#   next check-in.
set -euo pipefail
url=$1 token=$2 db=$3 n=${4:-100000}
top=$(cd "$(dirname "$0")/.." && pwd)
cli() { "${GANGLION_CLI:-$top/build/cli/ganglion}" --url "$url" --token "$token" "$@"; }
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$db" -c "$1"; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
api() { curl -sf -H "Authorization: Bearer $token" "$@"; }
tag=$(date +%s)
hz=$(getconf CLK_TCK)
ckpt=$(sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
postmaster=$(ps -o ppid= -p "$ckpt" | tr -d ' ')
# CPU ticks (user + system) of the cluster's processes alive now and of gangliond.
ticks() {
	local t=0 p f
	for p in $postmaster $(ps -o pid= --ppid "$postmaster") ${GANGLIOND_PID:-}; do
		f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + ${f% *} + ${f#* }))
	done
	echo "$t"
}
cpu_since() { echo "scale=2; ($(ticks) - $1) / $hz" | bc; }

echo "== $n devices (label site=bench-$tag)"
t=$(now)
sql "INSERT INTO devices (name, public_key, labels)
     SELECT 'sim-$tag-' || i, md5('$tag' || i) || md5(i || '$tag'), jsonb_build_object('site', 'bench-$tag')
     FROM generate_series(1, $n) i"
echo "inserted in $(since "$t") s"

echo "== reference: PostgreSQL inserts $n rows shaped like desired state, one statement"
sql "CREATE TEMP TABLE x (device_id uuid, model text, version text, assigned_by text, deployment_id uuid)" >/dev/null
t=$(now)
# The statement's own backend's CPU time, read from within its session.
ref_cpu=$(psql -X -q -t -A -v ON_ERROR_STOP=1 "$db" <<SQL
SELECT pg_backend_pid() AS me \\gset
\\setenv ME :me
\\! cut -d' ' -f14,15 /proc/\$ME/stat
CREATE TABLE bench_ref_$tag AS SELECT id AS device_id, 'm'::text AS model, '1.0.0'::text AS version,
     'deployment:x'::text AS assigned_by, gen_random_uuid() AS deployment_id FROM devices
     WHERE labels @> '{"site": "bench-$tag"}';
\\! cut -d' ' -f14,15 /proc/\$ME/stat
SQL
)
ref=$(since "$t")
ref_cpu=$(echo "$ref_cpu" | tr '\n' ' ' | awk -v hz="$hz" '{printf "%.2f", ($3 + $4 - $1 - $2) / hz}')
sql "DROP TABLE bench_ref_$tag"
echo "reference: $ref s, CPU $ref_cpu s"

model=bench$tag
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for v in 1.0.0 2.0.0; do
	printf 'model %s %s' "$model" "$v" >"$work/$v.bin"
	cli models push "$work/$v.bin" --name "$model" --version "$v" --format onnx --no-progress --no-self-test >/dev/null
done

echo "== a deployment of $model 1.0.0 to all $n devices: until every one has its desired state"
t=$(now) c=$(ticks)
cli deploy create "b$tag" --model "$model" --selector "site=bench-$tag" --follow 1.0.0 \
	--strategy '{"stages": [{"percent": 1, "bake": 3600}, {"percent": 100, "bake": 0}]}' >/dev/null
until [ "$(sql "SELECT count(*) FROM device_desired dd JOIN deployments p ON p.id = dd.deployment_id
	WHERE p.name = 'b$tag' AND dd.version = '1.0.0'")" -ge "$n" ]; do sleep 0.1; done
apply=$(since "$t") apply_cpu=$(cpu_since "$c")
echo "applied: $apply s, CPU $apply_cpu s"

echo "== dry-run plan over $n devices"
t=$(now) c=$(ticks)
api "$url/v1/deployments/b$tag/plan" >"$work/plan.json"
plan=$(since "$t") plan_cpu=$(cpu_since "$c")
echo "plan: $plan s: $(cat "$work/plan.json")"

echo "== a rollout to 2.0.0: until every device of its first stage (1 %) has the new desired state"
t=$(now) c=$(ticks)
cli deploy set "b$tag" --follow 2.0.0 >/dev/null
rid=$(sql "SELECT r.id FROM rollouts r JOIN deployments p ON p.id = r.deployment_id WHERE p.name = 'b$tag'")
# The stage's devices, as the controller picks them (gn_in_stage, migrations/0021: their place,
# pins and hold-backs).
want=$(sql "SELECT count(*) FROM device_desired dd JOIN rollouts r ON r.deployment_id = dd.deployment_id
	WHERE r.id = '$rid' AND gn_in_stage(r.id, dd.device_id, 1, r.pinned, r.held_back)")
until [ "$(sql "SELECT count(*) FROM device_desired dd JOIN deployments p ON p.id = dd.deployment_id
	WHERE p.name = 'b$tag' AND dd.version = '2.0.0'")" -ge "$want" ]; do sleep 0.1; done
stage1=$(since "$t") stage1_cpu=$(cpu_since "$c")
echo "stage 1: $stage1 s, CPU $stage1_cpu s ($want devices)"

echo "== the rollout's status: its stage statistics over $n devices"
t=$(now) c=$(ticks)
api "$url/v1/rollouts/$rid" >"$work/rollout.json"
status=$(since "$t") status_cpu=$(cpu_since "$c")
echo "status: $status s: $(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["progress"])' "$work/rollout.json")"

echo
echo "| $n devices | wall s | CPU s |"
echo "|---|---:|---:|"
echo "| PostgreSQL: insert $n desired-state rows, one statement (reference) | $ref | $ref_cpu |"
echo "| deployment created -> every device has its desired state | $apply | $apply_cpu |"
echo "| dry-run plan | $plan | $plan_cpu |"
echo "| rollout started -> every stage-1 device (1 %, $want) has the new version | $stage1 | $stage1_cpu |"
echo "| rollout status (stage statistics) | $status | $status_cpu |"

cli deploy delete "b$tag" >/dev/null
sql "DELETE FROM devices WHERE labels @> '{\"site\": \"bench-$tag\"}'"
