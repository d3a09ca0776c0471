"""Simulating a compiled network: the ``simulations:`` section run by a simulator.

Layout: :mod:`.schema` is the configuration of ``simulations:`` (below the root
configuration, which includes it); :mod:`._adapter` is what each simulator's adapter
implements (:class:`SimulatorAdapter`) and the plan it is given; :mod:`._registry`
finds an adapter by its ``simulator:`` name; :mod:`._run` is the driver that
:meth:`neuroscaffold.Network.simulate` calls; :mod:`._spikes` holds the spikes and
their SONATA spike file; :mod:`._progress` shows simulated time on the main rank;
:mod:`._imports` imports a simulator (without the optional modules it would load, on
request).

Nothing here imports a simulator until a simulation runs: the names below are loaded
on first access, and each adapter imports its simulator in ``prepare()``.
"""

from __future__ import annotations

import importlib as _importlib

__all__ = [
    "Population",
    "Projection",
    "SimulationPlan",
    "SimulationResult",
    "SimulatorAdapter",
    "SpikeTrains",
    "adapter_class",
    "optional_imports_left_out",
    "read_spike_file",
    "register_adapter",
    "sampled_cells",
    "simulate",
    "write_spike_file",
]

_EXPORTS = {
    "Population": "._adapter",
    "Projection": "._adapter",
    "SimulationPlan": "._adapter",
    "SimulatorAdapter": "._adapter",
    "sampled_cells": "._adapter",
    "SimulationResult": "._spikes",
    "SpikeTrains": "._spikes",
    "read_spike_file": "._spikes",
    "write_spike_file": "._spikes",
    "adapter_class": "._registry",
    "register_adapter": "._registry",
    "simulate": "._run",
    "optional_imports_left_out": "._imports",
}


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
