"""``neuroscaffold show OUT.hdf5``: what a compiled network file holds."""

from __future__ import annotations

import argparse

from .._text import short_text

__all__ = ["register", "format_summary"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "show",
        help="summarise a compiled network file",
        description="Print the cells per type, the connections per set, the chunks and "
        "the size of a compiled network file.",
    )
    parser.add_argument("file", metavar="FILE", help="a network file made by `compile`")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..storage import HDF5Storage

    storage = HDF5Storage(args.file)
    configuration = storage.read_configuration()
    if not storage.header().complete:
        print(format_progress(args.file, configuration, storage.progress()))
    else:
        print(format_summary(args.file, configuration, storage.summary()))
        if storage.parts.exists():
            print(f"note: a recompile of this path is unfinished: "
                  f"{storage.progress().describe()}")
    note = format_leftovers(storage)
    if note:
        print(note)
    return 0


def format_leftovers(storage) -> str | None:
    """A note on what killed writers left next to the network: removed now when no
    writer holds the network's lock, otherwise named with how it goes away."""
    if not storage.leftovers():
        return None
    removed = storage.sweep_leftovers()
    if removed:
        names = ", ".join(path.name for path, _ in removed[:3])
        more = f" and {len(removed) - 3} more" if len(removed) > 3 else ""
        return (f"note: removed what a killed compile had left next to the network: "
                f"{names}{more} ({_size(sum(size for _, size in removed))})")
    left = storage.leftovers()
    if not left:
        return None
    names = ", ".join(path.name for path in left[:3])
    more = f" and {len(left) - 3} more" if len(left) > 3 else ""
    return (f"note: {names}{more} next to the network: left by a killed compile (or in "
            "use by the one running now); the next compile of this path removes it")


def _display(node_name: str) -> str:
    return _short(node_name.removeprefix("{root}."))


def _short(value) -> str:
    """A stored name as printed: never a whole page (the file may come from anywhere)."""
    return short_text(str(value), 60)


def format_progress(path: str, configuration: dict, progress) -> str:
    """The text of ``neuroscaffold show`` for an unfinished network: which strategies
    are complete and how many jobs each still misses."""
    name = _short(configuration.get("name", "network"))
    lines = [f"network '{name}' in {path}: UNFINISHED, {progress.describe()}"]
    if progress.planned:
        width = max(len(_display(n)) for n in progress.planned)
        lines.append("strategies:")
        for node, planned in progress.planned.items():
            done = min(progress.done.get(node, 0), planned)
            state = "complete" if done == planned else f"{planned - done:,} jobs missing"
            lines.append(f"  {_display(node):<{width}}  {done:>6,}/{planned:<6,} jobs  {state}")
    return "\n".join(lines)


def _size(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def format_summary(path: str, configuration: dict, summary: dict) -> str:
    """The text of ``neuroscaffold show``."""
    geometry = configuration.get("network", {})
    chunk = " x ".join(f"{v:g}" for v in geometry.get("chunk_size", ()))
    lines = [
        f"network '{_short(configuration.get('name', 'network'))}' in {path} "
        f"({_size(summary['size'])})",
        f"  size {geometry.get('x', 0):g} x {geometry.get('y', 0):g} x {geometry.get('z', 0):g} µm,"
        f" {summary['chunks']} chunks of {chunk} µm, seed {configuration.get('seed', 0)}",
        "cell types:",
    ]
    types = {_short(name): count for name, count in summary["cells"].items()}
    sets = {_short(name): value for name, value in summary["connections"].items()}
    width = max([len(name) for name in types] + [len(name) for name in sets] + [4])
    for name, count in types.items():
        lines.append(f"  {name:<{width}}  {count:>12,} cells")
    lines.append("connectivity sets:")
    for name, (pre, post, count) in sets.items():
        lines.append(f"  {name:<{width}}  {count:>12,} connections  "
                     f"({_short(pre)} -> {_short(post)})")
    cells = sum(summary["cells"].values())
    pairs = sum(count for *_, count in summary["connections"].values())
    lines.append(f"total: {cells:,} cells, {pairs:,} connections")
    return "\n".join(lines)
