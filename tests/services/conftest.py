"""Fixtures for the services tests: a restorable registry, and environments in which
optional packages (mpi4py, mpilock) cannot be imported. (The pool tests get their
network from ``mpi_matrix``'s ``world``.)"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from neuroscaffold.services import _registry
from neuroscaffold.services.mpi import IGNORE_VARIABLE, launcher_variables, maybe_launched
from tests._mpi import base_env


@pytest.fixture
def registry():
    """The service registry, restored to its previous content after the test."""
    saved = dict(_registry._SERVICES)
    yield _registry
    _registry._SERVICES.clear()
    _registry._SERVICES.update(saved)


def _hide(folder: Path, module: str) -> None:
    package = folder / module
    package.mkdir()
    # What Python raises for a package that is not installed.
    (package / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n"
    )


@pytest.fixture
def make_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """Build a subprocess environment without MPI launcher variables (nor anything
    that hints at one: see ``maybe_launched``), in which the
    modules named in ``hide`` fail to import as if not installed."""

    def make(hide: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
        env = base_env()
        hints = [name for name in env if maybe_launched({name: ""})]
        for name in [*launcher_variables(env), *hints, IGNORE_VARIABLE]:
            env.pop(name, None)
        if hide:
            shims = tmp_path / f"hide-{'-'.join(hide)}"
            shims.mkdir(exist_ok=True)
            for module in hide:
                if not (shims / module).exists():
                    _hide(shims, module)
            env["PYTHONPATH"] = os.pathsep.join([str(shims), env["PYTHONPATH"]])
        env.update(extra)
        return env

    return make
