"""``--simulation SIM``: what BMTK's PointNet needs to run one simulation of the network.

The simulation is read from the ``simulations:`` section of the stored configuration
with its own schema (:mod:`neuroscaffold.simulation.schema`), detached: no strategy's
code is imported. What it adds to the export (all under ``simulation/``):

* ``node_types.csv`` / ``edge_types.csv``: ``model_type: point_neuron``,
  ``model_template: nest:<model>``, ``dynamics_params`` files, ``syn_weight``, ``delay``;
* ``components/``: the cell models' and synapses' parameters as JSON files;
* a virtual population per ``poisson_generator`` (one node per target cell, one edge
  to it; with a ``fraction``, per cell of its sample, the cells the simulator would
  stimulate) and its spike trains, drawn here from the simulation's seed (BMTK has no
  Poisson input): a SONATA spike file given to BMTK as input;
* a ``dc_generator`` as BMTK current clamps (``IClamp``), one per target cell type;
* ``circuit_config.json`` (the simulated populations and sets only: a cell type
  without a cell model, a set without a connection model, is not simulated), and at
  the top ``simulation_config.json``, which ``pointnet.Config.from_json`` reads.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..exceptions import ConfigurationError, NeuroscaffoldWarning
from ..storage import HDF5Storage
from ..simulation import sampled_cells
from ._sonata import EdgeSet, NodeSet, circuit_config, write_json, write_table

__all__ = ["SimulationExport", "plan_simulation", "read_simulation", "write_simulation"]

FOLDER = "simulation"
SIMULATION_CONFIG = "simulation_config.json"
_SPIKE_BLOCK = 1 << 16  # virtual nodes whose trains are drawn at a time


def read_simulation(configuration: dict[str, Any], name: str) -> Any:
    """The simulation ``name`` of a stored configuration (its JSON mapping), as the
    schema's :class:`~neuroscaffold.simulation.schema.Simulation`, detached from the
    rest of the configuration; one-line errors for a name that is not there."""
    from ..simulation.schema import Simulation

    simulations = configuration.get("simulations") or {}
    if name not in simulations:
        if not simulations:
            raise ConfigurationError(f"simulations: no simulation '{name}': the network's "
                                     "configuration has no simulations section")
        hint = difflib.get_close_matches(name, list(simulations), n=1)
        suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigurationError(f"simulations: no simulation '{name}'{suffix}; the network "
                                 "has " + ", ".join(f"'{k}'" for k in simulations))
    simulation = Simulation(simulations[name])
    simulation._config_key = name
    return simulation


@dataclass
class SimulationExport:
    """What the simulation adds, decided on the main rank."""

    name: str
    simulation: Any
    seed: int
    cells: list[NodeSet]  #: the simulated cell types' populations
    sets: list[EdgeSet]  #: the simulated connection sets
    nodes: list[NodeSet] = field(default_factory=list)  #: virtual populations (devices)
    #: the devices' edges, and the copies: the stored pairs again, once per further
    #: synapse of a connection model (a SONATA edge has one type)
    edges: list[EdgeSet] = field(default_factory=list)
    #: edge population of a copy -> (its connection set, the synapse's number)
    synapse_of: dict[str, tuple[str, int]] = field(default_factory=dict)

    def copies(self) -> list[EdgeSet]:
        return [edge_set for edge_set in self.edges if edge_set.name in self.synapse_of]

    def devices_edges(self) -> list[EdgeSet]:
        """The edges from the devices' virtual populations."""
        return [edge_set for edge_set in self.edges if edge_set.name not in self.synapse_of]
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  #: device -> spikes
    #: dc_generator -> BMTK current clamps (one per target cell type)
    currents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _current_clamps(where: str, device: Any, parameters: dict[str, Any],
                    cells: dict[str, np.ndarray], sizes: dict[str, int],
                    simulation: Any) -> list[dict[str, Any]]:
    """A ``dc_generator`` as BMTK's ``IClamp`` inputs (a NEST step current generator
    connected with a delay of one time step), one per target cell type.

    The current reaches the cells when it does in ``neuroscaffold simulate``: NEST
    delivers a dc_generator's current after its connection's ``delay``, so the clamp
    starts ``delay`` minus one step after the device's start, scaled by its ``weight``
    (NEST multiplies a current by its connection's weight). BMTK drops a clamp that
    starts within the first time step: such a start is moved to the second one, and
    said in one line."""
    if device.receptor_type is not None:
        raise ConfigurationError(f"{where}.receptor_type: BMTK's current clamp has no "
                                 "receptor port; remove it to export this dc_generator")
    step = float(simulation.resolution)
    origin = float(parameters.get("origin", 0.0))
    start = origin + float(parameters.get("start", 0.0))
    stop = origin + float(parameters.get("stop", simulation.duration))
    onset = round((start + float(device.delay) - step) / step) * step
    if onset <= step:
        warnings.warn(f"{where}: BMTK's current clamp cannot start within the first time "
                      f"step; exported to reach the cells at {3 * step:g} ms instead of "
                      f"{start + float(device.delay):g} ms", NeuroscaffoldWarning, stacklevel=2)
        onset = 2 * step
    amplitude = float(parameters.get("amplitude", 0.0)) * float(device.weight)
    clamps = []
    for cell_type, chosen in cells.items():
        node_set: dict[str, Any] = {"population": cell_type}
        if len(chosen) < sizes[cell_type]:
            node_set["node_id"] = [int(i) for i in chosen]
        clamps.append({"input_type": "current_clamp", "module": "IClamp",
                       "node_set": node_set, "amp": amplitude, "delay": onset,
                       "duration": max(stop - start, 0.0)})
    return clamps


def plan_simulation(storage: HDF5Storage, name: str, nodes: list[NodeSet],
                    edges: list[EdgeSet]) -> SimulationExport:
    """Check simulation ``name`` against the stored network and plan its files."""
    configuration = storage.read_configuration()
    simulation = read_simulation(configuration, name)
    where = f"simulations.{name}"
    by_type = {n.name: n for n in nodes}
    by_set = {e.name: e for e in edges}
    for cell_type in simulation.cell_models:
        if cell_type not in by_type:
            raise ConfigurationError(f"{where}.cell_models.{cell_type}: the network has no "
                                     f"cells of type '{cell_type}'")
    sets = []
    for set_name, model in simulation.connection_models.items():
        if set_name not in by_set:
            raise ConfigurationError(f"{where}.connection_models.{set_name}: the network has "
                                     f"no connection set '{set_name}'")
        edge_set = by_set[set_name]
        for role, cell_type in (("presynaptic", edge_set.pre), ("postsynaptic", edge_set.post)):
            if cell_type not in simulation.cell_models:
                raise ConfigurationError(
                    f"{where}.connection_models.{set_name}: connects cell type "
                    f"'{cell_type}' (its {role} type), which has no cell model: add "
                    f"{where}.cell_models.{cell_type}")
        sets.append(edge_set)
    seed = simulation.seed if simulation.seed is not None else int(configuration.get("seed", 0) or 0)
    plan = SimulationExport(name, simulation, seed,
                            [by_type[t] for t in by_type if t in simulation.cell_models], sets)
    node_type, edge_type = len(nodes), len(edges)
    for edge_set in sets:  # a SONATA edge has one type: a population per further synapse
        for number in range(1, len(simulation.connection_models[edge_set.name].synapse_list())):
            copy = EdgeSet(
                f"{edge_set.name}_synapse{number}", edge_set.pre, edge_set.post,
                edge_set.count, edge_type, edge_set.pre_count, edge_set.post_count,
                stored=edge_set.name, folder=FOLDER)
            plan.edges.append(copy)
            plan.synapse_of[copy.name] = (edge_set.name, number)
            edge_type += 1
    for device_name, device in simulation.devices.items():
        targets = device.target_types()
        for cell_type in targets:
            if cell_type not in simulation.cell_models:
                raise ConfigurationError(f"{where}.devices.{device_name}: targets cell type "
                                         f"'{cell_type}', which has no cell model: add "
                                         f"{where}.cell_models.{cell_type}")
        if device.device == "spike_recorder":
            continue  # BMTK records every spike of the simulated cells
        sizes = {cell_type: by_type[cell_type].count for cell_type in targets}
        cells = {cell_type: sampled_cells(seed, device_name, cell_type, size,
                                          float(device.fraction))
                 for cell_type, size in sizes.items()}
        parameters = device.device_parameters()
        if device.device == "dc_generator":
            plan.currents[device_name] = _current_clamps(
                f"{where}.devices.{device_name}", device, parameters, cells, sizes, simulation)
            continue
        if device.device != "poisson_generator":
            raise ConfigurationError(f"{where}.devices.{device_name}: a {device.device} has no "
                                     "SONATA/BMTK form in this export (poisson_generator, "
                                     "dc_generator and spike_recorder do)")
        count = sum(len(chosen) for chosen in cells.values())
        plan.nodes.append(NodeSet(device_name, count, node_type, virtual=True, folder=FOLDER))
        node_type += 1
        offset = 0
        for cell_type, chosen in cells.items():
            size = sizes[cell_type]
            sampled = None if len(chosen) == size else chosen  # else every cell, in order
            plan.edges.append(EdgeSet(f"{device_name}_to_{cell_type}", device_name, cell_type,
                                      len(chosen), edge_type, count, size, source_offset=offset,
                                      folder=FOLDER, target_cells=sampled))
            edge_type += 1
            offset += len(chosen)
        plan.inputs[device_name] = {"count": count, "rate": float(parameters.get("rate", 0.0)),
                                    "start": float(parameters.get("start", 0.0)),
                                    "stop": float(parameters.get("stop", simulation.duration)),
                                    "origin": float(parameters.get("origin", 0.0)),
                                    "weight": device.weight, "delay": device.delay,
                                    "number": len(plan.inputs)}
    return plan


def write_simulation(staging: Path, storage: HDF5Storage, plan: SimulationExport) -> None:
    """Main rank: the simulation's tables, parameter files, spike trains and configs."""
    simulation = plan.simulation
    folder = staging / FOLDER
    models = folder / "components" / "point_neuron_models"
    synapses = folder / "components" / "synaptic_models"
    models.mkdir(parents=True)
    synapses.mkdir(parents=True)
    rows = []
    for node_set in plan.cells:
        model = simulation.cell_models[node_set.name]
        write_json(models / f"{node_set.name}.json", model.model_parameters())
        rows.append([node_set.type_id, node_set.name, "point_neuron", f"nest:{model.model}",
                     f"{node_set.name}.json"])
    write_table(folder / "node_types.csv", ["node_type_id", "pop_name", "model_type",
                                            "model_template", "dynamics_params"], rows)
    # virtual populations have their own table: BMTK reads a model_template of every
    # row of a population's table that has the column
    write_table(folder / "virtual_node_types.csv", ["node_type_id", "pop_name", "model_type"],
                [[n.type_id, n.name, "virtual"] for n in plan.nodes])
    rows = []
    for edge_set in [*plan.sets, *plan.copies()]:  # the copies are written with the edges
        set_name, number = plan.synapse_of.get(edge_set.name, (edge_set.name, 0))
        synapse = simulation.connection_models[set_name].synapse_list()[number]
        parameters = dict(synapse.model_parameters())
        if synapse.receptor_type is not None:
            parameters["receptor_type"] = synapse.receptor_type
        write_json(synapses / f"{edge_set.name}.json", parameters)
        rows.append([edge_set.type_id, edge_set.name, f"nest:{synapse.model}",
                     f"{edge_set.name}.json", repr(float(synapse.weight)),
                     repr(float(synapse.delay))])
    for edge_set in plan.devices_edges():
        device = simulation.devices[edge_set.pre]
        parameters = {} if device.receptor_type is None else {"receptor_type": device.receptor_type}
        write_json(synapses / f"{edge_set.name}.json", parameters)
        rows.append([edge_set.type_id, edge_set.name, "nest:static_synapse",
                     f"{edge_set.name}.json", repr(float(device.weight)),
                     repr(float(device.delay))])
    write_table(folder / "edge_types.csv", ["edge_type_id", "pop_name", "model_template",
                                            "dynamics_params", "syn_weight", "delay"], rows)
    circuit = circuit_config([*plan.cells, *plan.nodes], [*plan.sets, *plan.edges], FOLDER, {
        "point_neuron_models_dir": f"$BASE_DIR/{FOLDER}/components/point_neuron_models",
        "synaptic_models_dir": f"$BASE_DIR/{FOLDER}/components/synaptic_models"})
    circuit["manifest"] = {"$BASE_DIR": "${configdir}/.."}
    write_json(folder / "circuit_config.json", circuit)
    inputs = {}
    for device_name, spec in plan.inputs.items():
        spikes = f"{FOLDER}/spikes_{device_name}.h5"
        write_poisson_trains(staging / spikes, device_name, spec, plan.seed,
                             simulation.resolution)
        inputs[device_name] = {"input_type": "spikes", "module": "sonata",
                               "input_file": f"$BASE_DIR/{spikes}", "node_set": device_name}
    for device_name, clamps in plan.currents.items():
        for clamp in clamps:
            key = device_name if len(clamps) == 1 else \
                f"{device_name}_{clamp['node_set']['population']}"
            inputs[key] = clamp
    write_json(staging / SIMULATION_CONFIG, {
        "manifest": {"$BASE_DIR": "${configdir}", "$OUTPUT_DIR": "$BASE_DIR/output"},
        "target_simulator": "NEST",
        "run": {"tstop": float(simulation.duration), "dt": float(simulation.resolution)},
        "network": f"$BASE_DIR/{FOLDER}/circuit_config.json",
        "inputs": inputs,
        "output": {"output_dir": "$OUTPUT_DIR", "log_file": "log.txt",
                   "spikes_file": "spikes.h5", "overwrite_output_dir": True,
                   "quiet_simulator": True},
        "neuroscaffold": {"simulation": plan.name, "seed": plan.seed,
                          "threads": int(simulation.threads)},
    })


def write_poisson_trains(path: Path, population: str, spec: dict[str, Any], seed: int,
                         resolution: float) -> None:
    """Independent Poisson trains, one per virtual node, on the simulation's time grid
    (NEST's spike generators take grid times), drawn block by block from a stream
    keyed by (seed, device, block): the same trains whatever the machine or rank count."""
    start = spec["origin"] + spec["start"]
    stop = spec["origin"] + spec["stop"]
    span = max(stop - start, 0.0)
    mean = spec["rate"] * span / 1000.0
    sorting = h5py.enum_dtype({"none": 0, "by_id": 1, "by_time": 2}, basetype=np.uint8)
    with h5py.File(path, "w", locking=False) as file:
        group = file.create_group(f"spikes/{population}")
        group.attrs.create("sorting", 1, dtype=sorting)  # by_id
        times = group.create_dataset("timestamps", shape=(0,), maxshape=(None,),
                                     dtype="<f8", chunks=(1 << 16,))
        times.attrs["units"] = "ms"
        ids = group.create_dataset("node_ids", shape=(0,), maxshape=(None,), dtype="<u8",
                                   chunks=(1 << 16,))
        for block, first in enumerate(range(0, spec["count"], _SPIKE_BLOCK)):
            n = min(_SPIKE_BLOCK, spec["count"] - first)
            rng = np.random.default_rng([seed, spec["number"], block])
            counts = rng.poisson(mean, n) if mean > 0 else np.zeros(n, dtype=np.int64)
            node = np.repeat(np.arange(first, first + n, dtype=np.uint64), counts)
            steps = np.floor(rng.uniform(start, stop, int(counts.sum())) / resolution) + 1
            order = np.lexsort((steps, node))
            at = len(times)
            times.resize((at + len(node),))
            ids.resize((at + len(node),))
            times[at:] = steps[order] * resolution
            ids[at:] = node[order]
