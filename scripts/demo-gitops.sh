#!/usr/bin/env bash
# GitOps end to end on a fresh Debian 12 machine: the fleet driven from a git repository.
#   gangliond on a private PostgreSQL, syncing the main branch of a local git repository, applying
#   only commits signed by an Ed25519 SSH key made here with ssh-keygen (gitops-allowed-signers) ->
#   CI publishes det 1.0.0 and 2.0.0 -> three edge agents (OpenCV runtime) enroll -> a signed commit
#   declares the alias det/production = 1.0.0 and a deployment that follows it: every north camera
#   runs 1.0.0 (and the deployment is read-only through the API) -> a signed commit moves production
#   to 2.0.0: `ganglion gitops plan` shows the change, the push webhook (HMAC-signed, as a git host
#   sends it) wakes the sync, and a canary rollout (50 %, then 100 %) hot-swaps the cameras ->
#   `git revert` of that commit rolls the fleet back to 1.0.0 -> an unsigned commit is refused,
#   `ganglion gitops status` says why, and nothing changes -> summary -> clean shutdown.
# Usage: scripts/demo-gitops.sh [DATA_DIR]   (default: a new temporary directory, removed at the end)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

scripts/deps.sh demo
scripts/build.sh build
make -s -C build tests/models/stamp

keep=${1:+yes}
data=${1:-$(mktemp -d /tmp/ganglion-gitops-demo.XXXXXX)}
mkdir -p "$data"
# As root, the private PostgreSQL runs as user postgres, which must be able to enter this directory.
chmod 0711 "$data"
port=${GANGLION_DEMO_PORT:-7791}
url=http://127.0.0.1:$port
models=build/tests/models
plugin=build/agents/runtimes/ganglion-runtime-opencv.so
repo=$data/fleet-repo
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -z "$keep" ] && rm -rf "$data"
	return 0
}
trap cleanup EXIT

exec 3>&2
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ganglion() { build/cli/ganglion "$@"; }
# git in the fleet repository, ignoring the user's own git configuration (the repository has its own).
g() { GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 git -C "$repo" "$@"; }
wait_for() { # description, command...
	local what=$1
	shift
	for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
	echo "timed out waiting for $what"
	exit 1
}
status_is() { # FIELD VALUE: ganglion gitops status has FIELD (dotted: applied.commit) = VALUE
	[ "$(ganglion -o json gitops status | /usr/bin/python3 -c 'import json,sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."): v = v[k]
print(v)' "$1")" = "$2" ]
}
push() { # applied|refused: what a git host sends after a push (the push event, signed with the shared
	# webhook secret), then waits for gangliond to have applied or refused the head
	local head body sig
	head=$(g rev-parse HEAD)
	body=$(printf '{"ref":"refs/heads/main","after":"%s"}' "$head")
	sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$(cat "$data/webhook.secret")" -r | cut -d' ' -f1)
	curl -s -X POST "$url/v1/gitops/hook" -H 'Content-Type: application/json' -H "X-Hub-Signature-256: sha256=$sig" \
		-d "$body" -o /dev/null -w "push ${head:0:12}: webhook answered HTTP %{http_code}\n"
	wait_for "gangliond to check ${head:0:12}" status_is head.commit "$head"
	if [ "$1" = applied ]; then
		wait_for "gangliond to apply ${head:0:12}" status_is applied.commit "$head"
	else
		status_is status refused || { echo "${head:0:12} was not refused"; exit 1; }
	fi
}
serving() { curl -s --unix-socket "$1" http://a/v1/models | grep -q "\"version\":\"$2\""; }
fleet_serves() { # VERSION: every camera serves it
	for cam in "${cams[@]}"; do wait_for "$cam to serve $1" serving "$data/$cam.sock" "$1"; done
	for cam in "${cams[@]}"; do
		printf '%s serves det %s\n' "$cam" "$(curl -s --unix-socket "$data/$cam.sock" http://a/v1/models |
			grep -o '"version":"[0-9.]*"' | head -n 1 | cut -d'"' -f4)"
	done
}
rollout_id() { ganglion -o json rollout list --deployment north-cameras | /usr/bin/python3 -c \
	'import json,sys; r=json.load(sys.stdin)["items"]; print(r[0]["id"] if r else "")'; }
newer_rollout() { [ -n "$(rollout_id)" ] && [ "$(rollout_id)" != "$1" ]; }
alias_file() { # VERSION
	cat >"$repo/fleet/production.yaml" <<YAML
# The version every deployment that follows det@production rolls out.
apiVersion: ganglion/v1
kind: ModelAlias
model: det
alias: production
version: $1
YAML
}

step "the fleet repository ($repo) and the key that signs its commits (ssh-keygen, Ed25519)"
ssh-keygen -q -t ed25519 -N '' -C ops@example.org -f "$data/ops_ed25519"
echo "ops@example.org $(cut -d' ' -f1,2 "$data/ops_ed25519.pub")" >"$data/allowed_signers"
cat "$data/allowed_signers"
mkdir -p "$repo/fleet"
g init -q -b main
g config user.name "Ops"
g config user.email ops@example.org
g config gpg.format ssh
g config user.signingkey "$data/ops_ed25519"
g config commit.gpgsign true
g config gpg.ssh.allowedSignersFile "$data/allowed_signers" # for git log --show-signature
printf 'The fleet: one ModelAlias or Deployment per .yaml file (docs/GITOPS.md).\n' >"$repo/fleet/README.md"
g add -A
g commit -q -m "an empty fleet"
g log --oneline

step "start gangliond: GitOps on $repo (branch main, path fleet), signed commits only, a push webhook"
openssl rand -hex 24 >"$data/webhook.secret"
if curl -s -o /dev/null "$url/readyz"; then
	echo "something already listens on $url: choose another port with GANGLION_DEMO_PORT=N"
	exit 1
fi
build/server/gangliond --data-dir "$data/server" --listen "127.0.0.1:$port" --agent-poll-interval 2s \
	--rollout-interval 1s --gitops-repository "$repo" --gitops-path fleet \
	--gitops-allowed-signers "$data/allowed_signers" --gitops-webhook-secret-file "$data/webhook.secret" \
	2>"$data/gangliond.log" &
pids+=($!)
up() { # ready, or stopped: then its log's end goes to the terminal (fd 3: wait_for hides 1 and 2)
	kill -0 "${pids[0]}" || { echo "gangliond stopped:" >&3; tail -n 5 "$data/gangliond.log" >&3; exit 1; }
	curl -sf "$url/readyz"
}
wait_for "gangliond /readyz" up
export GANGLION_URL=$url GANGLION_TOKEN=@$data/server/admin.token
wait_for "the first sync" status_is status synced
ganglion gitops status

step "CI publishes det 1.0.0 and 2.0.0 (which version runs where is for git to say)"
ganglion models push "$models/v1.onnx" --name det --version 1.0.0 --meta "$models/v1.json" --no-progress >/dev/null
ganglion models push "$models/v2.onnx" --name det --version 2.0.0 --meta "$models/v2.json" --no-progress >/dev/null
ganglion models list

step "three north-site cameras enroll (OpenCV runtime on the CPU)"
et=$(ganglion -o json enroll-tokens create --name north-cameras --label site=north --label type=camera \
	--max-uses 3 --expires-in 1h | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
ganglion keys root -O "$data/image-root.json"
ganglion keys root --repo director -O "$data/director-root.json"
cams=(cam-north-1 cam-north-2 cam-north-3)
for cam in "${cams[@]}"; do
	agent=(build/agents/ganglion-agent --server-url "$url" --data-dir "$data/$cam" --runtime-plugin "$plugin"
		--runtime-target cpu --socket-path "$data/$cam.sock" --poll-min 1s --poll-max 2s)
	"${agent[@]}" enroll --token "$et" --name "$cam" --trusted-root "$data/image-root.json" \
		--trusted-director-root "$data/director-root.json" 2>>"$data/$cam.log"
	"${agent[@]}" run 2>>"$data/$cam.log" &
	pids+=($!)
done
ganglion devices list --selector site=north

step "a signed commit: alias production = 1.0.0, and a deployment of det@production to the north cameras"
alias_file 1.0.0
cat >"$repo/fleet/north-cameras.yaml" <<'YAML'
apiVersion: ganglion/v1
kind: Deployment
name: north-cameras
model: det
selector: site=north,type=camera
follow: production
strategy:
  stages:
    - {percent: 50, bake: 4}
    - {percent: 100}
  gates: {max_failed: 0}
YAML
ganglion gitops validate "$repo/fleet" # what a pre-commit hook would run
g add -A
g commit -q -m "north cameras run det@production (1.0.0)"
g log -1 --show-signature --format='%h %s' 2>&1
push applied
ganglion gitops status
ganglion deploy list
fleet_serves 1.0.0

step "git manages the deployment now: changing it through the API is refused, naming the file and commit"
if ganglion deploy delete north-cameras; then
	echo "a deployment that git manages was deleted through the API"
	exit 1
fi

step "a signed commit moves production to 2.0.0: the plan, the push, a canary rollout (50 %, then 100 %)"
alias_file 2.0.0
g commit -q -am "production is 2.0.0"
ganglion gitops plan
push applied
wait_for "the rollout to start" newer_rollout ""
r2=$(rollout_id)
ganglion rollout watch "$r2" --interval 1s
fleet_serves 2.0.0

step "git revert brings the fleet back: production is 1.0.0 again, rolled out the same way"
g revert --no-edit HEAD >/dev/null
reverted=$(g rev-parse HEAD)
g log --oneline -1
ganglion gitops plan
push applied
wait_for "the rollout back to start" newer_rollout "$r2"
ganglion rollout watch "$(rollout_id)" --interval 1s
fleet_serves 1.0.0

step "an unsigned commit (someone without the key moves production to 2.0.0) is refused; nothing changes"
alias_file 2.0.0
g -c commit.gpgsign=false -c user.name=Mallory -c user.email=mallory@example.org commit -q -am "production is 2.0.0"
push refused
ganglion gitops status
status_is applied.commit "$reverted" || { echo "the applied commit changed"; exit 1; }
sleep 3 # a few check-ins later, the cameras still serve what the last applied commit says
fleet_serves 1.0.0

step "summary: every change came from a commit (actor gitops, the commit id as request id)"
g log --format='%h %<(8)%G? %an: %s'
ganglion rollout list --deployment north-cameras
ganglion audit list --actor gitops

step "shut down cleanly (SIGTERM: agents stop, gangliond drains requests and stops PostgreSQL)"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
tail -n 2 "$data/gangliond.log"
echo
echo "demo finished"
