#!/usr/bin/env bash
# Ganglion's main job, end to end, on a fresh Debian 12 machine:
#   gangliond on a private PostgreSQL it manages -> CI publishes a signed model release ->
#   two edge agents enroll through the API (their own Ed25519 keys) -> the ops team assigns the
#   model to the north-site cameras by label -> each agent verifies the TUF metadata, downloads,
#   self-tests and serves it on a local socket (one on the CPU, one on OpenCL via PoCL) ->
#   v2 is published and assigned -> the agents hot-swap with no failed request -> clean shutdown.
# Usage: scripts/demo.sh [DATA_DIR]   (default: a new temporary directory, removed at the end)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

scripts/deps.sh demo
scripts/build.sh build
make -s -C build tests/models/stamp

keep=${1:+yes}
data=${1:-$(mktemp -d /tmp/ganglion-demo.XXXXXX)}
mkdir -p "$data"
# As root, the private PostgreSQL runs as user postgres, which must be able to enter this directory.
chmod 0711 "$data"
port=${GANGLION_DEMO_PORT:-7790}
url=http://127.0.0.1:$port
models=build/tests/models
plugin=build/agents/runtimes/ganglion-runtime-opencv.so
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -z "$keep" ] && rm -rf "$data"
	return 0
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ganglion() { build/cli/ganglion "$@"; }
infer() { # socket -> the answer to the model's sample input
	curl -s --unix-socket "$1" http://agent/v1/models/det/infer -H 'Content-Type: application/json' \
		-d '{"inputs":{"x":[0.5,-1.25,2.0,0.75]}}'
	echo
}
wait_for() { # description, command...
	local what=$1
	shift
	for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
	echo "timed out waiting for $what"
	exit 1
}

step "start gangliond (data dir $data/server, private PostgreSQL under $data/server/pg)"
build/server/gangliond --data-dir "$data/server" --listen "127.0.0.1:$port" --agent-poll-interval 2s \
	2>"$data/gangliond.log" &
pids+=($!)
gd_pid=$!
wait_for "gangliond /readyz" curl -sf "$url/readyz"
curl -s "$url/readyz"; echo
export GANGLION_URL=$url GANGLION_TOKEN=@$data/server/admin.token

step "CI publishes det 1.0.0: artifact + metadata (tensor specs, sample input/output), signed into TUF targets"
ganglion tokens create --name ci-pipeline --scope ci -o json >/dev/null
ganglion models push "$models/v1.onnx" --name det --version 1.0.0 --meta "$models/v1.json" --no-progress
ganglion models alias set det production 1.0.0

step "an enrollment token for the north-site cameras (2 uses)"
et=$(ganglion -o json enroll-tokens create --name north-cameras --label site=north --label type=camera \
	--max-uses 2 --expires-in 1h | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "created (token shown once; kept in a variable)"

step "two edge agents enroll through the API: one runs models on the CPU, one on OpenCL (PoCL)"
export POCL_CACHE_DIR=$data/pocl-cache
for cam in cam-north-1:cpu cam-north-2:opencl; do
	name=${cam%%:*}
	target=${cam##*:}
	agent=(build/agents/ganglion-agent --server-url "$url" --data-dir "$data/$name" --runtime-plugin "$plugin"
		--runtime-target "$target" --socket-path "$data/$name.sock" --poll-min 1s)
	"${agent[@]}" enroll --token "$et" --name "$name" 2>>"$data/$name.log"
	"${agent[@]}" run 2>>"$data/$name.log" &
	pids+=($!)
done

step "a third device with the used-up token is refused"
if build/agents/ganglion-agent --server-url "$url" --data-dir "$data/cam-north-3" --runtime-plugin "$plugin" \
	enroll --token "$et" 2>&1; then
	echo "unexpectedly enrolled"
	exit 1
fi

step "the fleet, as the ops team sees it"
ganglion devices list --selector site=north,type=camera

step "assign det@production to every north-site camera"
ganglion devices assign --selector site=north,type=camera det@production
wait_for "cam-north-1 to serve 1.0.0" sh -c "curl -s --unix-socket $data/cam-north-1.sock http://a/v1/models | grep -q 1.0.0"
wait_for "cam-north-2 to serve 1.0.0" sh -c "curl -s --unix-socket $data/cam-north-2.sock http://a/v1/models | grep -q 1.0.0"
for name in cam-north-1 cam-north-2; do
	echo "$name:"; curl -s --unix-socket "$data/$name.sock" http://agent/v1/models; echo
	infer "$data/$name.sock"
done

step "CI publishes det 2.0.0; ops moves production to it; the agents hot-swap while serving"
ganglion models push "$models/v2.onnx" --name det --version 2.0.0 --meta "$models/v2.json" --no-progress >/dev/null
ganglion models alias set det production 2.0.0
( for _ in $(seq 1 400); do infer "$data/cam-north-1.sock"; done ) >"$data/during-swap.txt" &
load=$!
ganglion devices assign --selector site=north,type=camera det@production
wait_for "cam-north-1 to serve 2.0.0" sh -c "curl -s --unix-socket $data/cam-north-1.sock http://a/v1/models | grep -q 2.0.0"
wait_for "cam-north-2 to serve 2.0.0" sh -c "curl -s --unix-socket $data/cam-north-2.sock http://a/v1/models | grep -q 2.0.0"
wait "$load"
echo "requests during the swap: $(wc -l <"$data/during-swap.txt"), failed: $(grep -vc '"outputs"' "$data/during-swap.txt" || true)"
echo "versions that answered: $(grep -o '"version":"[0-9.]*"' "$data/during-swap.txt" | sort | uniq -c | tr '\n' ' ')"
infer "$data/cam-north-2.sock"

step "what the devices reported"
id1=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["device_id"])' "$data/cam-north-1/identity/device.json")
# The agent reports the outcome at its next check-in.
reported_v2() { build/cli/ganglion -o json devices show "$1" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if (d.get("reported") or {}).get("last_operation", {}).get("version") == "2.0.0" else 1)'; }
wait_for "cam-north-1 to report 2.0.0" reported_v2 "$id1"
ganglion devices events "$id1"
ganglion devices list

step "audit log"
ganglion audit list --limit 8

step "shut down cleanly (SIGTERM: agents stop serving, gangliond drains requests and stops PostgreSQL)"
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p"; done
pids=()
tail -n 2 "$data/gangliond.log"
echo
echo "demo finished"
