"""scripts/test_summary.py on a JUnit report pytest really wrote."""

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from test_summary import Counts, counts, main  # noqa: E402

SAMPLE_SUITE = """
import pytest


def test_with_subtests(subtests):
    for number in range(3):
        with subtests.test(number=number):
            assert number != 1


def test_passes():
    pass


def test_all_subtests_pass(subtests):
    for number in range(2):
        with subtests.test(number=number):
            pass


@pytest.mark.skip(reason="sample")
def test_skipped():
    pass
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("summary")
    (folder / "test_sample.py").write_text(SAMPLE_SUITE)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml=r.xml"],
        cwd=folder,
        capture_output=True,
        timeout=120,
    )
    return folder / "r.xml"


def test_subtests_are_counted_apart_from_tests(report):
    assert counts(report) == Counts(
        passed=2, failed=1, skipped=1, subtests_passed=4, subtests_failed=1
    )


def test_the_summary_prints_both_and_fails_on_a_failed_subtest(report, capsys):
    assert main([str(report)]) == 1
    out = capsys.readouterr().out
    assert "r: 2 passed, 1 failed, 1 skipped; 5 subtests: 4 passed, 1 failed" in out
