#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs the whole test suite twice: a normal
# build (build/) and one with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/).
# Unit tests are CMocka binaries; integration tests (pytest) start a real PostgreSQL, the real
# gangliond and the real CLI. Prints each runner's summary, every skip with its reason, and ends
# with "N passed, N failed, N skipped". With CI=true a skip not declared in tests/expected-skips.txt
# is a failure (scripts/summarize.py).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

scripts/deps.sh test || { echo "test.sh: could not install dependencies"; exit 1; }
# Both builds carry the ONNX Runtime plugin too, against the pinned library deps.sh fetches.
ort=$(scripts/deps.sh onnxruntime) || { echo "test.sh: could not fetch ONNX Runtime"; exit 1; }

status=0
run_suite() {
	local dir=$1
	shift
	echo "=== build $dir ($*) ==="
	if ! scripts/build.sh "$dir" "$@"; then
		echo "test.sh: build in $dir failed"
		echo "build-$dir" >> "$top/$dir.buildfail" 2>/dev/null
		status=1
		return
	fi
	echo "=== tests in $dir ==="
	rm -f "$dir"/tests/integration/junit.xml
	# make check runs each test binary; the logs carry the runners' own summaries.
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		make -C "$dir" -s check -j1 >"$dir/check.out" 2>&1 || status=1
	grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):' "$dir/check.out" || true
	for log in $(find "$dir/tests" "$dir/scripts" -name '*.log' ! -name 'test-suite.log' 2>/dev/null | sort); do
		echo "--- ${log#$dir/}"
		grep -E '^\[ *(PASSED|FAILED|  ERROR) *\]|^\[==========\]|passed|failed|error' "$log" | tail -n 8
		if grep -qE ':test-result: (FAIL|ERROR)' "${log%.log}.trs" 2>/dev/null; then
			echo "--- failure output of ${log#$dir/}:"
			tail -n 60 "$log"
		fi
	done
}

rm -f build.buildfail build-asan.buildfail
run_suite build --with-onnxruntime="$ort"
run_suite build-asan --enable-asan --with-onnxruntime="$ort"

# Debian packages (one test in the summary; its own checks are listed in build/packages.out): built
# from build/, installed, run as their units, upgraded, downgraded and purged, as root.
echo "=== packages (scripts/test-packages.sh) ==="
mkdir -p build
scripts/test-packages.sh build >build/packages.out 2>&1
pkg=$?
grep -E '^(FAIL:|packages:)' build/packages.out
[ $pkg -ne 0 ] && { echo "--- failure output of scripts/test-packages.sh:"; tail -n 80 build/packages.out; }

# Formatting: every tracked *.c/*.h/*.cpp as .clang-format says (one test in the line below).
echo "=== formatting (scripts/check-format.sh) ==="
scripts/check-format.sh
fmt=$?
if [ $fmt -ne 0 ]; then
	echo "test.sh: FAIL: formatting (scripts/check-format.sh exited $fmt; fix with clang-format -i FILE...)"
	status=1
fi

# The REST contract: api/openapi.yaml lint clean under Redocly's recommended rules, warnings
# included (api/redocly.yaml); one test in the line below. The linter's version and checksum are
# pinned in scripts/redocly/package-lock.json (installed by scripts/deps.sh).
echo "=== API contract lint (redocly lint api/openapi.yaml) ==="
scripts/lint-api.sh >build/apilint.out 2>&1
apilint=$?
if [ $apilint -ne 0 ]; then
	echo "test.sh: FAIL: api/openapi.yaml does not lint clean:"
	tail -n 60 build/apilint.out
	status=1
fi

# Fuzzing: each libFuzzer target (fuzz/) for a short smoke from its committed corpus, built with
# clang, ASan and UBSan in build-fuzz/ (one test per target in the line below; scripts/fuzz.sh).
# make check above has already replayed every committed input in both builds.
echo "=== fuzz smoke (scripts/fuzz.sh, ${FUZZ_SMOKE_SECONDS:=15} s per target) ==="
fuzz_checks=()
for t in $(scripts/fuzz.sh --list); do
	scripts/fuzz.sh "$t" "$FUZZ_SMOKE_SECONDS"
	rc=$?
	fuzz_checks+=(--check "fuzz-$t=$rc")
	[ $rc -ne 0 ] && status=1
done

/usr/bin/python3 scripts/summarize.py build build-asan --check "formatting=$fmt" --check "packages=$pkg" \
	--check "apilint=$apilint" "${fuzz_checks[@]}"
rc=$?
[ $status -ne 0 ] && rc=1
exit $rc
