"""Bounded back-off for polling loops: no busy spin, no fixed sleeps."""

from __future__ import annotations

import time

__all__ = ["Backoff"]


class Backoff:
    """Sleeps that lengthen with the time spent idle, from ``tmin`` up to ``tmax``.

    Polling loops call :meth:`sleep` after a fruitless poll and :meth:`reset` after a
    fruitful one. Each sleep is at most ``ratio`` of the time idle so far, so a rank that
    just ran dry answers new work within microseconds, one idle for long wakes rarely
    (at ``tmax`` a small fraction of a core), and a busy one never sleeps at all.
    """

    __slots__ = ("tmin", "tmax", "ratio", "_idle_since")

    def __init__(self, tmax: float = 0.002, tmin: float = 2e-5, ratio: float = 0.05):
        self.tmax = tmax
        self.tmin = tmin
        self.ratio = ratio
        self._idle_since: float | None = None

    def reset(self) -> None:
        self._idle_since = None

    def next_delay(self, limit: float | None = None) -> float:
        """How long to wait now: a share of the idle time, within bounds and ``limit``."""
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        delay = min(self.tmax, max(self.tmin, (now - self._idle_since) * self.ratio))
        if limit is not None and delay > limit:
            delay = max(limit, 0.0)
        return delay

    def sleep(self, limit: float | None = None) -> None:
        """Sleep for :meth:`next_delay`."""
        time.sleep(self.next_delay(limit))
