"""Checks of what a placement strategy returns, before anything is stored.

A strategy's positions must be an ``(n, 3)`` array of finite numbers inside the chunk
(or region) of its job. Errors name the strategy, the cell type, the chunk and the first
bad row, and never print the whole array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._text import short_repr

__all__ = ["check_positions", "BORDER_TOLERANCE"]

# Positions may stray this far past a chunk border (relative to the chunk size), so
# that float rounding of ``lo + u * (hi - lo)`` is never refused.
BORDER_TOLERANCE = 1e-9


def _where(strategy: Any, chunk: Any, cell_type_name: str) -> str:
    name = getattr(strategy, "name", None) or type(strategy).__name__
    return f"placement '{name}' ({type(strategy).__name__}), cell type '{cell_type_name}', chunk {chunk}"


def _row(positions: np.ndarray, row: int) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in positions[row]) + "]"


def check_positions(strategy: Any, chunk: Any, cell_type_name: str, positions: Any) -> np.ndarray:
    """``positions`` as a float64 ``(n, 3)`` array, or a :class:`ValueError` that says
    what is wrong with which row.

    Args:
        strategy: the placement strategy that returned the positions.
        chunk: the chunk (or region) the strategy passed; inside a job, the job's own
            chunk is used instead. Positions must lie in ``[chunk.ldc, chunk.mdc)``,
            give or take :data:`BORDER_TOLERANCE`. None skips the bounds check.
        cell_type_name: the cell type placed.
        positions: what the strategy gave.
    """
    running = getattr(strategy, "_current_job", lambda: None)()
    if running is not None:  # in a job, cells must lie in the job's chunk, whatever was passed
        chunk = running.chunk
    where = _where(strategy, chunk, cell_type_name)
    try:
        array = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: positions must be an (n, 3) array of numbers, got "
                         f"{type(positions).__name__} {short_repr(positions)} "
                         f"({short_repr(str(error), 80)})") from None
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 3)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"{where}: positions must have shape (n, 3), got {array.shape}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{where}: {len(bad):,} of {len(array):,} positions are not finite; "
                         f"the first is row {bad[0]}: {_row(array, bad[0])}")
    if chunk is not None and len(array):
        size = np.asarray(chunk.size, dtype=float)
        slack = BORDER_TOLERANCE * size
        low, high = np.asarray(chunk.ldc) - slack, np.asarray(chunk.mdc) + slack
        inside = np.all((array >= low) & (array <= high), axis=1)
        if not inside.all():
            bad = np.flatnonzero(~inside)
            raise ValueError(
                f"{where}: {len(bad):,} of {len(array):,} positions lie outside the chunk "
                f"[{', '.join(f'{v:g}' for v in chunk.ldc)}] to "
                f"[{', '.join(f'{v:g}' for v in chunk.mdc)}]; the first is row {bad[0]}: "
                f"{_row(array, bad[0])}")
    return array
