#!/bin/sh
# Runs the benchmarks that measure a figure beside a reference in the same run, and writes their
# table into bench/README.md (between its marker lines): machine, command, figure, reference,
# ratio. Installs nginx and wrk from Debian when they are missing (as root, with apt-get).
# Needs a build in build/ (scripts/build.sh build); every setup step is in these scripts.
#
# usage: bench/run.sh [--no-write]
#   FLEET_DEVICES (default 100000) and FLEET_SECONDS (30): bench/fleet.sh's fleet;
#   CHECKIN_SECONDS (10): each wrk run of bench/checkin_vs_nginx.sh.
# The table goes to stdout too; --no-write leaves bench/README.md alone.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
b=${GANGLION_BUILDDIR:-$top/build}
write=1
[ "${1:-}" = "--no-write" ] && write=0
fleet_n=${FLEET_DEVICES:-100000}
fleet_s=${FLEET_SECONDS:-30}
checkin_s=${CHECKIN_SECONDS:-10}

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx-light >/dev/null
	else
		echo "run.sh: needs wrk and nginx (Debian: apt-get install wrk nginx-light)" >&2
		exit 1
	fi
fi
for f in "$b/server/gangliond" "$b/cli/ganglion" "$b/bench/fleetsim"; do
	[ -x "$f" ] || { echo "run.sh: $f is not built (scripts/build.sh build)" >&2; exit 1; }
done

out=$(mktemp -d /tmp/gn-benchrun-XXXXXX)
trap 'rm -rf "$out"' EXIT INT TERM
rows=$out/rows
: >"$rows"
row() { printf '| %s | `%s` | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5" >>"$rows"; }

# 1. Check-ins answered 304 from memory against nginx `return 200`, same wrk settings.
cmd="bench/checkin_vs_nginx.sh 64 $checkin_s"
echo "== $cmd" >&2
"$top/bench/checkin_vs_nginx.sh" 64 "$checkin_s" | tee "$out/checkin" >&2
g=$(awk '/^gangliond/ { print $(NF-5), $(NF-2), $NF }' "$out/checkin" | tr -d ',')
n=$(awk '/^nginx/ { print $(NF-5), $(NF-2), $NF }' "$out/checkin" | tr -d ',')
set -- $g $n
row "check-ins/s, keep-alive, authenticated, 304 (p50, p99)" "$cmd" "$1 ($2, $3)" \
	"nginx return 200: $4 ($5, $6)" "$(awk -v a="$1" -v b="$4" 'BEGIN { printf "%.2f", a / b }')"

# 2. A fleet of simulated devices: enrolment, authentication and check-in rates, errors, memory.
cmd="bench/fleet.sh $fleet_n $fleet_s 64"
echo "== $cmd" >&2
"$top/bench/fleet.sh" "$fleet_n" "$fleet_s" 64 | tee "$out/fleet" >&2 || true
for ph in enroll token checkin; do
	r=$(awk -v p="$ph" '$1 == p { print $2 " requests, " $4 ", p99 " $9 " ms" }' "$out/fleet")
	[ -n "$r" ] && row "fleet of $fleet_n: $ph" "$cmd" "$r" "-" "-"
done
errs=$(awk '/^errors:/ { n = $2 } /^  +[0-9]+  / { $1 = $1; k = k "; " $0 } END { print n k }' "$out/fleet")
row "fleet of $fleet_n: errors (count; kinds)" "$cmd" "${errs:-no report}" "0" "-"
per=$(awk '/bytes per device/ { print $(NF-3) }' "$out/fleet")
[ -n "$per" ] && row "gangliond memory per device after $fleet_n checked in" "$cmd" "$per bytes" "aim: 1024 bytes" \
	"$(awk -v a="$per" 'BEGIN { printf "%.2f", a / 1024 }')"

# 3. Telemetry ingestion through the API against a plain COPY of the same rows.
cmd="bench/telemetry_ingest.py"
echo "== $cmd" >&2
if GANGLION_BUILDDIR=$b /usr/bin/python3 "$top/bench/telemetry_ingest.py" | tee "$out/telemetry" >&2; then
	api=$(awk '/^api:/ { print $4 }' "$out/telemetry")
	copy=$(awk '/^copy:/ { print $4 }' "$out/telemetry")
	ratio=$(awk '/^api\/copy:/ { print $2 }' "$out/telemetry")
	row "telemetry ingest, rows/s" "$cmd" "$api" "COPY: $copy" "$ratio"
fi

# 4. The bound a freshly signed answer per check-in would have.
sign=$(openssl speed -seconds 3 ed25519 2>/dev/null | awk '$1 == "253" && $4 == "(Ed25519)" { print $(NF-1) }')
row "Ed25519 signatures/s, one core (reference for check-ins that change state)" "openssl speed ed25519" \
	"${sign:-?}" "-" "-"

{
	echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), by \`bench/run.sh\`."
	echo
	echo "| figure | command | measured | reference | ratio |"
	echo "|---|---|---:|---:|---:|"
	cat "$rows"
} >"$out/table"
cat "$out/table"
if [ $write = 1 ]; then
	readme=$top/bench/README.md
	begin='<!-- BEGIN bench/run.sh -->'
	end='<!-- END bench/run.sh -->'
	awk -v b="$begin" -v e="$end" -v t="$out/table" '
		$0 == e { skip = 0 }
		!skip { print }
		$0 == b { while ((getline l < t) > 0) print l; skip = 1 }' "$readme" >"$out/readme"
	cp "$out/readme" "$readme"
fi
