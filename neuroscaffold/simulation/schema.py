"""The ``simulations:`` section of a configuration: named simulations of the network.

BSB's key names, and BSB 8's own spellings beside ours, so that a BSB configuration
reads as it is::

    simulations:
      basal_activity:
        simulator: nest            # or neuron
        duration: 1000             # ms
        resolution: 0.1            # ms
        threads: 2                 # NEST: OpenMP threads
        cell_models:               # keyed by cell type
          granule: {model: iaf_cond_alpha, parameters: {t_ref: 1.5}}   # or constants:
        connection_models:         # keyed by connection set
          granule_to_golgi: {synapse: static_synapse, weight: 0.5, delay: 1.0}
          # or synapses: [{model: static_synapse, weight: 0.5, delay: 1.0}]
        devices:
          background: {device: poisson_generator, rate: 20.0, targets: [granule],
                       weight: 1.0, delay: 1.0}
          # or targetting: {strategy: cell_model, cell_models: [granule]}
          spikes: {device: spike_recorder, targets: [granule]}

What is checked here, when the configuration loads: the keys, their types, that cell
models name cell types and connection models name connection sets, and that every
cell type a connection model or a device needs has a cell model. Model and parameter
names are the simulator's own: the adapter checks them against the simulator itself
when the simulation starts (:mod:`neuroscaffold.simulation`).

This module needs only :mod:`neuroscaffold.config`; it sits below
:mod:`neuroscaffold.configuration`, which puts it at the root as ``simulations:``.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping
from typing import Any

from .. import config
from ..config import types
from ..config._attrs import Attr
from ..config._node import config_root, raise_at
from ..config._reference import node_section

__all__ = [
    "CellModel",
    "ConnectionModel",
    "DEVICES",
    "Device",
    "DeviceKind",
    "SIMULATORS",
    "Simulation",
    "Synapse",
    "Targetting",
    "reference_sections",
]

#: the simulators a simulation can name (their adapters are in this package)
SIMULATORS = ("nest", "neuron")


class DeviceKind(enum.Enum):
    """What a device does to its targets."""

    STIMULUS = "stimulus"  #: sends to the target cells (a generator)
    RECORDER = "recorder"  #: receives from the target cells


#: device name -> (kind, the device-level keys it takes). The same names in every
#: simulator; each adapter makes them with its own objects.
DEVICES: dict[str, tuple[DeviceKind, frozenset[str]]] = {
    "poisson_generator": (DeviceKind.STIMULUS, frozenset({"rate", "start", "stop", "origin"})),
    "dc_generator": (DeviceKind.STIMULUS, frozenset({"amplitude", "start", "stop", "origin"})),
    "spike_recorder": (DeviceKind.RECORDER, frozenset({"start", "stop", "origin"})),
}


def _parameters(value: Any) -> dict[str, Any]:
    """A mapping of parameter names to numbers, booleans, strings or lists of them."""
    if not isinstance(value, Mapping):
        raise types.CastError(_parameters.expected)
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise types.CastError(_parameters.expected)
        if not _is_plain(item):
            raise types.CastError(_parameters.expected)
        out[key] = item
    return out


_parameters.expected = "a mapping of parameter names to values"  # type: ignore[attr-defined]


def _is_plain(item: Any) -> bool:
    if isinstance(item, (bool, int, float, str)):
        return True
    if isinstance(item, (list, tuple)):
        return all(_is_plain(v) for v in item)
    return False


def _model_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise types.CastError(_model_name.expected)
    return value.strip()


_model_name.expected = "a model name"  # type: ignore[attr-defined]


class _WithParameters(config.Node):
    """A node with ``parameters`` (BSB 8: ``constants``): give one of them."""

    parameters = config.attr(type=_parameters, default={}, doc="the model's parameters, by the simulator's own names (units as the simulator has them)")
    constants = config.attr(type=_parameters, doc="BSB 8's name for `parameters` (give one of them)")

    def model_parameters(self) -> dict[str, Any]:
        """The parameters, from whichever of the two keys was given."""
        return dict(self.constants if self.constants is not None else self.parameters)

    def where(self, *keys: str) -> tuple[str, ...]:
        """The path of ``keys`` of this node below its simulation, spelt as the user wrote
        them, for error lines: ``where("parameters", "t_ref")`` is
        ``("cell_models", "granule", "constants", "t_ref")`` when BSB's ``constants`` was
        given."""
        if keys[:1] == ("parameters",) and self.constants is not None:
            keys = ("constants",) + keys[1:]
        # {root}.simulations.<name>.<keys below the simulation>
        return tuple(self.get_node_name().split(".")[3:]) + keys

    def validate(self) -> None:
        if self.constants is not None and self.parameters:
            raise_at(self, None, "give 'parameters' or 'constants' (BSB's name), not both")


@config.node
class CellModel(_WithParameters):
    """The simulator's model for the cells of one cell type (the key is the cell type's
    name). NEST: a neuron model such as `iaf_cond_alpha`; NEURON: an artificial cell,
    `IntFire1`, `IntFire2` or `IntFire4`."""

    model = config.attr(type=_model_name, required=True, doc="the simulator's model name (NEST: `iaf_psc_alpha`, `iaf_cond_alpha`, ...; NEURON: `IntFire1`, `IntFire2`, `IntFire4`)")

    @property
    def cell_type(self) -> str:
        return self._config_key


@config.node
class Synapse(_WithParameters):
    """One synapse of each connection of a set (BSB 8's `synapses:` list items)."""

    model = config.attr(type=_model_name, default="static_synapse", doc="the synapse model (NEST: `static_synapse`, `stdp_synapse`, ...; NEURON: a NetCon, this key is ignored)")
    weight = config.attr(type=types.number(), default=1.0, doc="the weight of each connection (NEST: nS for conductance-based models, pA for current-based; negative inhibits; NEURON: the NetCon weight)")
    delay = config.attr(type=types.positive, default=1.0, doc="the delay of each connection (ms; at least the resolution)")
    receptor_type = config.attr(type=types.integer(min=0), doc="the receptor port of the target (NEST models with several receptors)")

    #: The connection model whose flat keys (``synapse``, ``weight``, ...) describe this
    #: synapse, or None for an item of a ``synapses:`` list.
    _flat_of: "ConnectionModel | None" = None

    def where(self, *keys: str) -> tuple[str, ...]:
        if self._flat_of is None:
            return super().where(*keys)
        # The flat keys sit on the connection model itself, the model under `synapse`.
        if keys[:1] == ("model",):
            keys = ("synapse",) + keys[1:]
        return self._flat_of.where(*keys)


@config.node
class ConnectionModel(_WithParameters):
    """How the pairs of one connection set (the key is its name) become synapses:
    `synapse`, `weight` and `delay` for one synapse per pair, or a `synapses:` list
    (BSB 8) for several."""

    synapse = config.attr(type=_model_name, doc="the synapse model of each pair (default `static_synapse`)")
    weight = config.attr(type=types.number(), doc="the weight of each connection (default 1; see synapses.weight)")
    delay = config.attr(type=types.positive, doc="the delay of each connection (ms; default 1)")
    receptor_type = config.attr(type=types.integer(min=0), doc="the receptor port of the target (NEST models with several receptors)")
    synapses = config.list(type=Synapse, doc="BSB 8: one synapse per item for every pair (instead of synapse, weight and delay)")

    @property
    def connection_set(self) -> str:
        return self._config_key

    def synapse_list(self) -> list[Synapse]:
        """The synapses each pair gets: the ``synapses:`` list, or the one that the
        flat keys describe."""
        if self.synapses:
            return list(self.synapses)
        flat = Synapse(model=self.synapse or "static_synapse",
                       weight=1.0 if self.weight is None else self.weight,
                       delay=1.0 if self.delay is None else self.delay,
                       receptor_type=self.receptor_type, parameters=self.model_parameters())
        flat._config_parent, flat._config_key = self, "synapse"
        flat._flat_of = self
        return [flat]

    def validate(self) -> None:
        super().validate()
        flat = [key for key in ("synapse", "weight", "delay", "receptor_type", "constants")
                if getattr(self, key) is not None] + (["parameters"] if self.parameters else [])
        if self.synapses and flat:
            raise_at(self, None, f"give 'synapses' or '{flat[0]}' and the other flat keys, "
                                 "not both")


@config.node
class Targetting(config.Node):
    """BSB's way to name a device's targets: `{strategy: cell_model, cell_models:
    [...]}` (the same as `targets: [...]`)."""

    strategy = config.attr(type=types.in_(("cell_model",)), default="cell_model", doc="how targets are chosen: `cell_model` (every cell of the listed cell models)")
    cell_models = config.reflist("cell_types", doc="the cell types (cell models) whose cells are targets")


class _Optional(Attr):
    """A nested node that stays None when its key is absent (BSB's spellings: only
    there when a BSB configuration gives them)."""

    def set_default(self, instance: Any) -> None:
        instance.__dict__[self.name] = None


#: The device parameters that may also be given at the device level (BSB 8's spelling).
_DEVICE_LEVEL = ("rate", "amplitude", "start", "stop", "origin")


@config.node
class Device(_WithParameters):
    """A stimulus or a recorder. The same device names in every simulator:
    `poisson_generator` (independent Poisson spike trains, one per target cell),
    `dc_generator` (a constant current) and `spike_recorder` (the targets' spikes,
    written to the spike file)."""

    device = config.attr(type=types.in_(tuple(DEVICES)), required=True, doc="the kind of device: `poisson_generator`, `dc_generator` or `spike_recorder`")
    targets = config.reflist("cell_types", doc="the cell types whose cells it stimulates or records (every cell of each)")
    targetting = _Optional(type=Targetting, doc="BSB's spelling of targets: `{strategy: cell_model, cell_models: [...]}`")
    fraction = config.attr(type=types.number(min=0, max=1), default=1.0, doc="the share of each target type's cells it stimulates or records: a random sample drawn from the simulation's seed, the same cells on every run and rank count (NEST: each recorded cell costs about 32 KB)")
    weight = config.attr(type=types.number(), default=1.0, doc="stimulus: the weight of its connection to each target (as a synapse's weight; a recorder ignores it)")
    delay = config.attr(type=types.positive, default=1.0, doc="stimulus: the delay of its connection to each target (ms; a recorder ignores it)")
    receptor_type = config.attr(type=types.integer(min=0), doc="stimulus: the receptor port of the targets (NEST models with several receptors)")
    rate = config.attr(type=types.number(min=0), doc="poisson_generator: the rate of each target's spike train (Hz)")
    amplitude = config.attr(type=types.number(), doc="dc_generator: the current (pA; NEURON artificial cells take no current)")
    start = config.attr(type=types.number(min=0), doc="when it starts (ms)")
    stop = config.attr(type=types.number(min=0), doc="when it stops (ms)")
    origin = config.attr(type=types.number(min=0), doc="the time start and stop are counted from (ms)")

    @property
    def kind(self) -> DeviceKind:
        return DEVICES[self.device][0]

    def target_types(self) -> list[str]:
        """The names of the cell types it targets, in the order given."""
        items = self.targetting.cell_models if self.targetting is not None else self.targets
        names = [getattr(item, "name", item) for item in items]
        return list(dict.fromkeys(names))

    def device_parameters(self) -> dict[str, Any]:
        """The device's own parameters: the device-level keys (``rate``, ``start``, ...)
        and ``parameters`` / ``constants``."""
        out = {key: getattr(self, key) for key in _DEVICE_LEVEL if getattr(self, key) is not None}
        out.update(self.model_parameters())
        return out

    def where(self, *keys: str) -> tuple[str, ...]:
        # A device-level parameter (`rate: 20`) is written on the device itself.
        if len(keys) == 2 and keys[0] == "parameters" and keys[1] in _DEVICE_LEVEL \
                and getattr(self, keys[1]) is not None:
            keys = keys[1:]
        return super().where(*keys)

    def validate(self) -> None:
        super().validate()
        if self.targetting is not None and self.targets:
            raise_at(self, None, "give 'targets' or 'targetting' (BSB's spelling), not both")
        if not self.target_types():
            raise_at(self, None, "missing required key 'targets' (the cell types it "
                                 "stimulates or records)")
        allowed = DEVICES[self.device][1]
        for key in _DEVICE_LEVEL:
            if getattr(self, key) is not None and key not in allowed:
                raise_at(self, key, f"a {self.device} has no '{key}' (it takes "
                                    + ", ".join(f"'{k}'" for k in sorted(allowed)) + ")")


@config.node
class Simulation(config.Node):
    """One named simulation of the network: the simulator, how long, the cell models
    (keyed by cell type), the connection models (keyed by connection set) and the
    devices. A cell type without a cell model is not simulated, nor is a connection set
    without a connection model."""

    simulator = config.attr(type=types.in_(SIMULATORS), required=True, doc="the simulator: `nest` (OpenMP threads on one process) or `neuron` (MPI ranks)")
    duration = config.attr(type=types.positive, default=1000.0, doc="how long to simulate (ms)")
    resolution = config.attr(type=types.positive, default=0.1, doc="the time step (ms)")
    threads = config.attr(type=types.integer(min=1), default=1, doc="NEST: OpenMP threads of the simulation (spikes are reproducible at a fixed thread count); NEURON: ignored, use MPI ranks")
    seed = config.attr(type=types.integer(min=0), doc="seeds the simulator's random numbers (default: the network's seed)")
    stall_timeout = config.attr(type=types.positive, default=60.0, doc="under MPI (NEURON): the seconds a step of simulated time may take before the ranks count as stalled (at least; longer for steps that the pace measured so far says are slow); then the run ends on every rank with one line and exit status 12 (see simulating.md)")
    modules = config.list(type=str, doc="NEST extension modules to install first (BSB's key)")
    cell_models = config.dict(type=CellModel, doc="cell type -> its model; a cell type without one is not simulated")
    connection_models = config.dict(type=ConnectionModel, doc="connection set -> its synapses; a connection set without one is not simulated")
    devices = config.dict(type=Device, doc="name -> stimulus or recorder")

    @property
    def name(self) -> str:
        return self._config_key

    def simulation_seed(self) -> int:
        """The seed of this simulation: its own ``seed``, else the network's."""
        if self.seed is not None:
            return self.seed
        root = config_root(self)
        return int(getattr(root, "seed", 0) or 0)

    def simulated_cell_types(self) -> list[str]:
        """The cell types with a cell model, in the order of the configuration's
        ``cell_types`` (the order the simulator creates them in)."""
        root = config_root(self)
        order = list(getattr(root, "cell_types", None) or self.cell_models)
        return [name for name in order if name in self.cell_models]

    def recorded_cell_types(self) -> list[str]:
        """The cell types some spike recorder records, in creation order."""
        wanted = {name for device in self.devices.values()
                  if device.kind is DeviceKind.RECORDER for name in device.target_types()}
        return [name for name in self.simulated_cell_types() if name in wanted]

    def validate(self) -> None:
        root = config_root(self)
        if not getattr(root, "_config_is_root", False):
            return  # detached: checked once it is part of a configuration
        _check_keys(self.cell_models, root.cell_types, "cell type", "cell_types")
        _check_keys(self.connection_models, root.connectivity, "connection set", "connectivity")
        for name, model in self.connection_models.items():
            strategy = root.connectivity[name]
            for role in ("presynaptic", "postsynaptic"):
                cell_type = getattr(strategy, role).name
                if cell_type not in self.cell_models:
                    raise_at(model, None, f"connects cell type '{cell_type}' (its {role} type), "
                             f"which has no cell model: add simulations.{self.name}."
                             f"cell_models.{cell_type}, or remove this connection model")
        for device in self.devices.values():
            for cell_type in device.target_types():
                if cell_type not in self.cell_models:
                    raise_at(device, None, f"targets cell type '{cell_type}', which has no "
                             f"cell model: add simulations.{self.name}.cell_models."
                             f"{cell_type}, or remove it from the targets")


def _check_keys(section: Any, known: Any, what: str, where: str) -> None:
    for key, item in section.items():
        if key not in known:
            hint = difflib.get_close_matches(key, list(known), n=1)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise_at(item, None, f"no {what} '{key}' in {where}{suffix}")


def reference_sections() -> list[str]:
    """The Markdown lines of the simulation keys, for ``docs/configuration.md``."""
    lines = node_section("simulations <a id=\"simulation\"></a>", Simulation, key_line=(
        "`simulations:` maps each simulation's name to these keys; run one with "
        "`neuroscaffold simulate NET NAME -o spikes.h5` (see [simulating.md](simulating.md))."))
    for title, cls, key_line in (
        ("cell_models <a id=\"cellmodel\"></a>", CellModel,
         "`cell_models:` maps a cell type's name to these keys."),
        ("connection_models <a id=\"connectionmodel\"></a>", ConnectionModel,
         "`connection_models:` maps a connection set's name to these keys."),
        ("synapses <a id=\"synapse\"></a>", Synapse, "Each item of a `synapses:` list."),
        ("devices <a id=\"device\"></a>", Device, "`devices:` maps names to these keys."),
        ("targetting <a id=\"targetting\"></a>", Targetting, None),
    ):
        lines += node_section(title, cls, level="###", key_line=key_line)
    return lines
