"""A job runs exactly once, even when the pool takes jobs back from a rank (issue 16.2,
16.13): the moments that used to run a job twice are forced with injected waits.

Every job appends one line to a file shared by the ranks, so a job that ran twice
(here and on another rank, or twice on one) shows as two lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from neuroscaffold import MPI
from neuroscaffold.services.pool import JobStatus, _dispatch
from tests._mpi import mpi_matrix

pytestmark = pytest.mark.timeout(120)
BOUND = 20.0  # seconds: every wait below gives up after this (a failure, not a hang)


def _wait_for(path: Path, bound: float = BOUND) -> bool:
    deadline = time.monotonic() + bound
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def marked(network, folder, tag, role):
    """A job that records that it ran. ``stuck`` waits until the main rank releases it;
    ``stop`` stops its own process (SIGSTOP) until the test resumes it; a job that
    starts after the release waits until the main rank has taken jobs back."""
    folder = Path(folder)
    with open(folder / "runs", "a") as f:
        f.write(f"{tag} {MPI.get_rank()}\n")
    if role == "stuck":
        _wait_for(folder / "release")
    elif role == "stop":
        (folder / "stopped.tmp").write_text(str(os.getpid()))
        os.replace(folder / "stopped.tmp", folder / "stopped")
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        (folder / f"started-{tag}").touch()
        if (folder / "release").exists():
            _wait_for(folder / "sent")
        time.sleep(0.02)
    return tag


def _runs(folder: Path) -> dict[int, list[int]]:
    runs: dict[int, list[int]] = {}
    for line in (folder / "runs").read_text().splitlines():
        tag, rank = map(int, line.split())
        runs.setdefault(tag, []).append(rank)
    return runs


@contextlib.contextmanager
def _patched(owner, **values):
    originals = {name: getattr(owner, name) for name in values}
    for name, value in values.items():
        setattr(owner, name, value)
    try:
        yield originals
    finally:
        for name, value in originals.items():
            setattr(owner, name, value)


def _run(world, roles, hook, main_executes=True):
    """Run one job per role (tag = index) with ``hook`` wrapped around the main rank's
    stall detection; return (jobs, runs) on the main rank."""
    folder = world.tmp_path
    if world.main:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "runs").touch()
    MPI.barrier()
    found: dict = {}
    original = _dispatch._Dispatcher.look_for_stalls

    def look_for_stalls(self):
        hook(self, found["jobs"], folder, original)

    fast = dict(_OVERRUN_MIN=0.5, _STALL_CHECK_EVERY=0.05)
    with _patched(_dispatch, **fast), _patched(_dispatch._Dispatcher, look_for_stalls=look_for_stalls):
        pool = world.network.create_job_pool(quiet=True, main_executes=main_executes)
        with pool:
            if pool.is_main():
                if world.size == 1:  # a dispatcher beside the jobs, as in parallel
                    pool.add_listener(lambda *args: None, max_wait=0.1)
                found["jobs"] = [
                    pool.queue(marked, (str(folder), tag, role), name=f"job {tag} {role}")
                    for tag, role in enumerate(roles)
                ]
            pool.execute()
    if not world.main:
        return None, None
    return found["jobs"], _runs(folder)


def _check_once(jobs, runs) -> None:
    assert all(job.status is JobStatus.SUCCESS for job in jobs), [job.status for job in jobs]
    twice = {tag: ranks for tag, ranks in runs.items() if len(ranks) != 1}
    assert not twice, f"jobs run more than once (tag: ranks): {twice}"
    assert sorted(runs) == list(range(len(jobs)))


def _take_back_after_the_next_start(self, jobs, folder, original):
    """The moment that used to run a job twice: the stuck job ends and the one behind
    it starts on its rank, just as the main rank decides to take it back."""
    stuck = next((job for job in jobs if job.name.endswith("stuck")), None)
    if stuck is not None and not (folder / "release").exists():
        for target in self.targets:
            queue = list(target.jobs.values())
            if (len(queue) >= 2 and queue[0] is stuck and stuck.status is JobStatus.RUNNING
                    and time.time() - stuck.started_at > _dispatch._OVERRUN_MIN):
                behind = queue[1]
                (folder / "release").touch()
                # It has started there; the main rank has not heard it yet.
                assert _wait_for(folder / f"started-{jobs.index(behind)}")
                self.next_stall_check = 0.0  # look now
                original(self)
                (folder / "sent").touch()
                return
    original(self)


@mpi_matrix(1, 2, 3, 4)
def test_a_job_taken_back_as_it_starts_runs_once(world):
    # Issue 16.2: serially the main rank's job thread takes the job behind the stuck
    # one as the dispatcher takes it back (it put it back without the lock, unaware
    # it was taken); in parallel the RECALL reaches the worker after that job started
    # (the dispatcher put it back without waiting for the answer).
    roles = ["stuck"] + ["plain"] * 11
    jobs, runs = _run(world, roles, _take_back_after_the_next_start,
                      main_executes=world.size == 1)
    if world.main:
        _check_once(jobs, runs)
        assert (world.tmp_path / "sent").exists()  # the moment was reached


@mpi_matrix(2, 3, 4)
def test_a_job_the_main_ranks_thread_took_runs_once(world):
    # Issue 16.2: the main rank's job thread takes the job behind the stuck one as the
    # dispatcher takes it back; that job went to another rank as well. Each other rank
    # takes two jobs first, so the main rank's thread gets the stuck one.
    roles = ["plain"] * (2 * world.size - 2) + ["stuck"] + ["plain"] * 3
    jobs, runs = _run(world, roles, _take_back_after_the_next_start, main_executes=True)
    if world.main:
        _check_once(jobs, runs)
        assert jobs[roles.index("stuck")].rank == 0
        assert (world.tmp_path / "sent").exists()


def _resume_once_recalled(self, jobs, folder, original):
    """SIGCONT the stopped rank once the main rank has asked it for its jobs (bounded:
    a safety thread resumes it anyway)."""
    original(self)
    stopped = folder / "stopped"
    if not stopped.exists() or (folder / "resumed").exists():
        return
    pid = int(stopped.read_text())
    target = next(t for t in self.ranks if jobs[0].id in t.jobs or t.stalled_on == jobs[0].id)
    if target.stalled_on is None:
        return
    # Its queued jobs were asked back while it is stopped; nothing of them ran yet.
    recalled = [job for job in target.jobs.values() if job is not jobs[0]]
    outbox = getattr(self, "recalls", None) or self.outbox  # RECALL's own tag, or not
    assert outbox.wait(bound=BOUND)
    (folder / "recalled").write_text(" ".join(str(jobs.index(job)) for job in recalled))
    ran = _runs(folder)
    (folder / "ran-while-stopped").write_text(
        " ".join(str(jobs.index(job)) for job in recalled if jobs.index(job) in ran))
    (folder / "resumed").touch()
    os.kill(pid, signal.SIGCONT)


@mpi_matrix(2, 3, 4)
def test_a_stopped_ranks_jobs_are_asked_back_and_run_once(world):
    # Issue 16.13: a rank stopped (SIGSTOP) while it holds jobs is asked for them; it
    # cannot answer while stopped, so none of them runs elsewhere meanwhile (whether it
    # started one just before it stopped cannot be known). When it resumes, it gives
    # back those it had not started when the request reaches it (which depends on MPI's
    # delivery, so it is not asserted here), and runs the others: each runs once.
    pids = MPI.allgather(os.getpid())
    folder = world.tmp_path

    def safety():
        if _wait_for(folder / "stopped", BOUND) and not _wait_for(folder / "resumed", BOUND):
            os.kill(int((folder / "stopped").read_text()), signal.SIGCONT)

    if world.main:
        threading.Thread(target=safety, daemon=True).start()
    # The stopping job first, alone in its batch; its rank gets the next job as well.
    roles = ["stop"] + ["plain"] * (4 * world.size)
    jobs, runs = _run(world, roles, _resume_once_recalled, main_executes=True)
    if not world.main:
        return
    _check_once(jobs, runs)
    assert (folder / "resumed").exists(), "the stopped rank was never asked for its jobs"
    stopped_rank = pids.index(int((folder / "stopped").read_text()))
    recalled = [int(tag) for tag in (folder / "recalled").read_text().split()]
    assert recalled, "nothing was queued on the stopped rank"
    assert runs[0] == [stopped_rank]
    # Nothing it held ran elsewhere while it was stopped (checked as it resumed).
    assert (folder / "ran-while-stopped").read_text() == ""
