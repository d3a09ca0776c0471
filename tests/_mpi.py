"""Run a Python script under ``mpiexec -n K`` (or serially) with a hard timeout.

Every parallel test in the suite goes through :func:`run_script`, so a hang becomes a
test failure within seconds instead of blocking CI, and a failure shows what every rank
printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

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
