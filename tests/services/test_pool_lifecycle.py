"""The job pool's life: pools in a row, submissions after execute, what may travel,
errors that travel, and errors that end the pool (nobody may hang).

Every body runs in this process and under ``mpiexec`` (``mpi_matrix``); bodies that
need another rank to send jobs to start at 2 ranks.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest

from neuroscaffold import (
    JobCancelledError,
    JobPoolError,
    ListenerError,
    RemoteJobError,
    WorkflowError,
)
from tests._mpi import mpi_matrix
from tests._pool_support import (
    ABORTED,
    CANCELLED,
    CHANGE,
    CLOSING,
    EXECUTING,
    FAILED,
    POOL,
    RUNNING,
    SCHEDULING,
    SUCCESS,
    ContextListener,
    Node,
    Recorder,
    boom,
    cached_nodes,
    check_workflow_error,
    identity,
    make_generator,
    make_lock,
    nap,
    outcome,
    summary_of,
    takes_anything,
    weird,
)

AFTER_EXECUTE = r"^cannot submit jobs after the pool was executed$"
LOCK_TEXT = "TypeError: cannot pickle '_thread.lock' object"
RESULT_TEXT = "the job's result cannot be sent to another rank: "


# --- pool lifecycle -------------------------------------------------------------------


@mpi_matrix(1, 2, 3, 4)
def test_two_pools_one_after_the_other(world):
    node = Node(world.network, "twice", jobs=2 * world.size, pause=0.005)
    used = []
    for round_ in range(2):
        recorder = Recorder()
        with world.network.create_job_pool(quiet=True) as pool:
            if world.main:
                pool.add_listener(recorder)
                node.queue(pool)
                extra = pool.submit(lambda net, r: r, round_)
            results = pool.execute(return_results=True)
        assert cached_nodes(pool) == set()
        if world.main:
            assert recorder.stream_problems(pool.jobs) == []
            assert extra.result == round_
            assert sorted(map(str, results.values())) == sorted(
                map(str, [("twice", i) for i in range(2 * world.size)] + [round_]))
            used.append({job.rank for job in pool.get_submissions_of(node)})
    used = world.bcast(used)
    # once per pool on each rank that ran its jobs: the first pool's value went with it
    assert node.computed == sum(world.rank in ranks for ranks in used)


@mpi_matrix(1, 2, 3)
def test_submitting_after_execute_raises(world):
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.submit(identity, 1)
        pool.execute()
        with pytest.raises(JobPoolError, match=AFTER_EXECUTE):
            pool.submit(identity, 2)
        with pytest.raises(JobPoolError, match=AFTER_EXECUTE):
            pool.queue(identity, (2,), deps=pool.jobs)
        with pytest.raises(JobPoolError, match=AFTER_EXECUTE):
            pool.schedule([Node(world.network, "late")])
        with pytest.raises(JobPoolError, match=r"^this pool was already executed; create a new pool$"):
            pool.execute()
    assert len(pool.jobs) == (1 if world.main else 0)
    with pytest.raises(JobPoolError, match=r"^cannot submit jobs to a closed pool$"):
        pool.submit(identity, 3)
    with pytest.raises(JobPoolError, match=r"^cannot execute a closed pool$"):
        pool.execute()


@mpi_matrix(1, 2, 3)
def test_submitting_after_a_failed_execute_raises(world):
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.submit(lambda net: 1 / 0)
        with pytest.raises(WorkflowError):
            pool.execute()
        with pytest.raises(JobPoolError, match=AFTER_EXECUTE):
            pool.submit(identity, 2)


@mpi_matrix(1, 2, 3, 4)
def test_lambdas_and_closures_run_as_jobs(world):
    base = 100

    def make_adder(offset):
        def add(net, x):
            return base + offset + x

        return add

    # main_executes=False: in parallel every job runs on another rank, so all travels.
    options = {"main_executes": False} if world.size > 1 else {}
    with world.network.create_job_pool(quiet=True, **options) as pool:
        if world.main:
            jobs = [pool.submit(make_adder(i), i) for i in range(4)]
            jobs.append(pool.submit(lambda net: base * 2))
            jobs.append(pool.submit(lambda net, *a, **k: (a, k), 1, 2, key="v"))
        pool.execute()
    if world.main:
        assert [job.result for job in jobs] == [100, 102, 104, 106, 200, ((1, 2), {"key": "v"})]
        if world.size > 1:
            assert all(job.rank > 0 for job in jobs), [job.rank for job in jobs]


# --- errors that travel -----------------------------------------------------------------


@mpi_matrix(1)
def test_a_failing_job_keeps_its_error_and_names_the_job(world):
    # Serially an exception never travels, so even one that cannot be unpickled stays itself.
    with world.network.create_job_pool(quiet=True) as pool:
        job = pool.queue(weird, name="odd")
        with pytest.raises(WorkflowError) as info:
            pool.execute()
    assert summary_of(info.value) == "1 of 1 jobs failed:\n  job 'odd' failed on rank 0: Weird: odd 1 2"
    assert info.value.exceptions == (job.error,)
    assert type(job.error).__name__ == "Weird" and job.rank == 0
    assert job.error.__notes__ == ["raised by job 'odd' on rank 0"]


@mpi_matrix(2, 3, 4)
def test_errors_of_jobs_on_other_ranks_travel_with_their_traceback(world):
    # main_executes=False: every job runs on another rank, so everything travels.
    with world.network.create_job_pool(quiet=True, main_executes=False) as pool:
        if world.main:
            failing = pool.queue(boom, name="boom")
            odd = pool.queue(weird, name="weird")
            lock = pool.queue(make_lock, name="lock")
            gen = pool.queue(make_generator, name="gen")
            arg = pool.queue(takes_anything, (threading.Lock(),), name="arg")
            fine = pool.queue(identity, ("fine",), name="fine")
            after = pool.queue(identity, ("after",), deps=[failing], name="after")
        error = outcome(pool.execute)
    check_workflow_error(world, error)
    if not world.main:
        return
    lines = summary_of(error).split("\n")
    assert lines[:-1] == [
        "5 of 7 jobs failed, 1 jobs cancelled:",
        f"  job 'boom' failed on rank {failing.rank}: ValueError: boom",
        f"  job 'weird' failed on rank {odd.rank}: RemoteJobError: tests._pool_support.Weird: odd 1 2",
        f"  job 'lock' failed on rank {lock.rank}: JobPoolError: {RESULT_TEXT}{LOCK_TEXT}",
        f"  job 'gen' failed on rank {gen.rank}: JobPoolError: {RESULT_TEXT}"
        "TypeError: cannot pickle 'generator' object",
    ]
    # an unpicklable argument names the job
    assert lines[-1] == f"  job 'arg' failed: JobPoolError: job 'arg' cannot be sent to another rank: {LOCK_TEXT}"
    assert arg.status is FAILED and arg.rank is None and isinstance(arg.error.__cause__, TypeError)
    cause = failing.error.__cause__  # the remote traceback, naming the rank
    assert failing.rank > 0 and type(cause).__name__ == "RemoteTraceback", cause
    assert f"### rank {failing.rank} of {world.size} on " in str(cause) and "in boom" in str(cause)
    assert str(cause).rstrip().endswith("ValueError: boom"), str(cause)
    assert (type(failing.error), str(failing.error), failing.error.__notes__) == (
        ValueError, "boom", [f"raised by job 'boom' on rank {failing.rank}"])
    assert type(odd.error) is RemoteJobError
    assert str(odd.error) == "tests._pool_support.Weird: odd 1 2"
    assert "Weird: odd 1 2" in str(odd.error.__cause__)
    assert [(j.status, str(j.error)) for j in (lock, gen)] == [
        (FAILED, RESULT_TEXT + LOCK_TEXT),
        (FAILED, RESULT_TEXT + "TypeError: cannot pickle 'generator' object"),
    ]
    assert (fine.status, fine.result[0], after.status) == (SUCCESS, "fine", CANCELLED)
    assert isinstance(after.error, JobCancelledError)


@mpi_matrix(1, 2, 3, 4)
def test_jobs_are_held_to_what_travelling_needs_on_every_rank(world):
    """A job fails in one process exactly as it would on another rank: with a function,
    arguments or a result that cannot be pickled. What works on a laptop works on the
    cluster; in parallel the main rank, which runs jobs too, holds them to the same rules."""
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            arg = pool.queue(lambda net, lock: None, (threading.Lock(),), name="arg")
            result = pool.queue(lambda net: threading.Lock(), name="result")
            lock = threading.Lock()
            closure = pool.queue(lambda net: lock.locked(), name="closure")
            fine = pool.queue(lambda net, data: sum(data), ([1, 2, 3],), name="fine")
            refers_to_pool = pool.queue(lambda net: pool.statistics().total, name="pool")
            results = [pool.queue(make_lock, name=f"lock {i}") for i in range(4 * world.size)]
            args = [pool.queue(takes_anything, (threading.Lock(),), name=f"arg {i}")
                    for i in range(4 * world.size)]
        error = outcome(pool.execute)
    check_workflow_error(world, error)
    if not world.main:
        return
    lines = summary_of(error).split("\n")
    assert lines[0] == f"{3 + 8 * world.size} of {5 + 8 * world.size} jobs failed:"
    assert lines[1:4] == [
        f"  job 'arg' failed: JobPoolError: job 'arg' cannot be sent to another rank: {LOCK_TEXT}",
        f"  job 'result' failed on rank {result.rank}: JobPoolError: {RESULT_TEXT}{LOCK_TEXT}",
        f"  job 'closure' failed: JobPoolError: job 'closure' cannot be sent to another rank: {LOCK_TEXT}",
    ]
    assert arg.rank is None and arg.started_at is None  # it never ran
    assert closure.rank is None and result.rank is not None  # the result failed after running
    assert fine.result == 6
    if world.size == 1:
        assert refers_to_pool.result == 5 + 8 * world.size  # the pool travels by reference
    # unpicklable results fail wherever they ran; unpicklable arguments before running
    assert {(j.status, str(j.error)) for j in results} == {(FAILED, RESULT_TEXT + LOCK_TEXT)}
    assert {(j.status, j.rank) for j in args} == {(FAILED, None)}


@dataclasses.dataclass(frozen=True)
class _Box:
    content: object


def _content(net, box):
    return box.content


@mpi_matrix(1, 2, 3, 4)
def test_instances_of_plain_classes_are_held_to_travelling_by_their_contents(world):
    """The travel check knows a plain class (a dataclass like a chunk) after its first
    instance, but still looks at what each instance holds."""
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            plain = [pool.queue(_content, (_Box((i, 2.5)),)) for i in range(3 * world.size)]
            locked = pool.queue(_content, (_Box(threading.Lock()),), name="locked")
        error = outcome(pool.execute)
    check_workflow_error(world, error)
    if not world.main:
        return
    assert [job.result for job in plain] == [(i, 2.5) for i in range(3 * world.size)]
    assert summary_of(error) == (
        f"1 of {3 * world.size + 1} jobs failed:\n  job 'locked' failed: JobPoolError: job "
        f"'locked' cannot be sent to another rank: {LOCK_TEXT}"
    )
    assert locked.started_at is None  # it never ran


# --- errors that end the pool: every rank leaves with a clear error ----------------------


def run_pool(world, body=None, listeners=(), jobs=20, pause=0.01):
    """Enter a pool on every rank, queue ``jobs`` naps on the main rank, run ``body``
    (if any), execute; return the error this rank got (None if none) and the pool."""
    pool = world.network.create_job_pool(quiet=True, listeners=listeners if world.main else ())
    error = None
    try:
        with pool:
            if world.main:
                for i in range(jobs):
                    pool.queue(nap, (pause,), name=f"nap{i}")
            if body is not None:
                body(pool)
            pool.execute()
    except Exception as exc:
        error = exc
    return error, pool


def expect(world, error, main_type, main_text, other_text, special=None):
    """The main rank got ``main_type(main_text)``; the others a WorkflowError with one
    member, both saying ``other_text(main rank's text)``; ``special``: rank -> (type,
    text) of ranks that got their own error."""
    text = world.bcast(str(error))
    if world.main:
        assert (type(error), str(error)) == (main_type, main_text)
    elif special is not None and world.rank in special:
        assert (type(error), str(error)) == special[world.rank]
    else:
        assert type(error) is WorkflowError, error
        assert error.message == other_text(text)
        assert [str(e) for e in error.exceptions] == [other_text(text)]


def still_usable(world):
    """After a pool broke, the next pool works on every rank."""
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            jobs = [pool.submit(identity, i) for i in range(4 * world.size)]
        results = pool.execute(return_results=True)
    if world.main:
        assert [job.result[0] for job in jobs] == list(range(4 * world.size))
        assert set(results) == set(jobs)
    world.same_on_every_rank("here")


@mpi_matrix(1, 2, 3, 4)
def test_a_listener_that_raises_aborts_the_pool(world):
    def fragile(progress):
        if progress.reason is CHANGE and progress.job.status is RUNNING:
            raise KeyError("listener bug")

    context = ContextListener()
    error, pool = run_pool(world, listeners=[context, fragile])
    expect(world, error, ListenerError, world.bcast(str(error)),
           lambda text: f"the pool broke on the main rank: ListenerError: {text}")
    if world.main:
        assert str(error).startswith(
            "listener test_a_listener_that_raises_aborts_the_pool.<locals>.fragile raised on "
            "job_status_change of job 'nap")
        assert str(error).endswith(": KeyError('listener bug')")
        assert isinstance(error.__cause__, KeyError)
        assert all(job.done() for job in pool.jobs), pool.jobs
        assert all(job.status in (SUCCESS, ABORTED) for job in pool.jobs), pool.jobs
        aborted = [job for job in pool.jobs if job.status is ABORTED]
        if world.size == 1:  # the first job's RUNNING event raised: nothing else ran
            assert aborted == pool.jobs
        assert aborted and all(str(job.error) == f"job {job.name!r} was aborted: ListenerError: "
                               f"{error}" for job in aborted)
        assert context.log[-1] == ("exit", ListenerError)
    assert pool.status is CLOSING and cached_nodes(pool) == set()
    still_usable(world)


@mpi_matrix(1, 2, 3, 4)
def test_a_listener_that_raises_on_executing_leaves_jobs_unrun(world):
    def fragile(progress):
        if progress.reason is POOL and progress.status is EXECUTING:
            raise KeyError("executing")

    error, pool = run_pool(world, listeners=[fragile])
    expect(world, error, ListenerError,
           "listener test_a_listener_that_raises_on_executing_leaves_jobs_unrun.<locals>.fragile "
           "raised on pool_status_change: KeyError('executing')",
           lambda text: f"the main rank raised before executing the pool: ListenerError: {text}")
    if world.main:
        assert all(job.started_at is None and job.status is not SUCCESS for job in pool.jobs)
    still_usable(world)


@mpi_matrix(1, 2, 3, 4)
def test_a_listener_that_raises_on_entering_closes_the_pool(world):
    def fragile(progress):
        raise KeyError("entering")

    context = ContextListener()
    entered = []
    error, pool = run_pool(world, listeners=[context, fragile], jobs=0, body=entered.append)
    expect(world, error, ListenerError,
           "listener test_a_listener_that_raises_on_entering_closes_the_pool.<locals>.fragile "
           "raised on pool_status_change: KeyError('entering')",
           lambda text: f"the main rank raised before executing the pool: ListenerError: {text}")
    if world.main:
        assert entered == []  # the body of the with block never ran
        assert context.log[0] == "enter" and context.log[-1] == ("exit", ListenerError)
        with pytest.raises(JobPoolError, match=r"^cannot submit jobs to a closed pool$"):
            pool.submit(identity, 1)
    still_usable(world)


@mpi_matrix(1, 2, 3, 4)
def test_an_error_in_the_with_block_before_execute_propagates(world):
    recorder = Recorder()

    def body(pool):
        if world.main:
            raise ValueError("main rank gives up")

    error, pool = run_pool(world, body, listeners=[recorder])
    expect(world, error, ValueError, "main rank gives up",
           lambda text: f"the main rank raised before executing the pool: ValueError: {text}")
    if world.main:
        assert all(job.started_at is None for job in pool.jobs)
        assert [s for _, s in recorder.pool_statuses()] == [SCHEDULING, CLOSING]
    with pytest.raises(JobPoolError, match=r"^cannot execute a closed pool$"):
        pool.execute()
    still_usable(world)


@mpi_matrix(2, 3, 4)
def test_a_worker_raising_before_execute_releases_every_rank(world):
    last = world.size - 1

    def body(pool):
        if world.rank == last:
            raise ValueError(f"rank {last} gives up")

    error, pool = run_pool(world, body)
    why = f"rank {last} failed outside its jobs and left the pool: ValueError: rank {last} gives up"
    expect(world, error, JobPoolError, why,
           lambda text: f"the pool broke on the main rank: JobPoolError: {text}",
           special={last: (ValueError, f"rank {last} gives up")})
    still_usable(world)
