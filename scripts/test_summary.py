"""Print how many tests (and, apart, subtests) ran on each backend, then one closing
line for CI.

In pytest's JUnit XML a subtest adds to the suite's `tests` (and, when it fails, to
`failures`) but gets no <testcase> element of its own; its failure is a second
<failure> inside its test's element. Tests are therefore counted by their elements,
subtests by what is left over.
"""

import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Counts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    subtests_passed: int = 0
    subtests_failed: int = 0

    def __add__(self, other):
        return Counts(
            *(a + b for a, b in zip(vars(self).values(), vars(other).values(), strict=True))
        )

    def text(self):
        line = f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"
        subtests = self.subtests_passed + self.subtests_failed
        if subtests:
            line += (
                f"; {subtests} subtests: {self.subtests_passed} passed, "
                f"{self.subtests_failed} failed"
            )
        return line


def counts(report):
    if not Path(report).exists():
        return None
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases = suite.findall("testcase")
    result = Counts()
    problems = 0
    for case in cases:
        failures = len(case.findall("failure")) + len(case.findall("error"))
        problems += failures
        if failures:
            result.failed += 1
        elif case.find("skipped") is not None:
            result.skipped += 1
        else:
            result.passed += 1
    subtests = max(0, int(suite.get("tests", 0)) - len(cases))
    # A failed subtest is a failure element beyond the one its test gets for it.
    result.subtests_failed = min(subtests, problems - result.failed)
    result.subtests_passed = subtests - result.subtests_failed
    return result


def main(reports):
    totals = Counts()
    missing = False
    print()
    for report in reports:
        name = Path(report).stem
        result = counts(report)
        if result is None:
            print(f"{name}: no report (the suite did not run)")
            missing = True
            continue
        print(f"{name}: {result.text()}")
        totals += result
    print(f"total: {totals.text()}")
    failed = totals.failed or totals.subtests_failed
    return 1 if missing or failed or not totals.passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
