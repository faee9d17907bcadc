#!/usr/bin/env bash
# Ganglion's main job, end to end, on a fresh Debian 12 machine:
#   gangliond on a private PostgreSQL it manages -> CI publishes a signed model release -> four
#   edge agents enroll through the API (their own Ed25519 keys; three on the CPU, one on OpenCL via
#   PoCL), each with a local app sending it requests -> a deployment runs det@production on every
#   north-site camera -> CI publishes v2 and moves production: a canary rollout (50 %, then 100 %)
#   passes its gates and completes, hot-swapping with no failed request -> a bad v3 (its interface
#   changed, so the apps' requests fail) is moved to production: its canary fails the error-rate
#   gate and the rollout rolls back by itself -> summary -> clean shutdown. Along the way the agents
#   count what they serve on the release's reference profile (10 s telemetry windows): the v2
#   canary is also judged statistically against the devices still on v1 (canary_judgement gate),
#   and one camera, fed shifted inputs, raises a drift alert.
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
# A camera's local app: one request per line of its inputs file (cycled), every 50 ms.
app() { # socket inputs-file
	while :; do
		while read -r body; do
			curl -s --unix-socket "$1" http://agent/v1/models/det/infer -H 'Content-Type: application/json' \
				-d "$body"
			echo
			sleep 0.05
		done <"$2"
	done
}
wait_for() { # description, command...
	local what=$1
	shift
	for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
	echo "timed out waiting for $what"
	exit 1
}

step "start gangliond (data dir $data/server, private PostgreSQL under $data/server/pg)"
if curl -s -o /dev/null --max-time 2 "$url/"; then
	echo "something already answers at $url; stop it or choose another port with GANGLION_DEMO_PORT" >&2
	exit 1
fi
build/server/gangliond --data-dir "$data/server" --listen "127.0.0.1:$port" --agent-poll-interval 2s \
	--rollout-interval 1s --alert-interval 2s 2>"$data/gangliond.log" &
pids+=($!)
gangliond_up() { kill -0 "${pids[-1]}" || { gangliond_died=1; return 0; }; curl -sf "$url/readyz"; }
wait_for "gangliond /readyz" gangliond_up
if [ -n "${gangliond_died:-}" ]; then
	echo "gangliond exited; the end of $data/gangliond.log:" >&2
	tail -5 "$data/gangliond.log" >&2
	exit 1
fi
curl -s "$url/readyz"; echo
export GANGLION_URL=$url GANGLION_TOKEN=@$data/server/admin.token

step "CI profiles the training data (bins per input feature) into the release's metadata, publishes det 1.0.0: artifact + metadata (tensor specs, sample, reference profile), signed into TUF targets"
# Training data: the inputs the cameras see, around (0.5, -1.25, 2.0, 0.75). The apps' inputs are
# drawn the same way; cam-north-1's first feature is shifted by 1.5 (a camera that drifted).
/usr/bin/python3 - "$data" <<'PY'
import random, sys
d, base = sys.argv[1], (0.5, -1.25, 2.0, 0.75)
rnd = random.Random(7)
with open(f"{d}/train.csv", "w") as f:
    f.write("x0,x1,x2,x3\n")
    for _ in range(5000):
        f.write(",".join(f"{b + rnd.gauss(0, 0.25):.4f}" for b in base) + "\n")
for cam in range(1, 5):
    with open(f"{d}/cam-north-{cam}.inputs", "w") as f:
        for _ in range(600):
            x = [b + rnd.gauss(0, 0.25) for b in base]
            x[0] += 1.5 if cam == 1 else 0.0
            f.write('{"inputs":{"x":[%s]}}\n' % ",".join(f"{v:.4f}" for v in x))
PY
for v in v1 v2; do cp "$models/$v.json" "$data/$v.json"; done
ganglion models profile "$data/train.csv" --meta "$data/v1.json" >/dev/null
ganglion models profile "$data/train.csv" --meta "$data/v2.json" >/dev/null
ganglion tokens create --name ci-pipeline --scope ci -o json >/dev/null
ganglion models push "$models/v1.onnx" --name det --version 1.0.0 --meta "$data/v1.json" --no-progress
ganglion models alias set det production 1.0.0

step "an enrollment token for the north-site cameras (4 uses)"
et=$(ganglion -o json enroll-tokens create --name north-cameras --label site=north --label type=camera \
	--max-uses 4 --expires-in 1h | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "created (token shown once; kept in a variable)"

step "four edge agents enroll through the API, pinning the roots fetched with 'keys root'; a local app on each sends it requests"
ganglion keys root -O "$data/image-root.json"
ganglion keys root --repo director -O "$data/director-root.json"
export POCL_CACHE_DIR=$data/pocl-cache
cams=(cam-north-1:cpu cam-north-2:cpu cam-north-3:cpu cam-north-4:opencl)
for cam in "${cams[@]}"; do
	name=${cam%%:*}
	target=${cam##*:}
	agent=(build/agents/ganglion-agent --server-url "$url" --data-dir "$data/$name" --runtime-plugin "$plugin"
		--runtime-target "$target" --socket-path "$data/$name.sock" --poll-min 1s --poll-max 2s
		--telemetry-window 10s)
	"${agent[@]}" enroll --token "$et" --name "$name" --trusted-root "$data/image-root.json" \
		--trusted-director-root "$data/director-root.json" 2>>"$data/$name.log"
	"${agent[@]}" run 2>>"$data/$name.log" &
	pids+=($!)
done

step "a fifth device with the used-up token is refused"
if build/agents/ganglion-agent --server-url "$url" --data-dir "$data/cam-north-5" --runtime-plugin "$plugin" \
	enroll --token "$et" 2>&1; then
	echo "unexpectedly enrolled"
	exit 1
fi

step "deploy det@production to every north-site camera: a standing rule with a canary strategy"
cat >"$data/strategy.json" <<'JSON'
{"stages": [{"percent": 50, "bake": 6}, {"percent": 100, "bake": 0}], "probation": 2,
 "gates": {"max_failed": 0, "max_error_rate": 0.05, "max_error_increase": 0.05, "min_requests": 20,
           "canary_judgement": {"min_score": 60, "marginal_score": 40}}}
JSON
ganglion deploy create cams --model det --selector site=north,type=camera --follow production \
	--strategy "@$data/strategy.json"
serving() { curl -s --unix-socket "$1" http://a/v1/models | grep -q "\"version\":\"$2\""; }
for cam in "${cams[@]}"; do wait_for "${cam%%:*} to serve 1.0.0" serving "$data/${cam%%:*}.sock" 1.0.0; done
ganglion devices list --selector site=north

# Each camera's local app: a request every 50 ms, answers appended to a file.
for cam in "${cams[@]}"; do
	name=${cam%%:*}
	app "$data/$name.sock" "$data/$name.inputs" >>"$data/$name.answers" 2>/dev/null &
	pids+=($!)
done
ganglion alerts create-rule input-drift --model det --threshold 0.25 --windows 2 --min-samples 100
rollout_id() { ganglion -o json rollout list --deployment cams | /usr/bin/python3 -c \
	'import json,sys; r=json.load(sys.stdin)["items"]; print(r[0]["id"] if r else "")'; }
newer_rollout() { [ -n "$(rollout_id)" ] && [ "$(rollout_id)" != "$1" ]; }

step "CI publishes det 2.0.0 and moves production: a canary rollout, 50 % then 100 %"
ganglion models push "$models/v2.onnx" --name det --version 2.0.0 --meta "$data/v2.json" --no-progress >/dev/null
ganglion models alias set det production 2.0.0
wait_for "the rollout to start" newer_rollout ""
r2=$(rollout_id)
ganglion rollout plan cams
# A device's place in a rollout is drawn from the rollout's id: with four cameras, one rollout in
# sixteen would put all of them in the 50 % stage. The controller then holds one back on 1.0.0 (a
# hold_back event, "1 held back as the control" below), so the canary always has a control.
# The watch ends with the rollout; one that has not finished in five minutes (a gate that cannot
# be judged holds its stage) stops the demo, saying why, rather than waiting for ever.
ganglion rollout watch "$r2" --interval 1s &
watch=$!
for _ in $(seq 1 300); do kill -0 "$watch" 2>/dev/null || break; sleep 1; done
if kill -0 "$watch" 2>/dev/null; then
	kill "$watch"
	echo "the rollout of 2.0.0 has not finished in five minutes:"
	ganglion rollout status "$r2"
	exit 1
fi
wait "$watch"
for cam in "${cams[@]}"; do wait_for "${cam%%:*} to serve 2.0.0" serving "$data/${cam%%:*}.sock" 2.0.0; done
failed=$(cat "$data"/*.answers | grep -vc '"outputs"' || true)
echo "requests so far: $(cat "$data"/*.answers | wc -l), failed: $failed"
[ "$failed" -eq 0 ] || { echo "requests failed during the v2 rollout"; exit 1; }
echo "the canary judgement that passed the first stage (2.0.0 against 1.0.0, one observation per device and window):"
ganglion models canary det 2.0.0 1.0.0 --since 10m

step "cam-north-1's inputs drifted: the fleet's drift of det 2.0.0, the alert it raised, and the camera's own windows"
alerted() { [ "$(ganglion -o json alerts list | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')" != 0 ]; }
wait_for "the drift alert" alerted
ganglion alerts list
ganglion models drift det 2.0.0 --since 10m
ganglion telemetry show cam-north-1 --limit 3

step "CI publishes det 3.1.0, whose input changed, and moves production: the canary fails its gate"
ganglion models push "$models/wide.onnx" --name det --version 3.1.0 --meta "$models/wide.json" --no-progress >/dev/null
ganglion models alias set det production 3.1.0
wait_for "the rollout of 3.1.0 to start" newer_rollout "$r2"
r3=$(rollout_id)
if ganglion rollout watch "$r3" --interval 1s; then
	echo "the bad release completed its rollout"
	exit 1
fi
for cam in "${cams[@]}"; do wait_for "${cam%%:*} to serve 2.0.0 again" serving "$data/${cam%%:*}.sock" 2.0.0; done
ganglion rollout status "$r3"

step "summary"
ganglion deploy list
ganglion rollout list --deployment cams
ganglion devices list --selector site=north
for cam in "${cams[@]}"; do
	name=${cam%%:*}
	echo "$name: $(wc -l <"$data/$name.answers") requests, $(grep -vc '"outputs"' "$data/$name.answers" || true) failed," \
		"versions that answered: $(grep -o '"version":"[0-9.]*"' "$data/$name.answers" | sort | uniq -c | tr '\n' ' ')"
done
ganglion audit list --limit 10

step "shut down cleanly (SIGTERM: apps and agents stop, gangliond drains requests and stops PostgreSQL)"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
tail -n 2 "$data/gangliond.log"
echo
echo "demo finished"
