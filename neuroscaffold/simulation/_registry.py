"""The simulator adapters, by ``simulator:`` name, imported only when one is used.

Importing neuroscaffold (or this package) never imports a simulator: an adapter's
module imports its simulator inside :meth:`SimulatorAdapter.prepare`.
"""

from __future__ import annotations

import importlib

from ..exceptions import ConfigurationError
from ._adapter import SimulatorAdapter

__all__ = ["adapter_class", "register_adapter", "registered_adapters"]

#: simulator name -> (module, class) of its adapter
_ADAPTERS: dict[str, tuple[str, str]] = {
    "nest": ("neuroscaffold.simulation._nest", "NestAdapter"),
    "neuron": ("neuroscaffold.simulation._neuron", "NeuronAdapter"),
}


def register_adapter(name: str, module: str, class_name: str) -> None:
    """Make ``simulator: <name>`` use the adapter class ``module.class_name``."""
    _ADAPTERS[name] = (module, class_name)


def registered_adapters() -> list[str]:
    return sorted(_ADAPTERS)


def adapter_class(name: str, path: str = "simulator") -> type[SimulatorAdapter]:
    """The adapter class of simulator ``name`` (its module imported now, the simulator
    not); ``path`` is the configuration path named in errors."""
    try:
        module_name, class_name = _ADAPTERS[name]
    except KeyError:
        known = ", ".join(f"'{n}'" for n in registered_adapters())
        raise ConfigurationError(f"{path}: no adapter for simulator '{name}' (known: {known})") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise ConfigurationError(f"{path}: simulator '{name}' is not supported by this "
                                 "version of neuroscaffold") from None
    return getattr(module, class_name)
