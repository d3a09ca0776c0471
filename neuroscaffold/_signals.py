"""The stop signals of a run (SIGINT, SIGTERM, SIGHUP), and when they act.

A signal that stops a rank at a random point of a collective step leaves the other
ranks in a collective it will never join. So while a parallel run is *deferring*
(:func:`defer`), the first stop signal is only remembered (:func:`pending`); the run
acts on it at its next agreement point, where every rank says whether it got one and
every rank then stops alike (see :mod:`._agreement`), or a pool takes it over when it
starts (``services.pool``'s signal guard). A second stop signal is raised at once as
:class:`KeyboardInterrupt`: the user means it. Outside deferring, the first one is
raised at once (Ctrl-C as usual).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["STOPS", "defer", "deferred", "deferring", "defer_pending", "install", "pending", "raise_pending", "take"]

#: the signals that stop a run: Ctrl-C, ``kill`` / a batch system's time limit, and a
#: closed terminal or ssh session
STOPS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_pending: str | None = None
_deferring = False


def _on_stop(signum: int, frame) -> None:
    global _pending
    name = signal.Signals(signum).name
    if _deferring and _pending is None:
        _pending = name
        return
    raise KeyboardInterrupt(name)


def install() -> None:
    """Handle the stop signals here from now on (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOPS:
            signal.signal(sig, _on_stop)


def deferring() -> bool:
    return _deferring


def defer(on: bool) -> None:
    """Remember the first stop signal instead of raising it (``on``), or raise it at
    once from now on; a signal remembered meanwhile stays pending."""
    global _deferring
    _deferring = on


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Defer stop signals for the time of the block."""
    before = _deferring
    defer(True)
    try:
        yield
    finally:
        defer(before)


def pending() -> str | None:
    """The name of the stop signal that came and was not acted on yet, if any."""
    return _pending


def take() -> str | None:
    """The pending stop signal (now acted on by the caller), if any."""
    global _pending
    name, _pending = _pending, None
    return name


def raise_pending() -> None:
    """Raise the pending stop signal as :class:`KeyboardInterrupt`, if one came."""
    name = take()
    if name is not None:
        raise KeyboardInterrupt(name)


def defer_pending(name: str) -> None:
    """Make ``name`` the pending stop signal (one that a block held back), unless one
    is pending already."""
    global _pending
    if _pending is None:
        _pending = name
