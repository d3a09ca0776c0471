"""Pools that break, one after the other in one launch: nobody may hang.

A listener that raises (during execution, on EXECUTING, on entering), the main rank or a
worker rank raising in the ``with`` block before ``execute()``: every rank must leave
with a clear error (the main rank's own error, a WorkflowError saying why elsewhere),
and the world must stay usable for the next pool.
"""

from __future__ import annotations

from _pool_helpers import (
    ABORTED,
    CHANGE,
    EXECUTING,
    MAIN,
    MPI,
    POOL,
    RANK,
    SIZE,
    STATE,
    SUCCESS,
    ContextListener,
    check,
    equal,
    run_sections,
    identity,
    nap,
    same_on_every_rank,
)

from neuroscaffold import JobPoolError, ListenerError, WorkflowError

LAST = SIZE - 1


def run_pool(net, body=None, listeners=(), jobs=20, pause=0.01):
    """Enter a pool on every rank, submit ``jobs`` naps on the main rank, run ``body``
    (if any), execute; return the error this rank got (None if none) and the pool."""
    pool = net.create_job_pool(quiet=True, listeners=listeners if MAIN else ())
    error = None
    try:
        with pool:
            STATE["pool"] = pool
            if MAIN:
                for i in range(jobs):
                    pool.queue(nap, (pause,), name=f"nap{i}")
            if body is not None:
                body(pool)
            pool.execute()
    except Exception as exc:
        error = exc
    return error, pool


def expect(name, error, main_type, main_text, other_text, special=None):
    """The main rank got ``main_type(main_text)``; the others a WorkflowError saying
    ``other_text`` (computed from the main rank's error text)."""
    text = MPI.bcast(str(error) if MAIN else None, root=0)
    if MAIN:
        equal(f"{name}: main rank error", (type(error), str(error)), (main_type, main_text))
    elif special is not None and RANK in special:
        expected_type, expected_text = special[RANK]
        equal(f"{name}: rank error", (type(error), str(error)), (expected_type, expected_text))
    else:
        check(f"{name}: WorkflowError on the other ranks", type(error) is WorkflowError, error)
        equal(f"{name}: it says why", getattr(error, "message", None), other_text(text))
        equal(f"{name}: one member error", [str(e) for e in getattr(error, "exceptions", ())],
              [other_text(text)])


def listener_raises_during_execution(net):
    def fragile(progress):
        if progress.reason is CHANGE and progress.job.status is SUCCESS:
            raise KeyError("listener bug")

    context = ContextListener()
    error, pool = run_pool(net, listeners=[context, fragile])
    expect("listener during execution", error, ListenerError,
           MPI.bcast(str(error) if MAIN else None, root=0),
           lambda text: f"the pool broke on the main rank: ListenerError: {text}")
    if MAIN:
        check("listener during execution: names listener, event and job",
              str(error).startswith("listener listener_raises_during_execution.<locals>.fragile "
                                    "raised on job_status_change of job 'nap")
              and str(error).endswith(": KeyError('listener bug')"), error)
        check("listener during execution: every job ended",
              all(job.done() for job in pool.jobs), pool.jobs)
        check("listener during execution: unfinished jobs aborted",
              all(job.status in (SUCCESS, ABORTED) for job in pool.jobs), pool.jobs)
        equal("listener during execution: context listener exited",
              context.log[-1], ("exit", "ListenerError"))


def listener_raises_on_executing(net):
    def fragile(progress):
        if progress.reason is POOL and progress.status is EXECUTING:
            raise KeyError("executing")

    error, pool = run_pool(net, listeners=[fragile])
    expect("listener on executing", error, ListenerError,
           "listener listener_raises_on_executing.<locals>.fragile raised on "
           "pool_status_change: KeyError('executing')",
           lambda text: f"the main rank raised before executing the pool: ListenerError: {text}")
    if MAIN:
        check("listener on executing: no job ran",
              all(job.started_at is None for job in pool.jobs), pool.jobs)


def listener_raises_on_entering(net):
    def fragile(progress):
        raise KeyError("entering")

    error, pool = run_pool(net, listeners=[fragile], jobs=0)
    expect("listener on entering", error, ListenerError,
           "listener listener_raises_on_entering.<locals>.fragile raised on "
           "pool_status_change: KeyError('entering')",
           lambda text: f"the main rank raised before executing the pool: ListenerError: {text}")


def main_raises_before_execute(net):
    def body(pool):
        if MAIN:
            raise ValueError("main rank gives up")

    error, pool = run_pool(net, body)
    expect("main raises before execute", error, ValueError, "main rank gives up",
           lambda text: f"the main rank raised before executing the pool: ValueError: {text}")


def worker_raises_before_execute(net):
    def body(pool):
        if RANK == LAST:
            raise ValueError(f"rank {LAST} gives up")

    error, pool = run_pool(net, body)
    why = f"rank {LAST} failed outside its jobs and left the pool: ValueError: rank {LAST} gives up"
    expect("worker raises before execute", error, JobPoolError, why,
           lambda text: f"the pool broke on the main rank: JobPoolError: {text}",
           special={LAST: (ValueError, f"rank {LAST} gives up")})


def still_usable(net):
    with net.create_job_pool(quiet=True) as pool:
        if MAIN:
            jobs = [pool.submit(identity, i) for i in range(4 * SIZE)]
        results = pool.execute(return_results=True)
    if MAIN:
        equal("world still usable: results", [job.result[0] for job in jobs], list(range(4 * SIZE)))
        equal("world still usable: results dict", set(results), set(jobs))
    same_on_every_rank("world still usable: every rank here", "here")


SECTIONS = [
    listener_raises_during_execution,
    listener_raises_on_executing,
    listener_raises_on_entering,
    main_raises_before_execute,
    worker_raises_before_execute,
    still_usable,
]


if __name__ == "__main__":
    run_sections(SECTIONS)
