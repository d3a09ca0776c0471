"""The job pool's behaviours under mpiexec, many pools in one launch.

Run with any number of ranks (``test_pool_mpi.py`` uses 2, 3 and 4). Each section opens
one or two pools on every rank and prints ``R<rank> CHECK <name> ok|FAIL ...`` lines;
a few checks compare every rank with the main rank. Jobs that must be "long" sleep a
little; every order that matters is forced by dependencies, gates or listeners.
"""

from __future__ import annotations

import threading
import time
import warnings

from _pool_helpers import (
    ADDED,
    CANCELLED,
    CHANGE,
    COMPUTED,
    EXECUTING,
    FAILED,
    MAIN,
    MPI,
    PENDING,
    PING,
    RANK,
    RUNNING,
    SIZE,
    STATE,
    SUCCESS,
    ContextListener,
    Node,
    Recorder,
    boom,
    cached_nodes,
    check,
    equal,
    run_sections,
    identity,
    make_generator,
    make_lock,
    nap,
    outcome,
    rank_of,
    same_on_every_rank,
    say,
    takes_anything,
    weird,
)

from neuroscaffold import (
    JobCancelledError,
    JobPoolError,
    JobSchedulingError,
    RemoteJobError,
    WorkflowError,
    pool_cache,
)
from neuroscaffold.services.pool import PoolProgressReason, PoolStatus

AFTER_EXECUTE = "cannot submit jobs after the pool was executed"


def summary_of(error) -> str:
    return error.message if isinstance(error, WorkflowError) else repr(error)


def check_workflow_error(name: str, error) -> None:
    """Every rank raised a WorkflowError, with the main rank's text."""
    check(f"{name}: WorkflowError on every rank", isinstance(error, WorkflowError), error)
    same_on_every_rank(f"{name}: same summary on every rank", summary_of(error))
    if not MAIN and isinstance(error, WorkflowError):
        check(f"{name}: members on workers are JobPoolErrors",
              all(type(e) is JobPoolError for e in error.exceptions), error.exceptions)


# --- results, dependency order, event stream -------------------------------------------


def results_and_order(net):
    rec = Recorder()
    with net.create_job_pool(quiet=True) as pool:
        STATE["pool"] = pool
        if MAIN:
            pool.add_listener(rec)
            spread = [pool.submit(identity, i, 0.005) for i in range(3 * SIZE)]
            top = pool.queue(identity, ("top",), name="top")
            left = pool.queue(identity, ("left",), deps=[top], name="left")
            right = pool.queue(identity, ("right",), deps=[top], name="right")
            chain = [pool.queue(identity, ("bottom",), deps=[left, right], name="bottom")]
            for i in range(4):
                chain.append(pool.queue(identity, (f"c{i}",), deps=[chain[-1]], name=f"chain{i}"))
            group_a = tuple(pool.queue(identity, (f"a{i}",), name=f"a{i}") for i in range(10))
            for i in range(10):
                pool.queue(identity, (f"b{i}",), deps=group_a, name=f"b{i}")
        results = pool.execute(return_results=True)
        error = outcome(lambda: pool.submit(identity, "late"))
        check("submit after execute raises JobPoolError",
              type(error) is JobPoolError and str(error) == AFTER_EXECUTE, error)
        error = outcome(lambda: pool.execute())
        check("execute twice raises JobPoolError", isinstance(error, JobPoolError)
              and str(error) == "this pool was already executed; create a new pool", error)
    check("results: cache store empty after close", pool._cache.values == {}, pool._cache.values)
    if not MAIN:
        equal("results: workers get {}", results, {})
        return
    jobs = pool.jobs
    equal("results: one per job", set(results), set(jobs))
    equal("results: job.result after close", {job: job.result for job in jobs}, results)
    equal("results: values", [job.result[0] for job in spread], list(range(3 * SIZE)))
    check("results: job.rank is where it ran",
          all(job.rank == job.result[1] for job in jobs), [(j.rank, j.result) for j in jobs])
    say(f"INFO ranks used: {sorted({job.rank for job in jobs})}")
    equal("events: stream order", rec.stream_problems(jobs), [])
    equal("dependencies: order by events and times", rec.order_problems(jobs), [])


# --- failures ---------------------------------------------------------------------------


def failure_cascade(net):
    with net.create_job_pool(quiet=True) as pool:
        if MAIN:
            root = pool.queue(boom, name="root")
            child = pool.queue(identity, ("child",), deps=[root], name="child")
            grandchild = pool.queue(identity, ("gc",), deps=[child], name="grandchild")
            free = pool.queue(identity, ("free",), name="free")
            mixed = pool.queue(identity, ("mixed",), deps=[free, grandchild], name="mixed")
            group = tuple([root] + [pool.queue(identity, (i,), name=f"g{i}") for i in range(9)])
            after = [pool.queue(identity, (i,), deps=group, name=f"h{i}") for i in range(3)]
        error = outcome(pool.execute)
    check_workflow_error("cascade", error)
    if not MAIN:
        return
    equal("cascade: summary", summary_of(error),
          f"1 of 17 jobs failed, 6 jobs cancelled:\n  job 'root' failed on rank {root.rank}: "
          "ValueError: boom")
    cancelled = [child, grandchild, mixed, *after]
    equal("cascade: dependents cancelled naming the failed job",
          [(type(j.error), str(j.error)) for j in cancelled],
          [(JobCancelledError, f"job {j.name!r} was cancelled: its dependency 'root' failed")
           for j in cancelled])
    check("cascade: independent jobs ran",
          all(j.status is SUCCESS for j in [free, *group[1:]]), pool.jobs)
    check("cascade: cancelled jobs never started",
          all(j.started_at is None and j.status is CANCELLED for j in cancelled), cancelled)
    error = outcome(lambda: root.result)
    check("cascade: result of failed job raises JobPoolError", type(error) is JobPoolError
          and str(error) == "job 'root' failed: ValueError('boom')", error)


def cancellation(net):
    warned = []

    def cancel_running(progress):
        if progress.reason is CHANGE and progress.job.status is RUNNING:
            if progress.job.name == "long":
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    done = progress.job.cancel("too late")
                warned.append((done, [(w.category, str(w.message)) for w in caught]))

    with net.create_job_pool(quiet=True) as pool:
        if MAIN:
            pool.add_listener(cancel_running)
            first = pool.queue(identity, ("first",), name="first")
            second = pool.queue(identity, ("second",), deps=[first], name="second")
            third = pool.queue(identity, ("third",), deps=[second], name="third")
            other = pool.queue(identity, ("other",), name="other")
            long = pool.queue(nap, (0.05,), name="long")
            check("cancel: queued job cancels", first.cancel("not needed") is True)
        error = outcome(pool.execute)
    check("cancel: no error on any rank", error is None, error)
    if not MAIN:
        return
    equal("cancel: queued job and its dependents cancelled",
          [(j.status, str(j.error)) for j in (first, second, third)],
          [(CANCELLED, "job 'first' was cancelled: not needed"),
           (CANCELLED, "job 'second' was cancelled: its dependency 'first' cancelled"),
           (CANCELLED, "job 'third' was cancelled: its dependency 'first' cancelled")])
    equal("cancel: running job warns and goes on", warned,
          [(False, [(RuntimeWarning, "cannot cancel job 'long': it is running")])])
    equal("cancel: others ran", (other.status, long.status), (SUCCESS, SUCCESS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = long.cancel()
    equal("cancel: ended job warns and stays",
          (done, long.status, [str(w.message) for w in caught]),
          (False, SUCCESS, ["cannot cancel job 'long': it is success"]))


def fail_fast(net):
    with net.create_job_pool(quiet=True, fail_fast=True) as pool:
        if MAIN:
            bad = pool.queue(boom, ("first failure",), name="bad")
            gate = pool.queue(nap, (0.5,), name="gate")  # still running when bad failed
            behind = [pool.queue(identity, (i,), deps=[gate], name=f"behind{i}") for i in range(5)]
            for i in range(4 * SIZE):
                pool.queue(nap, (0.01,), name=f"more{i}")
        error = outcome(pool.execute)
    check_workflow_error("fail_fast", error)
    if not MAIN:
        return
    message = summary_of(error)
    cancelled = [j for j in pool.jobs if j.status is CANCELLED]
    equal("fail_fast: summary", message,
          f"1 of {len(pool.jobs)} jobs failed, {len(cancelled)} jobs cancelled:\n"
          f"  job 'bad' failed on rank {bad.rank}: ValueError: first failure")
    equal("fail_fast: only the first failure failed",
          [j.name for j in pool.jobs if j.status is FAILED], ["bad"])
    equal("fail_fast: jobs behind the failure cancelled",
          [(j.status, str(j.error)) for j in behind],
          [(CANCELLED, f"job {j.name!r} was cancelled: fail_fast after job 'bad' failed")
           for j in behind])
    check("fail_fast: every job ended as success or cancelled",
          all(j.status in (SUCCESS, CANCELLED) for j in pool.jobs if j is not bad), pool.jobs)


# --- listeners --------------------------------------------------------------------------


def listeners(net):
    early = Recorder()
    late = Recorder()
    pings = Recorder()
    context = ContextListener()
    with net.create_job_pool(quiet=True, listeners=[early, context]) as pool:
        if MAIN:
            check("listeners: context listener entered with the pool",
                  context.log == ["enter", "SCHEDULING"], context.log)
            first = pool.queue(identity, ("first",), name="first")
            second = pool.queue(identity, ("second",), deps=[first], name="second")
            n_early = len(early.events)
            pool.add_listener(late)
            n_late = len(late.events)
            pool.add_listener(pings, max_wait=0.05)
            third = pool.queue(nap, (0.4,), name="quiet")  # no event for 0.4 s: pings
            fourth = pool.queue(identity, ("fourth",), deps=[third], name="fourth")
        pool.execute()
    if not MAIN:
        return
    jobs = [first, second, third, fourth]
    equal("listeners: event stream order", early.stream_problems(jobs), [])
    # A replay shows each job as it is when replayed: compare (reason, old status).
    equal("listeners: late listener saw the whole stream",
          ([late.steps(j) for j in jobs], [s for _, s in late.pool_statuses()]),
          ([early.steps(j) for j in jobs], [s for _, s in early.pool_statuses()]))
    equal("listeners: late listener replay then the live stream",
          late.events[n_late:], early.events[n_early:])
    check("listeners: context listener exited with the pool",
          context.log[0] == "enter" and context.log[-2:] == ["CLOSING", ("exit", None)],
          context.log)
    statuses = dict((s, i) for i, s in pings.pool_statuses())
    ping_at = [i for i, e in enumerate(pings.events) if e[0] is PING]
    check("listeners: max_wait pings while a job runs",
          ping_at and all(statuses[EXECUTING] < i < statuses[PoolStatus.CLOSING] for i in ping_at),
          (ping_at, statuses))
    check("listeners: no pings without max_wait",
          not any(e[0] is PING for e in early.events + late.events))


def handled_failure(net):
    def handle(progress):
        return (progress.reason is CHANGE and progress.job.status is FAILED
                and progress.job.name == "handled")

    with net.create_job_pool(quiet=True, fail_fast=True) as pool:
        if MAIN:
            pool.add_listener(handle)
            handled = pool.queue(boom, ("expected",), name="handled")
            dependent = pool.queue(identity, (1,), deps=[handled], name="dependent")
            slow = pool.queue(nap, (0.2,), name="slow")
            after = pool.queue(identity, (2,), deps=[slow], name="after")  # no fail_fast
        error = outcome(pool.execute)
    check("handled: no WorkflowError on any rank", error is None, error)
    if MAIN:
        equal("handled: statuses", [j.status for j in (handled, dependent, slow, after)],
              [FAILED, CANCELLED, SUCCESS, SUCCESS])


# --- pool lifecycle ----------------------------------------------------------------------


def two_pools(net):
    node = Node(net, "twice", jobs=2 * SIZE, pause=0.005)
    used = []
    for round_ in range(2):
        with net.create_job_pool(quiet=True) as pool:
            STATE["pool"] = pool
            if MAIN:
                node.queue(pool)
            results = pool.execute(return_results=True)
        if MAIN:
            equal(f"two pools: results of pool {round_}", sorted(v[1] for v in results.values()),
                  list(range(2 * SIZE)))
            used.append({job.rank for job in pool.jobs})
        check(f"two pools: store empty after pool {round_}", pool._cache.values == {})
    used = MPI.bcast(used, root=0)
    equal("two pools: computed once per pool on each rank that ran its jobs",
          COMPUTED["twice"], sum(RANK in ranks for ranks in used))


def caching(net):
    a = Node(net, "cache_a", jobs=4 * SIZE, pause=0.01)
    b = Node(net, "cache_b", jobs=4 * SIZE, depends_on=[a], kind="probe", pause=0.005)
    bystander = Node(net, "bystander", jobs=0)
    key_a, key_b = a.get_node_name(), b.get_node_name()
    seen = []

    def watch(progress):
        # On every event: A's value is required exactly while one of its jobs is open,
        # and the main rank holds it only then.
        if pool.status is not EXECUTING or progress.reason is PING:
            return
        a_open = any(not job.done() for job in pool.get_submissions_of(a))
        required = (key_a, "heavy") in pool.get_required_cache_items()
        seen.append((required, a_open, key_a in cached_nodes()))

    with net.create_job_pool(quiet=True) as pool:
        STATE["pool"] = pool
        if MAIN:
            pool.add_listener(watch)
            a.queue(pool)
            b.queue(pool)
            equal("cache: required before execute", pool.get_required_cache_items(),
                  {(key_a, "heavy"), (key_b, "heavy")})
        pool.execute()
        kept = key_b in cached_nodes() or key_a in cached_nodes()
        check("cache: values of finished nodes freed on every rank", not kept, cached_nodes())
        equal("cache: value of a node without jobs kept until closing",
              bystander.get_node_name() in cached_nodes(), COMPUTED["bystander"] == 1)
        if MAIN:
            equal("cache: nothing required after execute", pool.get_required_cache_items(), set())
    check("cache: store empty after close", pool._cache.values == {}, pool._cache.values)
    ranks = MPI.bcast(
        [{j.rank for j in pool.get_submissions_of(n)} for n in (a, b)] if MAIN else None, root=0
    )
    equal("cache: computed once on each rank that ran the node's jobs",
          (COMPUTED["cache_a"], COMPUTED["cache_b"]),
          (int(RANK in ranks[0]), int(RANK in ranks[1])))
    check("cache: bystander computed at most once", COMPUTED["bystander"] <= 1, COMPUTED)
    if not MAIN:
        return
    check("cache: required exactly while the node has open jobs",
          all(required == a_open for required, a_open, _ in seen), seen)
    check("cache: main rank holds it only while needed",
          all(a_open or not stored for _, a_open, stored in seen), seen)
    check("cache: both phases seen", (True, True) in [s[:2] for s in seen]
          and (False, False) in [s[:2] for s in seen], seen)
    results = [job.result for job in pool.get_submissions_of(b)]
    equal("cache: A's value gone on the rank of every job of B",
          [(r[1], r[2], r[3]) for r in results], [(False, "cache_b", "bystander")] * len(results))


def lambdas_and_closures(net):
    base = 100

    def make_adder(offset):
        def add(network, x):
            return base + offset + x

        return add

    with net.create_job_pool(quiet=True, main_executes=False) as pool:
        if MAIN:
            jobs = [pool.submit(make_adder(i), i) for i in range(4)]
            jobs.append(pool.submit(lambda network: base * 2))
            jobs.append(pool.submit(lambda network, *a, **k: (a, k), 1, 2, key="v"))
        pool.execute()
    if MAIN:
        equal("lambdas and closures: results", [job.result for job in jobs],
              [100, 102, 104, 106, 200, ((1, 2), {"key": "v"})])
        check("lambdas and closures: ran on other ranks", all(job.rank > 0 for job in jobs),
              [job.rank for job in jobs])


def worker_errors(net):
    # main_executes=False: every job runs on another rank, so everything travels.
    with net.create_job_pool(quiet=True, main_executes=False) as pool:
        if MAIN:
            failing = pool.queue(boom, name="boom")
            odd = pool.queue(weird, name="weird")
            lock = pool.queue(make_lock, name="lock")
            gen = pool.queue(make_generator, name="gen")
            arg = pool.queue(takes_anything, (threading.Lock(),), name="arg")
            fine = pool.queue(identity, ("fine",), name="fine")
            after = pool.queue(identity, ("after",), deps=[failing], name="after")
        error = outcome(pool.execute)
    check_workflow_error("worker errors", error)
    if not MAIN:
        return
    lock_text = "TypeError: cannot pickle '_thread.lock' object"
    result_text = "the job's result cannot be sent to another rank: "
    lines = summary_of(error).split("\n")
    unsent = "  job 'arg' failed: JobPoolError: job 'arg' cannot be sent to another rank: "
    equal("worker errors: summary", lines[:-1], [
        "5 of 7 jobs failed, 1 jobs cancelled:",
        f"  job 'boom' failed on rank {failing.rank}: ValueError: boom",
        f"  job 'weird' failed on rank {odd.rank}: RemoteJobError: _pool_helpers.Weird: odd 1 2",
        f"  job 'lock' failed on rank {lock.rank}: JobPoolError: {result_text}{lock_text}",
        f"  job 'gen' failed on rank {gen.rank}: JobPoolError: {result_text}"
        "TypeError: cannot pickle 'generator' object",
    ])
    equal("worker errors: unpicklable argument names the job", lines[-1], unsent + lock_text)
    check("worker errors: arg job failed unsent", arg.status is FAILED and arg.rank is None
          and isinstance(arg.error.__cause__, TypeError), (arg, arg.error))
    cause = failing.error.__cause__
    check("worker errors: remote traceback as __cause__ names the rank",
          failing.rank > 0 and type(cause).__name__ == "RemoteTraceback"
          and f"### rank {failing.rank} of {SIZE} on " in str(cause)
          and "in boom" in str(cause) and str(cause).rstrip().endswith("ValueError: boom"),
          str(cause))
    equal("worker errors: error keeps its type and names the job",
          (type(failing.error), str(failing.error), failing.error.__notes__),
          (ValueError, "boom", [f"raised by job 'boom' on rank {failing.rank}"]))
    check("worker errors: unpicklable exception arrives with its text",
          type(odd.error) is RemoteJobError and str(odd.error) == "_pool_helpers.Weird: odd 1 2"
          and "Weird: odd 1 2" in str(odd.error.__cause__), (odd.error, odd.error.__cause__))
    equal("worker errors: unpicklable results fail their job",
          [(j.status, str(j.error)) for j in (lock, gen)],
          [(FAILED, result_text + lock_text),
           (FAILED, result_text + "TypeError: cannot pickle 'generator' object")])
    equal("worker errors: the others are fine", (fine.status, fine.result[0], after.status),
          (SUCCESS, "fine", CANCELLED))


def same_rules_on_every_rank(net):
    # The default pool: the main rank runs jobs too, and holds them to the same rules.
    with net.create_job_pool(quiet=True) as pool:
        if MAIN:
            results = [pool.queue(make_lock, name=f"lock {i}") for i in range(4 * SIZE)]
            args = [pool.queue(takes_anything, (threading.Lock(),), name=f"arg {i}")
                    for i in range(4 * SIZE)]
        outcome(pool.execute)
    if not MAIN:
        return
    equal("same rules: unpicklable results fail wherever they ran",
          {(j.status, str(j.error)) for j in results},
          {(FAILED, "the job's result cannot be sent to another rank: "
                    "TypeError: cannot pickle '_thread.lock' object")})
    equal("same rules: unpicklable arguments fail before running",
          {(j.status, j.rank) for j in args}, {(FAILED, None)})


# --- schedule() ---------------------------------------------------------------------------


def scheduling(net):
    first_done = threading.Event()
    broken = Node(net, "broken", fail_schedule=True)
    needs_broken = Node(net, "needs_broken", depends_on=[broken])
    needs_needs = Node(net, "needs_needs", depends_on=[needs_broken])
    fine = Node(net, "fine", jobs=2, kind="none")
    after_fine = Node(net, "after_fine", depends_on=[fine], kind="none")
    first = Node(net, "first", kind="none")
    second = Node(net, "second", depends_on=[first], jobs=2, kind="none", gate=first_done)

    def answer(progress):
        if progress.reason is CHANGE and progress.job.status is SUCCESS:
            if progress.job.name == "first[0]":
                first_done.set()

    rec = Recorder(answer)
    with net.create_job_pool(quiet=True) as pool:
        if MAIN:
            pool.add_listener(rec)
            pool.schedule([broken, fine, needs_broken, after_fine, needs_needs, first, second])
        error = outcome(pool.execute)
    check_workflow_error("schedule", error)
    if not MAIN:
        return
    equal("schedule: summary", summary_of(error),
          "3 nodes failed to schedule:\n"
          "  scheduling {root}.test.broken failed: RuntimeError: cannot schedule broken\n"
          "  {root}.test.needs_broken was not scheduled: it depends on {root}.test.broken, "
          "which failed to schedule\n"
          "  {root}.test.needs_needs was not scheduled: it depends on "
          "{root}.test.needs_broken, which failed to schedule")
    check("schedule: errors are JobSchedulingErrors",
          all(type(e) is JobSchedulingError for e in error.exceptions), error.exceptions)
    equal("schedule: other nodes ran", [(j.name, j.status) for j in pool.jobs],
          [(n, SUCCESS) for n in ("fine[0]", "fine[1]", "after_fine[0]", "first[0]",
                                  "second[0]", "second[1]")])
    first_job = pool.get_submissions_of(first)[0]
    added = [i for i, e in enumerate(rec.events)
             if e[0] is ADDED and e[2] in pool.get_submissions_of(second)]
    check("schedule: runs while execute runs", getattr(second, "gate_opened", False)
          and rec.index(first_job, SUCCESS) < min(added), (rec.index(first_job, SUCCESS), added))


# --- many jobs --------------------------------------------------------------------------


def many(net):
    a = Node(net, "many_a", jobs=2000, kind="none")
    b = Node(net, "many_b", jobs=2000, depends_on=[a], kind="none")
    start = time.perf_counter()
    with net.create_job_pool(quiet=True) as pool:
        if MAIN:
            a.queue(pool)
            b.queue(pool)  # every job of b gets pool.get_submissions_of(a): one tuple
        pool.execute()
    elapsed = time.perf_counter() - start
    say(f"INFO 2000x2000 took {elapsed:.2f} s")
    check("2000x2000: fast", elapsed < 20.0, elapsed)
    if MAIN:
        jobs_a, jobs_b = pool.get_submissions_of(a), pool.get_submissions_of(b)
        check("2000x2000: one shared deps tuple", all(job.deps is jobs_a for job in jobs_b))
        check("2000x2000: all succeeded", len(pool.jobs) == 4000
              and all(job.status is SUCCESS for job in pool.jobs))
        check("2000x2000: every job of b after every job of a",
              max(j.ended_at for j in jobs_a) <= min(j.started_at for j in jobs_b))


# --- the seed snippets (services.txt), adapted: a Network(), nodes with queue(pool) -----


class MyStrategy(Node):
    @pool_cache
    def heavy_calculations(self):
        COMPUTED["heavy_calculations"] += 1
        return 5 + 5

    def place(self, chunk, indicators):
        # `heavy_calculations` will be called maximum once on each parallel node
        for i in range(1000):
            self.heavy_calculations()
        return self.heavy_calculations() * chunk

    def work(self, network, i):
        # (this function travels by value: rank_of, not RANK, gives the running rank)
        return (self.place(i, None), rank_of(network))


def seeds(net):
    components = {name: Node(net, name, jobs=SIZE, kind="none")
                  for name in ("seed_granule", "seed_purkinje")}
    with net.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            # Only the main node needs to schedule the jobs
            for component in components.values():
                component.queue(pool)
        # But everyone needs to partake in the execute call
        pool.execute()
    if MAIN:
        check("seed queue: every job ran",
              len(pool.jobs) == 2 * SIZE and all(j.status is SUCCESS for j in pool.jobs))

    with net.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            pool.schedule([*components.values()])
        pool.execute()
    if MAIN:
        check("seed schedule: every job ran",
              len(pool.jobs) == 2 * SIZE and all(j.status is SUCCESS for j in pool.jobs))

    _t = []

    def report_time_elapsed(progress):
        if progress.reason == PoolProgressReason.POOL_STATUS_CHANGE:
            if progress.status == PoolStatus.SCHEDULING:
                _t.append(time.time())
            elif progress.status == PoolStatus.CLOSING:
                _t.append(time.time() - _t[0])
                say(f"INFO Pool execution finished. {_t[-1]:.3f} seconds elapsed.")

    with net.create_job_pool(quiet=True) as pool:
        pool.add_listener(report_time_elapsed)
        job = pool.submit(lambda scaffold: time.sleep(0.05))
        pool.execute()
    if MAIN:
        check("seed listener: elapsed time reported", len(_t) == 2 and _t[1] >= 0.05, _t)
        equal("seed listener: the job ran", job.status, SUCCESS)
    else:
        check("seed listener: no listener and no job on workers",
              _t == [] and job.status is PENDING, (_t, job.status))

    strategy = MyStrategy(net, "seed_mine", jobs=3 * SIZE)
    with net.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            strategy.queue(pool)
        results = pool.execute(return_results=True)
    ranks = MPI.bcast({v[1] for v in results.values()} if MAIN else None, root=0)
    equal("seed pool_cache: computed once on each rank that placed",
          COMPUTED["heavy_calculations"], int(RANK in ranks))
    if MAIN:
        equal("seed pool_cache: results", sorted(v[0] for v in results.values()),
              [10 * i for i in range(3 * SIZE)])


SECTIONS = [
    results_and_order,
    failure_cascade,
    cancellation,
    fail_fast,
    listeners,
    handled_failure,
    two_pools,
    caching,
    lambdas_and_closures,
    worker_errors,
    same_rules_on_every_rank,
    scheduling,
    many,
    seeds,
]


if __name__ == "__main__":
    run_sections(SECTIONS)
