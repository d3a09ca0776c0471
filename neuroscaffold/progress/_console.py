"""Live progress on a terminal, drawn with rich.

The display is redrawn at a bounded rate whatever the number of events: by rich's own
refresh thread (the default, so elapsed times move on while a long job runs), or, with
``live_thread=False``, from the event stream when at least ``1/refresh_per_second``
seconds passed since the last redraw. Either way an event only updates counters.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..services.pool import PoolStatus
from ._stats import Clock, ProgressSnapshot, StatsListener, format_duration

__all__ = ["RichProgress"]


class RichProgress(StatsListener):
    """A pool listener that shows a live dashboard on a terminal.

    It shows a progress bar per group (strategy) with done/total and failures, the jobs
    running now with their rank and how long they have been running, the latest
    failures, the elapsed time and an estimate of the time left. Entering it starts the
    display, exiting stops it (the last frame stays on screen). It also renders itself
    when printed with rich (``console.print(progress)``), e.g. in a notebook.

    Args:
        console: the rich console to draw on; by default one on stderr.
        refresh_per_second: the most redraws per second.
        clock: ``time.time`` or a stand-in for tests.
        live_thread: redraw from rich's refresh thread (True) or only from events.
        max_groups: the most group rows shown; the rest are summed up in one line.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        refresh_per_second: float = 4.0,
        clock: Clock = time.time,
        live_thread: bool = True,
        max_groups: int = 12,
    ):
        super().__init__(clock)
        self.console = console if console is not None else Console(stderr=True)
        self.refresh_per_second = refresh_per_second
        self.live_thread = live_thread
        self.max_groups = max_groups
        self.redraws = 0  # how many frames were drawn, for tests and benchmarks
        self._live: Live | None = None
        if live_thread:
            self._due = math.inf  # rich's thread draws; events only report changes

    def start(self) -> None:
        if self._live is None:
            self._live = Live(
                console=self.console,
                auto_refresh=self.live_thread,
                refresh_per_second=self.refresh_per_second,
                get_renderable=self.__rich__,
                transient=False,
            )
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()  # draws the last frame

    def _react(self, event: Any) -> None:
        if event.status is PoolStatus.CLOSING:
            self.stop()
            return
        if self._live is None:
            self.start()  # called without being entered
        if not self.live_thread:
            now = self.stats.clock()
            if now >= self._due:
                self._due = now + 1.0 / self.refresh_per_second
                self._live.refresh()

    def __rich__(self) -> RenderableType:
        self.redraws += 1
        return _render(self.snapshot(), self.max_groups)


def _render(snap: ProgressSnapshot, max_groups: int) -> RenderableType:
    parts: list[RenderableType] = [Text(snap.summary(), style="bold")]
    parts.append(_groups_table(snap, max_groups))
    if snap.running:
        parts.append(_running_table(snap))
    if snap.failures:
        title = Text(f"failures so far: {snap.n_failures}", style="bold red")
        parts.append(title)
        parts.extend(
            Text(f"  {f.describe()}", style="red", no_wrap=True, overflow="ellipsis")
            for f in snap.failures
        )
    return Group(*parts)


def _groups_table(snap: ProgressSnapshot, max_groups: int) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis", max_width=48)
    table.add_column(width=32)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    # Unfinished groups first: with hundreds of strategies, those are the ones to watch.
    groups = sorted(snap.groups, key=lambda g: g.ended >= g.total)
    for group in groups[:max_groups]:
        table.add_row(
            group.name,
            ProgressBar(total=max(group.total, 1), completed=group.ended, width=32),
            f"{group.ended}/{group.total}",
            Text(f"{group.failed} failed", style="red") if group.failed else "",
        )
    hidden = groups[max_groups:]
    if hidden:
        ended = sum(g.ended for g in hidden)
        total = sum(g.total for g in hidden)
        more = Text(f"… {len(hidden)} more groups", style="dim")
        table.add_row(more, "", f"{ended}/{total}", "")
    return table


def _running_table(snap: ProgressSnapshot) -> Table:
    more = snap.n_running - len(snap.running)
    title = f"running now: {snap.n_running}"
    if more:
        title += f" (longest {len(snap.running)} shown)"
    table = Table(title=title, title_justify="left", box=None, show_header=False, padding=(0, 1))
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column(no_wrap=True, overflow="ellipsis", style="dim", max_width=32)
    table.add_column(no_wrap=True, justify="right")
    table.add_column(no_wrap=True, justify="right")
    for job in snap.running:
        rank = f"rank {job.rank}" if job.rank is not None else ""
        since = f"for {format_duration(snap.now - job.started_at)}"
        table.add_row(job.name, job.group, rank, since)
    return table
