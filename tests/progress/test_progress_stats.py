"""Counting, naming and the time estimate shared by both displays."""

import pytest

from neuroscaffold.progress import ProgressStats
from neuroscaffold.progress._stats import error_text, format_duration, job_group
from tests.progress._fakes import (
    Clock,
    FakeJob,
    FakePool,
    FakeWorkflow,
    JobStatus,
    submitter,
    PoolProgressReason,
)


def _stats(clock=None):
    stats = ProgressStats(clock or Clock())
    return stats, FakePool(stats.update).open()


def test_counts_per_group_running_and_failures():
    stats, pool = _stats()
    a, b = submitter("root.placement.a"), submitter("root.placement.b")
    jobs = [pool.add(f"a{i}", a) for i in range(3)] + [pool.add("b0", b)]
    pool.execute()
    pool.run(jobs[0], 1, 1000.0, 1002.0)
    pool.run(jobs[1], 2, 1000.0, 1001.0, error=ValueError("bad value\nmore"))
    pool.start(jobs[3], 1, 1003.0)
    pool.cancel(jobs[2])
    snap = stats.snapshot()
    assert [(g.name, g.total, g.ended, g.failed) for g in snap.groups] == [
        ("root.placement.a", 3, 3, 1),
        ("root.placement.b", 1, 0, 0),
    ]
    assert (snap.total, snap.ended, snap.failed, snap.cancelled, snap.n_running) == (4, 3, 1, 1, 1)
    assert [(r.name, r.rank, r.started_at) for r in snap.running] == [("b0", 1, 1003.0)]
    failures = [f.describe() for f in snap.failures]
    assert failures == ["job 'a1' failed on rank 2: ValueError: bad value"]


def test_late_events_count_each_job_once():
    # The RUNNING event arrives when the job already succeeded; then the SUCCESS event.
    stats, pool = _stats()
    job = pool.add("late", submitter("n"))
    job.status, job.rank, job.started_at, job.ended_at = JobStatus.SUCCESS, 1, 5.0, 6.0
    for old in (JobStatus.QUEUED, JobStatus.RUNNING):
        pool._emit(PoolProgressReason.JOB_STATUS_CHANGE, job, old)
    snap = stats.snapshot()
    assert (snap.ended, snap.n_running, snap.groups[0].ended) == (1, 0, 1)


def test_jobs_the_pool_ended_without_an_event_count():
    # The counts are the pool's (its statistics), whatever events came.
    stats, pool = _stats()
    job = pool.add("aborted")
    pool.start(job, 1, 1.0)
    job.status = JobStatus.ABORTED  # the pool aborts without an event
    pool.close()
    snap = stats.snapshot()
    assert (snap.ended, snap.cancelled, snap.aborted, snap.n_running) == (1, 0, 1, 0)
    assert snap.summary().startswith("stopped: 1/1 jobs, 0 failed, 1 aborted")


def test_counts_come_from_the_pool_not_from_events():
    # Issue 16.5: one engine. A real pool sends a display no job events at all; the
    # counts, the running jobs and the estimate are read from its statistics.
    clock = Clock(100.0)
    stats, pool = _stats(clock)
    node = submitter("g")
    jobs = [pool.add(f"j{i}", node) for i in range(4)]
    pool.execute()
    pool.listeners.clear()  # no event from here on
    for job in jobs[:2]:
        job.status, job.rank, job.started_at, job.ended_at = JobStatus.SUCCESS, 1, 90.0, 93.0
    jobs[2].status, jobs[2].rank, jobs[2].started_at = JobStatus.RUNNING, 1, 99.0
    snap = stats.snapshot()
    assert (snap.ended, snap.n_running, snap.groups[0].ended) == (2, 1, 2)
    # 2 jobs left x 3 s, less the 1 s the running one did, over 2 ranks
    assert snap.eta == pytest.approx((2 * 3 - 1) / 2) and snap.mean == pytest.approx(3.0)


def test_group_names():
    class Plain:
        pass

    def place_chunk(network):
        pass

    assert job_group(FakeJob(0, "x", submitter("root.placement.granule"))) == "root.placement.granule"
    assert job_group(FakeJob(0, "x", Plain())) == "Plain"
    no_submitter = FakeJob(0, "place_chunk#0")
    no_submitter.fn = place_chunk
    assert job_group(no_submitter) == "test_group_names.<locals>.place_chunk"
    assert job_group(FakeJob(0, "just a name")) == "just a name"


def test_eta_from_measured_durations_over_ranks():
    clock = Clock(100.0)
    stats, pool = _stats(clock)
    node = submitter("g")
    jobs = [pool.add(f"j{i}", node) for i in range(10)]
    pool.execute()
    assert stats.snapshot().eta is None  # nothing measured yet
    pool.run(jobs[0], 1, 90.0, 92.0)  # 2 s each, on two ranks
    pool.run(jobs[1], 2, 90.0, 92.0)
    # 8 jobs left x 2 s / 2 ranks
    assert stats.snapshot().eta == pytest.approx(8.0)
    pool.start(jobs[2], 1, 99.0)  # running for 1 s already
    assert stats.snapshot().eta == pytest.approx((8 * 2 - 1) / 2)


def test_summary_line_and_phase_label():
    clock = Clock(0.0)
    stats, pool = _stats(clock)
    pool.workflow = FakeWorkflow("placement", "connectivity")
    jobs = [pool.add(f"j{i}") for i in range(5000)]
    pool.execute()
    for i, job in enumerate(jobs[:1204]):
        pool.run(job, 1 + i % 2, 0.0, 0.05, error=ValueError("x") if i < 3 else None)
    pool.start(jobs[1204], 1, 40.0)
    pool.start(jobs[1205], 2, 40.0)
    clock.now = 41.0
    line = stats.snapshot().summary()
    assert line.startswith("placement: 1204/5000 jobs, 3 failed, 2 running, 41 s elapsed, ~")
    assert line.endswith(" min left")


def test_summary_line_names_jobs_that_run_long():
    # Issue 11.3: jobs of 0.05 s; one runs for 41 s, one for 1 s (not long yet).
    clock = Clock(0.0)
    stats, pool = _stats(clock)
    jobs = [pool.add(f"j{i}") for i in range(100)]
    pool.execute()
    for i, job in enumerate(jobs[:50]):
        pool.run(job, 1, 0.0, 0.05)
    pool.start(jobs[50], 2, 0.0)
    pool.start(jobs[51], 1, 40.0)
    clock.now = 41.0
    line = stats.snapshot().summary()
    assert line.endswith("; running long: job 'j50' on rank 2 for 41 s"), line


def test_without_a_finished_job_a_job_runs_long_after_a_minute():
    clock = Clock(0.0)
    stats, pool = _stats(clock)
    jobs = [pool.add(f"j{i}") for i in range(3)]
    pool.execute()
    pool.start(jobs[0], 1, 0.0)
    clock.now = 59.0
    assert "running long" not in stats.snapshot().summary()
    clock.now = 61.0
    assert stats.snapshot().summary().endswith("; running long: job 'j0' on rank 1 for 61 s")


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.4, "0 s"),
        (41, "41 s"),
        (89, "89 s"),
        (150, "2 min"),
        (5399, "90 min"),
        (3 * 3600 + 300, "3 h 05 min"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_error_text():
    assert error_text(None) is None
    assert error_text(KeyError("k")) == "KeyError: 'k'"
    assert error_text(RuntimeError()) == "RuntimeError"
    assert error_text("already text\nsecond line") == "already text"
