"""The package's layers import only downward (issue 11.14).

``LAYERS`` lists the units of the package from the bottom up; a module may import its
own unit and the units of lower layers, never a unit of its own layer or above. Every
``import`` statement counts, also those inside functions (a lazy import is still a
dependency). Exempt: imports under ``if TYPE_CHECKING:`` (they never run), and
``__version__`` from the package itself (a constant that Python loads before any
submodule, not the lazy public face).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests._mpi import ROOT, base_env

PACKAGE = ROOT / "neuroscaffold"

#: bottom first; each entry is one layer, a set of units that must not import each other
LAYERS: list[set[str]] = [
    {"exceptions", "_text", "_backoff", "_allocator", "_signals"},
    {"services._registry"},
    {"services.mpi", "services.mpilock"},
    {"services"},  # the services' face: accessors loaded on first use
    {"services.pool"},
    {"chunks", "config", "storage", "progress", "_agreement"},
    {"placement"},
    {"connectivity"},
    {"simulation.schema"},  # the simulations: section; needs only config
    {"configuration"},  # the root schema: its sections are typed by the strategies
    {"plan"},
    {"_writing"},
    {"simulation"},  # the simulator adapters and their driver
    {"network"},
    {"plot", "activity"},
    {"export"},  # SONATA: reads a network through storage only
    {"cli"},
    {"__main__", ""},  # "": the package's lazy public face, above everything
]

RANK = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """The unit of ``neuroscaffold.<module>``: its longest prefix listed in LAYERS."""
    parts = module.split(".")
    for end in range(len(parts), -1, -1):
        candidate = ".".join(parts[:end])
        if candidate in RANK:
            return candidate
    raise AssertionError(f"neuroscaffold.{module} belongs to no layer: add it to LAYERS")


def _is_module(dotted: str) -> bool:
    path = PACKAGE.joinpath(*dotted.split(".")) if dotted else PACKAGE
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module below ``neuroscaffold.``) of every package import in ``path``."""
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = list(relative.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    package = parts if is_package else parts[:-1]
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_lines(tree)
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "neuroscaffold" or alias.name.startswith("neuroscaffold."):
                    found.append((node.lineno, alias.name.partition(".")[2]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                base = base + node.module.split(".") if node.module else base
                base_name = ".".join(base)
            elif node.module and (node.module + ".").startswith("neuroscaffold."):
                base_name = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:
                if base_name == "" and alias.name == "__version__":
                    continue
                submodule = f"{base_name}.{alias.name}".lstrip(".")
                found.append((node.lineno, submodule if _is_module(submodule) else base_name))
    return found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def test_every_module_imports_only_downward():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = unit_of(_module_name(path))
        for line, target in imports_of(path):
            target_unit = unit_of(target)
            if target_unit == source:
                continue
            if RANK[target_unit] >= RANK[source]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {source or 'neuroscaffold'} "
                             f"(layer {RANK[source]}) imports {target_unit or 'neuroscaffold'} "
                             f"(layer {RANK[target_unit]})")
    assert wrong == [], "imports that do not go downward:\n" + "\n".join(wrong)


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        unit_of(_module_name(path))  # raises for a module no layer lists


def test_the_walk_sees_lazy_and_relative_imports():
    # The test is only as good as its import finder: check it on this package's own
    # known imports (a relative one inside a function, a sibling module, a package).
    found = dict((target, line) for line, target in imports_of(PACKAGE / "cli" / "_compile.py"))
    assert "configuration" in found and "network" in found
    found = {target for _, target in imports_of(PACKAGE / "placement" / "_strategy.py")}
    assert {"config", "config._node", "services.pool", "chunks"} <= found
    found = {target for _, target in imports_of(PACKAGE / "_writing.py")}
    assert "network" not in found  # under TYPE_CHECKING only


@pytest.mark.timeout(60)
@pytest.mark.parametrize("module, absent", [
    ("neuroscaffold.config", ["placement", "connectivity", "configuration", "network",
                              "services", "storage"]),
    ("neuroscaffold.services.pool", ["config", "placement", "connectivity", "network",
                                     "progress", "storage"]),
    ("neuroscaffold.placement", ["connectivity", "configuration", "network"]),
])
def test_importing_a_layer_loads_nothing_above_it(module, absent):
    # In a fresh interpreter; also touching every public name of the module.
    code = (
        f"import sys, {module} as m\n"
        "for name in m.__all__: getattr(m, name)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=50, env=base_env(), cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    above = [name for name in absent
             if f"neuroscaffold.{name}" in loaded]
    assert above == [], f"importing {module} loaded {above}"


def test_the_root_schema_moved_with_a_pointer():
    import neuroscaffold
    from neuroscaffold import config, configuration

    assert neuroscaffold.Configuration is configuration.Configuration
    with pytest.raises(AttributeError, match=r"^neuroscaffold\.config\.Configuration is now "
                       r"neuroscaffold\.configuration\.Configuration "):
        config.Configuration
    assert "Configuration" not in config.__all__
