"""The first moments of a compile (issue 16.1, 16.4, 16.12, 16.13; the signals at the
first moments of a parallel compile are in ``test_interrupts.py``): an error on one
rank only, before any pool exists, is printed by that rank, headed ``[rank R]``, and
ends the run; SIGHUP stops a compile like SIGTERM; an interrupt never leaves a
manifest without its stub; typed errors, not words, decide what failed.

Every moment is drawn from a fixed seed; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from neuroscaffold.storage import canonical_contents
from tests._mpi import base_env
from tests.storage._crash import compile_cmd, compile_reference, finish, run, show, start, \
    write_config
from tests.storage.test_interrupts import kept_first_moments_promise as _kept_promise

AFTER_SIGNAL = 20.0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return compile_reference(tmp_path_factory.mktemp("first-moments"))


def _clean(out: Path) -> None:
    import shutil

    out.unlink(missing_ok=True)
    shutil.rmtree(f"{out}.parts", ignore_errors=True)


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
