"""A canonical listing of an HDF5 file's contents, to compare files by what they hold."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

__all__ = ["canonical_contents"]


def _value(value) -> object:
    if isinstance(value, np.ndarray):
        return (str(value.dtype), value.shape, value.tolist())
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def canonical_contents(path: str | Path) -> list[tuple]:
    """Every group and dataset of the file at ``path`` with its attributes, in name
    order; datasets by dtype, shape and a digest of their data. Two files with equal
    listings hold the same data, whatever order it was written in."""
    listing: list[tuple] = []

    def visit(name: str, item) -> None:
        attrs = tuple(sorted((key, _value(item.attrs[key])) for key in item.attrs))
        if isinstance(item, h5py.Dataset):
            data = np.ascontiguousarray(item[()])
            digest = hashlib.sha256(data.tobytes()).hexdigest()
            listing.append((name, "dataset", str(item.dtype), item.shape, digest, attrs))
        else:
            listing.append((name, "group", attrs))

    with h5py.File(path, "r", locking=False) as file:
        visit("/", file)
        names: list[str] = []
        file.visit(names.append)
        for name in sorted(names):
            visit(name, file[name])
    return listing
