"""Configuration nodes: classes whose declared attributes are typed, named and nested.

A node sits in a tree: its parent is another node or a container (dict or list of
nodes), and its key is its name in that parent. The name of a node is the path from the
root, ``{root}.placement.granule_layer``; error messages use the same path without the
``{root}.`` prefix, so they point straight at the bad value in the file.
"""

from __future__ import annotations

from .._text import short_repr

import difflib
from collections.abc import Mapping
from typing import Any, ClassVar

from ..exceptions import ConfigurationError

__all__ = ["Node", "node", "dynamic", "error_path", "walk_nodes"]

_ROOT_NAME = "{root}"


class Node:
    """Base class of configuration nodes; use the :func:`node` decorator to make one.

    Construct a node with keyword arguments (``RandomPlacement(cell_types=["a"])``) or
    a mapping of raw values; each value is checked by its attribute's type.
    """

    _config_attrs: ClassVar[dict[str, Any]] = {}
    # (attribute name, {short name: import path}) on a base class whose concrete class
    # is chosen by a key of the raw mapping, e.g. ("strategy", {"random": "..."}).
    _config_dynamic: ClassVar[tuple[str, dict[str, str]] | None] = None
    _config_parent: Any = None
    _config_key: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        from ._attrs import Attr

        collected: dict[str, Attr] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Attr):
                    collected[name] = value
                elif name in collected:
                    del collected[name]  # a subclass replaced the attribute
        cls._config_attrs = collected

    def __init__(self, _raw: Mapping[str, Any] | None = None, /, **kwargs: Any):
        populate(self, {**(_raw or {}), **kwargs})

    def get_node_name(self) -> str:
        """The path of this node from the root, such as ``{root}.placement.granule``."""
        parent = self._config_parent
        if parent is None:
            return _ROOT_NAME if getattr(self, "_config_is_root", False) else (
                "{" + type(self).__name__ + "}"
            )
        return f"{parent.get_node_name()}.{self._config_key}"

    @property
    def scaffold(self):
        """The network this node's configuration belongs to (None when detached)."""
        root = config_root(self)
        return getattr(root, "_config_scaffold", None) if root is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The raw (YAML/JSON-ready) values of this node and its children."""
        from ._classes import class_reference

        out: dict[str, Any] = {}
        dynamic_key = _dynamic_spec(type(self))
        deferred = self.__dict__.get("_config_class_path")
        if dynamic_key is not None:
            key, builtins = dynamic_key
            out[key] = deferred or class_reference(type(self), builtins)
        for name, attr in type(self)._config_attrs.items():
            if name in self.__dict__ and self.__dict__[name] is not None:
                out[name] = attr.to_raw(self.__dict__[name])
        if deferred is not None:  # the keys of a class not imported, as given
            out.update(self.__dict__.get("_config_extra", {}))
            order = self.__dict__.get("_config_order", ())
            out = {name: out[name] for name in [*order, *out] if name in out}
        return out

    def validate(self) -> None:
        """Check rules that involve several attributes; called once the whole
        configuration is built. Raise :class:`ConfigurationError` on failure."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.get_node_name()}>"


def node(cls: type) -> type:
    """Make ``cls`` a configuration node with the attributes it declares.

    Subclasses of :class:`Node` (such as strategy base classes) are nodes already; the
    decorator marks them, and turns any other class into a :class:`Node` subclass.
    """
    if issubclass(cls, Node):
        return cls
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    bases = tuple(base for base in cls.__bases__ if base is not object) + (Node,)
    new = type(cls.__name__, bases, namespace)
    new.__qualname__ = cls.__qualname__
    new.__module__ = cls.__module__
    return new


def dynamic(attr_name: str = "strategy", builtins: Mapping[str, str] | None = None):
    """Class decorator for a node base class whose concrete class a raw mapping picks
    with the key ``attr_name``: a short built-in name or an import path
    (``mypackage.module.MyStrategy``)."""

    def decorate(cls: type) -> type:
        cls = node(cls)
        cls._config_dynamic = (attr_name, dict(builtins or {}))
        return cls

    return decorate


def _dynamic_spec(cls: type):
    for klass in cls.__mro__:
        spec = vars(klass).get("_config_dynamic")
        if spec is not None:
            return spec
    return None


def config_root(item: Any):
    """The topmost parent of ``item`` (itself when it has none)."""
    while getattr(item, "_config_parent", None) is not None:
        item = item._config_parent
    return item


def error_path(item: Any, key: str | None = None) -> str:
    """The path used in error messages: the node name without its root segment."""
    name = item.get_node_name() if item is not None else ""
    _, _, rest = name.partition(".")
    if key is not None:
        rest = f"{rest}.{key}" if rest else str(key)
    return rest


def raise_at(item: Any, key: str | None, message: str):
    """Raise a :class:`ConfigurationError` for ``message`` at ``item``'s ``key``."""
    path = error_path(item, key)
    raise ConfigurationError(f"{path}: {message}" if path else message)


def populate(target: Node, values: Any) -> None:
    """Set ``target``'s attributes from a raw mapping, checking keys and types."""
    if not isinstance(values, Mapping):
        raise_at(target, None, f"expected a mapping, got {short_repr(values)}")
    attrs = type(target)._config_attrs
    spec = _dynamic_spec(type(target))
    if getattr(type(target), "_config_deferred", False):
        # A class not imported: its own keys are kept as given (see without_imports).
        target._config_extra = {key: value for key, value in values.items()
                                if key not in attrs and key != spec[0]}
        target._config_order = list(values)
    for key in values:
        if key in attrs or (spec is not None and key == spec[0]):
            continue
        if getattr(type(target), "_config_deferred", False):
            continue
        hint = difflib.get_close_matches(str(key), list(attrs), n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise_at(target, None, f"unknown key '{key}'{suffix}")
    for name, attr in attrs.items():
        if name in values:
            setattr(target, name, values[name])
        elif attr.required:
            raise_at(target, None, f"missing required key '{name}'")
        else:
            attr.set_default(target)


def build_node(cls: type, raw: Any, parent: Any, key: Any) -> Node:
    """A node of class ``cls`` (or the subclass ``raw`` names) placed at ``parent[key]``."""
    from ._classes import resolve_class

    if raw is None:
        raw = {}
    if isinstance(raw, Node):
        if not isinstance(raw, cls):
            raise_at(parent, key, f"expected a {cls.__name__}, got {short_repr(raw)}")
        raw._config_parent, raw._config_key = parent, key
        return raw
    if not isinstance(raw, Mapping):
        raise_at(parent, key, f"expected a mapping, got {short_repr(raw)}")
    spec = _dynamic_spec(cls)
    if spec is not None:
        attr_name, builtins = spec
        placeholder = _Placeholder(parent, key)
        if raw.get(attr_name) is None:
            raise_at(placeholder, None, f"missing required key '{attr_name}'")
        cls = resolve_class(raw[attr_name], cls, builtins, error_path(placeholder, attr_name))
    instance = cls.__new__(cls)
    if getattr(cls, "_config_deferred", False):
        instance._config_class_path = raw[attr_name]
    instance._config_parent, instance._config_key = parent, key
    populate(instance, raw)
    return instance


class _Placeholder:
    """Stands in for a node not built yet, so its errors can name their path."""

    def __init__(self, parent, key):
        self._config_parent, self._config_key = parent, key

    get_node_name = Node.get_node_name


def walk_nodes(item: Any):
    """Every node under ``item`` (included), depth first in declaration order."""
    from ._attrs import NodeDict, NodeList

    if isinstance(item, Node):
        yield item
        children = (item.__dict__.get(name) for name in type(item)._config_attrs)
    elif isinstance(item, NodeDict):
        children = item.values()
    elif isinstance(item, NodeList):
        children = iter(item)
    else:
        return
    for child in children:
        yield from walk_nodes(child)
