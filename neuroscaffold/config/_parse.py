"""Reading configuration files (YAML or JSON) into plain mappings.

YAML is read with libyaml's C loader when it is installed (many times faster on big
files). Aliases are shared, never copied, while loading; a document whose aliases
would expand to more than :data:`MAX_ALIAS_EXPANSION` values (a "billion laughs"
bomb) is refused before anything walks it, as is a recursive alias.

Input that never ends is refused too: only a regular file is read (a FIFO would block,
``/dev/zero`` never ends), and at most :data:`MAX_FILE_BYTES` of it; a document nested
more than :data:`MAX_DEPTH` levels deep is refused with one line, before anything
recurses into it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from .._text import short_text
from ..exceptions import ConfigurationError

__all__ = ["MAX_ALIAS_EXPANSION", "MAX_DEPTH", "MAX_FILE_BYTES", "load_file", "parse_text"]

#: How many more values than the document spells out its aliases may add once expanded.
MAX_ALIAS_EXPANSION = 1_000_000
#: The largest configuration file read (bytes).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: How deeply mappings and lists may nest in a configuration (the top mapping is 1).
MAX_DEPTH = 64

_Loader = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


def _check_shape(data: Any, source: str) -> None:
    """Refuse ``data`` if it nests more than :data:`MAX_DEPTH` levels, or if its shared
    (aliased) parts expand to too many values."""
    expanded: dict[int, tuple[int, int]] = {}  # id(container) -> (values, height)
    visiting: set[int] = set()
    distinct = 0

    def size(item: Any, path: str, depth: int) -> tuple[int, int]:
        nonlocal distinct
        if not isinstance(item, (dict, list)):
            return 1, 0
        if depth > MAX_DEPTH:
            raise ConfigurationError(f"{source}: {_short_path(path)}: nested more than "
                                     f"{MAX_DEPTH} levels deep")
        key = id(item)
        if key in expanded:
            total, height = expanded[key]
            if depth + height - 1 > MAX_DEPTH:  # shared, and deeper here
                raise ConfigurationError(f"{source}: {_short_path(path)}: nested more "
                                         f"than {MAX_DEPTH} levels deep")
            return total, height
        if key in visiting:
            raise ConfigurationError(f"{source}: {_short_path(path) or 'the document'}: "
                                     "recursive YAML alias (a value that contains itself)")
        visiting.add(key)
        values = item.items() if isinstance(item, dict) else enumerate(item)
        total, height = 1, 0
        for child_key, child in values:
            child_path = f"{path}.{child_key}" if path else str(child_key)
            child_total, child_height = size(child, child_path, depth + 1)
            total += child_total
            height = max(height, child_height)
        distinct += len(item) + 1
        visiting.discard(key)
        expanded[key] = (total, height + 1)
        if total - distinct > MAX_ALIAS_EXPANSION:
            raise ConfigurationError(
                f"{source}: {_short_path(path) or 'the document'}: YAML aliases expand to "
                f"{total:,} values (at most {MAX_ALIAS_EXPANSION:,} more than written); "
                "refusing to expand them")
        return total, height + 1

    size(data, "", 1)


def _short_path(path: str) -> str:
    return short_text(path, 120)


def _too_deep(source: str) -> ConfigurationError:
    return ConfigurationError(f"{source}: the document is nested more than {MAX_DEPTH} "
                              "levels deep")


def load_file(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML or JSON file at ``path`` (by its suffix; YAML otherwise).
    Only a regular file of at most :data:`MAX_FILE_BYTES` is read."""
    path = Path(path)
    try:
        text = _read_regular(path)
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{path}: is a directory, not a configuration file") from None
    except UnicodeDecodeError as error:
        raise ConfigurationError(f"{path}: cannot read configuration file (not UTF-8 text: "
                                 f"{error.reason} at byte {error.start:,})") from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise ConfigurationError(f"{path}: cannot read configuration file ({reason})") from None
    kind = "json" if path.suffix.lower() == ".json" else "yaml"
    return parse_text(text, kind, source=str(path))


def _read_regular(path: Path) -> str:
    """The text of the regular file at ``path``; a one-line error for anything else
    (a FIFO, a device, a socket), or for a file larger than :data:`MAX_FILE_BYTES`."""
    # Non-blocking: opening a FIFO for reading would wait for a writer forever.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            raise ConfigurationError(f"{path}: is {_kind_of(mode)}, not a regular file; "
                                     "a configuration is read from a file")
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_FILE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise ConfigurationError(f"{path}: larger than {MAX_FILE_BYTES // (1 << 20)} MiB, "
                                     "the largest configuration file read")
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8")


def _kind_of(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def parse_text(text: str, kind: str, source: str = "<string>") -> dict[str, Any]:
    """The mapping in ``text``, a ``"yaml"`` or ``"json"`` document."""
    try:
        data = _parse(text, kind, source)
    except RecursionError:  # deeper than the parser can go: far deeper than MAX_DEPTH
        raise _too_deep(source) from None
    _check_shape(data, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _parse(text: str, kind: str, source: str) -> Any:
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigurationError(
                f"{source}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}"
            ) from None
    if kind != "yaml":
        raise ValueError(f"unknown configuration format {kind!r}; expected 'yaml' or 'json'")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as first:
        error = first
        if _Loader is not yaml.SafeLoader:  # the pure-Python parser words it better
            try:
                yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506
            except yaml.YAMLError as python_error:
                error = python_error
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigurationError(f"{source}{where}: invalid YAML: {short_text(problem, 200)}"
                                 ) from None
