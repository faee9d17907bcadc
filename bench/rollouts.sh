#!/usr/bin/env bash
# Rollouts at fleet scale: with N simulated devices (default 100000, inserted straight into
# PostgreSQL), how long the controller takes to apply a new deployment to all of them, how long the
# dry-run plan takes, and how long a rollout takes to give its first stage (1 %) the new version.
# Reference, same machine and database: PostgreSQL inserting N rows of the same shape in one
# statement (the floor for writing N devices' desired state).
# Usage: bench/rollouts.sh URL TOKEN DATABASE_URL [N]
#   URL and TOKEN: a running gangliond (admin token) whose database is DATABASE_URL (psql conninfo).
#   Devices are never authenticated: a device's director targets are signed at its next check-in.
set -euo pipefail
url=$1 token=$2 db=$3 n=${4:-100000}
top=$(cd "$(dirname "$0")/.." && pwd)
cli() { "${GANGLION_CLI:-$top/build/cli/ganglion}" --url "$url" --token "$token" "$@"; }
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$db" -c "$1"; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
api() { curl -sf -H "Authorization: Bearer $token" "$@"; }
tag=$(date +%s)

echo "== $n devices (label site=bench-$tag)"
t=$(now)
sql "INSERT INTO devices (name, public_key, labels)
     SELECT 'sim-$tag-' || i, md5('$tag' || i) || md5(i || '$tag'), jsonb_build_object('site', 'bench-$tag')
     FROM generate_series(1, $n) i"
echo "inserted in $(since "$t") s"

echo "== reference: PostgreSQL inserts $n rows shaped like desired state, one statement"
sql "CREATE TEMP TABLE x (device_id uuid, model text, version text, assigned_by text, deployment_id uuid)" >/dev/null
t=$(now)
sql "CREATE TABLE bench_ref_$tag AS SELECT id AS device_id, 'm'::text AS model, '1.0.0'::text AS version,
     'deployment:x'::text AS assigned_by, gen_random_uuid() AS deployment_id FROM devices
     WHERE labels @> '{\"site\": \"bench-$tag\"}'" >/dev/null
ref=$(since "$t")
sql "DROP TABLE bench_ref_$tag"
echo "reference: $ref s"

model=bench$tag
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for v in 1.0.0 2.0.0; do
	printf 'model %s %s' "$model" "$v" >"$work/$v.bin"
	cli models push "$work/$v.bin" --name "$model" --version "$v" --format onnx --no-progress --no-self-test >/dev/null
done

echo "== a deployment of $model 1.0.0 to all $n devices: until every one has its desired state"
t=$(now)
cli deploy create "b$tag" --model "$model" --selector "site=bench-$tag" --follow 1.0.0 \
	--strategy '{"stages": [{"percent": 1, "bake": 3600}, {"percent": 100, "bake": 0}]}' >/dev/null
until [ "$(sql "SELECT count(*) FROM device_desired dd JOIN deployments p ON p.id = dd.deployment_id
	WHERE p.name = 'b$tag' AND dd.version = '1.0.0'")" -ge "$n" ]; do sleep 0.1; done
apply=$(since "$t")
echo "applied: $apply s"

echo "== dry-run plan over $n devices"
t=$(now)
api "$url/v1/deployments/b$tag/plan" >"$work/plan.json"
plan=$(since "$t")
echo "plan: $plan s: $(cat "$work/plan.json")"

echo "== a rollout to 2.0.0: until its first stage (1 %) has the new desired state"
t=$(now)
cli deploy set "b$tag" --follow 2.0.0 >/dev/null
want=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"][0]["devices"])' "$work/plan.json")
until [ "$(sql "SELECT count(*) FROM device_desired dd JOIN deployments p ON p.id = dd.deployment_id
	WHERE p.name = 'b$tag' AND dd.version = '2.0.0'")" -ge $((want * 8 / 10)) ]; do sleep 0.1; done
stage1=$(since "$t")
got=$(sql "SELECT count(*) FROM device_desired dd JOIN deployments p ON p.id = dd.deployment_id
	WHERE p.name = 'b$tag' AND dd.version = '2.0.0'")
echo "stage 1: $stage1 s ($got devices; the plan's random cohort said about $want)"

echo
echo "| $n devices | seconds |"
echo "|---|---:|"
echo "| PostgreSQL: insert $n desired-state rows, one statement (reference) | $ref |"
echo "| deployment created -> every device has its desired state | $apply |"
echo "| dry-run plan | $plan |"
echo "| rollout started -> stage 1 (1 %) has the new version | $stage1 |"

cli deploy delete "b$tag" >/dev/null
sql "DELETE FROM devices WHERE labels @> '{\"site\": \"bench-$tag\"}'"
