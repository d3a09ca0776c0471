"""Classes named in a configuration: a built-in short name or an import path."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError

__all__ = ["class_reference", "import_object", "resolve_class"]


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
                                 f"got {value!r}")
    elif value in builtins:
        cls = import_object(builtins[value])
    elif "." in value:
        try:
            cls = import_object(value)
        except ImportError as error:
            raise ConfigurationError(f"{path}: cannot import '{value}': {error}") from None
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
