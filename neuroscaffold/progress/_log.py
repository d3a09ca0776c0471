"""Plain-text progress for logs: a batch job's output file, or MPI without a terminal.

A line is written at most every ``interval`` seconds (from events, or from a heartbeat
thread while no event comes, so hours-long jobs still show signs of life), at each phase
change and when the pool ends; each failure is written once, when it happens. A pool of
100,000 jobs therefore writes a handful of lines, never one per job.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from typing import IO, Any

from ..services.pool import PoolStatus
from ._stats import Clock, StatsListener

__all__ = ["LogProgress"]


class LogProgress(StatsListener):
    """A pool listener that writes progress lines such as
    ``placement: 1204/5000 jobs, 3 failed, 2 running, 41 s elapsed, ~2 min left``.

    Args:
        stream: where lines go; by default ``sys.stderr`` (as it is now: a live rich
            display started later does not capture these lines). If writing fails
            (closed, broken pipe) the log goes silent with a warning; the run goes on.
        interval: the least number of seconds between two periodic lines.
        clock: ``time.time`` or a stand-in (tests pass a fake clock instead of sleeping).
        heartbeat: while entered, a thread writes the periodic line even when no event
            comes (long jobs). Without it, lines are only written from events.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        interval: float = 5.0,
        clock: Clock = time.time,
        heartbeat: bool = True,
    ):
        super().__init__(clock)
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.heartbeat = heartbeat
        self._printed_failures = 0
        self._errors_seen: set[tuple] = set()  # (group, error) of the failures written
        self._repeats = 0  # failures not written since the last line: their error was
        self._stage: tuple | None = None  # (phase, pool status) of the last line
        self._held: dict[tuple, float] = {}  # stage -> until when its first line may wait
        self._stop_beat: threading.Event | None = None
        self._beat: threading.Thread | None = None

    def start(self) -> None:
        if self.heartbeat and self._beat is None:
            self._stop_beat = threading.Event()
            self._beat = threading.Thread(
                target=self._beat_loop, args=(self._stop_beat,), name="LogProgress", daemon=True
            )
            self._beat.start()

    def stop(self) -> None:
        if self._beat is not None:
            self._stop_beat.set()
            self._beat.join()
            self._beat = None

    def _beat_loop(self, stop: threading.Event) -> None:
        while not stop.wait(min(self.interval, 0.1) if self._scheduling() else self.interval):
            self._write_due()

    def _scheduling(self) -> bool:
        """Whether the followed pool is still adding jobs in the background
        (``pool.schedule``): the first line waits for it, so it counts every job."""
        return self.stats.scheduling()

    def _react(self, event: Any) -> None:
        self._write_due()

    def _write_due(self) -> None:
        stats = self.stats
        with stats.lock:
            if stats.started is None:
                return
            stats.refresh()
            lines = []
            for failure in stats.failures[self._printed_failures :]:
                # a bug repeated in every chunk is written once, then counted
                key = (failure.group, failure.error)
                if key in self._errors_seen:
                    self._repeats += 1
                else:
                    self._errors_seen.add(key)
                    lines.append(failure.describe())
            self._printed_failures = len(stats.failures)
            now = stats.clock()
            stage = (stats.phase, stats.pool_status)
            if stats.pool_status is PoolStatus.CLOSING:
                due = stage != self._stage
            elif stats.pool_status is PoolStatus.SCHEDULING:  # nothing to say on entering
                due = self._stage is not None and now >= self._due
            elif stage != self._stage and self._scheduling() and (
                    now < self._held.setdefault(stage, now + self.interval)):
                # wait (at most one interval) until every job is counted (see _beat_loop)
                due = False
                stage = self._stage
            else:
                due = stage != self._stage or now >= self._due
            if due:
                if self._repeats:
                    lines.append(f"{self._repeats} more job{'s' if self._repeats > 1 else ''}"
                                 " failed with an error written above")
                    self._repeats = 0
                lines.append(stats.snapshot().summary())
            if due or self._stage is None:
                self._stage = stage
                self._due = now + self.interval
        if lines:
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write("".join(line + "\n" for line in lines))
            self.stream.flush()
        except (OSError, ValueError) as exc:  # closed or broken: never fail the run for it
            self.stream = None
            warnings.warn(f"progress log disabled: cannot write to it: {exc}", RuntimeWarning)
