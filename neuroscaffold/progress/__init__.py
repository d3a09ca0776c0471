"""Showing and recording what a job pool does.

Layout: ``_stats`` counts a pool's events (per group, running jobs, failures, time
left) for the two displays built on it, ``_console`` (a live rich dashboard for
terminals) and ``_log`` (plain lines for log files); ``_trace`` records the timeline of
a run and reads/writes it as a Chrome trace file; ``_report`` draws a picture of it.

``build_report`` is loaded on first use, so making a pool never imports matplotlib.
The displays and the recorder are pool listeners: callables taking a ``PoolProgress``
event, called on the main rank only, so only the main rank prints.
"""

from __future__ import annotations

from typing import Any

from ._console import RichProgress
from ._log import LogProgress
from ._stats import ProgressSnapshot, ProgressStats
from ._trace import TraceRecord, TraceRecorder, read_trace, write_trace

__all__ = [
    "LogProgress",
    "ProgressSnapshot",
    "ProgressStats",
    "RichProgress",
    "TraceRecord",
    "TraceRecorder",
    "build_report",
    "default_listener",
    "read_trace",
    "write_trace",
]


def __getattr__(name: str):
    if name == "build_report":
        from ._report import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def default_listener(pool: Any = None, *, console: Any = None) -> RichProgress | LogProgress:
    """The progress listener ``create_job_pool(quiet=False)`` adds on the main rank.

    A live rich display when the console is a terminal; plain log lines otherwise (a
    batch job's output file, or MPI ranks whose output goes through ``mpiexec``).

    Args:
        pool: the pool it will listen to (unused for now; part of the hook's signature).
        console: the rich console to decide on and draw to; by default one on stderr.
    """
    from rich.console import Console

    if console is None:
        console = Console(stderr=True)
    if console.is_terminal:
        return RichProgress(console=console)
    return LogProgress(console.file)
