"""The plain log: a line every few seconds and at phase changes, each failure once."""

import io
import re
import threading

import pytest

from neuroscaffold.progress import LogProgress
from tests.progress._fakes import Clock, FakePool, FakeWorkflow, run_many

LINE = re.compile(
    r"^(?P<label>[\w ]+): (?P<ended>\d+)/(?P<total>\d+) jobs, (?P<failed>\d+) failed, "
    r"(?:\d+ cancelled, )?(?P<running>\d+) running, (?P<elapsed>[\d a-z]+) elapsed"
    r"(?:, ~(?P<left>[\d a-z]+) left)?$"
)


def _log(interval=5.0, **kw):
    clock = Clock(0.0)
    out = io.StringIO()
    log = LogProgress(out, interval=interval, clock=clock, heartbeat=False)
    return log, clock, out


def test_large_pool_writes_a_few_lines_not_one_per_job():
    log, clock, out = _log()
    run_many(log, 20_000, clock, 0.001)  # 20 s in all
    lines = out.getvalue().splitlines()
    # the start of execution, one line per 5 s, the end
    assert 5 <= len(lines) <= 7, lines
    assert all(LINE.match(line) for line in lines), lines
    assert lines[0] == "executing: 0/20000 jobs, 0 failed, 0 running, 0 s elapsed"
    assert lines[-1] == "finished: 20000/20000 jobs, 0 failed, 0 running, 20 s elapsed"


def test_line_after_interval_with_an_injected_clock():
    log, clock, out = _log(interval=5.0)
    pool = FakePool(log).open()
    jobs = [pool.add(f"j{i}") for i in range(10)]
    pool.execute()
    out.truncate(0), out.seek(0)
    clock.now = 4.9
    pool.run(jobs[0], 1, 0.0, 2.0)
    pool.start(jobs[1], 2, 3.0)
    assert out.getvalue() == ""
    clock.now = 5.0
    pool.cancel(jobs[2])  # any event, once the interval passed
    match = LINE.match(out.getvalue().strip())
    assert match and match.group("ended", "total", "running") == ("2", "10", "1"), out.getvalue()
    # 8 jobs left x 2 s, less the 2 s jobs[1] already ran, over 2 ranks
    assert match.group("elapsed", "left") == ("5 s", "7 s")


def test_the_first_line_waits_for_jobs_still_being_added():
    # Issue 16.5: the log reads the pool's public ``statistics().scheduling`` (it read
    # a private field that no longer existed, so it never waited).
    log, clock, out = _log(interval=5.0)
    pool = FakePool(log).open()
    pool.add("j0")
    pool.scheduling = True
    pool.execute()
    assert out.getvalue() == ""  # held: more jobs are coming
    pool.add("j1")
    pool.scheduling = False
    pool.add("j2")
    clock.now = 0.1
    log._write_due()  # the heartbeat's next look (every 0.1 s while jobs are added)
    assert out.getvalue() == "executing: 0/3 jobs, 0 failed, 0 running, 0 s elapsed\n"


def test_each_failure_once_with_name_rank_and_error():
    log, clock, out = _log()
    pool = FakePool(log).open()
    a, b = pool.add("place a"), pool.add("place b")
    pool.execute()
    pool.run(a, 2, 0.0, 1.0, error=ValueError("density must be positive"))
    pool.run(b, 1, 0.0, 1.0)
    pool.close()
    text = out.getvalue()
    failure = "job 'place a' failed on rank 2: ValueError: density must be positive"
    assert text.count(failure) == 1
    assert text.splitlines()[-1] == "finished: 2/2 jobs, 1 failed, 0 running, 0 s elapsed"


def test_phase_change_writes_a_line():
    log, clock, out = _log(interval=1000.0)
    workflow = FakeWorkflow("placement", "connectivity")
    pool = FakePool(log, workflow=workflow).open()
    jobs = [pool.add(f"j{i}") for i in range(4)]
    pool.execute()
    pool.run(jobs[0], 1, 0.0, 1.0)
    workflow.phase = "connectivity"
    pool.run(jobs[1], 1, 1.0, 2.0)
    pool.run(jobs[2], 1, 2.0, 3.0)
    pool.close()
    labels = [LINE.match(line).group("label") for line in out.getvalue().splitlines()]
    assert labels == ["placement", "connectivity", "connectivity finished"]


def test_heartbeat_writes_while_no_event_comes():
    # One long job, no events: the heartbeat thread writes the periodic line anyway.
    written = threading.Event()

    class Stream(io.StringIO):
        def write(self, text):
            if "running" in text:
                written.set()
            return super().write(text)

    clock = Clock(0.0)
    stream = Stream()
    log = LogProgress(stream, interval=0.01, clock=clock)
    with log:
        pool = FakePool(log).open()
        pool.start(pool.add("long"), 1, 0.0)
        stream.truncate(0), stream.seek(0)
        written.clear()
        clock.now = 3600.0
        assert written.wait(10), "no heartbeat line"
    assert "scheduling: 0/1 jobs, 0 failed, 1 running, 60 min elapsed" in stream.getvalue()
    assert log._beat is None  # the thread was joined on exit


def test_nothing_before_the_pool_starts():
    log, clock, out = _log()
    log._write_due()
    assert out.getvalue() == ""


def test_a_broken_stream_silences_the_log_not_the_run():
    class Broken(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    log = LogProgress(Broken(), clock=Clock(0.0), heartbeat=False)
    pool = FakePool(log).open()
    job = pool.add("j")
    with pytest.warns(RuntimeWarning, match=r"^progress log disabled: cannot write to it: "):
        pool.execute()
    pool.run(job, 1, 0.0, 1.0, error=ValueError("x"))
    pool.close()
    assert log.stream is None and log.stats.snapshot().failed == 1
