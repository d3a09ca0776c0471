"""Checks of what a connection strategy's ``connect()`` returns, before it is stored.

``connect(pre, post)`` must give an integer ``(m, 2)`` array of (index into ``pre``,
index into ``post``), each within range. Nothing is reshaped, wrapped or truncated:
errors name the strategy, the chunk and the first bad row, and never print the whole
array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._text import short_repr

__all__ = ["check_pairs"]


def _where(strategy: Any, chunk: Any) -> str:
    name = getattr(strategy, "name", None) or type(strategy).__name__
    return f"connectivity '{name}' ({type(strategy).__name__}), chunk {chunk}: connect()"


def check_pairs(strategy: Any, chunk: Any, found: Any, n_pre: int, n_post: int) -> np.ndarray:
    """``found`` as an int64 ``(m, 2)`` array, or a :class:`ValueError` that says what
    is wrong (shape, type, or which row is out of range).

    An empty result (``()``, ``[]``, an array of size 0) means no pairs.
    """
    where = _where(strategy, chunk)
    if found is None:
        raise ValueError(f"{where} returned None; return an (m, 2) array of "
                         "(pre index, post index) pairs (an empty one for no pairs)")
    try:
        array = np.asarray(found)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} must return an (m, 2) integer array, got "
                         f"{type(found).__name__} {short_repr(found)} "
                         f"({short_repr(str(error), 80)})") from None
    if array.size == 0 and array.ndim <= 2 and (array.ndim < 2 or array.shape[1] in (0, 2)):
        return np.empty((0, 2), dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{where} must return an (m, 2) array of (pre, post) index pairs, "
                         f"got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where} must return integer indices, got dtype {array.dtype} "
                         f"(first row: {short_repr(array[0].tolist())})")
    # three whole-array reductions in the common case (``min(axis=0)`` on two columns is
    # ten times slower); the rows are looked at only when something is out of range
    if array.min() >= 0 and array[:, 0].max() < n_pre and array[:, 1].max() < n_post:
        return array.astype(np.int64, copy=False)
    for column, side, size in ((0, "pre", n_pre), (1, "post", n_post)):
        values = array[:, column]
        bad = (values < 0) | (values >= size)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise ValueError(
                f"{where} returned {len(rows):,} of {len(array):,} {side} indices out of "
                f"range 0..{size - 1} (it has {size:,} {side}synaptic cells); the first is "
                f"row {rows[0]}: {array[rows[0]].tolist()}")
    return array.astype(np.int64, copy=False)
