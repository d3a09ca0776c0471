"""Classes named in a configuration: a built-in short name or an import path."""

from __future__ import annotations

from .._text import short_repr

import contextlib
import contextvars
import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

from ..exceptions import ConfigurationError

__all__ = ["class_reference", "deferred_path", "folder_on_path", "import_object",
           "resolve_class", "without_imports"]

# The folders of the configuration files being loaded now (innermost last).
_loading_folders: list[str] = []
# False while a stored configuration is read: naming a class imports nothing.
_imports = contextvars.ContextVar("neuroscaffold_config_imports", default=True)


@contextlib.contextmanager
def without_imports() -> Iterator[None]:
    """Build configurations without importing any module: a class named by an import
    path (not a built-in) becomes a *deferred* node of its base class, which keeps its
    own keys as given and imports nothing. Reading a network file runs no code of the
    modules its configuration names (a file received from someone else, or one whose
    strategies are not importable here); only running their jobs needs them."""
    token = _imports.set(False)
    try:
        yield
    finally:
        _imports.reset(token)


_DEFERRED: dict[type, type] = {}


def _raw_value(self, name: str) -> Any:
    """A deferred node's own keys read as their raw values (``strategy.sigma``)."""
    extra = self.__dict__.get("_config_extra")
    if extra is not None and name in extra:
        return extra[name]
    raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _deferred_class(base: type) -> type:
    """The deferred stand-in of ``base``'s subclasses (one per base)."""
    cls = _DEFERRED.get(base)
    if cls is None:
        cls = type(f"Deferred{base.__name__}", (base,), {
            "__doc__": f"A {base.__name__} named by import path and not imported (see "
                       "``without_imports``): its own keys are kept as given.",
            "__module__": base.__module__,
            "_config_deferred": True,
            "__getattr__": _raw_value,
        })
        _DEFERRED[base] = cls
    return cls


def deferred_path(item: Any) -> str | None:
    """The import path a deferred node stands for, or None for any other node."""
    return item.__dict__.get("_config_class_path") if getattr(
        type(item), "_config_deferred", False) else None


@contextlib.contextmanager
def folder_on_path(folder: str | os.PathLike) -> Iterator[None]:
    """Put ``folder`` (a configuration file's folder) first on the import path while a
    configuration loads, so strategy modules next to the file import without
    ``PYTHONPATH``. Modules imported meanwhile stay imported afterwards."""
    folder = str(Path(folder).resolve())
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    _loading_folders.append(folder)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        _loading_folders.pop()
        if added:
            try:
                sys.path.remove(folder)
            except ValueError:
                pass


def _where_looked() -> str:
    if _loading_folders:
        return (f"looked in the configuration's folder {_loading_folders[-1]} and on "
                "sys.path")
    return "looked on sys.path; a configuration loaded from a file also looks in its folder"


def import_object(path: str) -> Any:
    """The object at import path ``path`` (``package.module.Name``, ``Outer.Inner``
    allowed), or an :class:`ImportError` that says what was missing."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # only "this prefix does not exist" means: try a shorter one
            if error.name is not None and (
                module_name == error.name or module_name.startswith(error.name + ".")
            ):
                continue
            raise
        owner = module_name
        for attribute in parts[split:]:
            if not hasattr(obj, attribute):
                raise ImportError(f"'{owner}' has no attribute '{attribute}'")
            obj = getattr(obj, attribute)
            owner = f"{owner}.{attribute}"
        return obj
    raise ImportError(f"no module named '{parts[0]}'")


def resolve_class(value: Any, base: type, builtins: Mapping[str, str], path: str) -> type:
    """The subclass of ``base`` that ``value`` names, or a :class:`ConfigurationError`
    at ``path``."""
    if isinstance(value, type):
        cls = value
    elif not isinstance(value, str):
        raise ConfigurationError(f"{path}: expected a class name or an import path, "
                                 f"got {short_repr(value)}")
    elif value in builtins:
        cls = import_object(builtins[value])  # neuroscaffold's own modules
    elif "." in value and not _imports.get():
        return _deferred_class(base)
    elif "." in value:
        try:
            cls = import_object(value)
        except ImportError as error:
            where = f" ({_where_looked()})" if "no module named" in str(error).lower() else ""
            raise ConfigurationError(f"{path}: cannot import '{value}': {error}{where}") from None
        except Exception as error:  # the user's module raised while importing
            raise ConfigurationError(f"{path}: importing '{value}' raised "
                                     f"{type(error).__name__}: {error}") from error
    else:
        known = ", ".join(sorted(builtins))
        raise ConfigurationError(
            f"{path}: unknown {base.__name__} '{value}' (built-ins: {known}; "
            "or an import path such as 'mypackage.module.MyClass')")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigurationError(f"{path}: '{value}' is not a {base.__name__}")
    return cls


def class_reference(cls: type, builtins: Mapping[str, str]) -> str:
    """How a configuration names ``cls``: its built-in short name, else its import
    path."""
    path = f"{cls.__module__}.{cls.__qualname__}"
    for short, target in builtins.items():
        if target == path:
            return short
    return path
