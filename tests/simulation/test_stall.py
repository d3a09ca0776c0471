"""A distributed NEURON simulation whose ranks stop making progress ends on every rank,
within a bounded time, with one line on stderr and exit status 12, never with exit 0
and no line (NEURON's own watchdog aborts with status 0) and never by hanging.

Every stall is deterministic: the script below makes one rank stall at a fixed
simulated time (a NEURON event on that rank: inside ``psolve``, where the other ranks
wait in NEURON's C code with the GIL held), or before a fixed step (in Python, while
the others wait in the barrier that opens ``psolve``). It stops itself (SIGSTOP), or
sleeps for an hour: far past the test's ``stall_timeout`` of a few seconds, which no
step of this small network comes near.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neuroscaffold import Network
from neuroscaffold.configuration import Configuration
from tests._mpi import base_env, run_script

pytest.importorskip("neuron")

from neuroscaffold.simulation._watchdog import EXIT_STATUS  # noqa: E402
from tests.simulation.test_neuron import ROOT, SIMULATION  # noqa: E402

#: seconds: the guard's floor in these tests (the steps here take milliseconds)
STALL_TIMEOUT = 3

#: ``neuroscaffold simulate ...`` (argv[5:]) with rank argv[2] stalling: argv[1] is
#: how ("stop": SIGSTOP; "sleep": an hour; "stop-between": SIGSTOP in Python before
#: the step that reaches argv[3] ms, outside NEURON), at argv[3] ms; it writes its
#: pid to argv[4] first, so that the test can end it if the run did not
STALL = """
import os, signal, sys, time
from neuroscaffold.simulation import _neuron

how, rank, at, pidfile = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]

def stall():
    with open(pidfile, "w") as out:
        out.write(str(os.getpid()))
    if how == "sleep":
        time.sleep(3600)
    else:
        os.kill(os.getpid(), signal.SIGSTOP)

prepare, advance = _neuron.NeuronAdapter.prepare, _neuron.NeuronAdapter.advance

def stalling_prepare(self):
    prepare(self)
    if self.plan.rank == rank and how != "stop-between":
        h = self.h
        self._stall = h.FInitializeHandler(lambda: h.CVode().event(at, stall))

def stalling_advance(self, until):
    if self.plan.rank == rank and how == "stop-between" and until >= at:
        stall()
    advance(self, until)

_neuron.NeuronAdapter.prepare = stalling_prepare
_neuron.NeuronAdapter.advance = stalling_advance
sys.argv = ["neuroscaffold", *sys.argv[5:]]
from neuroscaffold.cli import program
program()
"""

#: the one line, with the step it names
LINE = re.compile(
    r"neuroscaffold: error: simulation 'activity' stopped making progress: the ranks did "
    r"not all end the step from (?P<start>[\d.]+) to (?P<until>[\d.]+) ms \(of 200 ms\) "
    r"within (?P<seconds>[\d.]+) s \(a rank is stopped, stuck or far slower than the "
    r"others; see stall_timeout\); no spike file was written")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stall")
    raw = yaml.safe_load((ROOT / "examples" / "small.yaml").read_text())
    path = folder / "net.hdf5"
    Network(Configuration(raw), path).compile(quiet=True)
    simulations = folder / "simulations.yaml"
    simulations.write_text(yaml.safe_dump(
        {"simulations": {"activity": {**SIMULATION, "stall_timeout": STALL_TIMEOUT}}}))
    return path, simulations


def _end(pidfile: Path) -> None:
    """SIGCONT and SIGKILL the stalled rank if it is still there (it should not be)."""
    try:
        pid = int(pidfile.read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"script_" not in cmdline.read():
                return  # gone, and the pid is another process's now
    except (OSError, ValueError):
        return
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except OSError:
            return


@pytest.mark.mpi
@pytest.mark.parametrize("ranks, rank, how, at", [
    (2, 1, "stop", 50.0),
    (2, 0, "sleep", 50.0),
    (3, 0, "stop", 20.0),
    (3, 2, "sleep", 120.0),
    (3, 1, "stop-between", 60.0),
])
def test_a_stalled_rank_ends_every_rank_with_one_line_and_a_non_zero_status(
        network, tmp_path, ranks, rank, how, at):
    path, simulations = network
    out, pidfile = tmp_path / "spikes.h5", tmp_path / "stalled.pid"
    try:
        result = run_script(STALL, ranks, timeout=120, tmp_path=tmp_path, args=[
            how, str(rank), str(at), str(pidfile), "simulate", str(path), "activity", "-q",
            "--config", str(simulations), "-o", str(out)])
    finally:
        _end(pidfile)
    assert pidfile.exists(), result.describe()  # it did stall
    # every rank ended itself: no rank killed by the launcher, no banner of it
    assert result.returncode == EXIT_STATUS == 12, result.describe()
    assert "BAD TERMINATION" not in result.stdout, result.describe()
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.describe()
    found = LINE.fullmatch(lines[0])
    assert found is not None, result.describe()
    # the step it names is the one the stall is in (every earlier one ended)
    if how == "stop-between":
        assert float(found["until"]) >= at > float(found["start"]), lines[0]
    else:
        assert float(found["start"]) < at <= float(found["until"]), lines[0]
    assert float(found["seconds"]) >= STALL_TIMEOUT
    assert not out.exists()


#: a watchdog armed for argv[1] seconds (then disarmed if argv[2] is "disarm"), and
#: this process in C code that holds the GIL for 60 s (as NEURON's psolve does)
HOLD = """
import ctypes, sys
from neuroscaffold.simulation._watchdog import Watchdog
watchdog = Watchdog()
watchdog.arm(float(sys.argv[1]), "the line")
if sys.argv[2] == "disarm":
    watchdog.disarm()
    ctypes.PyDLL(None).sleep(1)  # holds the GIL: a watchdog that fired would end us
    watchdog.close()
    print("went on", flush=True)
else:
    ctypes.PyDLL(None).sleep(60)
"""


def test_the_watchdog_ends_a_process_that_holds_the_gil_in_c(tmp_path):
    done = subprocess.run([sys.executable, "-c", HOLD, "0.5", "hold"], capture_output=True,
                          text=True, timeout=30, env=base_env(), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (EXIT_STATUS, "the line\n")


def test_a_disarmed_watchdog_does_not_fire(tmp_path):
    done = subprocess.run([sys.executable, "-c", HOLD, "30", "disarm"], capture_output=True,
                          text=True, timeout=30, env=base_env(), cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "went on\n", "")


def test_a_steps_deadline_follows_the_pace_of_the_steps_before_it(monkeypatch):
    from neuroscaffold.simulation import _watchdog

    clock = [0.0]
    monkeypatch.setattr(_watchdog.time, "perf_counter", lambda: clock[0])
    guard = _watchdog.StallGuard(None, "activity", 1000.0, stall_timeout=60.0, rank=0)

    def step(start: float, until: float, seconds: float) -> None:
        guard.expect(start, until)
        clock[0] += seconds
        guard.ended(start, until)

    step(0.0, 1.0, 30.0)  # the first step (the simulator's start) is not a pace
    assert guard.pace == 0.0 and guard.deadline(1.0, 21.0) == 60.0
    step(1.0, 3.0, 2.0)
    step(3.0, 7.0, 6.0)  # 8 s for 6 ms
    assert guard.pace == pytest.approx(8.0 / 6.0)
    assert guard.deadline(7.0, 27.0) == pytest.approx(10 * 20 * 8.0 / 6.0)
    assert guard.deadline(7.0, 8.0) == 60.0  # never below stall_timeout
