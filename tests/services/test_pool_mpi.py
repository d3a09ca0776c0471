"""The job pool under ``mpiexec -n 2``, ``-n 3`` and ``-n 4``.

Each launch runs one script of ``pool_scripts/`` that opens many pools in a row and
prints, per rank, ``R<rank> CHECK <name> ok`` or ``... FAIL <details>``. The test
requires every rank to report exactly the checks listed here, all ok, within the time
limit (a hang is a failure, with what every rank printed so far).

- ``pool_checks.py``: results, dependency order (events and times), failure cascade,
  cancellation, fail_fast, listeners (order, late, context managers, max_wait pings,
  handled failures), two pools in a row, submission after execute, pool_cache on every
  rank, lambdas and closures, errors that travel (remote tracebacks, unpicklable
  results, exceptions and arguments), schedule(), 2000x2000 jobs, the seed snippets.
- ``pool_breaks.py``: pools that break (a listener raising during execution, on
  EXECUTING, on entering; the main rank or a worker raising before execute()): every
  rank leaves with a clear error, and the world stays usable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._mpi import run_script

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]

SCRIPTS = Path(__file__).parent / "pool_scripts"
SIZES = [2, 3, 4]
TIMEOUT = 90

# --- pool_checks.py ---------------------------------------------------------------------

CHECKS_EVERY_RANK = [
    "submit after execute raises JobPoolError",
    "execute twice raises JobPoolError",
    "results: cache store empty after close",
    "cascade: WorkflowError on every rank",
    "cascade: same summary on every rank",
    "cancel: no error on any rank",
    "fail_fast: WorkflowError on every rank",
    "fail_fast: same summary on every rank",
    "handled: no WorkflowError on any rank",
    "two pools: store empty after pool 0",
    "two pools: store empty after pool 1",
    "two pools: computed once per pool on each rank that ran its jobs",
    "cache: values of finished nodes freed on every rank",
    "cache: value of a node without jobs kept until closing",
    "cache: store empty after close",
    "cache: computed once on each rank that ran the node's jobs",
    "cache: bystander computed at most once",
    "worker errors: WorkflowError on every rank",
    "worker errors: same summary on every rank",
    "schedule: WorkflowError on every rank",
    "schedule: same summary on every rank",
    "2000x2000: fast",
    "seed pool_cache: computed once on each rank that placed",
    "done",
]
CHECKS_WORKERS = [
    "results: workers get {}",
    "cascade: members on workers are JobPoolErrors",
    "fail_fast: members on workers are JobPoolErrors",
    "worker errors: members on workers are JobPoolErrors",
    "schedule: members on workers are JobPoolErrors",
    "seed listener: no listener and no job on workers",
]
CHECKS_MAIN = [
    "results: one per job",
    "results: job.result after close",
    "results: values",
    "results: job.rank is where it ran",
    "events: stream order",
    "dependencies: order by events and times",
    "cascade: summary",
    "cascade: dependents cancelled naming the failed job",
    "cascade: independent jobs ran",
    "cascade: cancelled jobs never started",
    "cascade: result of failed job raises JobPoolError",
    "cancel: queued job cancels",
    "cancel: queued job and its dependents cancelled",
    "cancel: running job warns and goes on",
    "cancel: others ran",
    "cancel: ended job warns and stays",
    "fail_fast: summary",
    "fail_fast: only the first failure failed",
    "fail_fast: jobs behind the failure cancelled",
    "fail_fast: every job ended as success or cancelled",
    "listeners: context listener entered with the pool",
    "listeners: event stream order",
    "listeners: late listener saw the whole stream",
    "listeners: late listener replay then the live stream",
    "listeners: context listener exited with the pool",
    "listeners: max_wait pings while a job runs",
    "listeners: no pings without max_wait",
    "handled: statuses",
    "two pools: results of pool 0",
    "two pools: results of pool 1",
    "cache: required before execute",
    "cache: nothing required after execute",
    "cache: required exactly while the node has open jobs",
    "cache: main rank holds it only while needed",
    "cache: both phases seen",
    "cache: A's value gone on the rank of every job of B",
    "lambdas and closures: results",
    "lambdas and closures: ran on other ranks",
    "worker errors: summary",
    "worker errors: unpicklable argument names the job",
    "worker errors: arg job failed unsent",
    "worker errors: remote traceback as __cause__ names the rank",
    "worker errors: error keeps its type and names the job",
    "worker errors: unpicklable exception arrives with its text",
    "worker errors: unpicklable results fail their job",
    "worker errors: the others are fine",
    "same rules: unpicklable results fail wherever they ran",
    "same rules: unpicklable arguments fail before running",
    "schedule: summary",
    "schedule: errors are JobSchedulingErrors",
    "schedule: other nodes ran",
    "schedule: runs while execute runs",
    "2000x2000: one shared deps tuple",
    "2000x2000: all succeeded",
    "2000x2000: every job of b after every job of a",
    "seed queue: every job ran",
    "seed schedule: every job ran",
    "seed listener: elapsed time reported",
    "seed listener: the job ran",
    "seed pool_cache: results",
]

# --- pool_breaks.py ---------------------------------------------------------------------

BREAKS_EVERY_RANK = ["world still usable: every rank here", "done"]
BREAKS_MAIN = [
    "listener during execution: main rank error",
    "listener during execution: names listener, event and job",
    "listener during execution: every job ended",
    "listener during execution: unfinished jobs aborted",
    "listener during execution: context listener exited",
    "listener on executing: main rank error",
    "listener on executing: no job ran",
    "listener on entering: main rank error",
    "main raises before execute: main rank error",
    "worker raises before execute: main rank error",
    "world still usable: results",
    "world still usable: results dict",
]
_RELEASED = ["WorkflowError on the other ranks", "it says why", "one member error"]
BREAKS_WORKERS = [
    f"{case}: {check}"
    for case in (
        "listener during execution",
        "listener on executing",
        "listener on entering",
        "main raises before execute",
    )
    for check in _RELEASED
]
BREAKS_OTHER_WORKERS = [f"worker raises before execute: {check}" for check in _RELEASED]
BREAKS_FAILING_WORKER = ["worker raises before execute: rank error"]


def reported_checks(result, rank: int) -> tuple[list[str], list[str]]:
    """The names of ``rank``'s checks, and the lines of those that failed."""
    names, failures = [], []
    for line in result.lines(f"R{rank} CHECK "):
        if line.endswith(" ok"):
            names.append(line[: -len(" ok")])
        else:
            name, _, details = line.partition(" FAIL ")
            names.append(name)
            failures.append(f"R{rank} {name}: {details}")
    return names, failures


def assert_checks(result, expected: dict[int, list[str]]) -> None:
    """Every rank reported exactly its expected checks, each ok, and the run ended."""
    failures, wrong = [], []
    for rank, names in expected.items():
        got, failed = reported_checks(result, rank)
        failures += failed
        if sorted(got) != sorted(names):
            missing = sorted(set(names) - set(got))
            extra = sorted(set(got) - set(names))
            wrong.append(f"R{rank}: missing {missing}, unexpected {extra}")
    assert not failures and not wrong, "\n".join(failures + wrong) + "\n" + result.describe()
    assert result.returncode == 0, result.describe()


@pytest.mark.parametrize("n", SIZES, ids=[f"n{n}" for n in SIZES])
def test_pool_behaviours_on_every_rank(n):
    result = run_script(SCRIPTS / "pool_checks.py", n=n, timeout=TIMEOUT)
    expected = {0: CHECKS_EVERY_RANK + CHECKS_MAIN}
    expected.update({rank: CHECKS_EVERY_RANK + CHECKS_WORKERS for rank in range(1, n)})
    assert_checks(result, expected)


@pytest.mark.parametrize("n", SIZES, ids=[f"n{n}" for n in SIZES])
def test_broken_pools_release_every_rank(n):
    result = run_script(SCRIPTS / "pool_breaks.py", n=n, timeout=TIMEOUT)
    last = n - 1
    expected = {0: BREAKS_EVERY_RANK + BREAKS_MAIN}
    for rank in range(1, n):
        own = BREAKS_FAILING_WORKER if rank == last else BREAKS_OTHER_WORKERS
        expected[rank] = BREAKS_EVERY_RANK + BREAKS_WORKERS + own
    assert_checks(result, expected)
