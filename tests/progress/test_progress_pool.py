"""The listeners on a real pool: serially here, under ``mpiexec -n 3`` in the MPI tests."""

import io
import json
import threading
from pathlib import Path

import pytest
from rich.console import Console

from neuroscaffold.network import Network
from neuroscaffold.progress import TraceRecorder, build_report
from neuroscaffold.progress._trace import as_records
from neuroscaffold.services.pool import WorkflowError, create_job_pool
from tests._mpi import run_script
from tests.progress._fakes import submitter
from tests.progress.test_progress_trace import check_trace
from tests._pool_support import WAIT, TestNetwork, identity

SCRIPT = Path(__file__).parent / "scripts" / "progress_run.py"
FAILURES = [
    "job 'golgi chunk 4' failed on rank {}: ValueError: no room for golgi chunk 4",
    "job 'purkinje chunk 8' failed on rank {}: ValueError: no room for purkinje chunk 8",
]


def _ran_on(out: Path) -> dict[str, int]:
    """Which rank each job ran on, as the jobs themselves logged it."""
    ran = {}
    for path in out.glob("ran.*"):
        for name in path.read_text().split("\n"):
            if name:
                assert name not in ran, f"{name} ran twice"
                ran[name] = int(path.suffix[1:])
    return ran


def check_run(out: Path, ranks: int, n_jobs: int = 30) -> dict[str, int]:
    """Check what one run of the script left in ``out``; returns {job: rank}."""
    ran = _ran_on(out)
    assert len(ran) == n_jobs
    # The default listener (no terminal: plain lines) printed on the main rank only.
    log = (out / "stderr.0").read_text().splitlines()
    for r in range(1, ranks):
        assert (out / f"stderr.{r}").read_text() == ""
    for failure in FAILURES:
        name = failure.split("'")[1]
        assert log.count(failure.format(ran[name])) == 1, log
    assert log[-1].startswith(f"finished: {n_jobs}/{n_jobs} jobs, 2 failed, 0 running, "), log
    assert len(log) <= 10, "a few lines, not one per job"
    # The rich display, on a recording console.
    frame = (out / "rich.txt").read_text().split("finished:")[-1]
    total = n_jobs // 3
    for cell in ("granule", "golgi", "purkinje"):
        assert any(
            line.startswith(f"root.placement.{cell}") and f"{total}/{total}" in line
            for line in frame.splitlines()
        ), frame
    assert "failures so far: 2" in frame
    # The trace: every job once, on the rank that ran it, start before end.
    check_trace(out / "run.json", ran)
    timeline = json.loads((out / "timeline.json").read_text())
    assert {name: rank for name, rank, *_ in timeline} == ran
    return ran


def test_serial_run_of_the_script(tmp_path):
    run_script(SCRIPT, None, timeout=60, args=[str(tmp_path)]).check()
    assert set(check_run(tmp_path, ranks=1).values()) == {0}


def test_default_listener_of_a_serial_pool_logs_to_stderr(capsys):
    def job(network, i):
        if i == 3:
            raise KeyError(i)

    with pytest.raises(WorkflowError):
        with create_job_pool(Network()) as pool:
            for i in range(20):
                pool.queue(job, (i,), name=f"job {i}")
            pool.execute()
    err = capsys.readouterr().err.splitlines()
    assert err.count("job 'job 3' failed on rank 0: KeyError: 3") == 1
    assert err[-1].startswith("finished: 20/20 jobs, 1 failed, 0 running, ")


def test_report_from_a_real_pool(tmp_path):
    recorder = TraceRecorder()
    def job(network, n):
        return sum(range(n))

    with create_job_pool(Network(), quiet=True, listeners=[recorder]) as pool:
        for i in range(40):
            pool.queue(job, (5000 * (1 + i % 4),), submitter=submitter(f"root.s{i % 4}"), name=f"j{i}")
        pool.execute()
    # The pool's own timeline and the recorder agree.
    from_timeline = {r.name: (r.rank, r.start, r.end) for r in as_records(pool.timeline)}
    assert from_timeline == {r.name: (r.rank, r.start, r.end) for r in recorder.records}
    png = build_report(pool.timeline, tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = build_report(recorder, tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "root.s3" in html


def test_rich_display_on_a_real_pool():
    console = Console(record=True, force_terminal=True, width=100, file=io.StringIO())
    from neuroscaffold.progress import RichProgress

    with create_job_pool(Network(), quiet=True, listeners=[RichProgress(console)]) as pool:
        for i in range(50):
            pool.submit(lambda network, i: i, i)
        pool.execute()
    assert "finished: 50/50 jobs, 0 failed, 0 running" in console.export_text()


def test_statistics_say_while_jobs_are_still_being_added():
    # Issue 16.5: the public field the log waits on (jobs queued from another thread
    # are not counted until the pool takes them in).
    network = TestNetwork()
    with network.create_job_pool(quiet=True) as pool:
        thread = threading.Thread(target=lambda: pool.queue(identity, (1,)))
        thread.start()
        thread.join(timeout=WAIT)
        assert pool.statistics().scheduling
        pool.execute()
        assert not pool.statistics().scheduling
