"""A picture of a run from its timeline: Gantt chart, utilisation, slowest work.

:func:`build_report` draws, with matplotlib (Agg, no pyplot state), a per-rank Gantt
chart of the jobs coloured by group, each rank's utilisation over time, and tables of
the slowest groups and jobs; it writes a PNG, or a single self-contained HTML file (the
PNG embedded as base64, the tables as HTML).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from ._stats import format_duration
from ._trace import TraceRecord, TraceSource, as_records

__all__ = ["build_report"]

_TOP = 10  # rows of each "slowest" table
_LEGEND_GROUPS = 14
_UTIL_BINS = 120
_LINE_RANKS = 8  # up to this many ranks, utilisation is drawn as lines; else a heat map


@dataclass
class _Summary:
    records: list[TraceRecord]
    ran: list[TraceRecord]
    origin: float
    wall: float
    ranks: list[int]
    groups: list[str]  # by first start
    tables: list[tuple[str, list[str], list[list[str]]]]  # (title, header, rows)

    def headline(self) -> str:
        failed = sum(r.status == "failed" for r in self.records)
        not_run = len(self.records) - len(self.ran)
        text = (f"{len(self.ran)} jobs ran on {len(self.ranks)} ranks in "
                f"{_seconds(self.wall)}, {failed} failed")
        if not_run:
            text += f", {not_run} never ran (cancelled)"
        if self.ran and self.wall > 0:
            busy = sum(r.duration for r in self.ran)
            text += f"; mean utilisation {busy / (self.wall * len(self.ranks)):.0%}"
        return text


def build_report(source: TraceSource, out_path: str | os.PathLike) -> Path:
    """Draw the report of a run and write it as ``.png`` or self-contained ``.html``.

    Args:
        source: a trace file path, a :class:`TraceRecorder`, its records, or a pool's
            ``timeline``.
        out_path: where to write; the suffix (``.png``, ``.html``) picks the format.

    Returns:
        The path written.

    Raises:
        ValueError: ``out_path`` has another suffix, or ``source`` is not a trace file.
    """
    out = Path(out_path)
    kind = out.suffix.lower()
    if kind not in (".png", ".html", ".htm"):
        raise ValueError(f"report must be a .png or .html file, not {out.name!r}")
    summary = _summarise(as_records(source))
    figure = _figure(summary, with_tables=kind == ".png")
    if kind == ".png":
        figure.savefig(out, format="png", dpi=100)
    else:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        out.write_text(_html(summary, buffer.getvalue()), encoding="utf-8")
    return out


def _summarise(records: list[TraceRecord]) -> _Summary:
    ran = sorted((r for r in records if r.ran), key=lambda r: r.start)
    origin = ran[0].start if ran else 0.0
    wall = max((r.end for r in ran), default=origin) - origin
    per_group = _by(ran, "group")
    group_rows = []
    for name, members in sorted(per_group.items(), key=lambda kv: -sum(r.duration for r in kv[1])):
        durations = [r.duration for r in members]
        group_rows.append([
            name, str(len(members)), str(sum(r.status == "failed" for r in members)),
            _seconds(sum(durations)), _seconds(sum(durations) / len(durations)),
            _seconds(max(durations)),
        ])
    slowest = sorted(ran, key=lambda r: -r.duration)[:_TOP]
    job_rows = [[r.name, r.group, str(r.rank), _seconds(r.duration), r.status] for r in slowest]
    tables = [
        ("Slowest strategies (by total time)",
         ["strategy", "jobs", "failed", "total", "mean", "max"], group_rows[:_TOP]),
        ("Slowest jobs", ["job", "strategy", "rank", "duration", "status"], job_rows),
    ]
    ranks = sorted({r.rank for r in ran})
    return _Summary(records, ran, origin, wall, ranks, list(per_group), tables)


def _by(records: list[TraceRecord], field: str) -> dict[Any, list[TraceRecord]]:
    """Records grouped by one of their fields, groups in order of first appearance."""
    groups: dict[Any, list[TraceRecord]] = defaultdict(list)
    for record in records:
        groups[getattr(record, field)].append(record)
    return groups


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s" if value < 100 else format_duration(value)


def _time_unit(wall: float) -> tuple[str, float]:
    if wall < 300:
        return "s", 1.0
    if wall < 3 * 3600:
        return "min", 60.0
    return "h", 3600.0


def _colours(groups: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    if len(groups) <= 10:
        cmap, n = colormaps["tab10"], 10
    elif len(groups) <= 20:
        cmap, n = colormaps["tab20"], 20
    else:
        cmap, n = colormaps["turbo"], len(groups)
    return {g: cmap(i / max(n - 1, 1) if n > 20 else i) for i, g in enumerate(groups)}


def _figure(summary: _Summary, with_tables: bool) -> Figure:
    # The HTML report shows the tables as HTML, so its picture leaves them out.
    n_ranks = max(len(summary.ranks), 1)
    gantt_h = min(max(2.2, 0.35 * n_ranks), 10.0)
    util_h = 2.4 if n_ranks <= _LINE_RANKS else min(max(2.4, 0.12 * n_ranks), 6.0)
    rows = max((len(rows) for _, _, rows in summary.tables), default=0)
    table_h = 0.5 + 0.22 * (max(rows, 1) + 1) if with_tables else 0.0
    figure = Figure(figsize=(13, gantt_h + util_h + table_h + 0.8), layout="constrained")
    heights = [gantt_h, util_h] + ([table_h] if with_tables else [])
    grid = figure.add_gridspec(len(heights), 2, height_ratios=heights)
    figure.suptitle("neuroscaffold run report: " + summary.headline(), fontsize=11)
    unit, scale = _time_unit(summary.wall)
    gantt = figure.add_subplot(grid[0, :])
    _draw_gantt(gantt, summary, scale)
    util = figure.add_subplot(grid[1, :], sharex=gantt)
    _draw_utilisation(util, summary, scale)
    util.set_xlabel(f"time since the first job started ({unit})")
    for column, (title, header, rows) in enumerate(summary.tables if with_tables else ()):
        _draw_table(figure.add_subplot(grid[2, column]), title, header, rows)
    return figure


def _draw_gantt(ax, summary: _Summary, scale: float) -> None:
    colours = _colours(summary.groups)
    for group, members in _by(summary.ran, "group").items():
        ax.add_collection(PolyCollection(_boxes(members, summary, scale),
                                         facecolors=colours[group], edgecolors="none"))
    failed = [r for r in summary.ran if r.status == "failed"]
    if failed:
        ax.add_collection(PolyCollection(_boxes(failed, summary, scale),
                                         facecolors="none", edgecolors="red", linewidths=1.2))
    ax.set_xlim(0, summary.wall / scale or 1.0)
    ax.set_ylim(n - 0.5 if (n := len(summary.ranks)) else 0.5, -0.5)
    step = max(1, -(-len(summary.ranks) // 40))  # at most ~40 labelled rows
    rows = range(0, len(summary.ranks), step)
    ax.set_yticks(rows, [f"rank {summary.ranks[i]}" for i in rows])
    ax.set_title("Jobs per rank, coloured by strategy", fontsize=10, loc="left")
    handles = [Patch(color=colours[g], label=g) for g in summary.groups[:_LEGEND_GROUPS]]
    if len(summary.groups) > _LEGEND_GROUPS:
        hidden = len(summary.groups) - _LEGEND_GROUPS
        handles.append(Patch(color="white", label=f"… {hidden} more"))
    if failed:
        handles.append(Patch(facecolor="none", edgecolor="red", label="failed"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0),
                  fontsize=8, frameon=False)


def _boxes(records: list[TraceRecord], summary: _Summary, scale: float) -> np.ndarray:
    # One box per job: from its start to its end, 0.8 high around its rank's row.
    row = {rank: i for i, rank in enumerate(summary.ranks)}
    start = (np.array([r.start for r in records]) - summary.origin) / scale
    end = (np.array([r.end for r in records]) - summary.origin) / scale
    y = np.array([row[r.rank] for r in records], dtype=float)
    return np.stack([
        np.stack([start, y - 0.4], axis=1), np.stack([end, y - 0.4], axis=1),
        np.stack([end, y + 0.4], axis=1), np.stack([start, y + 0.4], axis=1),
    ], axis=1)


def _draw_utilisation(ax, summary: _Summary, scale: float) -> None:
    ax.set_title("Utilisation per rank (share of time running a job)", fontsize=10, loc="left")
    if not summary.ran or summary.wall <= 0:
        return
    edges = np.linspace(0.0, summary.wall, _UTIL_BINS + 1)
    by_rank = _by(summary.ran, "rank")
    per_rank = np.array(
        [_busy_share(by_rank[rank], summary.origin, edges) for rank in summary.ranks]
    )
    centres = (edges[:-1] + edges[1:]) / 2 / scale
    if len(summary.ranks) <= _LINE_RANKS:
        for rank, share in zip(summary.ranks, per_rank):
            ax.plot(centres, share * 100, linewidth=0.8, alpha=0.75, label=f"rank {rank}")
        ax.plot(centres, per_rank.mean(axis=0) * 100, color="black", linewidth=2, label="mean")
        ax.set_ylim(-5, 105)
        ax.set_ylabel("%")
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    else:
        extent = (0, summary.wall / scale, len(summary.ranks) - 0.5, -0.5)
        image = ax.imshow(per_rank * 100, aspect="auto", interpolation="nearest",
                          cmap="viridis", vmin=0, vmax=100, extent=extent)
        ranks = summary.ranks  # rows are indices into it; the ticks name the ranks
        ax.set_ylabel("rank")
        ax.yaxis.set_major_formatter(
            FuncFormatter(lambda y, _: str(ranks[int(y)]) if 0 <= y < len(ranks) else "")
        )
        ax.figure.colorbar(image, ax=ax, label="%", pad=0.01)


def _busy_share(records: list[TraceRecord], origin: float, edges: np.ndarray) -> np.ndarray:
    # Busy time before t = sum over jobs started before t of (t - start) minus the same
    # over jobs ended before t; evaluated at every edge with sorted arrays, O(n log n).
    starts = np.sort(np.array([r.start - origin for r in records]))
    ends = np.sort(np.array([r.end - origin for r in records]))
    cum_starts = np.concatenate([[0.0], np.cumsum(starts)])
    cum_ends = np.concatenate([[0.0], np.cumsum(ends)])
    k = np.searchsorted(starts, edges)
    m = np.searchsorted(ends, edges)
    busy = (k * edges - cum_starts[k]) - (m * edges - cum_ends[m])
    return np.clip(np.diff(busy) / np.diff(edges), 0.0, 1.0)


def _draw_table(ax, title: str, header: list[str], rows: list[list[str]]) -> None:
    ax.axis("off")
    ax.set_title(title, fontsize=10, loc="left")
    if not rows:
        ax.text(0, 0.9, "no jobs ran", fontsize=9, transform=ax.transAxes)
        return
    cells = [[_clip(cell, 38) for cell in row] for row in rows]
    table = ax.table(cellText=cells, colLabels=header, loc="upper left", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(header))))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; margin-bottom: 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
.failed { color: #b00; }
"""


def _html(summary: _Summary, png: bytes) -> str:
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>neuroscaffold run report</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>neuroscaffold run report</h1>", f"<p>{html.escape(summary.headline())}.</p>",
        f'<img alt="Gantt chart and utilisation per rank" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">',
    ]
    for title, header, rows in summary.tables:
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>")
        parts.extend(f"<th>{html.escape(h)}</th>" for h in header)
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    failures = [r for r in summary.records if r.status == "failed"]
    if failures:
        parts.append(f"<h2>Failures ({len(failures)})</h2><ul>")
        for r in failures[:100]:
            where = f" on rank {r.rank}" if r.rank is not None else ""
            parts.append(f'<li class="failed">{html.escape(r.name)}{where}: '
                         f"{html.escape(r.error or '')}</li>")
        if len(failures) > 100:
            parts.append(f"<li>… {len(failures) - 100} more</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
