#!/bin/sh
# Artifact throughput over loopback: a 1 GiB upload (curl -F, streamed to disk and hashed by
# gangliond) and download (curl -o /dev/null) against a running gangliond, next to nginx
# (Debian nginx-light, started here on a free port as the current user, stopped after) serving
# and receiving (WebDAV PUT) the same file on the same machine. Prints MB/s (10^6 bytes/s) and
# the ratios. Not part of the test suite.
#
# usage: bench/upload_download.sh URL TOKEN [SIZE_MIB]
#   URL    gangliond base URL, e.g. http://127.0.0.1:7700
#   TOKEN  an API token with the ci scope (admin works)
# env: BENCH_TMPDIR (default $TMPDIR or /tmp) holds the test file and nginx's files; it needs
#      2 x SIZE free. NGINX (default nginx). RUNS (default 3): each transfer is timed RUNS
#      times and the best is kept.
set -eu

url=${1:?usage: $0 URL TOKEN [SIZE_MIB]}
token=${2:?usage: $0 URL TOKEN [SIZE_MIB]}
size_mib=${3:-1024}
runs=${RUNS:-3}
nginx=${NGINX:-nginx}
base=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}

command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }
command -v "$nginx" >/dev/null || { echo "nginx is needed (apt-get install nginx-light)" >&2; exit 1; }

dir=$(mktemp -d "$base/gn-bench-XXXXXX")
nginx_pid=
cleanup() {
	if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
		kill -QUIT "$nginx_pid" 2>/dev/null || true
		sleep 0.5
	fi
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

free_port() {
	"$(command -v /usr/bin/python3 || command -v python3)" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# MB/s from bytes and seconds.
mbps() {
	awk -v b="$1" -v t="$2" 'BEGIN { printf "%.0f", b / t / 1e6 }'
}

# Runs "curl ARGS" RUNS times; prints the best time_total in seconds. Fails on an HTTP error.
best_time() {
	best=
	i=0
	while [ "$i" -lt "$runs" ]; do
		out=$(curl -sS --noproxy '*' -o /dev/null -w '%{http_code} %{time_total}' "$@")
		code=${out% *}
		t=${out#* }
		case $code in 2??) ;; *) echo "curl $* -> HTTP $code" >&2; return 1 ;; esac
		best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (a == "" || b < a) ? b : a }')
		i=$((i + 1))
	done
	echo "$best"
}

# --- the test file -----------------------------------------------------------------------
mkdir -p "$dir/www/up" "$dir/tmp" "$dir/logs"
file=$dir/www/model.bin
echo "creating a ${size_mib} MiB file of random bytes in $dir"
head -c "$((size_mib * 1048576))" /dev/urandom >"$file"
bytes=$(stat -c %s "$file")
digest=$(sha256sum "$file" | cut -d' ' -f1)
cat "$file" >/dev/null # into the page cache, for both servers alike

# --- nginx -------------------------------------------------------------------------------
port=$(free_port)
# As root, nginx's workers would otherwise switch to nobody, who cannot read this directory.
user_line=
[ "$(id -u)" != 0 ] || user_line="user $(id -un) $(id -gn);"
cat >"$dir/nginx.conf" <<EOF
$user_line
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
daemon off;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port;
        root $dir/www;
        location /up/ {
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
            client_body_buffer_size 1m;
        }
    }
}
EOF
"$nginx" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" &
nginx_pid=$!
i=0
until curl -s --noproxy '*' -o /dev/null "http://127.0.0.1:$port/"; do
	i=$((i + 1))
	[ "$i" -lt 50 ] || { echo "nginx did not start:" >&2; cat "$dir/logs/error.log" >&2; exit 1; }
	sleep 0.1
done

# --- gangliond ---------------------------------------------------------------------------
curl -sS --noproxy '*' -f -o /dev/null "$url/healthz" || { echo "no gangliond at $url" >&2; exit 1; }
stamp=$(date +%s)
up_best=
i=0
while [ "$i" -lt "$runs" ]; do
	# Every upload is a new version (same bytes: one file in the store).
	printf '{"version": "0.%s.%s", "format": "other", "no_self_test": true, "sha256": "%s", "length": %s}' \
		"$stamp" "$i" "$digest" "$bytes" >"$dir/meta.json"
	out=$(curl -sS --noproxy '*' -o "$dir/publish.out" -w '%{http_code} %{time_total}' \
		-H "Authorization: Bearer $token" -H 'Expect:' \
		-F "metadata=<$dir/meta.json;type=application/json" \
		-F "artifact=@$file;type=application/octet-stream" \
		"$url/v1/models/bench-upload/versions")
	code=${out% *}
	t=${out#* }
	[ "$code" = 201 ] || { echo "publish -> HTTP $code: $(cat "$dir/publish.out")" >&2; exit 1; }
	up_best=$(awk -v a="$up_best" -v b="$t" 'BEGIN { print (a == "" || b < a) ? b : a }')
	i=$((i + 1))
done
dl_g=$(best_time -H "Authorization: Bearer $token" "$url/v1/artifacts/sha256/$digest")
dl_n=$(best_time "http://127.0.0.1:$port/model.bin")
up_n=$(best_time -H 'Expect:' -T "$file" "http://127.0.0.1:$port/up/model.bin")

# --- report ------------------------------------------------------------------------------
g_up=$(mbps "$bytes" "$up_best")
n_up=$(mbps "$bytes" "$up_n")
g_dl=$(mbps "$bytes" "$dl_g")
n_dl=$(mbps "$bytes" "$dl_n")
echo
echo "file: $bytes bytes (sha256 $digest), best of $runs, MB = 10^6 bytes"
printf '%-10s %16s %16s %8s\n' "" "gangliond MB/s" "nginx MB/s" "ratio"
printf '%-10s %16s %16s %8s\n' download "$g_dl" "$n_dl" "$(awk -v a="$g_dl" -v b="$n_dl" 'BEGIN { printf "%.2f", a / b }')"
printf '%-10s %16s %16s %8s\n' upload "$g_up" "$n_up" "$(awk -v a="$g_up" -v b="$n_up" 'BEGIN { printf "%.2f", a / b }')"
echo "(gangliond upload: multipart POST, SHA-256 while streaming, fsync, one DB transaction and TUF"
echo " re-signing; nginx upload: WebDAV PUT of the same bytes to disk, no hashing, no fsync)"
