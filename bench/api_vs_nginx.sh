#!/bin/sh
# Small keep-alive API requests: gangliond's GET /healthz next to nginx answering `return 200`
# with the same body, both on loopback, same wrk settings. Not part of the test suite.
#
# usage: bench/api_vs_nginx.sh GANGLIOND_URL [CONNECTIONS] [SECONDS]
#   e.g. gangliond --data-dir /tmp/d --listen 127.0.0.1:7780 --log-level warn &
#        bench/api_vs_nginx.sh http://127.0.0.1:7780 64 10
# Needs wrk and nginx (Debian: wrk, nginx-light). nginx runs as the current user on a free port.
set -eu
url=${1:?usage: $0 GANGLIOND_URL [CONNECTIONS] [SECONDS]}
conns=${2:-64}
secs=${3:-10}
dir=$(mktemp -d /tmp/gn-nginx-XXXXXX)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
    server {
        listen 127.0.0.1:$port;
        location /healthz { default_type application/json; return 200 '{"status":"ok"}'; }
    }
}
CONF
nginx -c "$dir/nginx.conf" -p "$dir"
trap 'kill "$(cat "$dir/nginx.pid")" 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
sleep 0.5
run() { wrk -t2 -c"$conns" -d"${secs}s" "$1" | awk '/Requests\/sec/ { print $2 } /Latency/ && !l { l = 1; lat = $2 " avg, " $4 " stdev" } END { }'; }
g=$(run "$url/healthz")
n=$(run "http://127.0.0.1:$port/healthz")
echo "wrk -t2 -c$conns -d${secs}s /healthz, keep-alive"
echo "gangliond: $g req/s"
echo "nginx (1 worker, return 200): $n req/s"
echo "ratio gangliond/nginx: $(awk -v a="$g" -v b="$n" 'BEGIN { printf "%.2f", a / b }')"
