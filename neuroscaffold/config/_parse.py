"""Reading configuration files (YAML or JSON) into plain mappings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..exceptions import ConfigurationError

__all__ = ["load_file", "parse_text"]


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
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigurationError(f"{source}{where}: invalid YAML: {problem}") from None
    else:
        raise ValueError(f"unknown configuration format {kind!r}; expected 'yaml' or 'json'")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return data
