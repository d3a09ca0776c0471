"""Edge cases of the job pool (issue 11), one case per launch: ``pool_edges.py CASE [DIR]``.

Run serially or under ``mpiexec -n K``. Every rank prints ``R<rank> <key> <value>``
lines that ``test_pool_edges.py`` checks; a case must end within its time limit.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass

from neuroscaffold.exceptions import JobPoolError, WorkflowError
from neuroscaffold.network import Network
from neuroscaffold.services import MPI
from neuroscaffold.services.pool import JobStatus, PoolProgressReason

RANK = MPI.get_rank()
SIZE = MPI.get_size()
CASE = sys.argv[1]
FOLDER = sys.argv[2] if len(sys.argv) > 2 else None


def say(key, value) -> None:
    print(f"R{RANK} {key} {value}", flush=True)


def outcome(run, **options) -> tuple:
    """Run ``run(pool)`` in a fresh pool on every rank; (pool, error or None)."""
    pool = Network().create_job_pool(quiet=True, **options)
    try:
        with pool:
            run(pool)
    except BaseException as exc:  # noqa: B036 - the cases check what every rank got
        return pool, exc
    return pool, None


def nap(network, seconds):
    time.sleep(seconds)
    return seconds


# --- 1: sys.exit in a job ---------------------------------------------------------------


def maybe_exit(network, i):
    time.sleep(0.002)
    if i % 7 == 3:
        sys.exit(3)
    return i


def case_sys_exit():
    def run(pool):
        if pool.is_main():
            for i in range(60):
                pool.queue(maybe_exit, (i,))
        pool.execute()

    pool, error = outcome(run)
    say("error", type(error).__name__)
    if pool.is_main() and isinstance(error, WorkflowError):
        members = error.exceptions
        say("members", len(members))
        say("all name SystemExit", all("SystemExit(3)" in str(e) for e in members))
        say("all JobPoolError", all(isinstance(e, JobPoolError) for e in members))
        statuses = [job.status for job in pool.jobs]
        say("failed", statuses.count(JobStatus.FAILED))
        say("success", statuses.count(JobStatus.SUCCESS))


# --- 2: a rank fails outside its jobs, during execute -------------------------------------


def case_worker_fails():
    from neuroscaffold.services.pool import _worker

    if RANK == SIZE - 1 and SIZE > 1:

        def broken(*args, **kwargs):
            raise RuntimeError("results cannot be written here")

        _worker._dump_values = broken

    def run(pool):
        if pool.is_main():
            for i in range(40):
                pool.queue(nap, (0.002,))
        pool.execute()

    pool, error = outcome(run)
    say("error", f"{type(error).__name__}: {error}".splitlines()[0])


# --- 9: a travel check that raises, an executor thread that dies -------------------------


class WeirdDtype:
    """An argument whose ``dtype`` property raises."""

    @property
    def dtype(self):
        raise RuntimeError("no dtype here")


def takes(network, value):
    time.sleep(0.003)
    return 1


def case_weird_dtype():
    def run(pool):
        if pool.is_main():
            for i in range(20):
                pool.queue(takes, (WeirdDtype(),))
        pool.execute(return_results=True)

    pool, error = outcome(run)
    say("error", type(error).__name__)
    if pool.is_main():
        say("success", sum(job.status is JobStatus.SUCCESS for job in pool.jobs))


def case_executor_dies():
    from neuroscaffold.services.pool import _dispatch

    original = _dispatch.TravelCheck.error

    def dies(self, job):
        if threading.current_thread().name == "neuroscaffold-local-jobs":
            raise SystemExit("the thread is gone")
        return original(self, job)

    _dispatch.TravelCheck.error = dies

    def run(pool):
        if pool.is_main():
            # A listener with max_wait: serially too, jobs then run in the thread.
            pool.add_listener(lambda event: None, max_wait=5)
            for i in range(4 * SIZE):
                pool.queue(nap, (0.01,))
        pool.execute()

    pool, error = outcome(run)
    say("error", type(error).__name__)
    say("says why", "job thread failed: SystemExit: the thread is gone" in str(error))
    if pool.is_main():
        say("all ended", all(job.done() for job in pool.jobs))


# --- 6: add_listener and cancel while another thread queues ------------------------------


def case_incoming_race():
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
                    say("race error", repr(exc))
                    break
        pool.execute()

    pool, error = outcome(run)
    say("error", repr(error)[:300])
    say("race errors", len(errors))
    if pool.is_main():
        say("all ended", all(job.done() for job in pool.jobs))


# --- 7: cancelled jobs never run ------------------------------------------------------------


def marks(network, i, folder):
    open(os.path.join(folder, str(i)), "w").close()
    time.sleep(0.02)
    return i


def case_cancel_sent():
    folder = FOLDER

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

    pool, error = outcome(run)
    say("error", type(error).__name__)
    MPI.barrier()
    if pool.is_main():
        ran = {int(name) for name in os.listdir(folder)}
        cancelled = {job.id for job in pool.jobs if job.status is JobStatus.CANCELLED}
        succeeded = {job.id for job in pool.jobs if job.status is JobStatus.SUCCESS}
        say("cancelled some", len(cancelled) > 0)
        say("cancelled never ran", not (cancelled & ran))
        say("ran is succeeded", ran == succeeded)
        say("all ended", all(job.done() for job in pool.jobs))


# --- 8: unhashable callables ----------------------------------------------------------------


@dataclass
class Scale:
    """A callable dataclass: unhashable (``eq=True`` sets ``__hash__`` to None)."""

    factor: int

    def __call__(self, network, x):
        time.sleep(0.001)
        return self.factor * x


def case_unhashable():
    results = {}

    def run(pool):
        if pool.is_main():
            for i in range(30):
                pool.queue(Scale(i % 3 + 1), (i,))
        results.update(pool.execute(return_results=True) or {})

    pool, error = outcome(run)
    say("error", type(error).__name__)
    if pool.is_main():
        say("right", sorted(results.values()) == sorted((i % 3 + 1) * i for i in range(30)))


# --- 4: pings while a long job runs --------------------------------------------------------


def case_pings():
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

    pool, error = outcome(run)
    say("error", type(error).__name__)
    if pool.is_main():
        say("pings", len(pings) >= 4)


# --- 5: a function's jobs are its submissions -------------------------------------------------


def square(network, x):
    return x * x


def cube(network, x):
    return x**3


def case_submissions():
    def run(pool):
        squares = [pool.queue(square, (i,)) for i in range(5)]
        cubes = [pool.queue(cube, (i,)) for i in range(3)]
        say("square", pool.get_submissions_of(square) == tuple(squares))
        say("cube", pool.get_submissions_of(cube) == tuple(cubes))
        say("submitter", all(job.submitter is square for job in squares))
        more = pool.queue(square, (9,))
        say("grows", pool.get_submissions_of(square) == tuple(squares) + (more,))
        pool.execute()

    pool, error = outcome(run)
    say("error", type(error).__name__)


# --- 11: per-job closures are not kept on the workers ------------------------------------------


class PerJob:
    """A per-job callable; its live instances (on this rank) are counted."""

    alive: "weakref.WeakSet" = None

    def __init__(self, i):
        self.i = i

    def __call__(self, network):
        import weakref

        if type(self).alive is None:
            type(self).alive = weakref.WeakSet()
        type(self).alive.add(self)
        return self.i


def count_alive(network):
    import gc

    gc.collect()
    alive = PerJob.alive
    return (MPI.get_rank(), 0 if alive is None else len(alive))


def case_closures():
    found = {}

    def run(pool):
        if pool.is_main():
            jobs = [pool.queue(PerJob(i)) for i in range(3000)]
            found["last"] = pool.queue(count_alive, deps=jobs)
        pool.execute()

    pool = Network().create_job_pool(quiet=True, main_executes=False)
    with pool:
        run(pool)
    if pool.is_main():
        rank, alive = found["last"].result
        say("ran on a worker", rank != 0)
        say("bounded", alive < 1500)


# --- 3: stall report: log lines, SIGUSR1, jobs taken back from a stuck rank ----------------


def stuck_job(network, seconds):
    time.sleep(seconds)
    return "unstuck"


def case_stall_workers():
    case_stall(main_executes=False)


def case_stall(**options):
    import io
    import signal

    from neuroscaffold.progress import LogProgress

    # A USR1 that would come after this rank left execute() (a loaded machine) must
    # not kill it: the pool's handler replaces this one while it executes.
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    pids = MPI.allgather(os.getpid())
    log = io.StringIO()
    found = {}

    targets = {"last": pids[-1:], "main": pids[:1]}.get(FOLDER or "all", pids)

    def signal_every_rank():
        time.sleep(2.5)
        for pid in targets:  # one rank only: it asks the others for their reports
            os.kill(pid, signal.SIGUSR1)

    def run(pool):
        if pool.is_main():
            pool.add_listener(LogProgress(log, interval=0.25), max_wait=0.25)
            first = [pool.queue(nap, (0.05,)) for i in range(2 * SIZE)]
            found["stuck"] = pool.queue(stuck_job, (4.0,), name="stuck")
            found["others"] = first + [pool.queue(nap, (0.05,)) for i in range(30)]
            threading.Thread(target=signal_every_rank, daemon=True).start()
        pool.execute()

    pool, error = outcome(run, **options)
    say("error", type(error).__name__)
    if pool.is_main():
        stuck = found["stuck"]
        text = log.getvalue()
        say("log names it", f"running long: job 'stuck' on rank {stuck.rank} for" in text)
        say("others ended first", all(job.ended_at < stuck.ended_at for job in found["others"]))
        say("stuck rank", stuck.rank)


if __name__ == "__main__":
    globals()[f"case_{CASE}"]()
    say("done", "ok")
