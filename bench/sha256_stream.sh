#!/bin/sh
# How close gangliond's upload path comes to the machine's SHA-256 rate: openssl's single-core
# SHA-256 throughput on 16 KiB blocks, next to the upload throughput of a file already in the
# page cache (gangliond hashes every byte as it streams to disk). Prints both in MB/s
# (10^6 bytes/s) and the fraction. Not part of the test suite.
#
# usage: bench/sha256_stream.sh URL TOKEN [SIZE_MIB]
#   URL    gangliond base URL, e.g. http://127.0.0.1:7700
#   TOKEN  an API token with the ci scope (admin works)
# env: BENCH_TMPDIR (default $TMPDIR or /tmp) for the test file; RUNS (default 3, best kept).
set -eu

url=${1:?usage: $0 URL TOKEN [SIZE_MIB]}
token=${2:?usage: $0 URL TOKEN [SIZE_MIB]}
size_mib=${3:-512}
runs=${RUNS:-3}
base=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}

dir=$(mktemp -d "$base/gn-sha-XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM

# openssl prints e.g. "sha256   ...   1361234.56k" in its table, in units of 1000 bytes/s.
ossl_k=$(openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null |
	awk '$1 == "sha256" || $1 == "SHA256" { v = $NF } END { sub(/k$/, "", v); print v }')
[ -n "$ossl_k" ] || { echo "cannot read openssl speed's output" >&2; exit 1; }
ossl=$(awk -v k="$ossl_k" 'BEGIN { printf "%.0f", k * 1000 / 1e6 }')

file=$dir/artifact.bin
head -c "$((size_mib * 1048576))" /dev/urandom >"$file"
bytes=$(stat -c %s "$file")
cat "$file" >/dev/null # in the page cache: the upload reads no disk

stamp=$(date +%s)
best=
i=0
while [ "$i" -lt "$runs" ]; do
	printf '{"version": "0.%s.%s", "format": "other", "no_self_test": true}' "$stamp" "$i" >"$dir/meta.json"
	out=$(curl -sS --noproxy '*' -o "$dir/publish.out" -w '%{http_code} %{time_total}' \
		-H "Authorization: Bearer $token" -H 'Expect:' \
		-F "metadata=<$dir/meta.json;type=application/json" \
		-F "artifact=@$file;type=application/octet-stream" \
		"$url/v1/models/bench-sha256/versions")
	code=${out% *}
	t=${out#* }
	[ "$code" = 201 ] || { echo "publish -> HTTP $code: $(cat "$dir/publish.out")" >&2; exit 1; }
	best=$(awk -v a="$best" -v b="$t" 'BEGIN { print (a == "" || b < a) ? b : a }')
	i=$((i + 1))
done
up=$(awk -v b="$bytes" -v t="$best" 'BEGIN { printf "%.0f", b / t / 1e6 }')

echo "openssl speed -evp sha256 -bytes 16384 -seconds 3: $ossl MB/s (one core)"
echo "gangliond upload of $bytes cached bytes (best of $runs): $up MB/s"
echo "fraction of the SHA-256 rate: $(awk -v a="$up" -v b="$ossl" 'BEGIN { printf "%.2f", a / b }')"
