"""Short texts for error messages: an error never prints a whole value."""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["short_repr", "short_text"]

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 3


def short_repr(value: Any, limit: int = 100) -> str:
    """``repr(value)``, cut to about ``limit`` characters (``...`` marks the cut)."""
    try:
        text = _repr.repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def short_text(text: str, limit: int = 100) -> str:
    """``text`` as it is, or its start and end around ``...`` when it is longer than
    ``limit`` characters; control characters are shown escaped."""
    text = str(text)
    if len(text) > limit:
        head = (limit - 3) // 2
        text = text[:head] + "..." + text[len(text) - (limit - 3 - head):]
    if any(ord(c) < 32 for c in text):
        text = text.encode("unicode_escape").decode("ascii")
    return text
