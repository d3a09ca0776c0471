"""Pictures of a compiled network: what a modeller checks first.

:func:`plot_network` draws, with matplotlib (Agg, no pyplot state):

* the cells by type in space (x-y and z-y projections; a random subsample of at most
  ``max_points`` cells per type for large networks);
* the cell counts per type against the plan's expected counts, and the densities
  against the configured ones;
* for every connection set: the out-degree and in-degree distributions, and the
  distribution of the distance between connected cells (a sample of at most
  ``max_pairs`` pairs), with the configured radius drawn.

It writes a PNG, or one self-contained HTML file (the PNG embedded, with tables).
It reads networks only through the public API (``from_storage``,
``get_placement_set(...).load_positions()``, ``get_connectivity_set(...)
.load_connections()``, ``.presynaptic`` / ``.postsynaptic``, ``configuration``), one
connectivity set at a time, so memory stays about the size of the positions plus the
largest set.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .placement import union_volume

__all__ = ["plot_network", "summarise_network"]

MAX_POINTS = 4_000  # cells drawn per type
MAX_PAIRS = 200_000  # connected pairs sampled per set for the distance distribution
_FORMATS = (".png", ".html", ".htm")


@dataclass
class _TypeSummary:
    name: str
    count: int
    expected: float | None
    volume: float | None  # of the partitions its strategies fill (µm³)
    configured_density: float | None
    sample: np.ndarray  # (k, 3) positions drawn
    radius: float = 0.0  # of the cell type (µm)
    nearest: np.ndarray = field(default_factory=lambda: np.empty(0))  # per drawn cell (µm)

    @property
    def density(self) -> float | None:
        return self.count / self.volume if self.volume else None


@dataclass
class _SetSummary:
    name: str
    pre: str
    post: str
    pairs: int
    out_degree: np.ndarray  # per presynaptic cell
    in_degree: np.ndarray  # per postsynaptic cell
    distances: np.ndarray  # of a sample of pairs
    radius: float | None
    radius_label: str | None


@dataclass
class NetworkSummary:
    """What :func:`plot_network` draws, computed from a network."""

    name: str
    size: tuple[float, float, float]
    types: list[_TypeSummary] = field(default_factory=list)
    sets: list[_SetSummary] = field(default_factory=list)


def _configured(configuration: Any) -> tuple[dict, dict, dict]:
    """Expected counts (from the plan), partition volumes and configured densities
    per cell type."""
    from .plan import build_plan

    try:
        expected = build_plan(configuration).cells
    except Exception:  # a configuration the plan cannot read: draw without it
        expected = {}
    volumes: dict[str, float] = {}
    densities: dict[str, float | None] = {}
    for strategy in configuration.placement.values():
        try:
            volume = union_volume(strategy.partitions, configuration.network)
        except Exception:
            volume = 0.0
        for cell_type in strategy.cell_types:
            volumes[cell_type.name] = volumes.get(cell_type.name, 0.0) + volume
            density = strategy.density if strategy.density is not None else cell_type.density
            densities.setdefault(cell_type.name, density)
    return expected, volumes, densities


def summarise_network(network: Any, max_points: int = MAX_POINTS, max_pairs: int = MAX_PAIRS,
                      seed: int = 0) -> NetworkSummary:
    """The numbers :func:`plot_network` draws (``network``: a network or its path)."""
    from .network import from_storage

    if isinstance(network, (str, os.PathLike)):
        network = from_storage(network)
    configuration = network.configuration
    geometry = configuration.network
    rng = np.random.default_rng(seed)
    summary = NetworkSummary(configuration.name, (geometry.x, geometry.y, geometry.z))
    expected, volumes, densities = _configured(configuration)
    positions: dict[str, np.ndarray] = {}
    for name in configuration.cell_types:
        try:
            cells = network.get_placement_set(name).load_positions()
        except Exception:  # not stored (never placed)
            cells = np.empty((0, 3))
        positions[name] = cells
        sample = cells if len(cells) <= max_points else cells[
            np.sort(rng.choice(len(cells), max_points, replace=False))]
        summary.types.append(_TypeSummary(name, len(cells), expected.get(name),
                                          volumes.get(name) or None, densities.get(name),
                                          sample, float(configuration.cell_types[name].radius),
                                          _nearest(cells, sample)))
    for name, strategy in configuration.connectivity.items():
        try:
            connections = network.get_connectivity_set(name)
        except Exception:
            continue
        pre_name = connections.presynaptic or strategy.presynaptic.name
        post_name = connections.postsynaptic or strategy.postsynaptic.name
        pre, post = positions.get(pre_name), positions.get(post_name)
        out_degree, in_degree, pairs = _degrees_and_sample(
            connections, len(pre) if pre is not None else 0,
            len(post) if post is not None else 0, max_pairs, rng)
        if pre is not None and post is not None and len(pairs):
            distances = np.linalg.norm(pre[pairs[:, 0]] - post[pairs[:, 1]], axis=1)
        else:
            distances = np.empty(0)
        radius, label = _radius_of(strategy)
        summary.sets.append(_SetSummary(name, pre_name, post_name, int(in_degree.sum()),
                                        out_degree, in_degree, distances, radius, label))
        del pairs
    return summary


def _nearest(cells: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """The distance from each ``sample`` cell to the nearest other cell of its type."""
    if len(cells) < 2:
        return np.empty(0)
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(cells).query(sample, k=2)
    return distances[:, 1]


def _degrees_and_sample(connections: Any, n_pre: int, n_post: int, max_pairs: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out- and in-degrees of every cell, and a uniform sample of at most ``max_pairs``
    pairs, reading the set a slice at a time (memory bounded by the slice and the
    cells, never by the number of connections)."""
    total = len(connections)
    wanted = np.sort(rng.choice(total, max_pairs, replace=False)) if total > max_pairs else None
    out_degree = np.zeros(n_pre, dtype=np.int64)
    in_degree = np.zeros(n_post, dtype=np.int64)
    sample, start = [], 0
    for pairs in connections.iter_connections():
        out_degree = _add_counts(out_degree, pairs[:, 0])
        in_degree = _add_counts(in_degree, pairs[:, 1])
        if wanted is None:
            sample.append(pairs)
        else:
            lo, hi = np.searchsorted(wanted, [start, start + len(pairs)])
            sample.append(pairs[wanted[lo:hi] - start])
        start += len(pairs)
    picked = np.concatenate(sample) if sample else np.empty((0, 2), dtype=np.int64)
    return out_degree, in_degree, picked


def _add_counts(counts: np.ndarray, indices: np.ndarray) -> np.ndarray:
    found = np.bincount(indices, minlength=len(counts))
    if len(found) > len(counts):
        counts = np.concatenate([counts, np.zeros(len(found) - len(counts), dtype=np.int64)])
    counts[: len(found)] += found
    return counts


def _radius_of(strategy: Any) -> tuple[float | None, str | None]:
    """The configured reach of a connection strategy, if it has one."""
    radius = getattr(strategy, "radius", None)
    if isinstance(radius, (int, float)):
        return float(radius), f"radius {radius:g} µm"
    sigma = getattr(strategy, "sigma", None)
    if isinstance(sigma, (int, float)):
        return 3.0 * float(sigma), f"3 sigma = {3 * sigma:g} µm"
    return None, None


# --- drawing ---------------------------------------------------------------------------


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _figure(summary: NetworkSummary) -> Figure:
    rows = 1 + len(summary.sets)
    figure = Figure(figsize=(16, 4.2 * rows), layout="constrained")
    grid = figure.add_gridspec(rows, 3)
    colors = _colors(len(summary.types))
    total = sum(t.count for t in summary.types)
    figure.suptitle(f"network '{summary.name}': {total:,} cells, "
                    f"{sum(s.pairs for s in summary.sets):,} connections", fontsize=14)
    x, y, z = summary.size
    for column, (a, b, la, lb) in enumerate(((0, 1, "x", "y"), (2, 1, "z", "y"))):
        axes = figure.add_subplot(grid[0, column])
        # the most numerous types first, so that rare ones stay visible on top
        for t, color in sorted(zip(summary.types, colors), key=lambda tc: -tc[0].count):
            if len(t.sample):
                shown = "" if len(t.sample) == t.count else f", {len(t.sample):,} drawn"
                axes.scatter(t.sample[:, a], t.sample[:, b], s=3 if len(t.sample) > 1000 else 12,
                             color=color, alpha=0.6 if len(t.sample) > 1000 else 0.9,
                             linewidths=0, label=f"{t.name} ({t.count:,}{shown})")
        axes.set_xlim(0, summary.size[a])
        axes.set_ylim(0, summary.size[b])
        axes.set_aspect("equal", adjustable="box")
        axes.set_xlabel(f"{la} (µm)")
        axes.set_ylabel(f"{lb} (µm)")
        axes.set_title(f"cells, {la}-{lb} projection")
        if column == 0 and summary.types:
            axes.legend(loc="upper left", bbox_to_anchor=(0, -0.12), fontsize=8, ncols=2,
                        markerscale=3, frameon=False)
    _draw_counts(figure.add_subplot(grid[0, 2]), summary, colors)
    for row, s in enumerate(summary.sets, start=1):
        _draw_degrees(figure.add_subplot(grid[row, 0]), s.out_degree,
                      f"{s.name}: out-degree of {s.pre}", f"connections per {s.pre} cell")
        _draw_degrees(figure.add_subplot(grid[row, 1]), s.in_degree,
                      f"{s.name}: in-degree of {s.post}", f"connections per {s.post} cell")
        _draw_distances(figure.add_subplot(grid[row, 2]), s)
    return figure


def _draw_counts(axes, summary: NetworkSummary, colors) -> None:
    names = [t.name for t in summary.types]
    index = np.arange(len(names))
    stored = [t.count for t in summary.types]
    expected = [t.expected if t.expected is not None else np.nan for t in summary.types]
    axes.bar(index - 0.2, stored, 0.4, color=colors, label="stored")
    axes.bar(index + 0.2, expected, 0.4, color="none", edgecolor="black", hatch="//",
             label="expected (plan)")
    for i, t in enumerate(summary.types):
        text = f"{t.count:,}"
        if t.density is not None:
            text += f"\n{t.density:.3g}/µm³"
            if t.configured_density is not None:
                text += f"\n(set {t.configured_density:.3g})"
        if len(t.nearest):  # cells closer than two radii overlap
            text += f"\nnearest ≥{t.nearest.min():.3g} µm\n(2r {2 * t.radius:g})"
        axes.annotate(text, (i, max(t.count, t.expected or 0)), ha="center", va="bottom",
                      fontsize=7, xytext=(0, 2), textcoords="offset points")
    axes.set_xticks(index, names, rotation=30, ha="right")
    axes.set_yscale("symlog", linthresh=1)
    axes.set_ylabel("cells")
    axes.set_title("cells per type: stored vs expected")
    axes.legend(fontsize=8, loc="upper right")
    axes.set_ylim(top=max([t.count for t in summary.types] + [1]) * 30)


def _draw_degrees(axes, degrees: np.ndarray, title: str, label: str) -> None:
    if len(degrees):
        top = int(degrees.max())
        bins = np.arange(top + 2) - 0.5 if top < 60 else 60
        axes.hist(degrees, bins=bins, color="#4c72b0")
        axes.axvline(degrees.mean(), color="black", linestyle="--", linewidth=1,
                     label=f"mean {degrees.mean():.1f}")
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "no cells", ha="center", va="center", transform=axes.transAxes)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(label)
    axes.set_ylabel("cells")


def _draw_distances(axes, s: _SetSummary) -> None:
    if len(s.distances):
        axes.hist(s.distances, bins=60, color="#55a868")
        sampled = "" if len(s.distances) == s.pairs else f" ({len(s.distances):,} sampled)"
        axes.set_title(f"{s.name}: pair distances{sampled}", fontsize=10)
    else:
        axes.text(0.5, 0.5, "no connections", ha="center", va="center", transform=axes.transAxes)
        axes.set_title(f"{s.name}: pair distances", fontsize=10)
    if s.radius is not None:
        axes.axvline(s.radius, color="red", linewidth=1.5, label=f"configured {s.radius_label}")
        axes.legend(fontsize=8)
    axes.set_xlabel("distance (µm)")
    axes.set_ylabel("pairs")


def _html(summary: NetworkSummary, png: bytes) -> str:
    def table(header, rows):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                       for row in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def number(value, fmt=",.0f"):
        return "?" if value is None else format(value, fmt)

    cells = table(["cell type", "stored", "expected", "density (/µm³)", "configured density",
                   "nearest neighbour: min / median (µm)", "2 × radius (µm)",
                   "closer than 2 × radius"],
                  [[t.name, f"{t.count:,}", number(t.expected), number(t.density, ".3g"),
                    number(t.configured_density, ".3g"),
                    f"{t.nearest.min():.3g} / {np.median(t.nearest):.3g}" if len(t.nearest) else "-",
                    f"{2 * t.radius:g}",
                    f"{np.mean(t.nearest < 2 * t.radius):.0%}" if len(t.nearest) else "-"]
                   for t in summary.types])
    sets = table(["connection set", "pre → post", "pairs", "mean out-degree",
                  "mean in-degree", "median distance (µm)", "configured reach"],
                 [[s.name, f"{s.pre} → {s.post}", f"{s.pairs:,}",
                   f"{s.out_degree.mean():.2f}" if len(s.out_degree) else "-",
                   f"{s.in_degree.mean():.2f}" if len(s.in_degree) else "-",
                   f"{np.median(s.distances):.1f}" if len(s.distances) else "-",
                   s.radius_label or "-"] for s in summary.sets])
    image = base64.b64encode(png).decode()
    title = html.escape(f"network '{summary.name}'")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#eee}}
img{{max-width:100%}}</style></head><body>
<h1>{title}</h1>
<h2>Cells</h2>{cells}
<h2>Connections</h2>{sets}
<img alt="cells in space, counts, degree and distance distributions" src="data:image/png;base64,{image}">
</body></html>
"""


def plot_network(network: Any, out_path: str | os.PathLike, max_points: int = MAX_POINTS,
                 max_pairs: int = MAX_PAIRS) -> Path:
    """Draw a compiled network and write it as ``.png`` or self-contained ``.html``.

    Args:
        network: a :class:`~neuroscaffold.Network` or the path of a network file.
        out_path: where to write; the suffix (``.png``, ``.html``) picks the format.
        max_points: cells drawn per type in the projections (a random subsample).
        max_pairs: connected pairs sampled per set for the distance distribution.

    Returns:
        The path written.
    """
    out = Path(out_path)
    kind = out.suffix.lower()
    if kind not in _FORMATS:
        raise ValueError(f"the picture must be a .png or .html file, not {out.name!r}")
    summary = summarise_network(network, max_points=max_points, max_pairs=max_pairs)
    figure = _figure(summary)
    if kind == ".png":
        figure.savefig(out, format="png", dpi=80)
    else:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        out.write_text(_html(summary, buffer.getvalue()), encoding="utf-8")
    return out
