"""Helpers of the storage fault tests: start ``neuroscaffold compile`` in a subprocess
(serially or under ``mpiexec``), interrupt or kill it, and wait for it with a hard
timeout, so that a hang fails the test within seconds instead of blocking the suite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests._mpi import ROOT, base_env, mpiexec_path

EXAMPLE = ROOT / "examples" / "cerebellum.yaml"

#: The one line the main rank prints when a compile is interrupted.
INTERRUPTED = re.compile(
    r"^neuroscaffold: interrupted: (\d+) of (\d+) jobs committed; resume with --resume$"
)
#: What MPICH, UCX, Hydra or Python print when something went wrong underneath.
LIBRARY_NOISE = (
    "Traceback",
    "leaked",
    "not returned to mpool",
    "Abort",
    "BAD TERMINATION",
    "Segmentation fault",
    "Fatal error",
    "UCX  WARN",
    "UCX  ERROR",
    "Exception ignored",
    "MPICH:",
    "HYDU_",
    "HYD_",
    "process manager error",
)
#: Errors of Hydra (``mpiexec``) itself, in lines like
#: ``[mpiexec@host] HYDU_sock_write (.../sock.c:250): write error (Bad file descriptor)``.
HYDRA_ERROR = re.compile(r"^\[mpiexec@[^\]]+\] \w+ \(\S+\.c:\d+\)")


def write_config(folder: Path, name: str = "cerebellum.yaml", **network: float) -> Path:
    """The example configuration, with ``network`` overriding its geometry, in ``folder``."""
    text = EXAMPLE.read_text()
    for key, value in network.items():
        text, count = re.subn(rf"(?m)^(  {key}: ).*$", rf"\g<1>{value}", text, count=1)
        assert count == 1, f"no network key {key!r} in {EXAMPLE}"
    path = Path(folder) / name
    path.write_text(text)
    return path


def compile_cmd(config: Path, out: Path, n: int | None = None, *options: str) -> list[str]:
    cmd = [sys.executable, "-m", "neuroscaffold", "compile", str(config), "-o", str(out),
           "-q", *options]
    if n is not None:
        cmd = [mpiexec_path(), "-n", str(n), *cmd]
    return cmd


def _child_setup() -> None:
    # A shell or a test runner may have started us with SIGINT ignored; then Python
    # would not install its KeyboardInterrupt handler in the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so the group can be killed on a hang)."""
    return subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env if env is not None else base_env(), start_new_session=True,
        preexec_fn=_child_setup,
    )


@dataclass
class Outcome:
    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"command {' '.join(self.cmd)} exited {self.returncode}\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL every process of ``proc``'s group (and its descendants that left it)."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in descendants:
        try:
            child.kill()
        except psutil.Error:
            pass


def finish(proc: subprocess.Popen, timeout: float, what: str = "") -> Outcome:
    """Wait at most ``timeout`` s for ``proc``; a hang kills its process group and fails."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate(timeout=10)
        raise AssertionError(
            f"hang{' ' + what if what else ''}: {' '.join(proc.args)} did not end within "
            f"{timeout} s\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        ) from None
    finally:
        # Ranks or proxies the launcher left behind must not outlive the test.
        if proc.returncode is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return Outcome(list(proc.args), proc.returncode, out, err)


def run(cmd: list[str], timeout: float = 60, env: dict[str, str] | None = None) -> Outcome:
    return finish(start(cmd, env), timeout)


def neuroscaffold(*args: str, timeout: float = 30) -> Outcome:
    return run([sys.executable, "-m", "neuroscaffold", *args], timeout)


def show(path: Path) -> Outcome:
    return neuroscaffold("show", str(path))


def rank_pids(launcher: subprocess.Popen, expected: int, timeout: float = 10) -> list[int]:
    """The pids of the Python ranks that ``mpiexec`` (``launcher``) started."""
    deadline = time.monotonic() + timeout
    found: list[int] = []
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(launcher.pid).children(recursive=True)
        except psutil.Error:
            break
        found = []
        for child in children:
            try:
                if "python" in child.name() or "neuroscaffold" in " ".join(child.cmdline()):
                    if "-m" in child.cmdline() and "neuroscaffold" in child.cmdline():
                        found.append(child.pid)
            except psutil.Error:
                continue
        if len(found) >= expected:
            return sorted(found)
        if launcher.poll() is not None:
            break
        time.sleep(0.01)
    return sorted(found)


def library_noise(stderr: str) -> list[str]:
    """Lines of ``stderr`` that show a crash or an MPI library complaint."""
    return [line for line in stderr.splitlines()
            if any(marker in line for marker in LIBRARY_NOISE)]


def interrupted_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "interrupted" in line]


def compile_reference(folder: Path) -> tuple[Path, list, float]:
    """The example configuration written to ``folder``, the contents of its
    uninterrupted serial compile, and how long that took (process start to end)."""
    from neuroscaffold.storage import canonical_contents

    config = write_config(folder)
    out = folder / "reference.hdf5"
    begin = time.monotonic()
    outcome = run(compile_cmd(config, out), timeout=120)
    elapsed = time.monotonic() - begin
    assert outcome.returncode == 0, outcome.describe()
    return config, canonical_contents(out), elapsed
