"""Run code under ``mpiexec -n K`` (or serially) with a hard timeout.

Every parallel test in the suite goes through :func:`run_script` (a script) or
:func:`mpi_matrix` (one test body, run in-process and under ``mpiexec`` by
``tests/_mpi_runner.py``), so a hang becomes a test failure within seconds instead of
blocking CI, and a failure shows what every rank printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mpiexec_path() -> str:
    """The ``mpiexec`` of the running virtual environment (the PyPI ``mpich`` wheel)."""
    candidate = Path(sys.executable).parent / "mpiexec"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("mpiexec")
    if found is None:
        raise RuntimeError(
            "no mpiexec found: install the test environment with "
            "`pip install -e '.[mpi,test]'` (it brings the mpich wheel)"
        )
    return found


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    cmd: list[str]

    def check(self) -> "RunResult":
        """Raise with every rank's output unless the run exited 0."""
        if self.returncode != 0:
            raise AssertionError(self.describe())
        return self

    def describe(self) -> str:
        return (
            f"command {' '.join(self.cmd)} exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def lines(self, prefix: str) -> list[str]:
        """Lines of stdout that start with ``prefix`` (without the prefix)."""
        return [
            line[len(prefix):].strip()
            for line in self.stdout.splitlines()
            if line.startswith(prefix)
        ]


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    # Not PYTHONUNBUFFERED: unbuffered, print() writes the newline apart and mpiexec
    # interleaves the ranks' lines. Scripts flush whole lines (print(..., flush=True)).
    env.pop("PYTHONUNBUFFERED", None)
    env.update(extra)
    return env


def run_script(
    source: str | Path,
    n: int | None = None,
    *,
    timeout: float = 60,
    args: list[str] | tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    tmp_path: Path | None = None,
) -> RunResult:
    """Run ``source`` (a path, or code text) with ``n`` ranks, ``None`` meaning serially.

    The code text is dedented and written to ``tmp_path`` (or next to nothing, in a
    temporary directory). A run that outlives ``timeout`` is killed and reported as a
    hang, with whatever the ranks printed so far.
    """
    if isinstance(source, Path):
        script = source
    else:
        import tempfile

        folder = Path(tmp_path) if tmp_path else Path(tempfile.mkdtemp(prefix="ns-mpi-"))
        script = folder / f"script_{abs(hash(source)) % 10**8}.py"
        script.write_text(textwrap.dedent(source))
    cmd = [sys.executable, str(script), *args]
    if n is not None:
        cmd = [mpiexec_path(), "-n", str(n), *cmd]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env if env is not None else base_env(),
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise AssertionError(
            f"hang: {' '.join(cmd)} did not finish within {timeout} s\n"
            f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
        ) from None
    return RunResult(proc.returncode, proc.stdout, proc.stderr, cmd)


# --- one test body at every world size ----------------------------------------------------
#
# ``@mpi_matrix(1, 2, 3)`` turns ``def test_x(world)`` into one pytest case per world size.
# ``n1`` calls the body here, in the pytest process (mpi4py's COMM_WORLD of size 1).
# ``nK`` runs it under ``mpiexec -n K python -m tests._mpi_runner``: all the selected
# matrix tests of one module that want K ranks go into one launch (started by the first
# of them, kept for the others), where every rank runs every body in the same order and
# writes, per body, a start line and an end line (ok, or its traceback) to its own file.
# A body that outlives its ``timeout`` dumps every thread's stack and ends its rank (so
# the launch ends within seconds); it fails, and the bodies after it get a new launch.


@dataclass
class World:
    """What a matrix test body gets: its rank, the world size, a fresh test network
    (built on every rank, in step) and a folder shared by every rank."""

    rank: int
    size: int
    network: Any
    tmp_path: Path

    @property
    def main(self) -> bool:
        return self.rank == 0

    def bcast(self, value: Any) -> Any:
        """The main rank's ``value``, on every rank."""
        from neuroscaffold import MPI

        return MPI.bcast(value if self.main else None, root=0)

    def same_on_every_rank(self, value: Any) -> None:
        """Assert that every rank has the main rank's ``value`` (collective)."""
        expected = self.bcast(value)
        assert value == expected, f"rank {self.rank} has {value!r}, the main rank {expected!r}"


def make_world(tmp_path: Path) -> World:
    from neuroscaffold import MPI
    from tests._pool_support import TestNetwork

    return World(MPI.get_rank(), MPI.get_size(), TestNetwork(), tmp_path)


def mpi_matrix(*sizes: int, timeout: float = 30.0):
    """Run the decorated body ``body(world)`` at each of the world ``sizes``."""

    def decorate(body):
        # In-process, the body's own time limit; launched, the first case of a module
        # and size waits for the whole launch (whose bodies have their own limits).
        params = [
            pytest.param(1, id="n1", marks=[pytest.mark.timeout(timeout)]) if n == 1 else
            pytest.param(n, id=f"n{n}", marks=[pytest.mark.mpi,
                                               pytest.mark.timeout(_BATCH_LIMIT + 30)])
            for n in sizes
        ]

        @pytest.mark.parametrize("ranks", params)
        def test(ranks, request, tmp_path, tmp_path_factory):
            if ranks == 1:
                body(make_world(tmp_path))
            else:
                _batch(request, tmp_path_factory, ranks).check(body.__name__)

        test.__name__ = test.__qualname__ = body.__name__
        test.__module__ = body.__module__
        test.__doc__ = body.__doc__
        test.mpi_body = body
        test.mpi_timeout = timeout
        return test

    return decorate


_BATCH_LIMIT = 240  # seconds: the most one launch may take, however many bodies it runs
_BATCHES: dict[tuple[str, int], "Batch"] = {}


class Batch:
    """The launches that ran a module's matrix bodies at one world size, and how each
    body ended on each rank."""

    def __init__(self, module_path: Path, timeouts: dict[str, float], size: int, folder: Path):
        self.size = size
        self.errors: dict[str, str] = {}  # test -> why it failed (absent: it passed)
        module = ".".join(module_path.relative_to(ROOT).with_suffix("").parts)
        remaining = list(timeouts)
        deadline = time.monotonic() + _BATCH_LIMIT
        launch = 0
        while remaining:
            budget = min(deadline - time.monotonic(), 20 + sum(timeouts[n] for n in remaining))
            if budget < 10:
                for name in remaining:
                    self.errors[name] = f"not run: earlier launches took the {_BATCH_LIMIT} s limit"
                break
            out = folder / f"launch{launch}"
            out.mkdir(parents=True)
            for name in remaining:
                (out / "tmp" / name).mkdir(parents=True)
            result = _launch(module, remaining, size, out, budget)
            done = self._read(out, remaining, result)
            remaining = remaining[done:]
            launch += 1

    def _read(self, out: Path, names: list[str], result: RunResult) -> int:
        """Record how each body ended; return how many bodies the launch finished."""
        ends: dict[str, dict[int, str | None]] = {name: {} for name in names}
        started: dict[str, set[int]] = {name: set() for name in names}
        for rank in range(self.size):
            path = out / f"rank{rank}.jsonl"
            lines = path.read_text().splitlines() if path.exists() else []
            for line in lines:
                record = json.loads(line)
                if record["test"] not in ends:
                    continue
                if record["event"] == "start":
                    started[record["test"]].add(rank)
                else:
                    ends[record["test"]][rank] = record["error"]
        finished = 0
        for name in names:
            if len(ends[name]) == self.size:
                failed = {rank: error for rank, error in ends[name].items() if error}
                if failed:
                    self.errors[name] = "\n".join(
                        f"--- rank {rank} of {self.size} ---\n{error}\n"
                        + _captured(out, name, rank)
                        for rank, error in sorted(failed.items())
                    )
                finished += 1
                continue
            if started[name]:
                missing = sorted(set(range(self.size)) - set(ends[name]))
                self.errors[name] = (
                    f"ranks {missing} never finished this body (a hang, or a rank died)\n"
                    + "".join(_captured(out, name, rank) for rank in missing)
                    + result.describe()
                )
                return finished + 1
            break  # the launch failed before this body: report it on the first one
        if finished < len(names):
            self.errors[names[finished]] = "the launch ended before this body\n" + result.describe()
            return finished + 1
        if result.returncode != 0:
            for name in names:
                self.errors.setdefault(name, "every body passed, but the launch failed\n"
                                       + result.describe())
        return finished

    def check(self, name: str) -> None:
        if name in self.errors:
            pytest.fail(f"{name} at {self.size} ranks:\n{self.errors[name]}", pytrace=False)


def _batch(request, tmp_path_factory, size: int) -> Batch:
    module_path = Path(request.node.fspath)
    key = (str(module_path), size)
    if key not in _BATCHES:
        # The module's selected matrix tests at this size, in collection order.
        timeouts: dict[str, float] = {}
        for item in request.session.items:
            body = getattr(getattr(item, "obj", None), "mpi_body", None)
            callspec = getattr(item, "callspec", None)
            if body is None or callspec is None or Path(item.fspath) != module_path:
                continue
            if callspec.params.get("ranks") == size:
                timeouts[body.__name__] = item.obj.mpi_timeout
        folder = tmp_path_factory.mktemp(f"mpi-{module_path.stem}-n{size}")
        _BATCHES[key] = Batch(module_path, timeouts, size, folder)
    return _BATCHES[key]


def _launch(module: str, names: list[str], size: int, out: Path, budget: float) -> RunResult:
    cmd = [mpiexec_path(), "-n", str(size), sys.executable, "-m", "tests._mpi_runner",
           str(out), module, *names]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget,
                              env=base_env(), cwd=str(ROOT), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        text = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return RunResult(-9, text, err + f"\n(killed: the launch outlived {budget:.0f} s)", cmd)
    return RunResult(proc.returncode, proc.stdout, proc.stderr, cmd)


def _captured(out: Path, name: str, rank: int) -> str:
    path = out / f"rank{rank}.{name}.out"
    if not path.exists() or not path.stat().st_size:
        return ""
    text = path.read_text(errors="replace")
    return f"(rank {rank} printed)\n{text[-6000:]}\n"
