"""Edge cases of the job pool (issue 11): every body runs in this process and under
``mpiexec -n 2`` and ``-n 3`` (``mpi_matrix``); a body must end within its time limit.
An error on one rank outside any pool ends the whole run, so that one case is a script.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
import time
import weakref
from dataclasses import dataclass

import pytest

from neuroscaffold import MPI, JobPoolError, WorkflowError
from neuroscaffold.services.pool import JobStatus, PoolProgressReason
from tests._mpi import mpi_matrix, run_script
from tests._mpi_runner import output_to
from tests._pool_support import RANK, nap

pytestmark = pytest.mark.timeout(120)
WORLDS = (1, 2, 3)


def run_pool(world, body, **options):
    """Run ``body(pool)`` in a fresh pool on every rank; (pool, error or None)."""
    pool = world.network.create_job_pool(quiet=True, **options)
    try:
        with pool:
            body(pool)
    except BaseException as exc:  # noqa: B036 - the cases check what every rank got
        return pool, exc
    return pool, None


@contextlib.contextmanager
def patched(owner, name, value):
    """``owner.name = value`` while the block runs."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield original
    finally:
        setattr(owner, name, original)


def stderr_of_every_rank(world, path, run):
    """Run ``run()`` with this rank's stderr sent to ``path``; on the main rank, the
    text of every rank's (None elsewhere)."""
    with output_to(path):
        result = run()
    texts = MPI.gather(path.read_text(errors="replace"), root=0)
    return result, ("\n".join(texts) if world.main else None)


# --- 1: sys.exit in a job ---------------------------------------------------------------


def maybe_exit(network, i):
    time.sleep(0.002)
    if i % 7 == 3:
        sys.exit(3)
    return i


@mpi_matrix(*WORLDS)
def test_sys_exit_in_a_job_fails_that_job_and_every_rank_ends(world):
    # Issue 11.1: was rc 3 serially, TypeError + hang at -n 2, a hang at -n 3.
    def run(pool):
        if pool.is_main():
            for i in range(60):
                pool.queue(maybe_exit, (i,))
        pool.execute()

    pool, error = run_pool(world, run)
    assert type(error) is WorkflowError, error
    if world.main:
        members = error.exceptions
        assert len(members) == 9
        assert all("SystemExit(3)" in str(e) for e in members), members
        assert all(isinstance(e, JobPoolError) for e in members), members
        assert [job.status for job in pool.jobs].count(JobStatus.SUCCESS) == 51


# --- 2: a rank fails outside its jobs ---------------------------------------------------


@mpi_matrix(2, 3)
def test_a_rank_failing_outside_its_jobs_prints_its_error_and_every_rank_ends(world):
    # Issue 11.2, inside execute(): the last rank cannot send its results.
    from neuroscaffold.services.pool import _worker

    last = world.size - 1

    def broken(*args, **kwargs):
        raise RuntimeError("results cannot be written here")

    def run(pool):
        if pool.is_main():
            for i in range(40):
                pool.queue(nap, (0.002,))
        pool.execute()

    with patched(_worker, "_dump_values", broken) if world.rank == last else contextlib.nullcontext():
        (pool, error), stderr = stderr_of_every_rank(
            world, world.tmp_path / f"stderr{world.rank}", lambda: run_pool(world, run))
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    if world.rank == last:
        assert text == "RuntimeError: results cannot be written here"
    elif world.main:
        assert text == (f"JobPoolError: rank {last} failed outside its jobs and left the pool: "
                        "RuntimeError: results cannot be written here")
        assert f"[rank {last}] RuntimeError: results cannot be written here" in stderr, stderr
    else:
        assert text.startswith("WorkflowError: the pool broke on the main rank"), text


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


@pytest.mark.parametrize("ranks", [None, 2, 3], ids=["serial", "n2", "n3"])
def test_an_error_on_one_rank_only_reaches_the_user_and_ends_the_run(ranks, tmp_path):
    # Issue 11.2, outside any pool: was silent and hung at -n 2 and -n 3. (A whole
    # run ends here, so this one is a script of its own.)
    result = run_script(ONE_RANK_FAILS, ranks, timeout=30, tmp_path=tmp_path)
    assert result.returncode != 0, result.describe()
    last = (ranks or 1) - 1
    assert "ModuleNotFoundError: No module named 'a_module_only_some_nodes_have'" in result.stderr
    if ranks:
        assert f"[rank {last}] ModuleNotFoundError" in result.stderr, result.describe()
    assert "done" not in result.stdout


# --- 9: a travel check that raises, an executor thread that dies -------------------------


class WeirdDtype:
    """An argument whose ``dtype`` property raises."""

    @property
    def dtype(self):
        raise RuntimeError("no dtype here")


def takes(network, value):
    time.sleep(0.003)
    return 1


@mpi_matrix(*WORLDS)
def test_an_argument_whose_dtype_raises_still_travels(world):
    # Issue 11.9: the "can this travel" check raised and killed the executor thread.
    def run(pool):
        if pool.is_main():
            for i in range(20):
                pool.queue(takes, (WeirdDtype(),))
        pool.execute(return_results=True)

    pool, error = run_pool(world, run)
    assert error is None
    if world.main:
        assert sum(job.status is JobStatus.SUCCESS for job in pool.jobs) == 20


@mpi_matrix(*WORLDS)
def test_a_dead_executor_thread_breaks_the_pool_instead_of_hanging(world):
    # Issue 11.9: nothing watched the thread; in_flight never reached 0.
    from neuroscaffold.services.pool import _dispatch

    original = _dispatch.TravelCheck.error

    def dies(self, job):
        if threading.current_thread().name == "neuroscaffold-local-jobs":
            raise SystemExit("the thread is gone")
        return original(self, job)

    def run(pool):
        if pool.is_main():
            # A listener with max_wait: serially too, jobs then run in the thread.
            pool.add_listener(lambda event: None, max_wait=5)
            for i in range(4 * world.size):
                pool.queue(nap, (0.01,))
        pool.execute()

    with patched(_dispatch.TravelCheck, "error", dies):
        pool, error = run_pool(world, run)
    assert type(error) is (JobPoolError if world.main else WorkflowError), error
    assert "job thread failed: SystemExit: the thread is gone" in str(error)
    if world.main:
        assert all(job.done() for job in pool.jobs)


# --- 6: add_listener and cancel while another thread queues ------------------------------


@mpi_matrix(*WORLDS)
def test_listeners_and_cancel_while_another_thread_queues(world):
    # Issue 11.6: "deque mutated during iteration" (or a KeyError) from add_listener/cancel.
    errors = []

    def run(pool):
        if pool.is_main():

            class Many:
                def queue(self, pool):
                    for i in range(20000):
                        pool.queue(nap, (0,))

            pool.schedule([Many()])
            listeners = 0
            while pool._scheduling():
                try:
                    if listeners < 20:
                        pool.add_listener(lambda event: None)
                        listeners += 1
                    jobs = pool.jobs
                    if jobs and jobs[-1].status is JobStatus.PENDING:
                        jobs[-1].cancel("race")
                except Exception as exc:  # the bug: "deque mutated during iteration"
                    errors.append(exc)
                    break
        pool.execute()

    pool, error = run_pool(world, run)
    assert (error, errors) == (None, [])
    if world.main:
        assert all(job.done() for job in pool.jobs)


# --- 7: cancelled jobs never run ------------------------------------------------------------


def marks(network, i, folder):
    open(os.path.join(folder, str(i)), "w").close()
    time.sleep(0.02)
    return i


@mpi_matrix(*WORLDS)
def test_cancelled_jobs_never_run(world):
    # Issue 11.7: a job already sent was reported CANCELLED and ran anyway.
    folder = str(world.tmp_path)

    def run(pool):
        if pool.is_main():
            jobs = [pool.queue(marks, (i, folder)) for i in range(40)]

            def cancel_the_rest(event):
                if (
                    event.reason is PoolProgressReason.JOB_STATUS_CHANGE
                    and event.job is jobs[0]
                    and event.job.status is JobStatus.RUNNING
                ):
                    for job in jobs[1:]:
                        if job.status is JobStatus.QUEUED or job.status is JobStatus.PENDING:
                            job.cancel("not needed")

            pool.add_listener(cancel_the_rest)
        pool.execute()

    pool, error = run_pool(world, run)
    assert error is None
    MPI.barrier()
    if world.main:
        ran = {int(name) for name in os.listdir(folder)}
        cancelled = {job.id for job in pool.jobs if job.status is JobStatus.CANCELLED}
        succeeded = {job.id for job in pool.jobs if job.status is JobStatus.SUCCESS}
        assert cancelled and not (cancelled & ran)
        assert ran == succeeded
        assert all(job.done() for job in pool.jobs)


# --- 8: unhashable callables ----------------------------------------------------------------


@dataclass
class Scale:
    """A callable dataclass: unhashable (``eq=True`` sets ``__hash__`` to None)."""

    factor: int

    def __call__(self, network, x):
        time.sleep(0.001)
        return self.factor * x


@mpi_matrix(*WORLDS)
def test_unhashable_callables_run_on_every_rank(world):
    # Issue 11.8: fn_cost.get(fn) / fn_ids.get(fn) raised TypeError under MPI.
    results = {}

    def run(pool):
        if pool.is_main():
            for i in range(30):
                pool.queue(Scale(i % 3 + 1), (i,))
        results.update(pool.execute(return_results=True) or {})

    pool, error = run_pool(world, run)
    assert error is None
    if world.main:
        assert sorted(results.values()) == sorted((i % 3 + 1) * i for i in range(30))


# --- 4: pings while a long job runs --------------------------------------------------------


@mpi_matrix(*WORLDS)
def test_max_wait_pings_come_while_a_long_job_runs(world):
    # Issue 11.4: serially, no MAX_TIMEOUT_PING came during a 0.8 s job.
    pings = []

    def run(pool):
        if pool.is_main():
            pool.add_listener(
                lambda event: pings.append(event.time)
                if event.reason is PoolProgressReason.MAX_TIMEOUT_PING
                else None,
                max_wait=0.1,
            )
            pool.queue(nap, (0.8,))
        pool.execute()

    pool, error = run_pool(world, run)
    assert error is None
    if world.main:
        assert len(pings) >= 4, pings


# --- 5: a function's jobs are its submissions -------------------------------------------------


def square(network, x):
    return x * x


def cube(network, x):
    return x**3


@mpi_matrix(*WORLDS)
def test_a_functions_jobs_are_its_submissions(world):
    # Issue 11.5: get_submissions_of(square) found nothing.
    def run(pool):
        squares = [pool.queue(square, (i,)) for i in range(5)]
        cubes = [pool.queue(cube, (i,)) for i in range(3)]
        assert pool.get_submissions_of(square) == tuple(squares)
        assert pool.get_submissions_of(cube) == tuple(cubes)
        assert all(job.submitter is square for job in squares)
        more = pool.queue(square, (9,))
        assert pool.get_submissions_of(square) == tuple(squares) + (more,)
        pool.execute()

    pool, error = run_pool(world, run)
    assert error is None


# --- 11: per-job closures are not kept on the workers ------------------------------------------


class PerJob:
    """A per-job callable; its live instances (on this rank) are counted."""

    alive: "weakref.WeakSet | None" = None

    def __init__(self, i):
        self.i = i

    def __call__(self, network):
        if type(self).alive is None:
            type(self).alive = weakref.WeakSet()
        type(self).alive.add(self)
        return self.i


def count_alive(network):
    import gc

    gc.collect()
    alive = PerJob.alive
    return (RANK, 0 if alive is None else len(alive))


@mpi_matrix(2, 3)
def test_workers_do_not_keep_every_per_job_function(world):
    # Issue 11.11: workers' function tables kept every per-job callable until the end.
    # (Serially there is no such table: the jobs themselves keep their functions.)
    found = {}

    def run(pool):
        if pool.is_main():
            jobs = [pool.queue(PerJob(i)) for i in range(3000)]
            found["last"] = pool.queue(count_alive, deps=jobs)
        pool.execute()

    pool, error = run_pool(world, run, main_executes=False)
    assert error is None
    if world.main:
        rank, alive = found["last"].result
        assert rank != 0
        assert alive < 1500, alive


# --- 3: stall report: log lines, SIGUSR1, jobs taken back from a stuck rank ----------------


def stuck_job(network, seconds):
    time.sleep(seconds)
    return "unstuck"


def stall(world, target="all", others_first=False, **options):
    """A job stuck for 4 s among short ones; 2.5 s in, SIGUSR1 goes to the ``target``
    ranks. Check the log and every rank's stall report, and with ``others_first`` that
    the jobs queued behind the stuck one were taken back and ended first; return the
    stuck job (on the main rank)."""
    from neuroscaffold.progress import LogProgress

    pids = MPI.allgather(os.getpid())
    log = io.StringIO()
    found = {}
    targets = {"last": pids[-1:], "main": pids[:1]}.get(target, pids)

    def signal_ranks():
        time.sleep(2.5)
        for pid in targets:  # one rank only: it asks the others for their reports
            os.kill(pid, signal.SIGUSR1)

    def run(pool):
        if pool.is_main():
            pool.add_listener(LogProgress(log, interval=0.25), max_wait=0.25)
            first = [pool.queue(nap, (0.05,)) for i in range(2 * world.size)]
            found["stuck"] = pool.queue(stuck_job, (4.0,), name="stuck")
            found["others"] = first + [pool.queue(nap, (0.05,)) for i in range(30)]
            threading.Thread(target=signal_ranks, daemon=True).start()
        pool.execute()

    # A USR1 that would come after this rank left execute() (a loaded machine) must
    # not kill it: the pool's handler replaces this one while it executes.
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        (pool, error), stderr = stderr_of_every_rank(
            world, world.tmp_path / f"stderr{world.rank}", lambda: run_pool(world, run, **options))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert error is None
    if not world.main:
        return None
    stuck = found["stuck"]
    assert f"running long: job 'stuck' on rank {stuck.rank} for" in log.getvalue(), log.getvalue()
    for rank in range(world.size):  # SIGUSR1 reached every rank: each printed its report
        assert f"### rank {rank}: stall report" in stderr, stderr
    # The stack of the job's thread (faulthandler), and the main rank's table of jobs.
    assert "in stuck_job" in stderr, stderr
    assert f"rank {stuck.rank}: job 'stuck' running for" in stderr, stderr
    assert f"rank {stuck.rank}: thread " in stderr, stderr
    if others_first:
        assert all(job.ended_at < stuck.ended_at for job in found["others"])
    return stuck


@mpi_matrix(*WORLDS)
def test_stall_report_in_the_log_and_on_sigusr1(world):
    # Issue 11.3: the log now names a job that runs long, with its rank and age;
    # SIGUSR1 prints every rank's running jobs and thread stacks. In parallel the jobs
    # queued behind the stuck one are taken back and end first.
    stall(world, others_first=world.size > 1)


@mpi_matrix(3)
def test_jobs_queued_behind_a_stuck_worker_run_elsewhere(world):
    stuck = stall(world, others_first=True, main_executes=False)
    if world.main:
        assert stuck.rank != 0


@mpi_matrix(2, 3)
def test_sigusr1_on_the_last_rank_prints_every_ranks_report(world):
    # kill -USR1 of one rank (not mpiexec): that rank asks the others for theirs.
    stall(world, "last", main_executes=False)


@mpi_matrix(3)
def test_sigusr1_on_the_main_rank_prints_every_ranks_report(world):
    stall(world, "main", main_executes=False)


