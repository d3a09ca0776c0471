"""The launcher guard: without mpi4py, a process started by an MPI launcher must not
silently run a one-rank emulator (every rank would do all the work)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscaffold.exceptions import DependencyError
from neuroscaffold.services.mpi._guard import (
    _LAUNCHER_VARIABLES,
    check_launcher,
    launcher_variables,
    maybe_launched,
)
from tests._mpi import run_script


def _message(names: str) -> str:
    return (
        f"this process was started by an MPI launcher ({names} set) but mpi4py is not "
        "installed, so every process would run the whole model on its own; install the "
        "mpi extra: pip install 'neuroscaffold[mpi]' (or set "
        "NEUROSCAFFOLD_IGNORE_PARALLEL=1 to run each process on its own anyway)"
    )


@pytest.mark.parametrize(
    "name",
    [
        "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMI_SIZE", "PMI_FD",
        "PMIX_RANK", "MPI_LOCALNRANKS", "MPI_LOCALRANKID", "HYDI_CONTROL_FD",
        "MV2_COMM_WORLD_RANK", "I_MPI_PIN_DOMAIN",
    ],
)
def test_launcher_variables_are_detected(name):
    assert launcher_variables({name: "0", "HOME": "/root"}) == [name]


@pytest.mark.parametrize(
    "name",
    [
        "COMPILER_PATH", "CMAKE_C_COMPILER", "IMPI_THING", "MPICC", "MPI_HOME",
        "OMPI_MCA_btl", "PMIX_MCA_gds", "I_MPI_ROOT", "PMI_RANKING", "MY_PMI_RANK",
        "SLURM_PROCID", "NEUROSCAFFOLD_IGNORE_PARALLEL",
    ],
)
def test_lookalikes_are_not_detected(name):
    assert launcher_variables({name: "1"}) == []
    check_launcher({name: "1"})


@pytest.mark.parametrize(
    "name",
    sorted(_LAUNCHER_VARIABLES) + [
        "MPI_HOME", "MPICC", "I_MPI_ROOT", "OMPI_MCA_btl", "PMIX_MCA_gds", "CRAY_MPICH_DIR",
        "HYDRA_HOST_FILE", "SLURM_STEP_ID", "SLURM_PROCID", "PALS_RANKID", "ALPS_APP_PE",
        "PBS_JOBID", "LSB_JOBID",
    ],
)
def test_anything_that_hints_at_a_launcher_starts_mpi_at_once(name):
    """With mpi4py installed, MPI is started only on first use when nothing hints at a
    launcher; any hint (a false alarm only costs MPI's start-up) starts it at once."""
    assert maybe_launched({name: "1", "HOME": "/root"})


@pytest.mark.parametrize("name", ["COMPILER_PATH", "CMAKE_C_COMPILER", "HOME", "SLURM_CONF",
                                  "NEUROSCAFFOLD_IGNORE_PARALLEL", "PYTHONPATH"])
def test_a_laptop_environment_is_not_taken_for_a_launcher(name):
    assert not maybe_launched({name: "1"})


@given(
    name=st.sampled_from(sorted(_LAUNCHER_VARIABLES)),
    prefix=st.text("ABCXYZ_", max_size=4),
    suffix=st.text("ABCXYZ_0", max_size=4),
)
def test_only_exact_names_count(name, prefix, suffix):
    variable = f"{prefix}{name}{suffix}"
    assert launcher_variables({variable: "1"}) == ([variable] if variable == name else [])


def test_guard_names_what_it_found():
    environ = {"PMI_SIZE": "2", "PMI_RANK": "1", "PATH": "/bin"}
    with pytest.raises(DependencyError, match=rf"^{re.escape(_message('PMI_RANK, PMI_SIZE'))}$"):
        check_launcher(environ)


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_ignore_variable_disables_the_guard(value):
    check_launcher({"PMI_RANK": "0", "NEUROSCAFFOLD_IGNORE_PARALLEL": value})


@pytest.mark.parametrize("value", ["0", "", "no"])
def test_ignore_variable_must_be_true(value):
    with pytest.raises(DependencyError):
        check_launcher({"PMI_RANK": "0", "NEUROSCAFFOLD_IGNORE_PARALLEL": value})


# --- for real: mpi4py hidden, the service's first use --------------------------------

_FIRST_USE = """
    import os
    import sys
    import neuroscaffold
    from neuroscaffold.services import MPI

    assert neuroscaffold.MPI is MPI  # naming the service never fails
    try:
        outcome = f"size {MPI.get_size()}"
    except Exception as error:
        outcome = f"{type(error).__name__}: {error}"
    # One write per line, so the launcher cannot glue the ranks' lines together.
    sys.stdout.write(f"rank {os.environ.get('PMI_RANK', '-')}: {outcome}\\n")
"""


@pytest.mark.parametrize(
    ("extra", "outcome"),
    [
        ({"PMI_RANK": "0"}, "DependencyError: " + _message("PMI_RANK")),
        ({"OMPI_COMM_WORLD_SIZE": "2"}, "DependencyError: " + _message("OMPI_COMM_WORLD_SIZE")),
        ({"COMPILER_PATH": "/usr/bin", "IMPI_THING": "1"}, "size 1"),
        ({"PMI_RANK": "0", "NEUROSCAFFOLD_IGNORE_PARALLEL": "1"}, "size 1"),
    ],
    ids=["pmi", "ompi", "lookalikes", "ignored"],
)
def test_first_use_without_mpi4py(make_env, tmp_path, extra, outcome):
    env = make_env(hide=("mpi4py",), **extra)
    result = run_script(_FIRST_USE, env=env, tmp_path=tmp_path, timeout=30).check()
    assert result.lines("rank ") == [f"{extra.get('PMI_RANK', '-')}: {outcome}"]


@pytest.mark.mpi
def test_mpiexec_without_mpi4py_fails_on_every_rank(make_env, tmp_path):
    env = make_env(hide=("mpi4py",))
    result = run_script(_FIRST_USE, n=2, env=env, tmp_path=tmp_path, timeout=30).check()
    # What the mpich wheel's Hydra launcher sets (see `mpiexec -n 1 env`).
    found = "HYDI_CONTROL_FD, MPI_LOCALNRANKS, MPI_LOCALRANKID, PMI_FD, PMI_RANK, PMI_SIZE"
    expected = f"DependencyError: {_message(found)}"
    assert sorted(result.lines("rank ")) == [f"0: {expected}", f"1: {expected}"]


# --- who reports an error ---------------------------------------------------------

@pytest.mark.parametrize(
    ("extra", "reported"),
    [
        ({"PMI_RANK": "1", "PMI_SIZE": "2", "NEUROSCAFFOLD_IGNORE_PARALLEL": "1"}, "missing"),
        ({"PMI_RANK": "0", "PMI_SIZE": "2", "NEUROSCAFFOLD_IGNORE_PARALLEL": "1"}, "missing"),
        # refused on every rank alike: rank 0 says so for all
        ({"PMI_RANK": "1", "PMI_SIZE": "2"}, None),
        ({"PMI_RANK": "0", "PMI_SIZE": "2"}, "started by an MPI launcher"),
    ],
    ids=["alone-rank-1", "alone-rank-0", "refused-rank-1", "refused-rank-0"],
)
def test_a_process_that_runs_alone_reports_its_own_errors(make_env, tmp_path, extra,
                                                          reported):
    """Without mpi4py and with NEUROSCAFFOLD_IGNORE_PARALLEL, each process a launcher
    started is its own main rank: whichever rank number the launcher gave it, its error
    is printed (it was silent on ranks other than 0, an exit 1 with nothing said)."""
    env = make_env(hide=("mpi4py",), **extra)
    missing = tmp_path / "missing.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "neuroscaffold", "compile", str(missing), "-o",
         str(tmp_path / "net.hdf5")],
        capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    if reported is None:
        assert lines == [], result.stderr
    else:
        expected = str(missing) if reported == "missing" else reported
        assert len(lines) == 1 and lines[0].startswith("neuroscaffold: error: ") and \
            expected in lines[0], result.stderr
