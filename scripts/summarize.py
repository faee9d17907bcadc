#!/usr/bin/python3
"""Adds up the results of every test runner in the given build directories and prints one line
"N passed, N failed". Exits 1 if anything failed or no test ran.
Usage: summarize.py BUILDDIR... [--check NAME=EXIT_STATUS]...
(a --check is one more test: a whole-tree check run outside make check, e.g. formatting)."""
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

passed = failed = 0
args = sys.argv[1:]
dirs = []
while args:
    a = args.pop(0)
    if a == "--check":
        name, _, rc = args.pop(0).partition("=")
        ok = rc == "0"
        print(f"{name}: {'PASS' if ok else 'FAIL'}")
        passed += ok
        failed += not ok
    else:
        dirs.append(a)
for d in dirs:
    if os.path.exists(d + ".buildfail") or not os.path.isdir(d):
        print(f"{d}: build failed")
        failed += 1
        continue
    trs_files = glob.glob(f"{d}/tests/**/*.trs", recursive=True) + glob.glob(f"{d}/scripts/*.trs")
    for trs in sorted(trs_files):
        log = trs[:-4] + ".log"
        result = open(trs).read()
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        if trs.endswith("run.sh.trs"):
            junit = f"{d}/tests/integration/junit.xml"
            if os.path.exists(junit):
                root = ET.parse(junit).getroot()
                suites = [root] if root.tag == "testsuite" else list(root)
                for s in suites:
                    n = int(s.get("tests", 0))
                    bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
                    skipped = int(s.get("skipped", 0))
                    passed += n - bad - skipped
                    failed += bad
            elif ":test-result: SKIP" not in result:
                failed += 1
            continue
        p = sum(int(x) for x in re.findall(r"^\[  PASSED  \] (\d+) test", text, re.M))
        f = sum(int(x) for x in re.findall(r"^\[  FAILED  \] (\d+) test", text, re.M))
        if (":test-result: FAIL" in result or ":test-result: ERROR" in result) and f == 0:
            f = 1  # crashed or failed before CMocka could summarise
        elif ":test-result: PASS" in result and p == 0 and f == 0:
            p = 1  # a script check (e.g. scripts/check-layers.sh): one test
        passed += p
        failed += f
if passed + failed == 0:
    failed = 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
