#!/usr/bin/env bash
# Runs the benchmarks that measure a figure beside a reference in the same run, and writes their
# table into bench/README.md (between its marker lines): machine, command, figure, reference,
# ratio. Installs nginx and wrk from Debian when they are missing (as root, with apt-get).
# Needs a build in build/ (scripts/build.sh build); every setup step is in these scripts.
#
# usage: bench/run.sh [--no-write]
#   FLEET_DEVICES (default 100000) and FLEET_SECONDS (30): bench/fleet.sh's fleet;
#   CHECKIN_SECONDS (10): each wrk run of bench/checkin_vs_nginx.sh;
#   FANOUT_DEVICES (100000): bench/changes.sh's fleet (check-ins that change desired state, and a
#   rollout's fan-out);
#   AGENT_IDLE_SECONDS (60): how long bench/agent_rss.py measures the idle agent's CPU time.
# The table goes to stdout too; --no-write leaves bench/README.md alone. A figure that cannot be
# measured stops the run with an error (and leaves bench/README.md as it was).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
b=${GANGLION_BUILDDIR:-$top/build}
write=1
[ "${1:-}" = "--no-write" ] && write=0
fleet_n=${FLEET_DEVICES:-100000}
fleet_s=${FLEET_SECONDS:-30}
checkin_s=${CHECKIN_SECONDS:-10}
fanout_n=${FANOUT_DEVICES:-100000}
idle_s=${AGENT_IDLE_SECONDS:-60}
for v in "$fleet_n" "$fleet_s" "$checkin_s" "$fanout_n" "$idle_s"; do
	case $v in
	'' | *[!0-9]* | 0) echo "run.sh: FLEET_DEVICES, FLEET_SECONDS, CHECKIN_SECONDS, FANOUT_DEVICES and AGENT_IDLE_SECONDS must be whole numbers above 0, not '$v'" >&2; exit 2 ;;
	esac
done

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx-light >/dev/null
	else
		echo "run.sh: needs wrk and nginx (Debian: apt-get install wrk nginx-light)" >&2
		exit 1
	fi
fi
for f in "$b/server/gangliond" "$b/cli/ganglion" "$b/bench/fleetsim" "$b/bench/rss_floor" "$b/bench/rss_layers" "$b/agents/ganglion-agent"; do
	[ -x "$f" ] || { echo "run.sh: $f is not built (scripts/build.sh build)" >&2; exit 1; }
done

# bench/agent_rss.py serves the test models (tests/models, made by the build).
make -s -C "$b" tests/models/stamp >/dev/null

out=$(mktemp -d /tmp/gn-benchrun-XXXXXX)
trap 'rm -rf "$out"' EXIT INT TERM
rows=$out/rows
: >"$rows"
row() { printf '| %s | `%s` | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5" >>"$rows"; }
# need WHAT VALUE...: stops the run when a figure came out empty.
need() {
	local what=$1
	shift
	for v in "$@"; do
		[ -n "$v" ] || { echo "run.sh: no figure for $what (its output is above)" >&2; exit 1; }
	done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# 1. Check-ins answered 304 from memory against nginx `return 200`, same wrk settings.
cmd="bench/checkin_vs_nginx.sh 64 $checkin_s"
echo "== $cmd" >&2
"$top/bench/checkin_vs_nginx.sh" 64 "$checkin_s" | tee "$out/checkin" >&2
g=$(awk '/^gangliond/ { print $(NF-5), $(NF-2), $NF }' "$out/checkin" | tr -d ',')
n=$(awk '/^nginx/ { print $(NF-5), $(NF-2), $NF }' "$out/checkin" | tr -d ',')
set -- $g $n
need "check-ins against nginx" "${1:-}" "${6:-}"
row "check-ins/s, keep-alive, authenticated, 304 (p50, p99)" "$cmd" "$1 ($2, $3)" \
	"nginx return 200: $4 ($5, $6)" "$(awk -v a="$1" -v b="$4" 'BEGIN { printf "%.2f", a / b }')"

# 2. A fleet of simulated devices: enrolment, authentication and check-in rates, errors, memory.
cmd="bench/fleet.sh $fleet_n $fleet_s 64"
echo "== $cmd" >&2
"$top/bench/fleet.sh" "$fleet_n" "$fleet_s" 64 | tee "$out/fleet" >&2
for ph in enroll token checkin; do
	r=$(awk -v p="$ph" '$1 == p { print $2 " requests, " $4 ", p99 " $9 " ms" }' "$out/fleet")
	need "fleet $ph" "$r"
	row "fleet of $fleet_n: $ph" "$cmd" "$r" "-" "-"
done
errs=$(awk '/^errors:/ { n = $2 } /^  +[0-9]+  / { $1 = $1; k = k "; " $0 } END { print n k }' "$out/fleet")
need "fleet errors" "$errs"
row "fleet of $fleet_n: errors (count; kinds)" "$cmd" "$errs" "0" "-"
per=$(awk '/bytes per device/ { print $(NF-3) }' "$out/fleet")
need "gangliond memory per device" "$per"
cached=$(awk '/bytes per device/ { for (i = 1; i < NF; i++) if ($(i + 1) == "answered") print $i }' "$out/fleet")
row "gangliond memory per idle device, $fleet_n checked in (${cached:-?} answered from memory)" "$cmd" "$per bytes" "aim: 1024 bytes" \
	"$(awk -v a="$per" 'BEGIN { printf "%.2f", a / 1024 }')"

# 3. Telemetry ingestion through the API against a plain COPY of the same rows.
cmd="bench/telemetry_ingest.py"
echo "== $cmd" >&2
GANGLION_BUILDDIR=$b /usr/bin/python3 "$top/bench/telemetry_ingest.py" | tee "$out/telemetry" >&2
api=$(awk '/^api:/ { print $4 }' "$out/telemetry")
copy=$(awk '/^copy:/ { print $4 }' "$out/telemetry")
r=$(awk '/^api\/copy:/ { print $2 }' "$out/telemetry")
need "telemetry ingest" "$api" "$copy" "$r"
row "telemetry ingest, rows/s" "$cmd" "$api" "COPY: $copy" "$r"

# 4. Check-ins that change desired state (200, director targets signed afresh) against the bound a
# freshly signed answer per check-in would have: Ed25519 signatures a second on one core. Then a
# rollout's fan-out to its first stage, against one check-in round of the same fleet.
echo "== openssl speed ed25519" >&2
sign=$(openssl speed -seconds 3 ed25519 2>/dev/null | awk '$1 == "253" && $4 == "(Ed25519)" { print $(NF-1) }')
need "openssl speed ed25519" "$sign"
cmd="bench/changes.sh $fanout_n 64"
echo "== $cmd" >&2
"$top/bench/changes.sh" "$fanout_n" 64 | tee "$out/changes" >&2
read -r _ answers devices rate p50 p99 _ <<<"$(grep '^changed: ' "$out/changes" || true)"
need "check-ins that change desired state" "${answers:-}" "${rate:-}" "${p99:-}"
row "check-ins that change desired state/s: 200 with director targets signed for a new deployment, $answers answers to $devices devices (p50, p99)" \
	"$cmd" "$rate (${p50}ms, ${p99}ms)" "Ed25519 signatures/s, one core (\`openssl speed ed25519\`): $sign" "$(ratio "$rate" "$sign")"
read -r _ secs stage1 round <<<"$(grep '^fanout: ' "$out/changes" || true)"
need "rollout fan-out" "${secs:-}" "${stage1:-}" "${round:-}"
row "rollout fan-out: rollout started -> the last of stage 1 ($stage1 of $fanout_n devices, 1 %) told the new version" \
	"$cmd" "$secs s" "one check-in round of the $fanout_n devices: $round s" "$(ratio "$secs" "$round")"

# 5. The agent idle: its RSS against bench/rss_floor (what it links, at rest), its CPU time against 0.
cmd="bench/agent_rss.py --idle-seconds $idle_s"
echo "== $cmd" >&2
GANGLION_BUILDDIR=$b /usr/bin/python3 "$top/bench/agent_rss.py" --idle-seconds "$idle_s" --json "$out/agent.json" >&2
/usr/bin/python3 - "$out/agent.json" "$cmd" >>"$rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cmd = sys.argv[2]
floor = r["reference_rss_floor"]["after_curl_init"]
floor_kib = floor["RssAnon"] + floor["RssFile"]
ref = f"`rss_floor` (libcurl, libcrypto, libmicrohttpd, jansson linked, curl initialised): {floor_kib} KiB"
plugins = [p for p in sorted(r) if isinstance(r[p], dict) and "idle" in r[p]]
if not plugins:
    sys.exit("run.sh: bench/agent_rss.py measured no agent (no runtime plugin built)")
for p in plugins:
    a = r[p]
    for what, key in (("no model", "idle"), (f"model v1 assigned, idle {a['v1_idle']['seconds']:.0f} s", "v1_idle")):
        kib = a[key]["VmRSS"]
        print(f"| agent RSS ({p} plugin), {what} | `{cmd}` | {kib} KiB | {ref} | {kib / floor_kib:.2f} |")
    # What the device pays beside its other processes: pages no other process maps (Private), and
    # shared pages divided among their users (Pss); against the same floor's.
    i = a["idle"]
    print(f"| agent Private (Pss) ({p} plugin), no model | `{cmd}` | {i['Private']} KiB ({i['Pss']} KiB)"
          f" | `rss_floor` Private (Pss): {floor['Private']} KiB ({floor['Pss']} KiB) | {i['Private'] / floor['Private']:.2f} |")
    c = a["v1_idle"]
    print(f"| agent CPU ({p} plugin), model v1 assigned, idle {c['seconds']:.0f} s, checking in every 1 s"
          f" | `{cmd}` | {c['cpu_seconds']:.2f} s ({c['cpu_percent']:.3f} % of a core) | 0 | - |")
PY

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
