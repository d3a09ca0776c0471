"""The MPI service: the mpi4py proxy and the one-rank emulator, alone and under mpiexec.

``scripts/mpi_world.py`` is one body run in every world: the emulator (mpi4py hidden),
mpi4py serially, and ``mpiexec -n 2`` and ``-n 4``; every rank's lines are checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from neuroscaffold.services.mpi import ParallelError, WorldEmulator, WorldProxy
from tests._mpi import run_script

SCRIPTS = Path(__file__).parent / "scripts"


def _expected(rank: int, size: int, emulated: bool, eager: bool = True) -> dict[str, str]:
    last = size - 1
    own = f"ValueError: boom on {rank}"
    note = f" [raised on rank 0 of {size} inside try_main]"
    two_failed = (
        f"ParallelError: ranks 0, {last} failed: rank 0: ValueError: boom on 0; "
        f"rank {last}: ValueError: boom on {last}"
    )
    return {
        # rank and size alone start MPI only if a launcher may have started the process
        "import": f"mpi4py.MPI imported before use False, after {not emulated and eager}",
        "world": f"True True {'NoneType' if emulated else 'Intracomm'}",
        "started": str(not emulated),
        "bcast": "from 0",
        "bcast root last": str(last),
        "gather": str(list(range(size))) if rank == 0 else "None",
        "allgather": str([r * 10 for r in range(size)]),
        "scatter": f"to {rank}",
        "try_all none": "ok",
        "try_all last": (
            own if rank == last
            else f"ParallelError: rank {last} failed: ValueError: boom on {last}"
        ),
        "try_all first and last": own if rank in (0, last) else two_failed,
        "try_all every": own,
        "try_all default": own if rank == last else "LookupError: elsewhere",
        "try_main none": "ok",
        "try_main main": "RuntimeError: boom on 0" + ("" if rank == 0 else note),
        "try_main last": own if rank == last else "ok",
        "try_main unpicklable": (
            "Unpicklable: boom on 0" if rank == 0
            else "ParallelError: rank 0 failed: Unpicklable: boom on 0"
        ),
        "done": "ok",
    }


def _check_world(result, size: int, emulated: bool, eager: bool = True) -> None:
    assert result.returncode == 7, result.describe()
    for rank in range(size):
        lines = result.lines(f"R{rank} ")
        got = dict(line.split(": ", 1) for line in lines)
        assert len(got) == len(lines), result.describe()
        assert got == _expected(rank, size, emulated, eager), result.describe()
    assert len(result.stdout.splitlines()) == size * len(_expected(0, 1, emulated))


def test_emulator_world_without_mpi4py(make_env):
    result = run_script(SCRIPTS / "mpi_world.py", env=make_env(hide=("mpi4py",)), timeout=30)
    _check_world(result, 1, emulated=True)


@pytest.mark.mpi
@pytest.mark.parametrize("n", [None, "hinted", 2, 4], ids=["serial", "serial-hinted", "n2", "n4"])
def test_mpi4py_world(make_env, n):
    """Serially, with nothing hinting at a launcher, MPI starts on first real use (a
    serial run never pays for it); with a hint (here ``MPI_HOME``), or under mpiexec,
    at once."""
    env = make_env(MPI_HOME="/opt/mpi") if n == "hinted" else make_env()
    ranks = n if isinstance(n, int) else None
    result = run_script(SCRIPTS / "mpi_world.py", n=ranks, env=env, timeout=60)
    _check_world(result, ranks or 1, emulated=False, eager=n is not None)


# --- in-process, one rank: the same helpers on the emulator and on the proxy --------


@pytest.fixture(params=["emulator", "mpi4py"])
def comm(request):
    if request.param == "emulator":
        return WorldEmulator()
    from mpi4py import MPI

    return WorldProxy(MPI.COMM_WORLD)


def test_helpers(comm):
    assert (comm.get_rank(), comm.get_size()) == (0, 1)
    assert (comm.Get_rank(), comm.Get_size()) == (0, 1)
    comm.barrier()
    assert comm.bcast({"a": 1}) == {"a": 1}
    assert comm.gather("x", root=0) == ["x"]
    assert comm.allgather(3) == [3]
    assert comm.scatter(["only"]) == "only"
    assert comm.Dup().Get_size() == 1


def test_try_all_reraises_own_error(comm):
    with pytest.raises(KeyError, match=r"^'mine'$"):
        with comm.try_all(default_exception=LookupError("elsewhere")):
            raise KeyError("mine")
    with comm.try_all():
        pass


def test_try_main_reraises_own_error(comm):
    with pytest.raises(ZeroDivisionError, match=r"^division by zero$"):
        with comm.try_main():
            1 / 0
    with comm.try_main():
        pass


def test_keyboard_interrupt_is_shared_too(comm):
    with pytest.raises(KeyboardInterrupt):
        with comm.try_all():
            raise KeyboardInterrupt


def test_communicator():
    from mpi4py import MPI

    assert WorldEmulator().get_communicator() is None
    assert WorldProxy(MPI.COMM_WORLD).get_communicator() is MPI.COMM_WORLD
    proxy = WorldProxy(MPI.COMM_WORLD)
    assert proxy.Is_intra() and proxy.rank == 0
    assert repr(proxy).startswith("<MPI world proxy of <mpi4py.MPI.Intracomm")


def test_emulator_refuses_what_one_rank_cannot_do():
    world = WorldEmulator()
    with pytest.raises(ValueError, match=r"^root must be 0 in a one-rank world, got 1$"):
        world.bcast("x", root=1)
    with pytest.raises(ValueError, match=r"^root must be 0 in a one-rank world, got 2$"):
        world.gather("x", root=2)
    message = r"^scatter expects a sequence of 1 item in a one-rank world$"
    with pytest.raises(ValueError, match=message):
        world.scatter([1, 2])
    assert world.alltoall(["a"]) == ["a"]
    assert world.reduce(5) == 5 and world.allreduce(6) == 6
    assert (world.rank, world.size) == (0, 1)
    assert repr(world) == "<MPI one-rank emulator>"


def test_parallel_error_is_a_neuroscaffold_error():
    from neuroscaffold.exceptions import NeuroscaffoldError

    assert issubclass(ParallelError, NeuroscaffoldError)
    assert issubclass(ParallelError, RuntimeError)
