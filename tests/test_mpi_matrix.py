"""``mpi_matrix`` itself: every case reports per rank, a failure names its rank and
traceback, a hang fails within the body's time limit with every thread's stack, and
the bodies after a hang still run (``_mpi_matrix_cases.py``, in a pytest of its own)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests._mpi import ROOT, base_env


@pytest.fixture(scope="module")
def run():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/_mpi_matrix_cases.py", "-q", "-rA",
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=150, env=base_env(), cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    return result


@pytest.mark.timeout(180)
def test_each_case_passes_or_fails_on_its_own(run):
    outcomes = dict(
        (case, outcome) for outcome, case in
        re.findall(r"^(PASSED|FAILED) tests/_mpi_matrix_cases\.py::(\S+)", run.stdout, re.M)
    )
    assert outcomes == {
        "test_passes[n1]": "PASSED",
        "test_passes[n2]": "PASSED",
        "test_passes[n3]": "PASSED",
        "test_fails_on_rank_1[n1]": "PASSED",
        "test_fails_on_rank_1[n2]": "FAILED",
        "test_hangs_on_rank_1[n2]": "FAILED",
        "test_after_the_hang[n2]": "PASSED",
    }, run.stdout + run.stderr


@pytest.mark.timeout(180)
def test_a_failure_names_its_rank_with_traceback_and_output(run):
    report = run.stdout.split("test_fails_on_rank_1[n2]", 1)[1]
    assert "test_fails_on_rank_1 at 2 ranks:\n--- rank 1 of 2 ---" in report
    assert "AssertionError: rank 1 refuses" in report
    assert "(rank 1 printed)\nrank 1 was here" in report
    assert "--- rank 0 of 2 ---" not in report.split("test_hangs_on_rank_1")[0]


@pytest.mark.timeout(180)
def test_a_hang_fails_with_the_stacks_of_the_hanging_rank(run):
    report = run.stdout.split("_ test_hangs_on_rank_1[n2] _", 1)[1]
    assert "ranks [1] never finished this body" in report
    assert "Timeout (0:00:03)!" in report  # faulthandler's dump, within the body's limit
    assert re.search(r'File ".*_mpi_matrix_cases\.py", line \d+ in test_hangs_on_rank_1', report)
