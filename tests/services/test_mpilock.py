"""The MPILock service: mpilock's controller under mpiexec, the one-rank mock without it.

``scripts/lock_counter.py`` is one body for both: every rank increments one shared
counter file 200 times inside ``write()``; no update may be lost.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from neuroscaffold.exceptions import DependencyError
from neuroscaffold.services import MPI, MPILock
from neuroscaffold.services.mpi import WorldEmulator
from neuroscaffold.services.mpilock import MockController, MockLockService
from tests._mpi import run_script

SCRIPTS = Path(__file__).parent / "scripts"


def _expected(rank: int, size: int, controller: str) -> dict[str, str]:
    last = size - 1
    expected = {
        "controller": f"{controller} rank {rank} master 0",
        "counter": str(200 * size),
        "collected from 0": "{'from': 0}",
        f"collected from {last}": f"{{'from': {last}}}",
        "handle": "the handle" if rank == 0 else "None",
        "closed": "True",
    }
    if rank in (0, last):
        expected[f"wrote as {rank}"] = "yes"
    return expected


def _check_lock(result, size: int, controller: str) -> None:
    result.check()
    for rank in range(size):
        got = dict(line.split(": ", 1) for line in result.lines(f"R{rank} "))
        assert got == _expected(rank, size, controller), result.describe()


def test_mock_lock_without_mpi4py(make_env, tmp_path):
    env = make_env(hide=("mpi4py",))
    args = [str(tmp_path / "counter.txt")]
    result = run_script(SCRIPTS / "lock_counter.py", env=env, args=args, timeout=30)
    _check_lock(result, 1, "MockController")


@pytest.mark.mpi
def test_mpilock_keeps_every_update_on_4_ranks(make_env, tmp_path):
    args = [str(tmp_path / "counter.txt")]
    result = run_script(SCRIPTS / "lock_counter.py", n=4, env=make_env(), args=args, timeout=60)
    _check_lock(result, 4, "WindowController")


@pytest.mark.mpi
def test_no_mpilock_on_two_ranks_refuses_on_every_rank(make_env, tmp_path):
    script = """
        import sys
        from neuroscaffold.services import MPI, MPILock

        try:
            MPILock.sync()
        except Exception as error:
            # One write per line: print() writes the newline separately, and the
            # launcher could glue another rank's line on in between.
            sys.stdout.write(f"R{MPI.get_rank()}: {type(error).__name__}: {error}\\n")
    """
    env = make_env(hide=("mpilock",))
    result = run_script(script, n=2, env=env, tmp_path=tmp_path, timeout=30).check()
    message = (
        "DependencyError: mpilock is not installed, so MPILock cannot lock across the 2 "
        "ranks of this communicator; install it with: pip install 'neuroscaffold[mpi]'"
    )
    assert sorted(result.lines("R")) == [f"0: {message}", f"1: {message}"]


# --- in-process ----------------------------------------------------------------------


class _FakeComm:
    def __init__(self, rank: int, size: int):
        self._rank, self._size = rank, size

    def Get_rank(self) -> int:
        return self._rank

    def Get_size(self) -> int:
        return self._size


def test_mock_refuses_more_than_one_rank():
    message = re.escape(
        "mpilock is not installed, so MPILock cannot lock across the 3 ranks of this "
        "communicator; install it with: pip install 'neuroscaffold[mpi]'"
    )
    with pytest.raises(DependencyError, match=rf"^{message}$"):
        MockLockService().sync(_FakeComm(0, 3))


def test_mock_controller_on_one_rank():
    controller = MockLockService().sync(WorldEmulator(), master=0)
    assert (controller.rank, controller.master, controller.closed) == (0, 0, False)
    with controller.read(), controller.write(), controller.read():
        pass
    with controller.single_write() as fence:
        fence.guard()
        fence.share([1, 2])
    assert fence.collect() == [1, 2]
    with controller.single_write(handle="h") as handle:
        assert handle == "h"
    with controller:
        pass
    assert controller.closed


def test_mock_fence_skips_the_block_on_other_ranks():
    controller = MockController(rank=1, master=0)
    reached = []
    with controller.single_write() as fence:
        fence.guard()
        reached.append("skipped")
    assert reached == [] and fence.collect() is None
    with controller.single_write(rank=1) as fence:
        fence.guard()
        reached.append("writer")
    assert reached == ["writer"]
    with controller.single_write(handle="h") as handle:
        assert handle is None


def test_mock_fence_lets_other_errors_through():
    with pytest.raises(KeyError):
        with MockController().single_write():
            raise KeyError("x")


@pytest.mark.parametrize("comm", ["default", "service", "raw"])
def test_real_controller_takes_any_comm(comm):
    import mpilock

    arg = {"default": None, "service": MPI, "raw": MPI.get_communicator()}[comm]
    controller = MPILock.sync(arg)
    assert isinstance(controller, mpilock.WindowController)
    with controller.write():
        pass
    controller.close()
    assert controller.closed


# --- the windows' lifetime is ours (issue 11.12) -----------------------------------------

LOCK_EXIT = r"""
import time
from neuroscaffold.services import MPI, MPILock
locks = [MPILock.sync() for _ in range(3)]
for lock in locks:
    with lock.write():
        pass
    with lock.read():
        pass
if MPI.get_rank() == MPI.get_size() - 1:
    time.sleep(1.0)  # one rank reaches the exit late: nobody frees a window under it
    with locks[0].write():
        pass
print(f"R{MPI.get_rank()} ok", flush=True)
"""


@pytest.mark.parametrize("ranks", [None, 2, 3], ids=["serial", "n2", "n3"])
def test_lock_windows_are_freed_at_exit_without_warnings(ranks, tmp_path):
    result = run_script(LOCK_EXIT, ranks, timeout=60, tmp_path=tmp_path)
    result.check()
    assert sorted(result.lines("R")) == sorted(f"{rank} ok" for rank in range(ranks or 1))
    assert result.stderr.strip() == "", result.describe()


def test_the_adapter_uses_only_mpilocks_public_interface():
    from neuroscaffold.services.mpilock import _mpilock

    source = Path(_mpilock.__file__).read_text()
    assert not re.findall(r"mpilock\._(?!_)\w+", source)
    assert "_stop_all_pumps" not in source and "_progress_pumps" not in source
