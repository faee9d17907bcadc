#!/bin/sh
# Authenticated check-ins answered 304 from memory (keep-alive POST /v1/agent/checkin with a device
# token and If-None-Match) next to nginx answering `return 200` with an empty body (a 304 has
# none) to the same wrk settings, both on loopback. Starts its own gangliond (private-cluster
# mode: its own PostgreSQL) and nginx; enrols one device through the API (bench/checkin_setup.py).
# Not part of the test suite.
#
# usage: bench/checkin_vs_nginx.sh [CONNECTIONS] [SECONDS] [GANGLIOND]   (default 64 10 build/server/gangliond)
# Needs wrk, nginx (Debian: wrk, nginx-light) and python3-cryptography. Prints one line per server
# (requests/s, p50, p99 from wrk --latency) and the ratio.
set -eu
conns=${1:-64}
secs=${2:-10}
top=$(cd "$(dirname "$0")/.." && pwd)
gd=${3:-${GANGLION_BUILDDIR:-$top/build}/server/gangliond}
dir=$(mktemp -d /tmp/gn-checkin-XXXXXX)
chmod 711 "$dir"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
gport=$(free_port)
nport=$(free_port)
gpid=
cleanup() {
	[ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null
	[ -n "$gpid" ] && kill "$gpid" 2>/dev/null && wait "$gpid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$gd" --data-dir "$dir/d" --listen "127.0.0.1:$gport" --log-level warn --rate-limit-address 0 \
	--rate-limit-identity 0 2>"$dir/gangliond.log" &
gpid=$!
i=0
until curl -sf "http://127.0.0.1:$gport/readyz" >/dev/null; do
	i=$((i + 1))
	[ $i -lt 240 ] || { cat "$dir/gangliond.log" >&2; exit 1; }
	sleep 0.5
done
/usr/bin/python3 "$top/bench/checkin_setup.py" "http://127.0.0.1:$gport" "$dir/d/admin.token" >"$dir/device"
token=$(sed -n 1p "$dir/device")
etag=$(sed -n 2p "$dir/device")
cat >"$dir/checkin.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"agent_version":"bench"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["If-None-Match"] = '$etag'
LUA
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
    server {
        listen 127.0.0.1:$nport;
        location / { return 200 ''; }
    }
}
CONF
nginx -c "$dir/nginx.conf" -p "$dir" 2>/dev/null
sleep 0.5
# requests/s, p50, p99 (wrk's units) of one run
run() {
	wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$dir/checkin.lua" "$1" >"$dir/wrk.out"
	if grep -q "Non-2xx or 3xx" "$dir/wrk.out"; then
		echo "error answers from $1:" >&2
		cat "$dir/wrk.out" >&2
		exit 1
	fi
	awk '/Requests\/sec/ { r = $2 } $1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 } END { print r, p50, p99 }' "$dir/wrk.out"
}
g=$(run "http://127.0.0.1:$gport/v1/agent/checkin")
n=$(run "http://127.0.0.1:$nport/v1/agent/checkin")
echo "wrk -t2 -c$conns -d${secs}s --latency, keep-alive, same request (POST, device token, If-None-Match)"
echo "$g" | awk '{ printf "gangliond check-in (304 from memory): %s req/s, p50 %s, p99 %s\n", $1, $2, $3 }'
echo "$n" | awk '{ printf "nginx (1 worker, return 200, empty body): %s req/s, p50 %s, p99 %s\n", $1, $2, $3 }'
echo "ratio gangliond/nginx: $(echo "$g $n" | awk '{ printf "%.2f", $1 / $4 }')"
