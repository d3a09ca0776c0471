"""Reading configuration files (YAML or JSON) into plain mappings.

YAML is read with libyaml's C loader when it is installed (many times faster on big
files). Aliases are shared, never copied, while loading; a document whose aliases
would expand to more than :data:`MAX_ALIAS_EXPANSION` values (a "billion laughs"
bomb) is refused before anything walks it, as is a recursive alias.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..exceptions import ConfigurationError

__all__ = ["MAX_ALIAS_EXPANSION", "load_file", "parse_text"]

#: How many more values than the document spells out its aliases may add once expanded.
MAX_ALIAS_EXPANSION = 1_000_000

_Loader = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


def _check_expansion(data: Any, source: str) -> None:
    """Refuse ``data`` if its shared (aliased) parts expand to too many values."""
    expanded: dict[int, int] = {}  # id(container) -> values under it, expanded
    visiting: set[int] = set()
    distinct = 0

    def size(item: Any, path: str) -> int:
        nonlocal distinct
        if not isinstance(item, (dict, list)):
            return 1
        key = id(item)
        if key in expanded:
            return expanded[key]
        if key in visiting:
            raise ConfigurationError(f"{source}: {path or 'the document'}: recursive YAML "
                                     "alias (a value that contains itself)")
        visiting.add(key)
        values = item.items() if isinstance(item, dict) else enumerate(item)
        total = 1
        for child_key, child in values:
            total += size(child, f"{path}.{child_key}" if path else str(child_key))
        distinct += len(item) + 1
        visiting.discard(key)
        expanded[key] = total
        if total - distinct > MAX_ALIAS_EXPANSION:
            raise ConfigurationError(
                f"{source}: {path or 'the document'}: YAML aliases expand to {total:,} values "
                f"(at most {MAX_ALIAS_EXPANSION:,} more than written); refusing to expand them")
        return total

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        size(data, "")
    except RecursionError:
        raise ConfigurationError(f"{source}: the document is nested too deeply") from None
    finally:
        sys.setrecursionlimit(limit)


def load_file(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML or JSON file at ``path`` (by its suffix; YAML otherwise)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{path}: is a directory, not a configuration file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"{path}: cannot read configuration file ({error})") from None
    kind = "json" if path.suffix.lower() == ".json" else "yaml"
    return parse_text(text, kind, source=str(path))


def parse_text(text: str, kind: str, source: str = "<string>") -> dict[str, Any]:
    """The mapping in ``text``, a ``"yaml"`` or ``"json"`` document."""
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigurationError(
                f"{source}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"
            ) from None
    elif kind == "yaml":
        try:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
        except yaml.YAMLError:
            if _Loader is not yaml.SafeLoader:  # the pure-Python parser words it better
                try:
                    yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506
                except yaml.YAMLError as python_error:
                    error = python_error
            mark = getattr(error, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigurationError(f"{source}{where}: invalid YAML: {problem}") from None
    else:
        raise ValueError(f"unknown configuration format {kind!r}; expected 'yaml' or 'json'")
    if kind == "yaml":
        _check_expansion(data, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return data
