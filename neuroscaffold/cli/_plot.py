"""``neuroscaffold plot NET.hdf5 -o net.png|net.html``: pictures of a compiled network."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="draw a compiled network (cells, counts, degrees, distances) or a spike "
        "file's activity",
        description="Draw the cells by type in space (a subsample for large networks), the "
        "cell counts and densities per type against the configured values, and for every "
        "connection set the in- and out-degree distributions and the distance distribution "
        "of connected pairs with the configured radius. Given a spike file (made by "
        "`simulate`), draw its activity: a raster per cell type (a sample of large "
        "populations), the rate per type over time and the distribution of per-cell rates.",
    )
    parser.add_argument("file", metavar="NET", type=Path, help="a network file made by `compile`, or a spike file made by `simulate`")
    parser.add_argument("-o", "--output", metavar="OUT", type=Path, required=True,
                        help="the picture to write: .png, or .html (one self-contained file)")
    parser.add_argument("--max-points", type=int, default=None, metavar="N",
                        help="cells drawn per type (default 4,000; in a raster 300)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..exceptions import ConfigurationError, StorageError
    from ..plot import MAX_POINTS, plot_network

    if args.output.suffix.lower() not in (".png", ".html", ".htm"):
        raise ConfigurationError(f"-o must end in .png or .html, not {args.output.name!r}")
    if not args.file.exists():
        raise StorageError(f"{args.file}: no such file")
    from ..activity import MAX_CELLS, is_spike_file, plot_activity

    if is_spike_file(args.file):
        written = plot_activity(args.file, args.output, max_cells=args.max_points or MAX_CELLS)
    else:
        written = plot_network(args.file, args.output, max_points=args.max_points or MAX_POINTS)
    print(f"picture written to {written}", flush=True)
    return 0
