"""``kill -9`` at random moments of a compile (the serial process, one rank of
``mpiexec -n 2``, ``mpiexec`` itself at ``-n 3``): the network path is never corrupt
(``show`` opens it: unfinished, or absent when no stub was written yet) and
``--resume``, at the same or another rank count, gives the file of an uninterrupted
compile. A resume with another configuration is refused and keeps the parts.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

from neuroscaffold.storage import canonical_contents
from tests.storage._crash import (
    compile_reference,
    compile_cmd,
    finish,
    kill_group,
    rank_pids,
    run,
    show,
    start,
)

#: How long the other ranks (or orphans) may live on after a rank or mpiexec is killed.
AFTER_KILL = 20.0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The example configuration, its uninterrupted serial compile, and its duration."""
    return compile_reference(tmp_path_factory.mktemp("kill-reference"))


def _clean(out: Path) -> None:
    if out.exists():
        out.unlink()
    shutil.rmtree(Path(f"{out}.parts"), ignore_errors=True)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids among ``pids`` still alive after ``timeout`` s (then SIGKILLed)."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return [proc.pid for proc in alive]


def _check_and_resume(out: Path, config: Path, expected, resume_n, what: str) -> str:
    """After a kill: NET is absent, unfinished or complete (never damaged); then
    ``--resume`` gives the reference."""
    if out.exists():
        shown = show(out)
        assert shown.returncode == 0, f"{what}: show fails on the killed network\n{shown.describe()}"
        assert "Traceback" not in shown.stderr + shown.stdout, shown.describe()
        first = shown.stdout.splitlines()[0] if shown.stdout else ""
        if "UNFINISHED" in first:
            assert f"in {out}: UNFINISHED, an unfinished compile: " in first, shown.describe()
            state = "unfinished"
        else:
            # Killed after the new file replaced the stub: it must be the whole network.
            assert canonical_contents(out) == expected, \
                f"{what}: a complete-looking network that is not the reference\n{shown.stdout}"
            state = "complete"
            if not Path(f"{out}.parts").exists():
                # Finished before the kill: there is nothing to resume, and --resume says so.
                refused = run(compile_cmd(config, out, resume_n, "--resume"), timeout=60)
                assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
                    f"neuroscaffold: error: {out}: nothing to resume: the network is complete"
                ], refused.describe()
                assert canonical_contents(out) == expected
                return state
    else:
        state = "absent"
    resumed = run(compile_cmd(config, out, resume_n, "--resume"), timeout=90)
    assert resumed.returncode == 0, \
        f"{what} (state {state}): resume at n={resume_n} failed\n{resumed.describe()}"
    assert "Traceback" not in resumed.stderr, resumed.describe()
    assert not Path(f"{out}.parts").exists(), f"{what}: the resume left the parts"
    assert canonical_contents(out) == expected, \
        f"{what} (state {state}): resumed at n={resume_n}, not the reference contents"
    return state


def _loop(reference, tmp_path, ranks, kill, seed, resume_other) -> None:
    config, expected, duration = reference
    out = tmp_path / "net.hdf5"
    rng = random.Random(seed)
    failures, states = [], []
    for i in range(10):
        _clean(out)
        # the compile runs about twice as fast on 2 ranks or more (2 cores): the moments
        # span the run at that rank count, not the serial run
        delay = rng.uniform(0.0, duration * 1.05 / min(ranks or 1, 2))
        resume_n = resume_other if i % 2 else ranks
        what = f"run {i}: kill -9 of {kill} at n={ranks} {delay:.3f} s after start"
        proc = start(compile_cmd(config, out, ranks))
        try:
            begin = time.monotonic()
            pids = rank_pids(proc, ranks) if ranks else [proc.pid]
            time.sleep(max(0.0, begin + delay - time.monotonic()))
            victims = {"the compile": [proc.pid], "mpiexec": [proc.pid],
                       "one rank": [rng.choice(pids)] if pids else []}[kill]
            if proc.poll() is None:
                for victim in victims:
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            outcome = finish(proc, AFTER_KILL, what)
            left = _wait_gone(pids, AFTER_KILL)
            assert not left, (f"{what}: ranks {left} of {pids} still ran {AFTER_KILL} s "
                              f"after the kill\n{outcome.describe()}")
            states.append(_check_and_resume(out, config, expected, resume_n, what))
        except AssertionError as failure:  # go on: every failing moment is reported
            kill_group(proc)
            failures.append(str(failure))
    assert not failures, f"{len(failures)} of 10 runs failed:\n\n" + "\n\n".join(failures)
    assert states.count("unfinished") + states.count("absent") >= 4, states


@pytest.mark.timeout(200)
def test_kill_the_serial_compile(reference, tmp_path):
    _loop(reference, tmp_path, None, "the compile", seed=9, resume_other=2)


@pytest.mark.timeout(200)
def test_kill_one_rank_of_two(reference, tmp_path):
    _loop(reference, tmp_path, 2, "one rank", seed=10, resume_other=None)


@pytest.mark.timeout(200)
def test_kill_mpiexec_of_three(reference, tmp_path):
    _loop(reference, tmp_path, 3, "mpiexec", seed=11, resume_other=2)


@pytest.mark.timeout(120)
def test_a_resume_with_another_configuration_is_refused_and_keeps_the_parts(reference, tmp_path):
    config, expected, _ = reference
    out = tmp_path / "net.hdf5"
    parts = Path(f"{out}.parts")
    # An unfinished compile: interrupt it as soon as it committed a job (its first
    # journal line), not after a guessed delay (the compile runs for a second or more).
    _clean(out)
    proc = start(compile_cmd(config, out, 2))
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not any(
            journal.read_bytes().count(b"\n") for journal in parts.glob("*.journal")):
        time.sleep(0.002)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
    outcome = finish(proc, 20)
    assert outcome.returncode == 130, outcome.describe()
    before = {p.name: p.read_bytes() for p in parts.iterdir() if p.name != "lock"}
    assert any(name.endswith(".journal") for name in before), sorted(before)
    stub = out.read_bytes()

    changed = config.with_name("changed.yaml")
    changed.write_text(config.read_text().replace("    radius: 45\n", "    radius: 46\n", 1))
    assert changed.read_text() != config.read_text()
    for n in (None, 2):
        refused = run(compile_cmd(changed, out, n, "--resume"), timeout=60)
        assert refused.returncode == 1, refused.describe()
        lines = refused.stderr.strip().splitlines()
        assert lines == [
            f"neuroscaffold: error: {out}: the unfinished compile was started from a "
            "different configuration (it differs at connectivity.golgi_to_granule.radius); "
            "resume with the same configuration, or start over with --clear"
        ], refused.describe()
        after = {p.name: p.read_bytes() for p in parts.iterdir() if p.name != "lock"}
        assert after == before, "the refused resume changed the parts"
        assert out.read_bytes() == stub, "the refused resume changed the stub"
    shown = show(out)
    assert shown.returncode == 0 and "UNFINISHED" in shown.stdout, shown.describe()

    resumed = run(compile_cmd(config, out, 3, "--resume"), timeout=90)
    assert resumed.returncode == 0, resumed.describe()
    assert not parts.exists()
    assert canonical_contents(out) == expected
