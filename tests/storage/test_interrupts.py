"""Ctrl-C and SIGTERM at random moments of a parallel compile: the run ends within
seconds with exit code 130 and one line from the main rank, the network says it is
unfinished, and ``--resume`` (at any rank count) gives the file of an uninterrupted
compile. Signals go to ``mpiexec`` (which forwards them to every rank) or to one rank
only (which must stop the whole run, not hang it).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from neuroscaffold.storage import canonical_contents
from tests._mpi import mpiexec_path
from tests.storage._crash import (
    compile_reference,
    HYDRA_ERROR,
    INTERRUPTED,
    compile_cmd,
    finish,
    interrupted_lines,
    library_noise,
    rank_pids,
    run,
    show,
    start,
)

#: The line of an interrupt that came when the network was being merged.
COMPLETE_ALREADY = re.compile(
    r"^neuroscaffold: interrupted: the network was complete already \((SIGINT|SIGTERM)\)$")
#: The line of an interrupt that came before anything was written.
NOTHING_WRITTEN = "neuroscaffold: interrupted before the compile started: nothing was written"
#: How long a run may take after the signal before it counts as a hang.
AFTER_SIGNAL = 20.0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The example configuration, its uninterrupted serial compile, and its duration."""
    return compile_reference(tmp_path_factory.mktemp("interrupt-reference"))


def _wait_for(path: Path, proc, timeout: float = 30.0) -> bool:
    """Wait until ``path`` exists (True) or ``proc`` ended (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def _clean(out: Path) -> None:
    if out.exists():
        out.unlink()
    shutil.rmtree(Path(f"{out}.parts"), ignore_errors=True)


def _check_after(outcome, out: Path, config: Path, expected, resume_n, what: str,
                 total: dict) -> str:
    """Check an interrupted (or finished) run, resume it, compare with ``expected``."""
    noise = library_noise(outcome.stderr + outcome.stdout)
    if (outcome.returncode not in (0, 130) and outcome.stdout.startswith("compiled '")
            and outcome.stderr.strip()
            and all(HYDRA_ERROR.match(line) for line in outcome.stderr.strip().splitlines())):
        # Every rank had ended well when mpiexec, still closing, failed to forward the
        # signal to the proxy that was gone (a Hydra race, not ours): the network must be
        # whole.
        assert not Path(f"{out}.parts").exists(), f"{what}: finished, parts left"
        assert canonical_contents(out) == expected, f"{what}: finished, but not the reference"
        return "finished (mpiexec race)"
    if noise or outcome.returncode not in (0, 130):
        state = "no file"
        if out.exists():
            state = (show(out).stdout.splitlines() or ["show printed nothing"])[0]
        # Tell whether the work was kept all the same: resume, and compare.
        resumed = run(compile_cmd(config, out, resume_n, "--resume"), timeout=90)
        kept = (f"a resume at n={resume_n} exited {resumed.returncode} "
                f"{(resumed.stderr.strip().splitlines() or [''])[-1]!r}")
        if resumed.returncode == 0:
            kept += (", the reference" if canonical_contents(out) == expected
                     else ", NOT the reference")
        raise AssertionError(f"{what}: exit code {outcome.returncode}, library warnings or "
                             f"a traceback {noise}; afterwards: {state}; then {kept}\n"
                             f"{outcome.describe()}")
    if outcome.returncode == 0:
        assert canonical_contents(out) == expected, f"{what}: finished, but not the reference"
        assert not Path(f"{out}.parts").exists(), f"{what}: finished, parts left"
        return "finished"
    assert outcome.returncode == 130, f"{what}: not exit code 130\n{outcome.describe()}"
    lines = interrupted_lines(outcome.stderr)
    assert len(lines) == 1, f"{what}: not one 'interrupted' line\n{outcome.describe()}"
    if COMPLETE_ALREADY.match(lines[0]):
        # The signal came during the merge (it is held back until the merge ends): the
        # network must be whole, with nothing left to resume.
        assert outcome.stderr.strip().splitlines() == lines, outcome.describe()
        assert not Path(f"{out}.parts").exists(), f"{what}: complete, but parts left"
        assert canonical_contents(out) == expected, f"{what}: 'complete already', but not " \
            "the reference"
        refused = run(compile_cmd(config, out, resume_n, "--resume"), timeout=60)
        assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
            f"neuroscaffold: error: {out}: nothing to resume: the network is complete"
        ], refused.describe()
        return "complete already"
    match = INTERRUPTED.match(lines[0])
    assert match, f"{what}: not the interrupted line\n{outcome.describe()}"
    assert outcome.stderr.strip().splitlines() == lines, \
        f"{what}: more than the interrupted line on stderr\n{outcome.describe()}"
    committed, planned = int(match[1]), int(match[2])
    assert 0 <= committed <= planned, outcome.describe()
    total.setdefault("planned", planned)
    assert planned == total["planned"], f"{what}: jobs planned changed\n{outcome.describe()}"
    shown = show(out)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, \
        f"{what}: show failed after the interrupt\n{shown.describe()}"
    first = shown.stdout.splitlines()[0] if shown.stdout else ""
    assert f"in {out}: UNFINISHED, an unfinished compile: " in first, \
        f"{what}: show does not say UNFINISHED\n{shown.describe()}\n{outcome.describe()}"
    counts = first.split("an unfinished compile: ")[1].split(" jobs committed")[0]
    shown_committed, shown_planned = (int(x.replace(",", "")) for x in counts.split(" of "))
    assert shown_planned == planned and shown_committed >= committed, \
        f"{what}: show and the interrupted line disagree\n{shown.stdout}\n{outcome.stderr}"
    resumed = run(compile_cmd(config, out, resume_n, "--resume"), timeout=90)
    assert resumed.returncode == 0, f"{what}: resume at n={resume_n} failed\n{resumed.describe()}"
    assert not library_noise(resumed.stderr + resumed.stdout), resumed.describe()
    assert not Path(f"{out}.parts").exists(), f"{what}: resume left the parts"
    assert canonical_contents(out) == expected, \
        f"{what}: resumed at n={resume_n}, not the contents of an uninterrupted compile"
    return f"interrupted at {committed}/{planned}"


def _resume_ranks(k: int, i: int) -> int | None:
    """Resume at the same rank count, serially, or at the other K."""
    return (k, None, 5 - k)[i % 3]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("k", [2, 3])
def test_interrupts_sent_to_mpiexec_at_random_moments(reference, tmp_path, k):
    config, expected, _ = reference
    out = tmp_path / "net.hdf5"
    # How long a compile at K ranks takes, from its start and from its parts directory.
    begin = time.monotonic()
    proc = start(compile_cmd(config, out, k))
    assert _wait_for(Path(f"{out}.parts"), proc)
    started = time.monotonic()
    outcome = finish(proc, 90)
    assert outcome.returncode == 0, outcome.describe()
    assert not library_noise(outcome.stderr + outcome.stdout), outcome.describe()
    assert canonical_contents(out) == expected
    duration = time.monotonic() - started
    assert time.monotonic() - begin < 60
    rng = random.Random(k)
    seen: list[str] = []
    failures: list[str] = []
    total: dict = {}
    for i in range(20):
        _clean(out)
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        delay = rng.uniform(0, duration * 0.9)
        what = f"K={k} run {i}: {signal.Signals(signum).name} to mpiexec {delay:.3f} s in"
        proc = start(compile_cmd(config, out, k))
        if _wait_for(Path(f"{out}.parts"), proc):
            time.sleep(delay)
            if proc.poll() is None:
                os.kill(proc.pid, signum)
        try:
            outcome = finish(proc, AFTER_SIGNAL, what)
            seen.append(_check_after(outcome, out, config, expected, _resume_ranks(k, i),
                                     what, total))
        except AssertionError as failure:  # go on: every failing moment is reported
            failures.append(str(failure))
    assert not failures, f"{len(failures)} of 20 runs failed:\n\n" + "\n\n".join(failures)
    # The random moments must mostly land inside the compile.
    assert sum(s.startswith("interrupted") for s in seen) >= 8, seen


@pytest.mark.timeout(200)
@pytest.mark.parametrize("k", [2, 3])
def test_an_interrupt_sent_to_one_rank_stops_the_run(reference, tmp_path, k):
    config, expected, duration = reference
    out = tmp_path / "net.hdf5"
    rng = random.Random(100 + k)
    failures: list[str] = []
    total: dict = {}
    for i in range(5):
        _clean(out)
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        delay = rng.uniform(0, duration * 0.5)
        proc = start(compile_cmd(config, out, k))
        ranks = rank_pids(proc, k)
        assert len(ranks) == k, f"found ranks {ranks} of mpiexec {proc.pid}"
        victim = rng.choice(ranks)
        what = (f"K={k} run {i}: {signal.Signals(signum).name} to rank pid {victim} "
                f"(of {ranks}) {delay:.3f} s in")
        if _wait_for(Path(f"{out}.parts"), proc):
            time.sleep(delay)
            if proc.poll() is None:
                try:
                    os.kill(victim, signum)
                except ProcessLookupError:
                    pass  # that rank had ended already: the run must end normally
        try:
            outcome = finish(proc, AFTER_SIGNAL, what)
            _check_after(outcome, out, config, expected, _resume_ranks(k, i), what, total)
        except AssertionError as failure:  # go on: every failing moment is reported
            failures.append(str(failure))
    assert not failures, f"{len(failures)} of 5 runs failed:\n\n" + "\n\n".join(failures)


# --- the first moments of a run (issue 16.6) -----------------------------------------


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


def kept_first_moments_promise(outcome, out: Path, config: Path, expected, what: str) -> str:
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
            seen.append(kept_first_moments_promise(finish(proc, AFTER_SIGNAL, what), out, config,
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
                kept_first_moments_promise(outcome, out, config, expected, what)
            elif outcome.returncode == 0:
                assert canonical_contents(out) == expected, what
            else:
                assert not out.exists() or show(out).returncode == 0, what
        except AssertionError as failure:
            failures.append(str(failure))
    assert not failures, "\n\n".join(failures)


# --- a signal as a pool ends (the phase boundary) --------------------------------------

#: Runs ``neuroscaffold compile`` as ``python -m neuroscaffold`` would, except that on
#: the rank named by argv[1] a stop signal arrives right after that rank's first pool
#: ended well (its loop returned) and before the pool's signal handlers are restored:
#: the moment at which the other ranks may already be past their own pool's end.
_SIGNAL_AS_THE_FIRST_POOL_ENDS = """
    import os
    import signal
    import sys

    from neuroscaffold.services.pool import _pool

    victim, signum = int(sys.argv[1]), getattr(signal, sys.argv[2], None)
    rank = int(os.environ.get("PMI_RANK", "0"))
    pools = []
    if rank == victim and signum is not None:
        original = _pool.JobPool._execute

        def _execute(self, *args, **kwargs):
            results = original(self, *args, **kwargs)
            if not pools:
                pools.append(self)
                signal.raise_signal(signum)
            return results

        _pool.JobPool._execute = _execute
    if rank == victim and sys.argv[2] == "flush":
        # instead: the commit of this rank's last results fails as its first pool ends
        from neuroscaffold.exceptions import StorageError
        from neuroscaffold.network import Network

        closed = Network._pool_closed

        def _pool_closed(self, own, error):
            closed(self, own, error)
            if not pools:
                pools.append(self)
                raise StorageError("injected: the shard could not be committed")

        Network._pool_closed = _pool_closed

    from neuroscaffold.cli import program

    sys.argv = ["neuroscaffold", *sys.argv[3:]]
    program()
"""


@pytest.mark.timeout(200)
@pytest.mark.parametrize(("k", "victim", "signum"),
                         [(None, 0, "SIGINT"), (2, 1, "SIGTERM"), (3, 0, "SIGTERM"),
                          (3, 2, "SIGINT")],
                         ids=["serial", "n2-rank1", "n3-rank0", "n3-rank2"])
def test_a_signal_as_a_pool_ends_on_one_rank_stops_every_rank_alike(reference, tmp_path, k,
                                                                     victim, signum):
    """A signal that reaches one rank just after its placement pool ended well, and the
    others a moment later (after theirs): every rank stops at the phase boundary, with
    one line, and the placement is kept. It stopped only the ranks it reached first,
    while the others waited for them to create the next pool, until the launcher killed
    them (BAD TERMINATION, no line)."""
    config, expected, _ = reference
    out = tmp_path / "net.hdf5"
    script = tmp_path / "signalled_compile.py"
    script.write_text(textwrap.dedent(_SIGNAL_AS_THE_FIRST_POOL_ENDS))
    cmd = [sys.executable, str(script), str(victim), signum,
           *compile_cmd(config, out)[3:]]
    if k is not None:
        cmd = [mpiexec_path(), "-n", str(k), *cmd]
    outcome = finish(start(cmd), 60, "a signal as the first pool ends")
    what = f"k={k}: {signum} to rank {victim} as its first pool ended"
    assert outcome.returncode == 130, f"{what}\n{outcome.describe()}"
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, f"{what}\n{outcome.describe()}"
    match = INTERRUPTED.match(lines[0])
    assert match, f"{what}\n{outcome.describe()}"
    shown = show(out)
    rows = [line.split() for line in shown.stdout.splitlines() if line.startswith("  ")]
    placement = [row for row in rows if row[0].startswith("placement.")]
    connectivity = [row for row in rows if row[0].startswith("connectivity.")]
    assert placement and all(row[-1] == "complete" for row in placement), shown.describe()
    assert connectivity and all(row[1].startswith("0/") for row in connectivity), \
        shown.describe()
    assert _check_after(outcome, out, config, expected, k, what, {}).startswith("interrupted")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("k", "victim"), [(2, 1), (3, 2)], ids=["n2", "n3"])
def test_a_commit_that_fails_on_one_rank_as_a_pool_ends_stops_every_rank(reference, tmp_path,
                                                                        k, victim):
    """The ranks agree at the phase boundary: a rank whose last commit failed stops them
    all there, within seconds, with its error (the others waited for it to create the
    next pool)."""
    config, _, _ = reference
    out = tmp_path / "net.hdf5"
    script = tmp_path / "failing_compile.py"
    script.write_text(textwrap.dedent(_SIGNAL_AS_THE_FIRST_POOL_ENDS))
    cmd = [mpiexec_path(), "-n", str(k), sys.executable, str(script), str(victim), "flush",
           *compile_cmd(config, out)[3:]]
    begin = time.monotonic()
    outcome = finish(start(cmd), 60, "a failed commit as the first pool ends")
    took = time.monotonic() - begin
    assert outcome.returncode == 1, outcome.describe()
    assert not library_noise(outcome.stderr + outcome.stdout), outcome.describe()
    lines = outcome.stderr.strip().splitlines()
    assert any(line.startswith(f"[rank {victim}] neuroscaffold: error: ") and
               "injected: the shard could not be committed" in line for line in lines), \
        outcome.describe()
    assert took < 40, f"took {took:.0f} s\n{outcome.describe()}"
    shown = show(out)
    assert shown.returncode == 0 and "UNFINISHED" in shown.stdout, shown.describe()
