#!/usr/bin/python3
"""Adds up the results of every test runner in the given build directories and prints them,
ending with one line "N passed, N failed, N skipped". Exits 1 if anything failed or no test ran.
Usage: summarize.py BUILDDIR... [--check NAME=EXIT_STATUS]... [--expected-skips FILE]
(a --check is one more test: a whole-tree check run outside make check, e.g. formatting).

Skips are never silent: each one is printed with its reason. A skip is *expected* only when
tests/expected-skips.txt (or the --expected-skips FILE) names it, with a reason, or when it is a
pytest xfail (the marker in the test names the known bug). In CI (CI=true) every other skip counts
as a failure: a missing tool, model or command must not make the suite shrink without a word.
An automake SKIP (exit 77) of a whole test program is one skip, named by the program's path
(e.g. tests/unit/agent/test_runtime_opencv, tests/integration/run.sh)."""
import fnmatch
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

passed = failed = skipped = 0
skips = []  # (build dir, test id, reason, kind) with kind "skip" or "xfail"
failures = []  # (build dir, test id)


def load_expected(path):
    """Returns [(pattern, reason)] from an expected-skips file: "ID-OR-GLOB  -- reason" per line."""
    out = []
    if not os.path.exists(path):
        return out
    for n, line in enumerate(open(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = line.partition(" -- ")
        if not sep or not reason.strip():
            print(f"{path}:{n}: an expected skip needs a reason: 'ID -- why' ({line!r})")
            sys.exit(1)
        out.append((pattern.strip(), reason.strip()))
    return out


def junit_cases(path):
    """Yields (test id, outcome, message) for each testcase of a pytest junit file; outcome is
    passed, failed, skipped or xfail."""
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        cls = case.get("classname", "")
        mod = cls.split(".")[-1] if cls else ""
        tid = f"tests/integration/{mod}.py::{case.get('name')}" if mod else case.get("name")
        outcome, msg = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, msg = "failed", child.get("message", "")
                break
            if child.tag == "skipped":
                outcome = "xfail" if child.get("type") == "pytest.xfail" else "skipped"
                msg = child.get("message", "")
        yield tid, outcome, msg


def skip_reason(log_text):
    m = re.search(r"^SKIP:?\s*(.*)$", log_text, re.M)
    return m.group(1).strip() if m else "exit status 77 (skipped)"


args = sys.argv[1:]
dirs = []
expected_file = os.path.join(SRCDIR, "tests", "expected-skips.txt")
while args:
    a = args.pop(0)
    if a == "--check":
        name, _, rc = args.pop(0).partition("=")
        ok = rc == "0"
        print(f"{name}: {'PASS' if ok else 'FAIL'}")
        passed += ok
        failed += not ok
        if not ok:
            failures.append(("-", name))
    elif a == "--expected-skips":
        expected_file = args.pop(0)
    else:
        dirs.append(a)
expected = load_expected(expected_file)

for d in dirs:
    if os.path.exists(d + ".buildfail") or not os.path.isdir(d):
        print(f"{d}: build failed")
        failed += 1
        failures.append((d, "build"))
        continue
    trs_files = glob.glob(f"{d}/tests/**/*.trs", recursive=True) + glob.glob(f"{d}/scripts/*.trs")
    if not trs_files:
        print(f"{d}: no test ran (no .trs files: did make check run?)")
        failed += 1
        failures.append((d, "make check"))
    for trs in sorted(trs_files):
        log = trs[:-4] + ".log"
        tid = os.path.relpath(trs[:-4], d)
        result = open(trs).read()
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        if ":test-result: SKIP" in result:
            skips.append((d, tid, skip_reason(text), "skip"))
            skipped += 1
            continue
        if trs.endswith("run.sh.trs"):
            junit = f"{d}/tests/integration/junit.xml"
            if os.path.exists(junit):
                n = bad = 0
                for case_id, outcome, msg in junit_cases(junit):
                    n += 1
                    if outcome == "passed":
                        passed += 1
                    elif outcome == "failed":
                        bad += 1
                        failures.append((d, case_id))
                    else:
                        skipped += 1
                        skips.append((d, case_id, msg, "skip" if outcome == "skipped" else "xfail"))
                if n == 0:
                    print(f"{d}: the integration run collected no test")
                    failed += 1
                    failures.append((d, tid))
                elif ":test-result: PASS" not in result and bad == 0:
                    # pytest failed without a failing test case (an internal error, an interrupt).
                    bad = 1
                    failures.append((d, tid))
                failed += bad
            else:
                failed += 1
                failures.append((d, tid + " (no junit.xml)"))
            continue
        p = sum(int(x) for x in re.findall(r"^\[  PASSED  \] (\d+) test", text, re.M))
        f = sum(int(x) for x in re.findall(r"^\[  FAILED  \] (\d+) test", text, re.M))
        s = sum(int(x) for x in re.findall(r"^\[  SKIPPED \] (\d+) test", text, re.M))
        for name in re.findall(r"^\[  SKIPPED \] (\S+)\s*$", text, re.M):
            skips.append((d, f"{tid}::{name}", "skip() in the test", "skip"))
        if s and not re.findall(r"^\[  SKIPPED \] (\S+)\s*$", text, re.M):
            skips.append((d, tid, f"{s} CMocka test(s) skipped", "skip"))
        if (":test-result: FAIL" in result or ":test-result: ERROR" in result) and f == 0:
            f = 1  # crashed or failed before CMocka could summarise
        elif ":test-result: PASS" in result and p == 0 and f == 0 and s == 0:
            p = 1  # a script check (e.g. scripts/check-layers.sh): one test
        if f:
            failures.append((d, tid))
        passed += p
        failed += f
        skipped += s

unexpected = 0
for d, tid, reason, kind in skips:
    why = next((r for pat, r in expected if fnmatch.fnmatchcase(tid, pat)), None)
    if kind == "xfail":
        print(f"XFAIL (known bug, strict xfail): {d}: {tid}: {reason}")
    elif why is not None:
        print(f"SKIP (expected: {why}): {d}: {tid}: {reason}")
    else:
        unexpected += 1
        print(f"SKIP (not expected{'; a failure in CI' if CI else ''}): {d}: {tid}: {reason}")
if unexpected:
    where = os.path.relpath(expected_file, SRCDIR)
    if CI:
        print(f"{unexpected} unexpected skip(s) count as failures in CI: fix the cause, or declare the skip "
              f"with its reason in {where}")
        failed += unexpected
        skipped -= unexpected
    else:
        print(f"{unexpected} skip(s) not declared in {where}; with CI=true they fail the run")
for d, tid in failures:
    print(f"FAILED: {d}: {tid}")
if passed + failed == 0:
    print("no test ran")
    failed = 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
