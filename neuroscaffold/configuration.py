"""The root of a network's configuration: the schema that lists its sections (size,
partitions, cell types, placement, connectivity), and the reference generated from it.

It sits at the model layer, above ``placement`` and ``connectivity``, because its
sections are typed by their strategy classes. ``neuroscaffold.config`` below is the
generic machinery of typed nodes (``@config.node``, ``config.attr``, ...) that those
strategy classes are written with; it never imports this module nor the strategies, so
the layers import only downward (``tests/test_layers.py``). Users reach the root as
``neuroscaffold.Configuration``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .config import types
from .config._attrs import NodeDict, NodeList, attr, ref
from .config._attrs import dict as node_dict
from .config._classes import deferred_path, folder_on_path, import_object, without_imports
from .config._node import Node, node, raise_at, walk_nodes
from .config._parse import load_file, parse_text
from .config._reference import REFERENCE_HEADER, builtins_of, class_summary, key_table, node_section
from .connectivity._strategy import ConnectionStrategy
from .exceptions import ConfigurationError
from .placement._partitions import Partition, check_shared_partitions
from .placement._strategy import PlacementStrategy
from .simulation.schema import Simulation, reference_sections as _simulation_reference

__all__ = ["CellType", "Configuration", "NetworkGeometry", "build_reference", "from_file"]


def _chunk_size(value: Any) -> list[float]:
    """One positive number (a cube) or three."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    try:
        return types.list_of(types.positive, size=3)(value)
    except types.CastError:
        raise types.CastError(_chunk_size.expected) from None


_chunk_size.expected = "a number > 0 or a list of 3 numbers > 0"


@node
class NetworkGeometry(Node):
    """The size of the network (µm along x, y, z) and of its chunks."""

    x = attr(type=types.positive, default=100.0, doc="size of the network along x (µm)")
    y = attr(type=types.positive, default=100.0, doc="size of the network along y (µm)")
    z = attr(type=types.positive, default=100.0, doc="size of the network along z (µm)")
    chunk_size = attr(type=_chunk_size, default=[100.0, 100.0, 100.0],
                      doc="size of the chunks that placement and connectivity jobs work on (µm; one number for cubes, or [x, y, z]); one job per chunk, so it sets the job count")


@node
class CellType(Node):
    """A kind of cell: how big, and how many (a ``density`` in cells/µm³, or a
    ``count``) when a strategy that needs a number places it."""

    radius = attr(type=types.positive, default=1.0, doc="radius of the cell body (µm)")
    density = attr(type=types.number(min=0), doc="cells per µm³ of the partitions its placement fills (give density or count, not both)")
    count = attr(type=types.integer(min=0), doc="total number of cells (instead of a density)")

    @property
    def name(self) -> str:
        return self._config_key

    def validate(self) -> None:
        if self.density is not None and self.count is not None:
            raise_at(self, None, "give 'density' or 'count', not both")


@node
class Configuration(Node):
    """A whole network configuration: size, partitions, cell types, strategies.

    Build it from a file (:meth:`from_file`), from text, from a mapping, or in Python
    with :meth:`default`. Every value is checked on the way in; the whole tree (its
    references and each node's own rules) is checked once it is complete.
    """

    _config_is_root = True
    _config_scaffold = None
    #: the folder of the file it was loaded from (None: not from a file); the modules
    #: of its strategies are looked for there too, when their jobs need them
    folder: str | None = None

    name = attr(type=str, default="network", doc="name of the network (shown by show and in messages)")
    seed = attr(type=types.integer(min=0), default=0, doc="seeds every random strategy (per chunk: the same network on any number of ranks)")
    network = attr(type=NetworkGeometry, doc="size of the network and of its chunks")
    partitions = node_dict(type=Partition, doc="regions of space that cells are placed in")
    cell_types = node_dict(type=CellType, doc="kinds of cells: size and how many")
    placement = node_dict(type=PlacementStrategy, doc="strategies that place cells (phase 1)")
    connectivity = node_dict(type=ConnectionStrategy, doc="strategies that connect cells (phase 2)")
    simulations = node_dict(type=Simulation, doc="named simulations of the compiled network (`neuroscaffold simulate NET NAME`)")

    def __init__(self, _raw: dict[str, Any] | None = None, /, **sections: Any):
        super().__init__(_raw, **sections)
        self.check()

    @classmethod
    def default(cls, **sections: Any) -> "Configuration":
        """A configuration with defaults for whatever ``sections`` does not give
        (``cell_types=``, ``placement=``, ...; mappings or nodes)."""
        return cls(**sections)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Configuration":
        return cls(data)

    @classmethod
    def from_file(cls, path: str | Path) -> "Configuration":
        """Load a YAML (``.yaml``, ``.yml``) or JSON (``.json``) file. The file's folder
        is on the import path while it loads, so ``strategy: mystrategies.MyStrategy``
        finds ``mystrategies.py`` next to the file."""
        data = load_file(path)
        folder = Path(path).parent.resolve()
        with folder_on_path(folder):
            configuration = cls(data)
        configuration.folder = str(folder)
        return configuration

    @classmethod
    def from_stored(cls, data: dict[str, Any], folder: str | None = None) -> "Configuration":
        """The configuration stored in a network file, read without importing anything:
        a strategy or partition named by import path stays *deferred* (its keys kept
        as given) until :meth:`imported` is needed to run its jobs. ``folder``: where
        the configuration was loaded from, if known."""
        with without_imports():
            configuration = cls(data)
        configuration.folder = folder
        return configuration

    def deferred(self) -> list[str]:
        """The import paths of the classes not imported yet (see :meth:`from_stored`)."""
        return [path for item in walk_nodes(self) if (path := deferred_path(item))]

    def imported(self) -> "Configuration":
        """This configuration with every class imported: itself when none is deferred,
        else a copy whose classes are imported from its :attr:`folder` and the import
        path (a :class:`ConfigurationError` names one that is not found)."""
        if not self.deferred():
            return self
        if self.folder is None:
            return type(self)(self.to_dict())
        with folder_on_path(self.folder):
            configuration = type(self)(self.to_dict())
        configuration.folder = self.folder
        return configuration

    @classmethod
    def from_yaml(cls, text: str) -> "Configuration":
        return cls(parse_text(text, "yaml"))

    @classmethod
    def from_json(cls, text: str) -> "Configuration":
        return cls(parse_text(text, "json"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def copy(self) -> "Configuration":
        """An independent copy (same values, no network attached)."""
        if self.deferred():
            return type(self).from_stored(self.to_dict(), self.folder)
        copy = type(self)(self.to_dict())
        copy.folder = self.folder
        return copy

    def check(self) -> None:
        """Check the complete tree: every reference resolves, every node's rules
        hold, and ``depends_on`` has no cycle."""
        for item in walk_nodes(self):
            for name, attribute in type(item)._config_attrs.items():
                if isinstance(attribute, ref):
                    getattr(item, name)
            item.validate()
        check_shared_partitions(self.placement)
        for section in ("placement", "connectivity"):
            _check_acyclic(getattr(self, section), section)

    def resolve_node(self, name: str) -> Any:
        """The node whose :meth:`get_node_name` is ``name``; :class:`KeyError` if none."""
        head, *parts = name.split(".")
        if head != "{root}":
            raise KeyError(f"no configuration node named {name!r}")
        item: Any = self
        for part in parts:
            if isinstance(item, NodeDict) and part in item:
                item = item[part]
            elif isinstance(item, NodeList) and part.isdigit() and int(part) < len(item):
                item = item[int(part)]
            elif isinstance(item, Node) and part in type(item)._config_attrs:
                item = item.__dict__.get(part)
            else:
                raise KeyError(f"no configuration node named {name!r}")
        return item

    def _attach(self, network: Any) -> None:
        self._config_scaffold = network


def from_file(path: str | Path) -> Configuration:
    """Load a :class:`Configuration` from a YAML or JSON file."""
    return Configuration.from_file(path)


def _check_acyclic(section: NodeDict, section_name: str) -> None:
    state: dict[str, str] = {}

    def visit(key: str, trail: list[str]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            cycle = " -> ".join(trail[trail.index(key):] + [key])
            raise ConfigurationError(f"{section_name}: circular depends_on: {cycle}")
        state[key] = "visiting"
        for dependency in section[key].depends_on:
            if dependency._config_key in section:
                visit(dependency._config_key, trail + [key])
        state[key] = "done"

    for key in section:
        visit(key, [])


def build_reference() -> str:
    """The Markdown text of ``docs/configuration.md``."""
    lines = REFERENCE_HEADER.splitlines() + [""]
    lines += node_section("Root keys <a id=\"configuration\"></a>", Configuration)
    lines += node_section("network <a id=\"networkgeometry\"></a>", NetworkGeometry)
    lines += node_section("cell_types <a id=\"celltype\"></a>", CellType,
                          key_line="`cell_types:` maps each cell type's name to these keys.")
    for name, base, what in (
        ("partitions", Partition, "type"),
        ("placement", PlacementStrategy, "strategy"),
        ("connectivity", ConnectionStrategy, "strategy"),
    ):
        key, known = builtins_of(base)
        anchor = base.__name__.lower()
        lines += [f"## {name} <a id=\"{anchor}\"></a>", ""]
        lines += [f"`{name}:` maps names to nodes; `{key}:` picks the kind: "
                  + ", ".join(f"`{short}`" for short in sorted(known))
                  + " or an import path (`mymodule.MyClass`).", ""]
        doc = class_summary(base)
        if doc:
            lines += [doc, ""]
        if base._config_attrs:
            lines += [f"Keys of every {what}:", ""] + key_table(base) + [""]
        inherited = tuple(base._config_attrs)
        for short in sorted(known):
            cls = import_object(known[short])
            lines += node_section(f"{key}: {short}", cls, level="###", skip=inherited)
    lines += _simulation_reference()
    lines += _kernel_reference()
    return "\n".join(lines).rstrip() + "\n"


def _kernel_reference() -> list[str]:
    """The section of the distance kernels (the ``kernel:`` key of ``distance``)."""
    from .connectivity._kernels import Kernel

    key, known = builtins_of(Kernel)
    lines = ["## kernel <a id=\"kernel\"></a>", "",
             f"`kernel:` of a `distance` rule; `{key}:` picks the kind: "
             + ", ".join(f"`{short}`" for short in sorted(known)) + ".", "",
             "Keys of every kernel:", ""] + key_table(Kernel) + [""]
    for short in sorted(known):
        lines += node_section(f"{key}: {short}", import_object(known[short]), level="###",
                              skip=tuple(Kernel._config_attrs))
    return lines
