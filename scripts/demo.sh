#!/usr/bin/env bash
# Ganglion's main job, end to end, on a fresh Debian 12 machine: build, start gangliond on a
# private PostgreSQL cluster it manages in a data directory, create an enrollment token, enroll
# two devices through the API (each with its own Ed25519 key), authenticate one of them by
# challenge-response, list the fleet with the CLI, and shut down cleanly.
# Usage: scripts/demo.sh [DATA_DIR]   (default: a new temporary directory, removed at the end)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

scripts/deps.sh demo
scripts/build.sh build

keep=${1:+yes}
data=${1:-$(mktemp -d /tmp/ganglion-demo.XXXXXX)}
port=${GANGLION_DEMO_PORT:-7790}
url=http://127.0.0.1:$port
work=$(mktemp -d /tmp/ganglion-demo-keys.XXXXXX)
gd_pid=

cleanup() {
	if [ -n "$gd_pid" ] && kill -0 "$gd_pid" 2>/dev/null; then
		kill -TERM "$gd_pid"
		wait "$gd_pid" || true
	fi
	rm -rf "$work"
	[ -z "$keep" ] && rm -rf "$data"
	return 0
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start gangliond (data dir $data, private PostgreSQL under $data/pg)"
build/server/gangliond --data-dir "$data" --listen "127.0.0.1:$port" 2>"$data.log" &
gd_pid=$!
for _ in $(seq 1 120); do
	curl -sf "$url/readyz" >/dev/null 2>&1 && break
	kill -0 "$gd_pid" 2>/dev/null || { cat "$data.log"; echo "gangliond exited"; exit 1; }
	sleep 0.5
done
curl -sf "$url/readyz"; echo
export GANGLION_URL=$url GANGLION_TOKEN=@$data/admin.token
ganglion() { build/cli/ganglion "$@"; }

step "create an enrollment token for two north-site cameras"
et_json=$(ganglion -o json enroll-tokens create --name demo-cameras --label site=north --label type=camera --max-uses 2 --expires-in 1h)
echo "$et_json"
et=$(printf '%s' "$et_json" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

enroll() { # name -> prints device id; the key stays in $work/name.pem
	local name=$1 pub
	openssl genpkey -algorithm ed25519 -out "$work/$name.pem" 2>/dev/null
	pub=$(openssl pkey -in "$work/$name.pem" -pubout -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n')
	curl -sf -X POST "$url/v1/enroll" -H 'Content-Type: application/json' \
		-d "{\"token\":\"$et\",\"public_key\":\"$pub\",\"name\":\"$name\",\"facts\":{\"accelerator\":\"cpu\"}}"
}

step "enroll two devices through the API"
d1=$(enroll cam-north-1); echo "$d1"
d2=$(enroll cam-north-2); echo "$d2"
id1=$(printf '%s' "$d1" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["device_id"])')

step "a third device with the used-up token is refused"
if enroll cam-north-3; then echo "unexpectedly enrolled"; exit 1; else echo " (refused, as it should be)"; fi

step "device cam-north-1 proves its identity: challenge, Ed25519 signature, short-lived token"
nonce=$(curl -sf -X POST "$url/v1/agent/auth/challenge" -H 'Content-Type: application/json' -d "{\"device_id\":\"$id1\"}" |
	/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["nonce"])')
printf 'ganglion-device-auth:v1:%s:%s' "$id1" "$nonce" > "$work/msg"
sig=$(openssl pkeyutl -sign -rawin -inkey "$work/cam-north-1.pem" -in "$work/msg" | od -An -tx1 | tr -d ' \n')
dtok=$(curl -sf -X POST "$url/v1/agent/auth/token" -H 'Content-Type: application/json' \
	-d "{\"device_id\":\"$id1\",\"nonce\":\"$nonce\",\"signature\":\"$sig\"}" |
	/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
curl -sf "$url/v1/agent/self" -H "Authorization: Bearer $dtok"; echo

step "the fleet, as the ops team sees it"
ganglion devices list --selector site=north,type=camera
ganglion devices label "$id1" zone=crossing-12
ganglion devices list --selector zone=crossing-12

step "audit log"
ganglion audit list --limit 10

step "shut down cleanly (SIGTERM: drain requests, stop PostgreSQL)"
kill -TERM "$gd_pid"
wait "$gd_pid"
gd_pid=
tail -n 3 "$data.log"
rm -f "$data.log"
echo
echo "demo finished"
