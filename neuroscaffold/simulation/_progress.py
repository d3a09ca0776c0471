"""Progress of a simulation on the main rank, as a compile shows it: each build step as
it ends, then simulated ms against the duration with the time left.

A live rich bar on a terminal; otherwise (a log file, ``mpiexec`` output) a plain line
at most every ``interval`` seconds and at the end, so hours of simulation are never
silent and a short one writes a handful of lines.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from ..progress._stats import format_duration

__all__ = ["SimulationProgress", "silent_progress"]


class SimulationProgress:
    """Shows the steps of one simulation (``name``) of ``duration`` ms."""

    def __init__(self, name: str, duration: float, *, stream: IO[str] | None = None,
                 interval: float = 5.0, live: bool | None = None):
        self.name = name
        self.duration = duration
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) if live is None else live
        self._started: float | None = None
        self._last_line = 0.0
        self._bar: Any = None
        self._task: Any = None

    # --- build steps ------------------------------------------------------------------

    def step(self, what: str, seconds: float) -> None:
        """A build step ended: ``what`` took ``seconds``."""
        self._write(f"{self.name}: {what} in {seconds:.2f} s")

    # --- simulated time -----------------------------------------------------------------

    def start(self) -> None:
        self._started = time.monotonic()
        self._last_line = self._started
        if self.live:
            from rich.console import Console
            from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(
                TextColumn(f"{self.name}: simulating"), BarColumn(),
                TextColumn("{task.completed:,.0f}/{task.total:,.0f} ms"),
                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                console=Console(file=self.stream), transient=False)
            self._task = self._bar.add_task("simulate", total=self.duration)
            self._bar.start()

    def update(self, simulated: float) -> None:
        """``simulated`` ms of the duration are done."""
        if self._bar is not None:
            self._bar.update(self._task, completed=simulated)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._write(self._line(simulated, now))

    def stop(self, simulated: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=simulated)
            self._bar.stop()
            self._bar = None
        if self._started is not None:
            elapsed = time.monotonic() - self._started
            self._write(f"{self.name}: simulated {simulated:,.0f} of {self.duration:,.0f} ms "
                        f"in {elapsed:.2f} s")
            self._started = None

    def _line(self, simulated: float, now: float) -> str:
        elapsed = now - (self._started or now)
        line = (f"{self.name}: simulated {simulated:,.0f}/{self.duration:,.0f} ms, "
                f"{format_duration(elapsed)} elapsed")
        if simulated > 0:
            left = elapsed * (self.duration - simulated) / simulated
            line += f", ~{format_duration(left)} left"
        return line

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, highlight=False, markup=False)
            return
        try:
            print(line, file=self.stream, flush=True)
        except (OSError, ValueError):
            pass  # a closed stream: the simulation goes on


class _Silent(SimulationProgress):
    def __init__(self) -> None:
        super().__init__("", 0.0, live=False)

    def step(self, what: str, seconds: float) -> None:
        pass

    def start(self) -> None:
        pass

    def update(self, simulated: float) -> None:
        pass

    def stop(self, simulated: float) -> None:
        pass


def silent_progress() -> SimulationProgress:
    """A progress that shows nothing (``quiet=True``, and the ranks other than 0)."""
    return _Silent()
