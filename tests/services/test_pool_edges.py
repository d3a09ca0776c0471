"""Edge cases of the job pool (issue 11), serially and under ``mpiexec -n 2`` and ``-n 3``.

Each case is one launch of ``pool_scripts/pool_edges.py CASE``; every rank prints
``R<rank> key value`` lines. A hang is a failure (``run_script``'s timeout).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._mpi import run_script

pytestmark = pytest.mark.timeout(120)

SCRIPT = Path(__file__).parent / "pool_scripts" / "pool_edges.py"
WORLDS = [None, 2, 3]
IDS = ["serial", "n2", "n3"]


def launch(case: str, ranks, *args: str, timeout: float = 45, extra_keys=()):
    result = run_script(SCRIPT, ranks, timeout=timeout, args=[case, *args])
    size = ranks or 1
    values: dict[tuple[int, str], str] = {}
    keys = sorted({*_KEYS, *extra_keys}, key=len, reverse=True)
    for line in result.stdout.splitlines():
        if line.startswith("R") and " " in line:
            head, rest = line.split(" ", 1)
            for key in keys:
                if rest.startswith(key + " "):
                    values[(int(head[1:]), key)] = rest[len(key) + 1 :]
                    break
    return result, size, values


_KEYS = {
    "error", "members", "all name SystemExit", "all JobPoolError", "failed", "success",
    "says why", "all ended", "race errors", "cancelled some", "cancelled never ran",
    "ran is succeeded", "right", "pings", "square", "cube", "submitter", "grows",
    "ran on a worker", "bounded", "done",
}


def every_rank(values, size, key, expected):
    for rank in range(size):
        assert values.get((rank, key)) == expected, (rank, key, values)


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_sys_exit_in_a_job_fails_that_job_and_every_rank_ends(ranks):
    # Issue 11.1: was rc 3 serially, TypeError + hang at -n 2, a hang at -n 3.
    result, size, values = launch("sys_exit", ranks)
    result.check()
    every_rank(values, size, "error", "WorkflowError")
    every_rank(values, size, "done", "ok")
    assert values[(0, "members")] == "9"
    assert values[(0, "all name SystemExit")] == "True"
    assert values[(0, "all JobPoolError")] == "True"
    assert values[(0, "success")] == "51"


@pytest.mark.parametrize("ranks", [2, 3], ids=["n2", "n3"])
def test_a_rank_failing_outside_its_jobs_prints_its_error_and_every_rank_ends(ranks):
    # Issue 11.2, inside execute(): the last rank cannot send its results.
    result, size, values = launch("worker_fails", ranks)
    result.check()
    last = size - 1
    assert f"[rank {last}] RuntimeError: results cannot be written here" in result.stderr
    assert values[(last, "error")] == "RuntimeError: results cannot be written here"
    assert values[(0, "error")] == (
        f"JobPoolError: rank {last} failed outside its jobs and left the pool: "
        "RuntimeError: results cannot be written here"
    )
    for rank in range(1, last):
        assert values[(rank, "error")].startswith("WorkflowError: the pool broke on the main rank")
    every_rank(values, size, "done", "ok")


ONE_RANK_FAILS = """
import sys
from neuroscaffold.network import Network
from neuroscaffold.services import MPI
if MPI.get_rank() == MPI.get_size() - 1:
    import a_module_only_some_nodes_have  # fails on this rank only
pool = Network().create_job_pool(quiet=True)
with pool:
    pool.execute()
print("R", MPI.get_rank(), "done", flush=True)
"""


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_an_error_on_one_rank_only_reaches_the_user_and_ends_the_run(ranks, tmp_path):
    # Issue 11.2, outside any pool: was silent and hung at -n 2 and -n 3.
    result = run_script(ONE_RANK_FAILS, ranks, timeout=30, tmp_path=tmp_path)
    assert result.returncode != 0, result.describe()
    last = (ranks or 1) - 1
    assert "ModuleNotFoundError: No module named 'a_module_only_some_nodes_have'" in result.stderr
    if ranks:
        assert f"[rank {last}] ModuleNotFoundError" in result.stderr, result.describe()
    assert "done" not in result.stdout


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_an_argument_whose_dtype_raises_still_travels(ranks):
    # Issue 11.9: the "can this travel" check raised and killed the executor thread.
    result, size, values = launch("weird_dtype", ranks)
    result.check()
    every_rank(values, size, "error", "NoneType")
    assert values[(0, "success")] == "20"


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_a_dead_executor_thread_breaks_the_pool_instead_of_hanging(ranks):
    # Issue 11.9: nothing watched the thread; in_flight never reached 0.
    result, size, values = launch("executor_dies", ranks)
    result.check()
    assert values[(0, "error")] == "JobPoolError"
    for rank in range(1, size):
        assert values[(rank, "error")] == "WorkflowError"
    every_rank(values, size, "says why", "True")
    assert values[(0, "all ended")] == "True"


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_listeners_and_cancel_while_another_thread_queues(ranks):
    # Issue 11.6: "deque mutated during iteration" (or a KeyError) from add_listener/cancel.
    result, size, values = launch("incoming_race", ranks)
    result.check()
    every_rank(values, size, "error", "None")
    every_rank(values, size, "race errors", "0")
    assert values[(0, "all ended")] == "True"


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_cancelled_jobs_never_run(ranks, tmp_path):
    # Issue 11.7: a job already sent was reported CANCELLED and ran anyway.
    result, size, values = launch("cancel_sent", ranks, str(tmp_path))
    result.check()
    every_rank(values, size, "error", "NoneType")
    assert values[(0, "cancelled some")] == "True"
    assert values[(0, "cancelled never ran")] == "True"
    assert values[(0, "ran is succeeded")] == "True"
    assert values[(0, "all ended")] == "True"


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_unhashable_callables_run_on_every_rank(ranks):
    # Issue 11.8: fn_cost.get(fn) / fn_ids.get(fn) raised TypeError under MPI.
    result, size, values = launch("unhashable", ranks)
    result.check()
    every_rank(values, size, "error", "NoneType")
    assert values[(0, "right")] == "True"


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_max_wait_pings_come_while_a_long_job_runs(ranks):
    # Issue 11.4: serially, no MAX_TIMEOUT_PING came during a 0.8 s job.
    result, size, values = launch("pings", ranks)
    result.check()
    assert values[(0, "pings")] == "True"


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_a_functions_jobs_are_its_submissions(ranks):
    # Issue 11.5: get_submissions_of(square) found nothing.
    result, size, values = launch("submissions", ranks)
    result.check()
    for key in ("square", "cube", "submitter", "grows"):
        every_rank(values, size, key, "True")


@pytest.mark.parametrize("ranks", [2, 3], ids=["n2", "n3"])
def test_workers_do_not_keep_every_per_job_function(ranks):
    # Issue 11.11: workers' function tables kept every per-job callable until the end.
    # (Serially there is no such table: the jobs themselves keep their functions.)
    result, size, values = launch("closures", ranks)
    result.check()
    assert values[(0, "ran on a worker")] == "True"
    assert values[(0, "bounded")] == "True"


def _check_stall_report(result, size, values):
    result.check()
    every_rank(values, size, "error", "NoneType")
    assert values[(0, "log names it")] == "True", result.describe()
    stuck_rank = int(values[(0, "stuck rank")])
    for rank in range(size):  # SIGUSR1 reached every rank: each printed its report
        assert f"### rank {rank}: stall report" in result.stderr, result.describe()
    # The stack of the job's thread (faulthandler), and the main rank's table of jobs.
    assert "in stuck_job" in result.stderr, result.describe()
    assert f"rank {stuck_rank}: job 'stuck' running for" in result.stderr, result.describe()
    assert f"rank {stuck_rank}: thread " in result.stderr, result.describe()
    return stuck_rank


@pytest.mark.parametrize("ranks", WORLDS, ids=IDS)
def test_stall_report_in_the_log_and_on_sigusr1(ranks):
    # Issue 11.3: the log now names a job that runs long, with its rank and age;
    # SIGUSR1 prints every rank's running jobs and thread stacks. In parallel the jobs
    # queued behind the stuck one are taken back and end first.
    result, size, values = launch("stall", ranks, extra_keys=("log names it", "others ended first", "stuck rank"))
    _check_stall_report(result, size, values)
    if ranks:
        assert values[(0, "others ended first")] == "True"


@pytest.mark.parametrize("ranks", [3], ids=["n3"])
def test_jobs_queued_behind_a_stuck_worker_run_elsewhere(ranks):
    result, size, values = launch("stall_workers", ranks, extra_keys=("log names it", "others ended first", "stuck rank"))
    stuck_rank = _check_stall_report(result, size, values)
    assert stuck_rank != 0
    assert values[(0, "others ended first")] == "True"


@pytest.mark.parametrize("ranks, target", [(2, "last"), (3, "last"), (3, "main")], ids=["n2-last", "n3-last", "n3-main"])
def test_sigusr1_on_one_rank_prints_every_ranks_report(ranks, target):
    # kill -USR1 of one rank (not mpiexec): that rank asks the others for theirs.
    result, size, values = launch(
        "stall_workers", ranks, target, extra_keys=("log names it", "others ended first", "stuck rank")
    )
    _check_stall_report(result, size, values)
