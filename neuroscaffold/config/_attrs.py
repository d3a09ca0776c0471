"""Attribute descriptors of configuration nodes, and the containers of child nodes.

Each descriptor checks a value when it is set (from a file or from Python), so a bad
value is reported with its path as soon as it is seen; references are stored by name
and looked up in the configuration when read.
"""

from __future__ import annotations

from .._text import short_repr

import builtins
import copy
from collections.abc import Mapping
from typing import Any

from . import types as _types
from ._node import Node, build_node, config_root, error_path, raise_at

__all__ = ["Attr", "attr", "ref", "reflist", "dict", "list", "NodeDict", "NodeList"]


def _is_node_class(type_: Any) -> bool:
    return isinstance(type_, type) and issubclass(type_, Node)


def cast_value(type_: Any, value: Any, owner: Any, key: Any) -> Any:
    """``value`` checked and converted by ``type_``, or a path-named error."""
    if _is_node_class(type_):
        return build_node(type_, value, owner, key)
    caster = _types.caster_for(type_)
    try:
        return caster(value)
    except _types.CastError as error:
        expected = error.expected
    except (TypeError, ValueError):
        expected = getattr(caster, "expected", None) or (
            f"a valid {getattr(caster, '__name__', 'value')}")
    raise_at(owner, key, f"expected {expected}, got {short_repr(value)}")


def to_raw(value: Any) -> Any:
    """The plain (YAML/JSON-ready) form of a configured value."""
    if isinstance(value, Node):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: to_raw(v) for k, v in value.items()}
    if isinstance(value, (builtins.list, tuple)):
        return [to_raw(v) for v in value]
    return value


class Attr:
    """A typed attribute of a configuration node (see :func:`attr`)."""

    def __init__(self, type: Any = None, required: bool = False, default: Any = None,
                 doc: str | None = None):
        self.type = type
        self.required = required
        self.default = default
        self.doc = doc
        self.name: str | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return instance.__dict__.get(self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        if value is None and not _is_node_class(self.type):
            if self.required:
                raise_at(instance, None, f"missing required key '{self.name}'")
            instance.__dict__[self.name] = None
            return
        instance.__dict__[self.name] = self.cast(instance, value)

    def cast(self, owner: Any, value: Any) -> Any:
        return cast_value(self.type, value, owner, self.name)

    def set_default(self, instance: Any) -> None:
        if self.default is None and _is_node_class(self.type):
            instance.__dict__[self.name] = build_node(self.type, {}, instance, self.name)
        else:
            instance.__dict__[self.name] = copy.deepcopy(self.default)

    def to_raw(self, value: Any) -> Any:
        return to_raw(value)


def attr(type: Any = None, required: bool = False, default: Any = None,
         doc: str | None = None) -> Attr:
    """Declare a typed attribute.

    Args:
        type: a Python type (``float``, ``int``, ``str``, ``bool``), a caster from
            :mod:`neuroscaffold.config.types`, or a node class (a nested node; when
            absent and not required, it is built from an empty mapping).
        required: whether the key must be given.
        default: the value when the key is absent (copied per node).
        doc: what the attribute means.
    """
    return Attr(type=type, required=required, default=default, doc=doc)


class ref(Attr):
    """A reference, by name, to a node of a root section (``config.ref("cell_types")``).

    Set it to a name or to a node; reading it gives the node. A name with no node
    behind it is reported as ``<path>: reference to missing node '<section>.<name>'``.
    """

    def __init__(self, section: str, required: bool = False, default: Any = None,
                 doc: str | None = None):
        super().__init__(type=None, required=required, default=default, doc=doc)
        self.section = section

    def cast(self, owner: Any, value: Any) -> Any:
        if isinstance(value, (str, Node)):
            return value
        raise_at(owner, self.name, f"expected the name of a node in '{self.section}', "
                                   f"got {short_repr(value)}")

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return self.resolve(instance, instance.__dict__.get(self.name))

    def resolve(self, instance: Any, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        root = config_root(instance)
        section = getattr(root, self.section, None) if getattr(
            root, "_config_is_root", False) else None
        if section is None:
            return value  # detached: nothing to look the name up in yet
        if value not in section:
            raise_at(instance, self.name,
                     f"reference to missing node '{self.section}.{value}'")
        return section[value]

    def to_raw(self, value: Any) -> Any:
        return value._config_key if isinstance(value, Node) else value


class reflist(ref):
    """A list of references by name (``config.reflist("cell_types")``); a single name
    is accepted as a list of one."""

    def __init__(self, section: str, required: bool = False, default: Any = None,
                 doc: str | None = None):
        super().__init__(section, required=required,
                         default=[] if default is None else default, doc=doc)

    def cast(self, owner: Any, value: Any) -> Any:
        if isinstance(value, (str, Node)):
            value = [value]
        if not isinstance(value, (builtins.list, tuple)):
            raise_at(owner, self.name, f"expected a list of names of nodes in "
                                       f"'{self.section}', got {short_repr(value)}")
        return [super(reflist, self).cast(owner, item) for item in value]

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return [self.resolve(instance, item) for item in instance.__dict__.get(self.name) or ()]

    def to_raw(self, value: Any) -> Any:
        return [super(reflist, self).to_raw(item) for item in value]


class _Children:
    """A container of configured values that names its children after their keys
    (a dict's keys, a list's indices) and checks each value on the way in."""

    def __init__(self, parent: Any, key: str, item_type: Any):
        super().__init__()
        self._config_parent, self._config_key, self._item_type = parent, key, item_type

    def get_node_name(self) -> str:
        return f"{self._config_parent.get_node_name()}.{self._config_key}"


#: The longest name of a configured item (a cell type, a connection set, ...).
MAX_NAME = 255


def name_problem(key: Any) -> str | None:
    """Why ``key`` cannot name a configured item, or None when it can.

    A name is a node's path segment (``placement.<name>``), and cell types and
    connection sets name groups of the network file (``/placement/<name>``), so it may
    not hold ``.`` or ``/``; control characters (NUL among them) cannot be stored or
    printed, and a name is printed in messages and tables, so it is bounded.
    """
    if not isinstance(key, str) or not key:
        return "a name is a non-empty string"
    if len(key) > MAX_NAME:
        return f"a name has at most {MAX_NAME} characters, not {len(key):,}"
    for bad, what in ((".", "'.'"), ("/", "'/'")):
        if bad in key:
            return f"a name may not contain {what}"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "a name may not contain control characters"
    return None


class NodeDict(_Children, builtins.dict):
    """A dict of configured values; keys are names (see :func:`name_problem`)."""

    def __setitem__(self, key: Any, value: Any) -> None:
        if "_item_type" not in self.__dict__:  # being unpickled: state comes later
            return super().__setitem__(key, value)
        problem = name_problem(key)
        if problem is not None:
            raise_at(self, None, f"invalid name {short_repr(key, 60)}: {problem}")
        super().__setitem__(key, cast_value(self._item_type, value, self, key))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in builtins.dict(*args, **kwargs).items():
            self[key] = value

    def __missing__(self, key: Any):
        import difflib

        hint = difflib.get_close_matches(str(key), [str(k) for k in self], n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise KeyError(f"no {short_repr(key)} in {error_path(self) or 'the configuration'}"
                       f"{suffix}")


class NodeList(_Children, builtins.list):
    """A list of configured values."""

    def append(self, value: Any) -> None:
        super().append(cast_value(self._item_type, value, self, str(len(self))))

    def extend(self, values: Any) -> None:
        for value in values:
            self.append(value)


class _ContainerAttr(Attr):
    container: type  # NodeDict or NodeList
    empty: type  # what None stands for
    expected: str

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def cast(self, owner: Any, value: Any) -> Any:
        if value is None:
            value = self.empty()
        if not self.accepts(value):
            raise_at(owner, self.name, f"expected {self.expected}, got {short_repr(value)}")
        result = self.container(owner, self.name, self.type)
        (result.update if isinstance(result, builtins.dict) else result.extend)(value)
        return result

    def set_default(self, instance: Any) -> None:
        instance.__dict__[self.name] = self.cast(instance, copy.deepcopy(self.default))


class dict(_ContainerAttr):
    """A mapping of names to values of ``type`` (``config.dict(type=CellType)``)."""

    container, empty, expected = NodeDict, builtins.dict, "a mapping"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, Mapping)


class list(_ContainerAttr):
    """A list of values of ``type`` (``config.list(type=float)``)."""

    container, empty, expected = NodeList, builtins.list, "a list"

    def accepts(self, value: Any) -> bool:
        return hasattr(value, "__iter__") and not isinstance(value, (str, bytes, Mapping))
