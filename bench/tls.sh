#!/bin/sh
# What HTTPS costs gangliond: GET /healthz with wrk against the same build serving plain HTTP and
# HTTPS (TLS 1.3, the default tls-priorities), same machine, same run, keep-alive connections; then
# the rate of full TLS handshakes. Not part of the test suite.
#
# usage: bench/tls.sh HTTP_URL HTTPS_URL [CONNECTIONS] [SECONDS]
#   e.g. gangliond --data-dir /tmp/a --listen 127.0.0.1:7781 --log-level warn &
#        gangliond --data-dir /tmp/b --listen 127.0.0.1:7782 --log-level warn \
#            --tls-cert-file cert.pem --tls-key-file key.pem &
#        bench/tls.sh http://127.0.0.1:7781 https://127.0.0.1:7782 64 10
# Needs wrk (Debian: wrk) and openssl. Neither verifies the certificate: this measures cost, not trust.
set -eu
plain=${1:?usage: $0 HTTP_URL HTTPS_URL [CONNECTIONS] [SECONDS]}
tls=${2:?usage: $0 HTTP_URL HTTPS_URL [CONNECTIONS] [SECONDS]}
conns=${3:-64}
secs=${4:-10}
run() { wrk -t2 -c"$conns" -d"${secs}s" "$@" | awk '/Requests\/sec/ { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
hostport=${tls#https://}
hostport=${hostport%%/*}
pk=$(run "$plain/healthz")
tk=$(run "$tls/healthz")
# A full handshake per connection (no resumption), by openssl's own client, which costs about as much
# as the server per handshake: on one machine the figure is a floor for the server's rate.
hs=$(openssl s_time -connect "$hostport" -new -time "$secs" 2>/dev/null | awk '/connections in .* real seconds/ { printf "%.0f", $1 / $4 }')
echo "wrk -t2 -c$conns -d${secs}s GET /healthz, keep-alive: http $pk req/s, https $tk req/s, https/http $(ratio "$tk" "$pk")"
echo "openssl s_time -new ${secs}s: $hs full TLS handshakes/s (client and server on this machine)"
