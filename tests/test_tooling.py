"""ruff and mypy pass on the package with the configuration in ``pyproject.toml``,
so the README's one test command checks them too (issue 11.16)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests._mpi import ROOT


def _run(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: pip install -e '.[mpi,test]'")
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.timeout(120)
def test_ruff_passes():
    result = _run("ruff", "check", "neuroscaffold", timeout=100)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(400)
def test_mypy_passes():
    result = _run("mypy", timeout=380)
    assert result.returncode == 0, result.stdout + result.stderr
