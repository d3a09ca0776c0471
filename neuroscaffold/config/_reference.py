"""Markdown tables of configuration nodes, generated from the attributes' own ``doc=``
strings, so the documentation cannot drift from the code.

The pieces only: :func:`neuroscaffold.configuration.build_reference` puts them together
for the root schema and every built-in strategy (``neuroscaffold reference -o
docs/configuration.md``; a test checks the file is current). This module knows nodes,
not which nodes exist, so it stays below the strategies."""

from __future__ import annotations

import builtins
from typing import Any

from ._attrs import MAX_NAME
from ._parse import MAX_DEPTH, MAX_FILE_BYTES

__all__ = [
    "REFERENCE_HEADER", "builtins_of", "class_summary", "describe_type", "key_table", "node_section",
]

_PYTHON_TYPES = {float: "number", int: "integer", str: "string", bool: "true/false"}

REFERENCE_HEADER = f"""# Configuration reference

Every key of the built-in configuration nodes: its type, its default and what it means
(with its unit). Generated from the code by `neuroscaffold reference -o
docs/configuration.md`; do not edit by hand (a test checks that it is current). How to
write your own strategies: [strategies.md](strategies.md).

A configuration is a YAML or JSON mapping with the root keys below. Sizes are in µm,
densities in cells/µm³. A key that is not listed is refused, with a suggestion
(`unknown key 'desnity' (did you mean 'density'?)`).

Names (of partitions, cell types, strategies, connection sets) are 1 to {MAX_NAME}
characters without `.`, `/` or control characters: cell types and connection sets name
groups of the network file. A configuration file is read only if it is a regular file
(not a pipe or a device) of at most {MAX_FILE_BYTES >> 20} MiB, nested at most {MAX_DEPTH}
levels deep.
"""


def describe_type(attribute: Any) -> str:
    """What values ``attribute`` accepts, in words."""
    from ._attrs import dict as node_dict
    from ._attrs import list as node_list
    from ._attrs import ref, reflist
    from ._node import Node

    if isinstance(attribute, reflist):
        return f"list of names in `{attribute.section}`"
    if isinstance(attribute, ref):
        return f"name in `{attribute.section}`"
    kind = attribute.type
    if isinstance(attribute, node_dict):
        return f"mapping of names to {_type_name(kind)}"
    if isinstance(attribute, node_list):
        return f"list of {_type_name(kind)}"
    if isinstance(kind, type) and issubclass(kind, Node):
        return f"mapping ({_type_name(kind)})"
    return _type_name(kind)


def _type_name(kind: Any) -> str:
    from ._node import Node

    if kind is None:
        return "any"
    if kind in _PYTHON_TYPES:
        return _PYTHON_TYPES[kind]
    if isinstance(kind, type) and issubclass(kind, Node):
        return f"[{kind.__name__}](#{kind.__name__.lower()})"
    expected = getattr(kind, "expected", None)
    if expected:
        for article in ("a ", "an "):
            if expected.startswith(article):
                return expected[len(article):]
        return expected
    return getattr(kind, "__name__", repr(kind))


def _default(attribute: Any) -> str:
    from ._attrs import dict as node_dict
    from ._attrs import list as node_list
    from ._node import Node

    if attribute.required:
        return "required"
    value = attribute.default
    if isinstance(attribute, (node_dict, node_list)) and not value:
        return "empty"
    if value is None:
        if getattr(attribute, "optional", False):  # a node key that may stay unset
            return "none"
        if isinstance(attribute.type, type) and issubclass(attribute.type, Node):
            return "its defaults"
        return "none"
    if isinstance(value, builtins.list) and not value:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    if isinstance(value, builtins.list):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return f"`{value}`"


def key_table(cls: type, skip: tuple[str, ...] = ()) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, attribute in cls._config_attrs.items():
        if name in skip:
            continue
        if not attribute.doc:
            raise ValueError(f"{cls.__module__}.{cls.__qualname__}.{name} has no doc= string")
        doc = " ".join(attribute.doc.split())
        rows.append(f"| `{name}` | {describe_type(attribute)} | {_default(attribute)} | {doc} |")
    return rows


def class_summary(cls: type) -> str:
    import re

    text = (cls.__doc__ or "").strip()
    text = " ".join(text.split("\n\n")[0].split())
    text = re.sub(r":(?:meth|func):`~?([^`]+)`", r"`\1()`", text)
    text = re.sub(r":(?:class|attr|mod):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def node_section(title: str, cls: type, level: str = "##", key_line: str | None = None,
             skip: tuple[str, ...] = ()) -> list[str]:
    lines = [f"{level} {title}", ""]
    if key_line:
        lines += [key_line, ""]
    doc = class_summary(cls)
    if doc:
        lines += [doc, ""]
    own = {k: v for k, v in cls._config_attrs.items() if k not in skip}
    if own:
        lines += key_table(cls, skip) + [""]
    else:
        lines += ["No keys of its own.", ""]
    return lines


def builtins_of(base: type) -> tuple[str, dict[str, str]]:
    for klass in base.__mro__:
        spec = vars(klass).get("_config_dynamic")
        if spec is not None:
            return spec
    raise ValueError(f"{base.__name__} has no built-ins")
