"""Refuse to emulate MPI in a process that an MPI launcher started.

Without mpi4py every process launched by ``mpiexec -n N`` would get its own one-rank
emulator and do all the work N times over. The launchers announce themselves through
environment variables; only exact names (and the ``I_MPI_`` prefix) count, so
variables that merely contain the letters, like ``COMPILER_PATH``, never trigger.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ...exceptions import DependencyError

__all__ = [
    "IGNORE_VARIABLE",
    "check_launcher",
    "ignores_launcher",
    "launcher_variables",
    "maybe_launched",
]

IGNORE_VARIABLE = "NEUROSCAFFOLD_IGNORE_PARALLEL"

_LAUNCHER_VARIABLES = frozenset(
    {
        # Open MPI (mpirun/prterun)
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        # PMIx clients (Open MPI 5, srun --mpi=pmix)
        "PMIX_RANK",
        "PMIX_NAMESPACE",
        # PMI-1/PMI-2: MPICH and Intel MPI Hydra, srun --mpi=pmi2, MS-MPI
        "PMI_RANK",
        "PMI_SIZE",
        "PMI_FD",
        # MPICH/Intel MPI Hydra (checked with the mpich wheel's `mpiexec -n 1 env`)
        "MPI_LOCALNRANKS",
        "MPI_LOCALRANKID",
        "HYDI_CONTROL_FD",
        # MVAPICH
        "MV2_COMM_WORLD_RANK",
        "MV2_COMM_WORLD_SIZE",
    }
)
_LAUNCHER_PREFIXES = ("I_MPI_",)
# Set by Intel oneAPI's setvars.sh in every shell, launched or not.
_NOT_LAUNCHER_VARIABLES = frozenset({"I_MPI_ROOT"})

_TRUE = frozenset({"1", "true", "yes", "on"})


def launcher_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The sorted names in ``environ`` (default: ``os.environ``) set by MPI launchers."""
    environ = os.environ if environ is None else environ
    return sorted(
        name
        for name in environ
        if name not in _NOT_LAUNCHER_VARIABLES
        and (name in _LAUNCHER_VARIABLES or name.startswith(_LAUNCHER_PREFIXES))
    )


def ignores_launcher(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``NEUROSCAFFOLD_IGNORE_PARALLEL`` asks that, without mpi4py, every
    process run on its own even under a launcher (each is then its own main rank)."""
    environ = os.environ if environ is None else environ
    return environ.get(IGNORE_VARIABLE, "").strip().lower() in _TRUE


def check_launcher(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`DependencyError` if an MPI launcher started this process.

    Called only when mpi4py is missing. ``NEUROSCAFFOLD_IGNORE_PARALLEL=1`` skips it.
    """
    environ = os.environ if environ is None else environ
    if ignores_launcher(environ):
        return
    found = launcher_variables(environ)
    if found:
        raise DependencyError(
            f"this process was started by an MPI launcher ({', '.join(found)} set) but "
            "mpi4py is not installed, so every process would run the whole model on "
            "its own; install the mpi extra: pip install 'neuroscaffold[mpi]' "
            f"(or set {IGNORE_VARIABLE}=1 to run each process on its own anyway)"
        )


# Broad on purpose: a false alarm only costs starting MPI in a serial run, while a
# missed launcher would make every rank believe it is alone.
_HINT_PREFIXES = ("SLURM_STEP", "SLURM_PROCID", "ALPS_APP", "PALS_", "LSB_JOBID", "PBS_")


def _hints_at_mpi(name: str) -> bool:
    """A word of ``name`` (split at ``_``) that begins or ends with ``MPI`` (``MPICH_``,
    ``I_MPI_``, ``OMPI_``, ``CRAY_MPICH``), or begins with ``PMI`` or ``HYD`` (process
    managers); not words that merely contain the letters (``COMPILER_PATH``)."""
    return any(
        word.startswith(("MPI", "PMI", "HYD")) or word.endswith("MPI")
        for word in name.upper().split("_")
    )


def maybe_launched(environ: Mapping[str, str] | None = None) -> bool:
    """Whether anything in ``environ`` hints that a launcher or a batch system may
    have started this process: an exact launcher variable, a variable of MPI or of a
    process manager, of a Slurm job step, Cray ALPS/PALS, LSF or PBS.

    When it says no, mpi4py is not asked to start MPI until it is really used: the
    process is alone in its world.
    """
    environ = os.environ if environ is None else environ
    return any(
        name in _LAUNCHER_VARIABLES or name.startswith(_HINT_PREFIXES) or _hints_at_mpi(name)
        for name in environ
    )
