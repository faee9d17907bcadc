#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan and UBSan) and runs one of them.
# Usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]   run TARGET for SECONDS
#        scripts/fuzz.sh all SECONDS [options...]                 each target in turn
#        scripts/fuzz.sh --list                                   the targets
# The build goes to $FUZZ_BUILDDIR (default build-fuzz/, configured CC=clang --enable-fuzz). The
# committed corpus fuzz/corpus/TARGET seeds the run and is never written: new inputs go to
# BUILDDIR/corpus/TARGET (kept between runs), findings to BUILDDIR/artifacts/TARGET/. Exits 1 on a
# finding (crash, sanitizer report, failed property, leak, timeout), 2 on a usage or build error.
# To keep a finding as a regression test, copy the input into fuzz/corpus/TARGET/ (make check
# replays every committed input); to fold the new inputs into the corpus, see docs/HACKING.md.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bdir=${FUZZ_BUILDDIR:-build-fuzz}
case $bdir in /*) ;; *) bdir=$top/$bdir ;; esac

targets() {
	for d in fuzz/corpus/*/; do basename "$d"; done
}

usage() {
	echo "usage: scripts/fuzz.sh TARGET|all SECONDS [libFuzzer options...] | --list" >&2
	echo "targets: $(targets | tr '\n' ' ')" >&2
	exit 2
}

[ "${1:-}" = --list ] && { targets; exit 0; }
[ $# -ge 2 ] || usage
target=$1 secs=$2
shift 2
[[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -ge 1 ] || { echo "fuzz.sh: SECONDS must be a whole number >= 1" >&2; usage; }
if [ "$target" = all ]; then
	list=$(targets)
else
	[ -d "fuzz/corpus/$target" ] || { echo "fuzz.sh: no target '$target'" >&2; usage; }
	list=$target
fi

# One run at a time per build dir: a second would rebuild the programs under the first, and share its
# corpus and logs.
mkdir -p "$bdir"
exec 9>"$bdir/.fuzz.lock"
flock -n 9 || { echo "fuzz.sh: another run holds $bdir; waiting for it" >&2; flock 9; }

command -v clang >/dev/null || { echo "fuzz.sh: clang is missing (scripts/deps.sh test installs it)" >&2; exit 2; }
[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi >/dev/null 2>&1 || autoreconf -fi || exit 2
if [ ! -f "$bdir/Makefile" ]; then
	(cd "$bdir" && CC=clang "$top/configure" -q --enable-fuzz --without-opencv >/dev/null) || {
		echo "fuzz.sh: configure failed in $bdir" >&2
		exit 2
	}
fi
bins=()
for t in $list; do bins+=("fuzz/$t"); done
if ! make -C "$bdir" -s -j2 lib/gn_version.h server/migrations_gen.c server/ui_assets_gen.c "${bins[@]}" >"$bdir/fuzz-build.log" 2>&1; then
	tail -n 40 "$bdir/fuzz-build.log" >&2
	echo "fuzz.sh: build failed in $bdir (log: $bdir/fuzz-build.log)" >&2
	exit 2
fi

# Per-target options: a dictionary of the input's tokens, and a size that fits its inputs.
opts_for() {
	case $1 in
	tuf_metadata | canonical_json | json_body) echo "-dict=$top/fuzz/json.dict -max_len=8192" ;;
	agent_request) echo "-dict=$top/fuzz/json.dict -max_len=4096" ;;
	multipart) echo "-dict=$top/fuzz/multipart.dict -max_len=16384" ;;
	*) echo "-max_len=1024" ;;
	esac
}

status=0
for t in $list; do
	work=$bdir/corpus/$t art=$bdir/artifacts/$t
	mkdir -p "$work" "$art"
	log=$bdir/fuzz-$t.log
	# shellcheck disable=SC2046
	"$bdir/fuzz/$t" -max_total_time="$secs" -timeout=10 -print_final_stats=1 -artifact_prefix="$art/" \
		$(opts_for "$t") "$@" "$work" "fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	runs=$(grep -aoE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
	cov=$(grep -aE '^#[0-9]+' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
	if [ $rc -eq 0 ]; then
		echo "fuzz: $t: ${runs:-?} runs in ${secs} s, ${cov:-no coverage line}, nothing found"
	else
		status=1
		echo "fuzz: FAIL: $t (exit $rc; log $log; inputs in $art/):"
		grep -aE 'ERROR: |property failed|SUMMARY: |runtime error|Test unit written|leak' "$log" | head -n 20
	fi
done
exit $status
