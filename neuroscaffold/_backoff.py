"""Bounded exponential back-off for polling loops: no busy spin, no fixed sleeps."""

from __future__ import annotations

import time

__all__ = ["Backoff"]


class Backoff:
    """Sleeps that double from ``tmin`` up to ``tmax`` while nothing happens.

    Polling loops call :meth:`sleep` after a fruitless poll and :meth:`reset` after a
    fruitful one, so an idle rank wakes rarely (a small fraction of a core) while a busy
    one never sleeps at all.
    """

    __slots__ = ("tmin", "tmax", "delay")

    def __init__(self, tmax: float = 0.002, tmin: float | None = None):
        self.tmax = tmax
        self.tmin = tmin if tmin is not None else tmax / 64
        self.delay = 0.0

    def reset(self) -> None:
        self.delay = 0.0

    def sleep(self, limit: float | None = None) -> None:
        """Sleep a little longer than last time, never more than ``tmax`` or ``limit``."""
        delay = self.delay or self.tmin
        self.delay = min(self.tmax, delay * 2)
        if limit is not None and delay > limit:
            delay = max(limit, 0.0)
        time.sleep(delay)
