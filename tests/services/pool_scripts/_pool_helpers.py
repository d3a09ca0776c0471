"""What the pool's MPI scripts share: check reporting, a test network, node look-alikes
and job functions.

Job functions live here, in an importable module, so they travel by reference: the
receiving rank runs its own copy of this module, whose ``STATE`` holds that rank's pool.

Each check prints one line ``R<rank> CHECK <name> ok`` (or ``... FAIL <details>``);
``test_pool_mpi.py`` reads them back per rank.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import Counter
from contextlib import contextmanager

from neuroscaffold import MPI, Network, pool_cache
from tests.services._pool_names import (  # noqa: F401 (used by the scripts)
    ABORTED, ADDED, CANCELLED, CHANGE, CLOSING, EXECUTING, FAILED, LIFE, PENDING, PING, POOL,
    QUEUED, RUNNING, SCHEDULING, SUCCESS,
)

RANK = MPI.get_rank()
SIZE = MPI.get_size()
MAIN = RANK == 0
STATE: dict = {}  # "pool": this rank's pool while a section runs
COMPUTED: Counter = Counter()  # node name -> pool_cache computations on this rank
WAIT = 20.0  # bound of every wait on a threading.Event: a failure, never a hang



# --- reporting ---------------------------------------------------------------------------


def say(text: str) -> None:
    # One write per line: mpiexec interleaves the ranks' output write by write.
    sys.stdout.write(f"R{RANK} {text}\n")
    sys.stdout.flush()


def check(name: str, ok: bool, detail: object = "") -> bool:
    say(f"CHECK {name} " + ("ok" if ok else f"FAIL {detail!r}"))
    return ok


def equal(name: str, got, expected) -> bool:
    return check(name, got == expected, f"got {got!r}, expected {expected!r}")


@contextmanager
def section(name: str):
    """Report an unexpected error of a section's checking code as a failed check."""
    try:
        yield
    except BaseException:  # noqa: B902 - report, then go on with the next section
        check(f"{name}: no unexpected error", False, traceback.format_exc())


def outcome(call) -> BaseException | None:
    """The error ``call()`` raised, or None."""
    try:
        call()
    except Exception as error:
        return error
    return None


def same_on_every_rank(name: str, value) -> None:
    """Check that every rank has the main rank's ``value``."""
    expected = MPI.bcast(value if MAIN else None, root=0)
    equal(name, value, expected)


# --- a network whose test nodes travel by name -----------------------------------------


class TestNetwork(Network):
    """A network that also knows the test's node look-alikes by name, so they travel
    between ranks by name, like configuration nodes."""

    def __init__(self):
        super().__init__()
        self.test_nodes: dict = {}

    def resolve_node(self, name: str):
        node = self.test_nodes.get(name)
        return node if node is not None else super().resolve_node(name)


class Node:
    """Looks like a configuration node to the pool: a name, its network (``scaffold``),
    ``depends_on``, ``queue(pool)`` and a ``pool_cache`` method.

    Every rank builds the same nodes; a job of a node runs on the receiving rank's own
    instance. ``kind`` picks what its jobs do (see :meth:`work`).
    """

    def __init__(self, network, name, jobs=1, depends_on=(), kind="cache", pause=0.0,
                 fail_schedule=False, gate=None):
        self.scaffold = network
        self.name = name
        self.jobs = jobs
        self.depends_on = list(depends_on)
        self.kind = kind
        self.pause = pause
        self.fail_schedule = fail_schedule
        self.gate = gate  # main rank: queue() waits for this threading.Event first
        network.test_nodes[self.get_node_name()] = self

    def get_node_name(self) -> str:
        return "{root}.test." + self.name

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
        if self.kind == "none":
            return None
        if self.kind == "cache":
            return (self.name, i, RANK, self.heavy()[0])
        if self.kind == "probe":
            # Runs after every job of depends_on[0] ended: its value must be gone here.
            store = STATE["pool"]._cache.values
            other = self.depends_on[0]
            return (RANK, other.get_node_name() in store, self.heavy()[0], use_bystander(network))
        raise ValueError(f"unknown kind {self.kind!r}")

    @pool_cache
    def heavy(self):
        COMPUTED[self.name] += 1
        return (self.name, RANK)


def use_bystander(network):
    """Use the cached value of a node without jobs (nothing frees it before closing)."""
    node = network.test_nodes.get("{root}.test.bystander")
    return node.heavy()[0] if node is not None else None


def cached_nodes() -> set:
    return set(STATE["pool"]._cache.values)


# --- jobs ------------------------------------------------------------------------------


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


# --- listeners -------------------------------------------------------------------------


class Recorder:
    """A listener keeping every event: (reason, pool status, job, old, job's status)."""

    def __init__(self, answer=None):
        self.events: list = []
        self.answer = answer

    def __call__(self, progress):
        job = progress.job
        self.events.append(
            (progress.reason, progress.status, job, progress.old_status, job and job.status)
        )
        return self.answer(progress) if self.answer else None

    def of(self, job) -> list:
        return [(e[0], e[4]) for e in self.events if e[2] is job]

    def steps(self, job) -> list:
        return [(e[0], e[3]) for e in self.events if e[2] is job]

    def index(self, job, status) -> int:
        for i, e in enumerate(self.events):
            if e[2] is job and e[0] is CHANGE and e[4] is status:
                return i
        return -1

    def pool_statuses(self) -> list:
        return [(i, e[1]) for i, e in enumerate(self.events) if e[0] is POOL]

    def stream_problems(self, jobs, life=LIFE) -> list:
        """What is wrong with the stream: pool statuses, and each job's own events."""
        problems = []
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
    """A listener that is a context manager, recording when it is used."""

    def __init__(self):
        self.log: list = []

    def __enter__(self):
        self.log.append("enter")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.log.append(("exit", exc_type and exc_type.__name__))

    def __call__(self, progress):
        self.log.append(progress.status.name if progress.reason is POOL else progress.reason.name)


def run_sections(sections) -> None:
    """Run each section (a function of the network) on every rank, in step."""
    net = TestNetwork()
    for run in sections:
        say(f"PLAN {run.__name__}")  # the test requires a "ran" check for each
    for run in sections:
        with section(run.__name__):
            run(net)
            check(f"section {run.__name__} ran", True)
        MPI.barrier()
    check("done", True)
