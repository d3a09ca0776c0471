"""Pictures of a simulation's activity, from its SONATA spike file.

:func:`plot_activity` draws, with matplotlib (Agg, no pyplot state), for each recorded
cell type: a raster (a fixed random sample of at most ``max_cells`` of its recorded
cells, so large populations stay readable), and its population rate over time; then
the distribution of the per-cell rates of every type (silent cells included, on a
log-spaced axis because rates span decades). It writes a PNG, or one self-contained
HTML file (the PNG embedded, with a table of rates per type).

``neuroscaffold plot spikes.h5 -o activity.png`` calls it when the file is a spike
file (:func:`is_spike_file`).
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["MAX_CELLS", "is_spike_file", "plot_activity"]

MAX_CELLS = 300  # cells drawn per type in a raster
_BINS = 60  # time bins of the rate over time, at most (fewer are less noisy)
_FORMATS = (".png", ".html", ".htm")


def is_spike_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a SONATA spike file (a ``/spikes`` group, no network)."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            return "spikes" in file and "configuration" not in file
    except OSError:
        return False


def _colors(n: int) -> list:
    from matplotlib import colormaps

    return [colormaps["tab10"](i % 10) for i in range(n)]


def _bin_width(duration: float) -> float:
    """A round bin width (ms) giving at most :data:`_BINS` bins, at least 1 ms."""
    raw = max(duration / _BINS, 5.0)
    for width in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if width >= raw:
            return float(width)
    return float(np.ceil(raw / 1000) * 1000)


def _figure(result: Any, max_cells: int) -> Figure:
    names = list(result.spikes)
    duration = result.duration or 1.0
    colors = _colors(len(names))
    rows = max(len(names), 1) + 1
    figure = Figure(figsize=(13, 2.4 * rows + 0.6), layout="constrained")
    grid = figure.add_gridspec(rows, 3)
    title = f"simulation '{result.simulation}'" if result.simulation else "spikes"
    figure.suptitle(f"{title}: {duration:,.0f} ms, "
                    f"{sum(len(t) for t in result.spikes.values()):,} spikes")
    rng = np.random.default_rng(0)
    width = _bin_width(duration)
    edges = np.arange(0.0, duration + width, width)
    for row, (name, color) in enumerate(zip(names, colors)):
        trains = result.spikes[name]
        cells = (np.arange(trains.node_count, dtype=np.uint64) if trains.recorded is None
                 else np.sort(trains.recorded))
        shown = cells if len(cells) <= max_cells else np.sort(
            rng.choice(cells, max_cells, replace=False))
        raster = figure.add_subplot(grid[row, :2])
        keep = np.isin(trains.node_ids, shown)
        rows_of = np.searchsorted(shown, trains.node_ids[keep])
        raster.scatter(trains.timestamps[keep], rows_of, s=14 if len(shown) < 100 else 6,
                       marker="|", color=color, linewidths=0.9, rasterized=True)
        if not keep.any():
            note = "no spikes" if not len(trains) else \
                f"no spikes among the cells drawn ({len(trains):,} among all)"
            raster.text(0.5, 0.5, note,
                        ha="center", va="center", transform=raster.transAxes, fontsize=9)
        raster.set_xlim(0, duration)
        raster.set_ylim(-0.5, max(len(shown), 1) - 0.5)
        sample = f"{len(shown):,} of {len(cells):,} cells" if len(shown) < len(cells) \
            else f"{len(cells):,} cells"
        raster.set_title(f"{name}: raster ({sample})", fontsize=10, loc="left")
        raster.set_ylabel("cell")
        if row == len(names) - 1:
            raster.set_xlabel("time (ms)")
        rate_axes = figure.add_subplot(grid[row, 2])
        counts, _ = np.histogram(trains.timestamps, bins=edges)
        rate = counts / max(len(cells), 1) / (width / 1000.0)
        rate_axes.step(edges[:-1], rate, where="post", color=color, linewidth=1)
        mean = trains.mean_rate(duration)
        rate_axes.axhline(mean, color="black", linestyle="--", linewidth=0.8,
                          label=f"mean {mean:.2f} Hz")
        rate_axes.set_xlim(0, duration)
        rate_axes.set_ylim(bottom=0)
        rate_axes.set_title(f"{name}: rate per cell ({width:g} ms bins)", fontsize=10)
        rate_axes.set_ylabel("Hz")
        rate_axes.legend(fontsize=8, loc="upper right")
        if row == len(names) - 1:
            rate_axes.set_xlabel("time (ms)")
    _draw_rates(figure.add_subplot(grid[rows - 1, :]), result, names, colors, duration)
    return figure


def _share(part: int, whole: int) -> str:
    """``part / whole`` as a percentage that never rounds to 0% or 100% falsely."""
    value = part / max(whole, 1)
    if 0 < value < 0.001:
        return "<0.1%"
    if 0.999 < value < 1:
        return ">99.9%"
    return f"{value:.1%}" if value < 0.1 or value > 0.9 else f"{value:.0%}"


def _draw_rates(axes, result: Any, names: list[str], colors: list, duration: float) -> None:
    """The distribution of per-cell rates, one step histogram per type. Rates are whole
    spike counts over the run: with few spikes per cell, one bin per count (silent
    cells at 0); with many, log-spaced bins (silent cells at the left edge)."""
    rates = {name: result.spikes[name].rates(duration) for name in names}
    unit = 1000.0 / duration  # the rate of one spike in the whole run
    top = max([float(r.max()) for r in rates.values() if len(r)] + [unit])
    by_count = top / unit <= 60
    if by_count:
        bins = (np.arange(round(top / unit) + 2) - 0.5) * unit
    else:
        bins = np.logspace(np.log10(unit / 2), np.log10(top * 1.5), 50)
    for name, color in zip(names, colors):
        values = rates[name]
        silent = int((values == 0).sum())
        shown = values if by_count else np.where(values == 0, unit / 1.9, values)
        share = f", {_share(silent, len(values))} silent" if silent else ""
        axes.hist(shown, bins=bins, histtype="step", color=color, linewidth=1.5,
                  label=f"{name}: mean {values.mean() if len(values) else 0:.2f} Hz{share}")
    if by_count:
        axes.set_xlabel(f"rate of a cell over the whole run (Hz; one spike is {unit:.3g} Hz)")
    else:
        axes.set_xscale("log")
        axes.set_xlabel("rate of a cell over the whole run (Hz); silent cells at the left edge")
    axes.set_yscale("symlog", linthresh=1)
    axes.set_ylabel("cells")
    axes.set_title("per-cell rates", fontsize=10)
    if names:
        axes.legend(fontsize=8, loc="upper right")


def _html(result: Any, png: bytes) -> str:
    duration = result.duration or 1.0
    rows = []
    for name, trains in result.spikes.items():
        rates = trains.rates(duration)
        rows.append((name, f"{trains.recorded_count:,}", f"{len(trains):,}",
                     f"{trains.mean_rate(duration):.3f}",
                     f"{float(np.median(rates)) if len(rates) else 0:.3f}",
                     f"{float((rates == 0).mean()) if len(rates) else 0:.1%}"))
    head = "".join(f"<th>{h}</th>" for h in ("cell type", "recorded cells", "spikes",
                                              "mean rate (Hz)", "median rate (Hz)", "silent"))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    title = html.escape(f"activity of simulation '{result.simulation}'")
    image = base64.b64encode(png).decode()
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}img{{max-width:100%}}</style>
</head><body><h1>{title}</h1><p>{duration:,.0f} ms simulated.</p>
<table><tr>{head}</tr>{body}</table>
<img alt="raster, rates over time and per-cell rates" src="data:image/png;base64,{image}">
</body></html>
"""


def plot_activity(spikes: str | os.PathLike, out_path: str | os.PathLike,
                  max_cells: int = MAX_CELLS) -> Path:
    """Draw the activity in spike file ``spikes`` and write it as ``.png`` or
    self-contained ``.html`` (the suffix of ``out_path`` picks); returns the path."""
    from .simulation import read_spike_file

    out = Path(out_path)
    kind = out.suffix.lower()
    if kind not in _FORMATS:
        raise ValueError(f"the picture must be a .png or .html file, not {out.name!r}")
    result = read_spike_file(spikes)
    figure = _figure(result, max_cells)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    if kind == ".png":
        out.write_bytes(buffer.getvalue())
    else:
        out.write_text(_html(result, buffer.getvalue()), encoding="utf-8")
    return out
