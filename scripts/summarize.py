#!/usr/bin/python3
"""Adds up the results of every test runner in the given build directories and prints one line
"N passed, N failed". Exits 1 if anything failed or no test ran."""
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

passed = failed = 0
for d in sys.argv[1:]:
    if os.path.exists(d + ".buildfail") or not os.path.isdir(d):
        print(f"{d}: build failed")
        failed += 1
        continue
    for trs in sorted(glob.glob(f"{d}/tests/**/*.trs", recursive=True)):
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
        passed += p
        failed += f
if passed + failed == 0:
    failed = 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
