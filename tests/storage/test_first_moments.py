"""The first moments of a parallel compile (issue 16.6, 16.12, 16.13): a stop signal
at any moment from the program's first line ends every rank within seconds with one
line and exit code 130, and leaves no file, or an unfinished one that resumes; a
signal that reaches a rank even before (while Python itself starts) never hangs the
run. An error on one rank only, before any pool exists, is printed by that rank,
headed ``[rank R]``, and ends the run. SIGHUP stops a compile like SIGTERM.

Every moment is drawn from a fixed seed; every wait is bounded.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from neuroscaffold.storage import canonical_contents
from tests._mpi import base_env
from tests.storage._crash import (compile_cmd, compile_reference, finish, interrupted_lines,
                                  library_noise, rank_pids, run, show, start, write_config)

#: the line of an interrupt before anything was written
NOTHING_WRITTEN = "neuroscaffold: interrupted before the compile started: nothing was written"
AFTER_SIGNAL = 20.0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return compile_reference(tmp_path_factory.mktemp("first-moments"))


def _clean(out: Path) -> None:
    import shutil

    out.unlink(missing_ok=True)
    shutil.rmtree(f"{out}.parts", ignore_errors=True)


def _mpi_started(pid: int) -> bool:
    """Whether the rank ``pid`` loaded the MPI library: it is then past the program's
    first line (the library is loaded after the stop signals are handled)."""
    try:
        return "libmpi" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _wait_for_program(proc, k: int, timeout: float = 30.0) -> bool:
    """Wait until every rank of ``proc`` runs the program (True), or ``proc`` ended."""
    deadline = time.monotonic() + timeout
    ranks = rank_pids(proc, k)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if len(ranks) == k and all(_mpi_started(pid) for pid in ranks):
            return True
        if len(ranks) < k:
            ranks = rank_pids(proc, k, timeout=0.5)
        time.sleep(0.001)
    raise AssertionError(f"the ranks did not start within {timeout} s")


def _kept_promise(outcome, out: Path, config: Path, expected, what: str) -> str:
    """The promise of the first moments; returns what happened."""
    assert not library_noise(outcome.stderr + outcome.stdout), f"{what}\n{outcome.describe()}"
    if outcome.returncode == 0:
        assert canonical_contents(out) == expected, what
        return "finished"
    assert outcome.returncode == 130, f"{what}: exit code\n{outcome.describe()}"
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and len(interrupted_lines(outcome.stderr)) == 1, \
        f"{what}: not one line\n{outcome.describe()}"
    if lines[0] == NOTHING_WRITTEN or not out.exists():
        assert not out.exists() or show(out).returncode == 0, what
        if not Path(f"{out}.parts", "manifest.json").exists():
            assert not out.exists(), f"{what}: a file without its parts"
            return "nothing written"
    shown = show(out)
    assert shown.returncode == 0 and "UNFINISHED" in shown.stdout, \
        f"{what}: not an unfinished network\n{shown.describe()}"
    resumed = run(compile_cmd(config, out, None, "--resume"), timeout=90)
    assert resumed.returncode == 0, f"{what}: resume\n{resumed.describe()}"
    assert canonical_contents(out) == expected, f"{what}: resumed, not the reference"
    return "resumed"


@pytest.mark.timeout(400)
@pytest.mark.parametrize("k", [2, 3])
def test_a_signal_in_the_first_moments_of_the_program_ends_every_rank_with_one_line(
        reference, tmp_path, k):
    config, expected, _ = reference
    out = tmp_path / "net.hdf5"
    rng = random.Random(1600 + k)
    failures, seen = [], []
    for i in range(10):
        _clean(out)
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        delay = rng.uniform(0, 0.1)
        what = f"K={k} run {i}: {signal.Signals(signum).name} {delay * 1000:.0f} ms after " \
               "every rank started the program"
        proc = start(compile_cmd(config, out, k))
        if _wait_for_program(proc, k):
            time.sleep(delay)
            if proc.poll() is None:
                os.kill(proc.pid, signum)
        try:
            seen.append(_kept_promise(finish(proc, AFTER_SIGNAL, what), out, config,
                                      expected, what))
        except AssertionError as failure:
            failures.append(str(failure))
    assert not failures, "\n\n".join(failures)
    assert seen.count("finished") < 10, seen


@pytest.mark.timeout(400)
@pytest.mark.parametrize("k", [2, 3])
def test_a_signal_in_the_first_100_ms_after_mpiexec_starts_never_hangs(reference, tmp_path, k):
    """Before a rank runs the program's first line (Python itself starts), the signal
    acts as Python and the launcher make it; it must still end the run within the
    bound and leave no file, or one that resumes."""
    config, expected, _ = reference
    out = tmp_path / "net.hdf5"
    rng = random.Random(1700 + k)
    failures = []
    for i in range(10):
        _clean(out)
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        delay = rng.uniform(0, 0.1)
        what = f"K={k} run {i}: {signal.Signals(signum).name} to mpiexec {delay * 1000:.0f} ms in"
        proc = start(compile_cmd(config, out, k))
        time.sleep(delay)
        os.kill(proc.pid, signum)
        try:
            outcome = finish(proc, AFTER_SIGNAL, what)
            if outcome.returncode == 130:
                _kept_promise(outcome, out, config, expected, what)
            elif outcome.returncode == 0:
                assert canonical_contents(out) == expected, what
            else:
                assert not out.exists() or show(out).returncode == 0, what
        except AssertionError as failure:
            failures.append(str(failure))
    assert not failures, "\n\n".join(failures)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("k", [2, 3])
def test_an_import_that_fails_on_one_rank_only_is_printed_by_that_rank(tmp_path, k):
    module = tmp_path / "onlyhere.py"
    module.write_text(
        "import os\n"
        "if os.environ.get('PMI_RANK') == '1':\n"
        "    raise ImportError('no libfoo on this node')\n"
        "from neuroscaffold.placement import RandomPlacement as Here\n")
    config = write_config(tmp_path)
    text = config.read_text().replace("strategy: random", "strategy: onlyhere.Here", 1)
    config.write_text(text)
    out = tmp_path / "net.hdf5"
    env = base_env()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    outcome = run(compile_cmd(config, out, k), timeout=60, env=env)
    assert outcome.returncode == 1, outcome.describe()
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[rank 1] neuroscaffold: error: ") \
        and "no libfoo on this node" in lines[0], outcome.describe()
    assert not out.exists()


@pytest.mark.timeout(120)
def test_sighup_stops_a_compile_like_sigterm(reference, tmp_path):
    config, expected, duration = reference
    out = tmp_path / "net.hdf5"
    proc = start(compile_cmd(config, out))
    deadline = time.monotonic() + 30
    while not Path(f"{out}.parts", "manifest.json").exists() and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(duration * 0.2)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGHUP)
    outcome = finish(proc, AFTER_SIGNAL, "SIGHUP")
    if outcome.returncode != 0:
        assert outcome.returncode == 130, outcome.describe()
        assert len(outcome.stderr.strip().splitlines()) == 1, outcome.describe()
    _kept_promise(outcome, out, config, expected, "SIGHUP")


def test_an_interrupt_while_the_session_opens_never_leaves_a_manifest_without_its_stub(
        reference, tmp_path, monkeypatch):
    """Ctrl-C between the manifest and the stub (issue 16.1): held until the session
    is open, then the compile stops with the stub in place, and resumes."""
    from neuroscaffold import CompileInterrupted, Network
    from neuroscaffold.storage import _storage

    config, expected, _ = reference
    out = tmp_path / "net.hdf5"
    stub = _storage.write_stub

    def interrupted_stub(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C now: the manifest is written
        time.sleep(0.05)  # the handler runs here, before the stub, without the fix
        return stub(*args, **kwargs)

    monkeypatch.setattr(_storage, "write_stub", interrupted_stub)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(CompileInterrupted):
            Network(config, out).compile(quiet=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.setattr(_storage, "write_stub", stub)
    shown = show(out)
    assert shown.returncode == 0 and "UNFINISHED" in shown.stdout, shown.describe()
    resumed = run(compile_cmd(config, out, None, "--resume"), timeout=90)
    assert resumed.returncode == 0, resumed.describe()
    assert canonical_contents(out) == expected


def test_typed_errors_decide_what_failed_not_their_text():
    """A full disk and an interrupt are recognised by type (issue 16.4); words in a
    message decide nothing."""
    from neuroscaffold import _writing
    from neuroscaffold.exceptions import DiskFullError, JobPoolError, WorkflowError
    from neuroscaffold.services.pool._protocol import Cause

    full = DiskFullError("x.data: the device is full")
    assert _writing._storage_failure(WorkflowError("1 failed", [full])) == str(full)
    worded = JobPoolError("StorageError: no space left on the device (KeyboardInterrupt)")
    assert _writing._storage_failure(WorkflowError("1 failed", [worded])) is None
    assert not _writing._is_interrupt(WorkflowError("1 failed", [worded]))
    # what STOP tells the workers is typed too
    assert Cause.of(full) is Cause.DISK_FULL and Cause.of(worded) is Cause.ERROR
    assert isinstance(Cause.DISK_FULL.error("line"), DiskFullError)
    stopped = WorkflowError("1 failed", [Cause.INTERRUPT.error("job 'x' failed")])
    assert _writing._is_interrupt(stopped)
