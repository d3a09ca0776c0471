"""Casters for configuration attributes: check a raw value and convert it.

A caster is a callable ``cast(value) -> value`` that raises :class:`CastError` with a
description of what was expected ("a number >= 0"); the attribute turns that into a
:class:`~neuroscaffold.exceptions.ConfigurationError` that names the path of the value.
"""

from __future__ import annotations

import builtins
import math
from typing import Any, Callable, Iterable

__all__ = [
    "CastError",
    "boolean",
    "caster_for",
    "in_",
    "integer",
    "list_of",
    "number",
    "positive",
    "string",
    "vector",
]


class CastError(Exception):
    """A raw value does not fit; ``expected`` says what would have."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def _bounds_text(minimum, maximum) -> str:
    parts = []
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    return " and ".join(parts)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise CastError("a number")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise CastError("a number") from None
    if not math.isfinite(result):
        raise CastError("a finite number")
    return result


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise CastError("an integer")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise CastError("an integer") from None
    if isinstance(value, float):
        if not value.is_integer():
            raise CastError("an integer")
        value = int(value)
    if not isinstance(value, int):
        raise CastError("an integer")
    return value


def _bounded(noun: str, convert: Callable[[Any], Any], minimum, maximum) -> Callable[[Any], Any]:
    expected = f"{noun} {_bounds_text(minimum, maximum)}".rstrip()

    def cast_bounded(value: Any) -> Any:
        result = convert(value)
        if (minimum is not None and result < minimum) or (maximum is not None and result > maximum):
            raise CastError(expected)
        return result

    cast_bounded.expected = expected
    return cast_bounded


def number(min: float | None = None, max: float | None = None) -> Callable[[Any], float]:
    """A finite float, within ``[min, max]`` when given; numeric strings such as
    ``"1e-3"`` (which YAML leaves as text) are accepted."""
    return _bounded("a number", _to_float, min, max)


def integer(min: int | None = None, max: int | None = None) -> Callable[[Any], int]:
    """An int, within ``[min, max]`` when given; integral floats and integer strings
    are accepted."""
    return _bounded("an integer", _to_int, min, max)


def positive(value: Any) -> float:
    """A finite number greater than zero (a size, a spacing, a radius)."""
    try:
        result = _to_float(value)
    except CastError:
        raise CastError(positive.expected) from None
    if result <= 0:
        raise CastError(positive.expected)
    return result


positive.expected = "a number > 0"


def string(value: Any) -> str:
    """A string, as is."""
    if not isinstance(value, str):
        raise CastError("a string")
    return value


string.expected = "a string"


def boolean(value: Any) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise CastError("true or false")
    return value


boolean.expected = "true or false"


def in_(choices: Iterable[Any]) -> Callable[[Any], Any]:
    """One of ``choices``."""
    options = tuple(choices)
    expected = "one of " + ", ".join(repr(c) for c in options)

    def cast_choice(value: Any) -> Any:
        if value not in options:
            raise CastError(expected)
        return value

    cast_choice.expected = expected
    return cast_choice


def _describe_plural(item_caster) -> str:
    text = getattr(item_caster, "expected", "values")
    for article in ("a ", "an "):
        if text.startswith(article):
            noun, _, rest = text[len(article):].partition(" ")
            return f"{noun}s {rest}".rstrip()
    return text


def list_of(item: Any, size: int | None = None) -> Callable[[Any], builtins.list]:
    """A list of values each accepted by ``item`` (a caster or a Python type);
    with ``size``, exactly that many."""
    item_caster = caster_for(item)
    count = f"{size} " if size is not None else ""
    expected = f"a list of {count}{_describe_plural(item_caster)}"

    def cast_list(value: Any) -> builtins.list:
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise CastError(expected)
        items = builtins.list(value)
        if size is not None and len(items) != size:
            raise CastError(expected)
        try:
            return [item_caster(v) for v in items]
        except CastError:
            raise CastError(expected) from None

    cast_list.expected = expected
    return cast_list


def vector(size: int = 3) -> Callable[[Any], builtins.list]:
    """A list of ``size`` numbers, such as a 3D position."""
    return list_of(float, size=size)


_BUILTIN_CASTERS = {float: number(), int: integer(), str: string, bool: boolean}


def caster_for(type_: Any) -> Callable[[Any], Any]:
    """The caster for ``type_``: a Python type (float, int, str, bool) or a caster."""
    if type_ is None:
        return lambda value: value
    if type_ in _BUILTIN_CASTERS:
        return _BUILTIN_CASTERS[type_]
    if callable(type_):
        return type_
    raise TypeError(f"not a configuration type: {type_!r}")
