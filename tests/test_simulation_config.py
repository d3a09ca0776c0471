"""The ``simulations:`` section (issue 17.1): every key and BSB 8 alias, and the checks
made when the configuration loads (no simulator needed)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from neuroscaffold import Configuration, ConfigurationError
from neuroscaffold.simulation.schema import DeviceKind
from tests._mpi import ROOT

SMALL = yaml.safe_load((ROOT / "examples" / "small.yaml").read_text())

OURS = {
    "simulator": "nest", "duration": 50, "resolution": 0.1, "threads": 2, "seed": 5,
    "modules": [],
    "cell_models": {
        "pyramidal": {"model": "iaf_psc_alpha", "parameters": {"t_ref": 2.0}},
        "interneuron": {"model": "iaf_psc_alpha"},
    },
    "connection_models": {
        "pyramidal_to_interneuron": {"synapse": "static_synapse", "weight": 20.0, "delay": 1.5,
                                     "receptor_type": 0},
        "interneuron_to_pyramidal": {"weight": -40.0, "delay": 2.0},
    },
    "devices": {
        "background": {"device": "poisson_generator", "parameters": {"rate": 800.0, "start": 5.0},
                       "targets": ["pyramidal"], "weight": 30.0, "delay": 1.0},
        "spikes": {"device": "spike_recorder", "targets": ["pyramidal", "interneuron"]},
    },
}

#: the same simulation in BSB 8's spellings
BSB = {
    "simulator": "nest", "duration": 50, "resolution": 0.1, "threads": 2, "seed": 5,
    "cell_models": {
        "pyramidal": {"model": "iaf_psc_alpha", "constants": {"t_ref": 2.0}},
        "interneuron": {"model": "iaf_psc_alpha"},
    },
    "connection_models": {
        "pyramidal_to_interneuron": {"synapses": [{"model": "static_synapse", "weight": 20.0,
                                                   "delay": 1.5, "receptor_type": 0}]},
        "interneuron_to_pyramidal": {"synapses": [{"weight": -40.0, "delay": 2.0}]},
    },
    "devices": {
        "background": {"device": "poisson_generator", "rate": 800.0, "start": 5.0,
                       "targetting": {"strategy": "cell_model", "cell_models": ["pyramidal"]},
                       "weight": 30.0, "delay": 1.0},
        "spikes": {"device": "spike_recorder",
                   "targetting": {"strategy": "cell_model",
                                  "cell_models": ["pyramidal", "interneuron"]}},
    },
}


def configuration(simulation: dict, name: str = "sim") -> Configuration:
    data = copy.deepcopy(SMALL)
    data["simulations"] = {name: copy.deepcopy(simulation)}
    return Configuration(data)


def effective(simulation) -> dict:
    """What an adapter sees of a simulation, whatever the spelling."""
    return {
        "settings": (simulation.simulator, simulation.duration, simulation.resolution,
                     simulation.threads, simulation.simulation_seed()),
        "cells": {name: (m.model, m.model_parameters()) for name, m in simulation.cell_models.items()},
        "synapses": {name: [(s.model, s.weight, s.delay, s.receptor_type, s.model_parameters())
                            for s in m.synapse_list()]
                     for name, m in simulation.connection_models.items()},
        "devices": {name: (d.device, d.kind, d.target_types(), d.device_parameters(), d.weight,
                           d.delay, d.fraction) for name, d in simulation.devices.items()},
        "simulated": simulation.simulated_cell_types(),
        "recorded": simulation.recorded_cell_types(),
    }


def test_our_keys_and_bsb_spellings_mean_the_same():
    ours = effective(configuration(OURS).simulations["sim"])
    bsb = effective(configuration(BSB).simulations["sim"])
    assert ours == bsb
    assert ours["settings"] == ("nest", 50.0, 0.1, 2, 5)
    assert ours["cells"]["pyramidal"] == ("iaf_psc_alpha", {"t_ref": 2.0})
    assert ours["synapses"]["pyramidal_to_interneuron"] == [("static_synapse", 20.0, 1.5, 0, {})]
    assert ours["synapses"]["interneuron_to_pyramidal"] == [("static_synapse", -40.0, 2.0, None, {})]
    assert ours["devices"]["background"][:4] == (
        "poisson_generator", DeviceKind.STIMULUS, ["pyramidal"], {"rate": 800.0, "start": 5.0})
    assert ours["devices"]["spikes"][1] is DeviceKind.RECORDER
    # relay has no cell model: not simulated; created in the configuration's order
    assert ours["simulated"] == ["pyramidal", "interneuron"]
    assert ours["recorded"] == ["pyramidal", "interneuron"]


def test_the_defaults_and_the_network_seed():
    simulation = configuration({"simulator": "neuron"}).simulations["sim"]
    assert (simulation.duration, simulation.resolution, simulation.threads) == (1000.0, 0.1, 1)
    assert simulation.simulation_seed() == SMALL["seed"]
    assert simulation.simulated_cell_types() == [] and simulation.recorded_cell_types() == []


@pytest.mark.parametrize("spelling", [OURS, BSB])
def test_a_configuration_with_simulations_round_trips(spelling):
    first = configuration(spelling)
    again = Configuration(first.to_dict())
    assert again.to_dict() == first.to_dict()
    assert effective(again.simulations["sim"]) == effective(first.simulations["sim"])
    assert Configuration.from_yaml(first.to_yaml()).to_dict() == first.to_dict()


def _edit(path: str, value, base=OURS) -> dict:
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    item = data
    for key in parents:
        item = item[key]
    if value is _DELETE:
        del item[last]
    else:
        item[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize("path, value, message", [
    ("simulatr", "nest", "simulations.sim: unknown key 'simulatr' (did you mean 'simulator'?)"),
    ("simulator", "brian", "simulations.sim.simulator: expected one of 'nest', 'neuron', got 'brian'"),
    ("threads", 0, "simulations.sim.threads: expected an integer >= 1, got 0"),
    ("duration", -1, "simulations.sim.duration: expected a number > 0, got -1"),
    ("cell_models.pyramidl", {"model": "iaf_psc_alpha"},
     "simulations.sim.cell_models.pyramidl: no cell type 'pyramidl' in cell_types (did you mean 'pyramidal'?)"),
    ("cell_models.pyramidal.constants", {"t_ref": 1.0},
     "simulations.sim.cell_models.pyramidal: give 'parameters' or 'constants' (BSB's name), not both"),
    ("cell_models.pyramidal.modle", "x",
     "simulations.sim.cell_models.pyramidal: unknown key 'modle' (did you mean 'model'?)"),
    ("cell_models.interneuron.model", _DELETE,
     "simulations.sim.cell_models.interneuron: missing required key 'model'"),
    ("connection_models.pyramidal_to_interneuro", {"weight": 1},
     "simulations.sim.connection_models.pyramidal_to_interneuro: no connection set "
     "'pyramidal_to_interneuro' in connectivity (did you mean 'pyramidal_to_interneuron'?)"),
    ("connection_models.relay_to_interneuron", {"weight": 1},
     "simulations.sim.connection_models.relay_to_interneuron: connects cell type 'relay' (its "
     "presynaptic type), which has no cell model: add simulations.sim.cell_models.relay, or "
     "remove this connection model"),
    ("connection_models.interneuron_to_pyramidal.synapses", [{"weight": 1}],
     "simulations.sim.connection_models.interneuron_to_pyramidal: give 'synapses' or 'weight' "
     "and the other flat keys, not both"),
    ("connection_models.interneuron_to_pyramidal.delay", 0,
     "simulations.sim.connection_models.interneuron_to_pyramidal.delay: expected a number > 0, got 0"),
    ("devices.spikes.targets", ["relay"],
     "simulations.sim.devices.spikes: targets cell type 'relay', which has no cell model: add "
     "simulations.sim.cell_models.relay, or remove it from the targets"),
    ("devices.spikes.targets", ["pyramidl"],
     "simulations.sim.devices.spikes.targets: reference to missing node 'cell_types.pyramidl'"),
    ("devices.spikes.targets", _DELETE,
     "simulations.sim.devices.spikes: missing required key 'targets' (the cell types it "
     "stimulates or records)"),
    ("devices.spikes.rate", 3.0,
     "simulations.sim.devices.spikes.rate: a spike_recorder has no 'rate' (it takes 'origin', "
     "'start', 'stop')"),
    ("devices.background.amplitude", 3.0,
     "simulations.sim.devices.background.amplitude: a poisson_generator has no 'amplitude' (it "
     "takes 'origin', 'rate', 'start', 'stop')"),
    ("devices.background.rat", 3.0,
     "simulations.sim.devices.background: unknown key 'rat' (did you mean 'rate'?)"),
    ("devices.background.device", "poisson",
     "simulations.sim.devices.background.device: expected one of 'poisson_generator', "
     "'dc_generator', 'spike_recorder', got 'poisson'"),
    ("devices.background.fraction", 1.5,
     "simulations.sim.devices.background.fraction: expected a number >= 0 and <= 1, got 1.5"),
    ("devices.background.targetting", {"cell_models": ["pyramidal"]},
     "simulations.sim.devices.background: give 'targets' or 'targetting' (BSB's spelling), not both"),
    ("devices.background.parameters", {"rate": [1, {"a": 2}]},
     "simulations.sim.devices.background.parameters: expected a mapping of parameter names to "
     "values, got {'rate': [1, {'a': 2}]}"),
])
def test_every_bad_key_is_one_line_naming_its_path(path, value, message):
    with pytest.raises(ConfigurationError) as info:
        configuration(_edit(path, value))
    assert str(info.value) == message


def test_bsb_targetting_strategies_other_than_cell_model_are_refused():
    data = _edit("devices.spikes.targetting.strategy", "by_id", base=BSB)
    with pytest.raises(ConfigurationError, match=r"^simulations\.sim\.devices\.spikes\.targetting"
                       r"\.strategy: expected one of 'cell_model', got 'by_id'$"):
        configuration(data)


def test_a_recorders_fraction_samples_the_same_cells_every_time():
    from neuroscaffold.simulation import Population, SimulationPlan

    simulation = configuration(_edit("devices.spikes.fraction", 0.25)).simulations["sim"]
    populations = {name: Population(name, 400, simulation.cell_models[name])
                   for name in simulation.simulated_cell_types()}

    def plan():
        return SimulationPlan(simulation, None, populations, {}, dict(simulation.devices),
                              tuple(simulation.recorded_cell_types()))

    first = plan().target_indices("spikes", "pyramidal")
    assert len(first) == 100 and np.all(np.diff(first) > 0) and first.max() < 400
    assert np.array_equal(plan().target_indices("spikes", "pyramidal"), first)
    assert not np.array_equal(plan().target_indices("spikes", "interneuron"), first)
    assert np.array_equal(plan().recorded_indices("pyramidal"), first)
    assert np.array_equal(plan().target_indices("background", "pyramidal"), np.arange(400))


def test_the_reference_lists_the_simulation_keys():
    from neuroscaffold.configuration import build_reference

    text = build_reference()
    for key in ("simulations", "cell_models", "connection_models", "synapses", "devices",
                "targetting", "`constants`", "`fraction`", "`rate`", "`threads`", "`receptor_type`"):
        assert key in text, key
