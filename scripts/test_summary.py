"""Print how many tests ran on each backend, then one closing line for CI."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(report):
    if not Path(report).exists():
        return None
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def main(reports):
    totals = [0, 0, 0]
    missing = False
    print()
    for report in reports:
        name = Path(report).stem
        result = counts(report)
        if result is None:
            print(f"{name}: no report (the suite did not run)")
            missing = True
            continue
        print(f"{name}: {result[0]} passed, {result[1]} failed, {result[2]} skipped")
        totals = [a + b for a, b in zip(totals, result, strict=True)]
    print(f"total: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if missing or totals[1] or not totals[0] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
