"""What the pool tests share, in one process and under ``mpiexec`` alike: the short
names of events and states, a test network, the fake configuration node, job
functions, recording listeners and stream checks.

Job functions live here, in an importable module, so they travel by reference: the
receiving rank runs its own copy of this module. A :class:`Node` travels by name: every
rank builds the same nodes on its own :class:`TestNetwork`, and a job of a node runs on
the receiving rank's own instance.
"""

from __future__ import annotations

import threading
import time
from typing import Any, NamedTuple

from neuroscaffold import MPI, JobPoolError, Network, WorkflowError, pool_cache
from neuroscaffold.services.pool import JobStatus, PoolProgressReason, PoolStatus

ADDED = PoolProgressReason.JOB_ADDED
CHANGE = PoolProgressReason.JOB_STATUS_CHANGE
POOL = PoolProgressReason.POOL_STATUS_CHANGE
PING = PoolProgressReason.MAX_TIMEOUT_PING
PENDING, QUEUED, RUNNING = JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING
SUCCESS, FAILED, CANCELLED, ABORTED = (
    JobStatus.SUCCESS,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.ABORTED,
)
SCHEDULING, EXECUTING, CLOSING = PoolStatus.SCHEDULING, PoolStatus.EXECUTING, PoolStatus.CLOSING
#: what a job that succeeds reports, in order
LIFE = [(ADDED, PENDING), (CHANGE, QUEUED), (CHANGE, RUNNING), (CHANGE, SUCCESS)]

RANK = MPI.get_rank()
WAIT = 20.0  # seconds: bound of every wait on a threading.Event (a failure, not a hang)


# --- the network and the fake node ------------------------------------------------------


class TestNetwork(Network):
    """A network that also knows the tests' nodes by name, so that they travel between
    ranks by name, like configuration nodes."""

    __test__ = False  # not a pytest test class

    def __init__(self):
        super().__init__()
        self.test_nodes: dict[str, Node] = {}

    def resolve_node(self, name: str):
        node = self.test_nodes.get(name)
        return node if node is not None else super().resolve_node(name)


class Node:
    """Looks like a configuration node to the pool: a name, its network (``scaffold``),
    ``depends_on``, ``queue(pool)`` and a ``pool_cache`` method, :meth:`heavy`, counting
    how often this instance computed it.

    Args:
        network: the network (a :class:`TestNetwork` learns the node's name), or None
            for a node that is only a submitter (progress tests).
        name: short name; :meth:`get_node_name` is ``{root}.test.<name>`` unless
            ``node_name`` gives the whole name.
        jobs: how many jobs :meth:`queue` queues, each ``work(i)``.
        depends_on: nodes whose jobs must succeed first.
        work: ``work(node, i)``, what job ``i`` does; by default it records
            ``(i, self.heavy())`` in :attr:`seen` and returns ``(name, i)``.
        pause: seconds each job sleeps first.
        fail_schedule: :meth:`queue` raises instead of queueing.
        gate: :meth:`queue` first waits for this event (``gate_opened`` says if it came).
        hold: :meth:`heavy` waits for this event before it returns.
    """

    def __init__(self, network=None, name="node", jobs=1, depends_on=(), work=None,
                 pause=0.0, fail_schedule=False, gate=None, hold=None, node_name=None):
        self.scaffold = network
        self.name = name
        self.node_name = node_name or "{root}.test." + name
        self.jobs = jobs
        self.depends_on = list(depends_on)
        self._work = work
        self.pause = pause
        self.fail_schedule = fail_schedule
        self.gate = gate
        self.hold = hold
        self.computed = 0
        self.seen: list = []  # what each job that ran here saw: (index, value of heavy)
        if isinstance(network, TestNetwork):
            network.test_nodes[self.node_name] = self

    def get_node_name(self) -> str:
        return self.node_name

    def queue(self, pool) -> None:
        if self.gate is not None:
            self.gate_opened = self.gate.wait(WAIT)
        if self.fail_schedule:
            raise RuntimeError(f"cannot schedule {self.name}")
        if len(self.depends_on) == 1:  # the pool's own tuple: shared by every job
            deps = pool.get_submissions_of(self.depends_on[0])
        else:
            deps = tuple(j for dep in self.depends_on for j in pool.get_submissions_of(dep))
        for i in range(self.jobs):
            pool.queue(self.work, (i,), deps=deps, name=f"{self.name}[{i}]")

    def work(self, network, i):
        if network is not self.scaffold:
            raise AssertionError("the job got another network than its node's")
        if self.pause:
            time.sleep(self.pause)
        if self._work is not None:
            return self._work(self, i)
        self.seen.append((i, self.heavy()))
        return (self.name, i)

    @pool_cache
    def heavy(self):
        self.computed += 1
        if self.hold is not None:
            self.hold.wait(WAIT)
        return [self.name, self.computed]


def nothing(node, i):
    """A ``work`` that does nothing."""
    return None


def cached_nodes(pool) -> set:
    """The node names with a value in this rank's ``pool_cache`` store."""
    return set(pool._cache.values)


# --- job functions ----------------------------------------------------------------------


def identity(network, value, pause=0.0):
    if pause:
        time.sleep(pause)
    return (value, RANK)


def boom(network, text="boom"):
    raise ValueError(text)


class Weird(Exception):
    """Pickles, but cannot be unpickled: its __init__ wants two arguments."""

    def __init__(self, a, b):
        super().__init__(f"odd {a} {b}")


def weird(network):
    raise Weird(1, 2)


def make_lock(network):
    return threading.Lock()


def make_generator(network):
    return (i for i in range(3))


def takes_anything(network, value):
    return "ran"


def nap(network, seconds):
    time.sleep(seconds)
    return RANK


def rank_of(network):
    return RANK


def outcome(call) -> BaseException | None:
    """The error ``call()`` raised, or None."""
    try:
        call()
    except Exception as error:
        return error
    return None


# --- listeners and stream checks --------------------------------------------------------


class Event(NamedTuple):
    reason: PoolProgressReason
    status: PoolStatus
    job: Any
    old: JobStatus | None
    new: JobStatus | None  # the job's status when the event was delivered


class Recorder:
    """A listener keeping every event it gets, in order."""

    def __init__(self, answer=None):
        self.events: list[Event] = []
        self.answer = answer  # callable(progress) -> return value of the listener

    def __call__(self, progress):
        job = progress.job
        self.events.append(
            Event(progress.reason, progress.status, job, progress.old_status, job and job.status)
        )
        return self.answer(progress) if self.answer else None

    def of(self, job) -> list[tuple]:
        """``job``'s own events: ``(reason, new status)``."""
        return [(e.reason, e.new) for e in self.events if e.job is job]

    def steps(self, job) -> list[tuple]:
        """``job``'s own events: ``(reason, old status)``; the same for a replay."""
        return [(e.reason, e.old) for e in self.events if e.job is job]

    def index(self, job, status: JobStatus) -> int:
        """Position of the event that moved ``job`` to ``status``; -1 if none did."""
        for i, e in enumerate(self.events):
            if e.job is job and e.reason is CHANGE and e.new is status:
                return i
        return -1

    def pool_statuses(self) -> list[tuple[int, PoolStatus]]:
        return [(i, e.status) for i, e in enumerate(self.events) if e.reason is POOL]

    def stream_problems(self, jobs, life=LIFE) -> list:
        """What is wrong with the stream: SCHEDULING first, CLOSING last, EXECUTING
        once between, and each job's own events ``life`` in order."""
        problems: list = []
        statuses = self.pool_statuses()
        if [s for _, s in statuses] != [SCHEDULING, EXECUTING, CLOSING]:
            problems.append(("pool statuses", statuses))
        elif statuses[0][0] != 0 or statuses[-1][0] != len(self.events) - 1:
            problems.append(("SCHEDULING first, CLOSING last", statuses))
        for job in jobs:
            if self.of(job) != life:
                problems.append((job.name, self.of(job)))
        return problems

    def order_problems(self, jobs) -> list:
        """Dependents QUEUED or RUNNING before a dependency ended, by events and times."""
        problems = []
        for job in jobs:
            for dep in job.deps:
                ended = self.index(dep, SUCCESS)
                if not (0 <= ended < self.index(job, QUEUED) < self.index(job, RUNNING)):
                    problems.append(("events", dep.name, job.name))
                if not (dep.ended_at is not None and job.started_at is not None
                        and dep.ended_at <= job.started_at):
                    problems.append(("times", dep.name, job.name, dep.ended_at, job.started_at))
        return problems


class ContextListener:
    """A listener that is a context manager and records when it is used."""

    def __init__(self):
        self.log: list = []

    def __enter__(self):
        self.log.append("enter")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.log.append(("exit", exc_type))

    def __call__(self, progress):
        self.log.append(progress.status if progress.reason is POOL else progress.reason)


def summary_of(error) -> str:
    """A WorkflowError's message, or the repr of another error."""
    return error.message if isinstance(error, WorkflowError) else repr(error)


def check_workflow_error(world, error) -> None:
    """Every rank raised a WorkflowError with the main rank's text; on the other ranks
    its members are JobPoolErrors."""
    assert isinstance(error, WorkflowError), error
    world.same_on_every_rank(summary_of(error))
    if not world.main:
        assert all(type(e) is JobPoolError for e in error.exceptions), error.exceptions
