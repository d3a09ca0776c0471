"""The reference rows of ``bench/bench_simulate.py``: BSB 8.0.2 with bsb-nest 8.0.2
simulating the same network, with the same models and devices, as our ``simulate``.

BSB is never a dependency of neuroscaffold: :func:`bsb_python` installs it from PyPI
into a throw-away virtual environment under ``/tmp`` on first use (as
``bench/bench_placement.py`` does for bsb-native) and every BSB step runs in that
venv's interpreter, in its own process. Three steps:

1. :func:`export` (our interpreter): our compiled network's cells, chunk by chunk, and
   the stored pairs of every connection set go to a ``.npz``; our configuration and
   one simulation become a BSB configuration (JSON): the same network box, chunk size,
   layers and cell types (placement and connectivity name strategies that never run:
   the network is written, not built), and a ``simulations:`` section per thread
   count in BSB 8's own spellings (``constants``, ``synapses: [...]``,
   ``targetting:``). A device that samples a fraction of its targets gets BSB's
   ``by_id`` targetting with exactly the cells ours samples.
2. ``python bench/bsb_reference.py build NPZ CONFIG ROOT`` (the venv's interpreter):
   BSB's public API writes the network into BSB's own HDF5 storage
   (``Scaffold(config)``, ``place_cells`` per chunk, ``chunk_connect`` per pair of
   chunks of each set), then
   reads it back and checks it, cell for cell: the positions of every cell and the
   pairs of every set are ours (BSB orders a cell type's cells by its chunk ids, so an
   index of ours maps to BSB's through the chunk order; the pairs are mapped and
   compared as sets). It prints one JSON line: counts and the differences found.
3. ``bsb simulate ROOT SIM`` is timed by the bench; :data:`PHASES` is a second,
   instrumented run (``run_simulation`` with the adapter's steps timed) for the
   table's columns and BSB's peak RSS.

This module imports nothing but the standard library at the top: the build step runs
where neuroscaffold is not installed, the export step where BSB is not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

#: what the throw-away venv gets (the versions the reference was measured with)
PACKAGES = ("bsb-core==8.0.2", "bsb-hdf5==8.0.2", "bsb-nest==8.0.2", "nest-simulator==3.10.0")

#: one instrumented BSB simulation (the venv's interpreter): the seconds of each step of
#: bsb-nest's adapter (the methods it calls in turn), and the peak RSS
PHASES = r"""
import json, sys, time
started = time.perf_counter()
from bsb import from_storage
from bsb_nest.adapter import NestAdapter
timings = {}
counted = {}
def timed(key, method):
    inner = getattr(NestAdapter, method)
    def wrapper(self, *args, **kwargs):
        if key == "simulate":  # NEST's connections, before the adapter resets the kernel
            import nest
            counted["connections"] = nest.GetKernelStatus("num_connections")
        since = time.perf_counter()
        try:
            return inner(self, *args, **kwargs)
        finally:
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - since
    setattr(NestAdapter, method, wrapper)
for key, method in (("prepare", "prepare"), ("cells", "create_neurons"),
                    ("connect", "connect_neurons"), ("devices", "implement_components"),
                    ("simulate", "run")):
    timed(key, method)
network = from_storage(sys.argv[1])
read = time.perf_counter() - started
network.run_simulation(sys.argv[2], output_filename=sys.argv[3])
peak = 0.0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) / 1024
timings["read"] = read + timings.pop("prepare") - sum(timings.get(k, 0.0) for k in ("cells", "connect", "devices"))
print(json.dumps({"timings": timings, "rss_mb": peak, "wall": time.perf_counter() - started,
                  **counted}), flush=True)
"""

#: the spikes and the recorded cells per cell model in a BSB result file (neo's NIX
#: format): a recorder's one spike train names its cells in a roster (JSON), and each
#: spike's ``bsb_target_index`` is its cell's place in the roster
RATES = r"""
import json, sys
import neo
import numpy as np
spikes, cells = {}, {}
with neo.NixIO(sys.argv[1], mode="ro") as io:
    for block in io.read_all_blocks():
        for segment in block.segments:
            for train in segment.spiketrains:
                roster = json.loads(train.annotations["bsb_roster"])
                models = np.asarray(roster["bsb_cell_model"], dtype=str)
                index = np.asarray(train.array_annotations["bsb_target_index"], dtype=np.int64)
                for model in np.unique(models):
                    cells[model] = cells.get(model, 0) + int(np.sum(models == model))
                    spikes[model] = spikes.get(model, 0) + int(np.sum(models[index] == model))
print(json.dumps({"spikes": spikes, "cells": cells}))
"""


def bsb_python(folder: Path) -> Path | str:
    """The interpreter of a throw-away venv with :data:`PACKAGES` (made on first use),
    or one line that says why it could not be made."""
    python = folder / "bin" / "python"
    probe = [str(python), "-c", "import bsb, bsb_hdf5, bsb_nest, nest"]
    try:
        if python.exists() and subprocess.run(probe, capture_output=True, timeout=120).returncode == 0:
            return python
        print(f"<!-- installing {' '.join(PACKAGES)} into a throw-away venv at {folder} -->",
              flush=True)
        venv.create(folder, with_pip=True, clear=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            return f"pip could not install {' '.join(PACKAGES)}: {last}"
        if subprocess.run(probe, capture_output=True, timeout=120).returncode != 0:
            return "the BSB venv was installed but `import bsb_nest` fails in it"
    except (OSError, subprocess.SubprocessError) as error:
        return f"no BSB venv at {folder}: {error}"
    return python


def _bsb_simulation(simulation: Any, threads: int, duration: float,
                    sampled: dict[str, dict[str, list[int]]], ps: bool = False) -> dict[str, Any]:
    """Our simulation in BSB 8's spellings (``sampled``: device -> cell type -> the
    indices of ours it targets, for devices with a fraction). ``ps``: each
    ``poisson_generator`` is NEST's ``poisson_generator_ps`` (BSB's ``external``
    device), as our NEST adapter realises it, to tell what that choice is worth."""
    out: dict[str, Any] = {
        "simulator": "nest", "duration": duration, "resolution": simulation.resolution,
        "threads": threads,
        "cell_models": {cell_type: {"model": model.model, "constants": model.model_parameters()}
                        for cell_type, model in simulation.cell_models.items()},
        "connection_models": {
            set_name: {"synapses": [
                {"model": synapse.model, "weight": synapse.weight, "delay": synapse.delay,
                 **({"receptor_type": synapse.receptor_type} if synapse.receptor_type is not None else {}),
                 **synapse.model_parameters()} for synapse in model.synapse_list()]}
            for set_name, model in simulation.connection_models.items()},
        "devices": {},
    }
    for device_name, device in simulation.devices.items():
        if device_name in sampled:
            targetting: dict[str, Any] = {"strategy": "by_id", "ids": sampled[device_name]}
        else:
            targetting = {"strategy": "cell_model", "cell_models": device.target_types()}
        node: dict[str, Any] = {"device": device.device, "targetting": targetting,
                                "delay": device.delay}
        if device.device != "spike_recorder":
            node["weight"] = device.weight
            if ps and device.device == "poisson_generator":
                node.update(device="external", nest_model="poisson_generator_ps",
                            constants=device.device_parameters())
            else:
                node.update(device.device_parameters())
            if device.receptor_type is not None:
                node["receptor_type"] = device.receptor_type
        out["devices"][device_name] = node
    return out


def export(network_path: Path, simulation_name: str, folder: Path, duration: float,
           threads: tuple[int, ...] = (1, 2)) -> tuple[Path, Path, dict[int, str], dict[str, int]]:
    """Our network and ``simulation_name`` for BSB: ``(npz, config json, {threads:
    BSB simulation name} (0: see :func:`_bsb_simulation`), {cell type: cells our
    spike recorders record})``. Runs in
    our interpreter."""
    import numpy as np

    from neuroscaffold import from_storage
    from neuroscaffold.simulation._run import build_plan

    network = from_storage(network_path)
    configuration = network.configuration
    data = configuration.to_dict()
    simulation = configuration.simulations[simulation_name]
    arrays: dict[str, np.ndarray] = {}
    for cell_type in configuration.cell_types:
        placement_set = network.get_placement_set(cell_type)
        ranges = placement_set.chunk_ranges()
        arrays[f"chunks.{cell_type}"] = np.array(list(ranges) or np.empty((0, 3)), dtype=np.int64).reshape(-1, 3)
        arrays[f"ranges.{cell_type}"] = np.array(list(ranges.values()) or np.empty((0, 2)), dtype=np.int64).reshape(-1, 2)
        arrays[f"positions.{cell_type}"] = placement_set.load_positions()
    sets = {}
    for name, strategy in configuration.connectivity.items():
        arrays[f"pairs.{name}"] = network.get_connectivity_set(name).load_connections()
        sets[name] = (strategy.presynaptic.name, strategy.postsynaptic.name)
    plan = build_plan(network, simulation)
    sampled = {device_name: {cell_type: plan.target_indices(device_name, cell_type).tolist()
                             for cell_type in device.target_types()}
               for device_name, device in simulation.devices.items() if device.fraction < 1.0}
    partitions = sorted(data["partitions"].items(), key=lambda item: item[1].get("origin", 0.0))
    #: threads -> BSB simulation; 0: 1 thread with poisson_generator_ps (see _bsb_simulation)
    names = {count: f"{simulation_name}_{duration:g}ms_{count}" for count in threads}
    names[0] = f"{simulation_name}_{duration:g}ms_1_ps"
    bsb = {
        "name": data.get("name", "network"),
        "storage": {"engine": "hdf5"},
        "network": {axis: data["network"][axis] for axis in ("x", "y", "z")}
        | {"chunk_size": data["network"]["chunk_size"]},
        "partitions": {name: {"type": "layer", "thickness": part["thickness"],
                              **({"axis": part["axis"]} if "axis" in part else {})}
                       for name, part in partitions},
        "regions": {"stack": {"type": "stack", "children": [name for name, _ in partitions]}},
        # the stored counts: the network is written, these strategies never run
        "cell_types": {name: {"spatial": {"radius": cell["radius"],
                                          "count": int(len(arrays[f"positions.{name}"]))}}
                       for name, cell in data["cell_types"].items()},
        "placement": {name: {"strategy": "bsb.placement.RandomPlacement",
                             "cell_types": list(node["cell_types"]),
                             "partitions": list(node["partitions"])}
                      for name, node in data["placement"].items()},
        "connectivity": {name: {"strategy": "bsb.connectivity.AllToAll",
                                "presynaptic": {"cell_types": [pre]},
                                "postsynaptic": {"cell_types": [post]}}
                         for name, (pre, post) in sets.items()},
        "simulations": {names[count]: _bsb_simulation(simulation, max(count, 1), duration, sampled,
                                                      ps=count == 0)
                        for count in names},
    }
    npz, config = folder / "bsb-network.npz", folder / "bsb-config.json"
    np.savez(npz, **arrays)
    config.write_text(json.dumps({"configuration": bsb, "sets": sets}))
    recorded = {}
    for cell_type in plan.recorded:
        sample = plan.recorded_indices(cell_type)
        recorded[cell_type] = plan.populations[cell_type].size if sample is None else len(sample)
    return npz, config, names, recorded


def _connect_by_chunk(stored: Any, rows: Any, arrays: Any, pre: str, post: str,
                      chunk_of: dict[str, Any], size: Any) -> None:
    """Write the pairs ``rows`` (our indices) into BSB's connectivity set ``stored``
    with ``chunk_connect``, once per (presynaptic chunk, postsynaptic chunk) with the
    cells' indices within their chunks: what BSB's own connection jobs write.
    (``connect`` with whole-set indices visits every pair of chunks, thousands of
    empty ones at 4x.)"""
    import numpy as np
    from bsb import Chunk

    if not len(rows):
        return
    pre_chunks, post_chunks = arrays[f"chunks.{pre}"], arrays[f"chunks.{post}"]
    pre_starts, post_starts = arrays[f"ranges.{pre}"][:, 0], arrays[f"ranges.{post}"][:, 0]
    source, target = chunk_of[pre][rows[:, 0]], chunk_of[post][rows[:, 1]]
    key = source * len(post_chunks) + target
    ordered = np.argsort(key, kind="stable")
    groups, first = np.unique(key[ordered], return_index=True)
    for number, (group, begin) in enumerate(zip(groups, first)):
        end = first[number + 1] if number + 1 < len(first) else len(ordered)
        picked = rows[ordered[begin:end]]
        src, dst = int(group) // len(post_chunks), int(group) % len(post_chunks)
        src_locs = np.full((len(picked), 3), -1, dtype=np.int64)
        dst_locs = src_locs.copy()
        src_locs[:, 0] = picked[:, 0] - pre_starts[src]
        dst_locs[:, 0] = picked[:, 1] - post_starts[dst]
        stored.chunk_connect(Chunk(pre_chunks[src], size), Chunk(post_chunks[dst], size),
                             src_locs, dst_locs)


def build(npz_path: str, config_path: str, root: str) -> dict[str, Any]:
    """Write the exported network into BSB's HDF5 storage at ``root`` with BSB's public
    API, read it back and compare it with ours. Runs in the BSB venv."""
    import numpy as np
    from bsb import Chunk, Configuration, Scaffold

    exported = json.loads(Path(config_path).read_text())
    data, sets = exported["configuration"], exported["sets"]
    arrays = np.load(npz_path)
    # the ids a fraction-sampling device targets are ours: mapped below, before the
    # configuration is stored with the network
    devices = [device for simulation in data["simulations"].values()
               for device in simulation["devices"].values()
               if device["targetting"]["strategy"] == "by_id"]
    data["storage"]["root"] = root
    size = np.asarray(data["network"]["chunk_size"], dtype=float)
    # our index -> BSB's: BSB keeps a cell type's cells in the order of its chunks' ids
    mapping, order, chunk_of = {}, {}, {}
    for cell_type in data["cell_types"]:
        chunks = arrays[f"chunks.{cell_type}"]
        ranges = arrays[f"ranges.{cell_type}"]
        total = int(ranges[:, 1].max()) if len(ranges) else 0
        index = np.empty(total, dtype=np.int64)
        ordered = sorted(range(len(chunks)), key=lambda k: Chunk(chunks[k], size))
        offset = 0
        for k in ordered:
            start, stop = (int(v) for v in ranges[k])
            index[start:stop] = np.arange(offset, offset + stop - start)
            offset += stop - start
        mapping[cell_type], order[cell_type] = index, ordered
        # and each cell's chunk (its row in `chunks`), for chunk_connect
        chunk_of[cell_type] = np.full(total, -1, dtype=np.int64)
        for k, (start, stop) in enumerate(ranges):
            chunk_of[cell_type][start:stop] = k
    for device in devices:
        ids = device["targetting"]["ids"]
        for cell_type in ids:
            ids[cell_type] = sorted(int(i) for i in mapping[cell_type][np.asarray(ids[cell_type], dtype=np.int64)])
    network = Scaffold(Configuration(data), clear=True)
    with network.storage.write_scope():  # one HDF5 handle for every write, not one each
        for cell_type in data["cell_types"]:
            positions = arrays[f"positions.{cell_type}"]
            chunks, ranges = arrays[f"chunks.{cell_type}"], arrays[f"ranges.{cell_type}"]
            for k in order[cell_type]:
                start, stop = (int(v) for v in ranges[k])
                if stop > start:
                    network.place_cells(network.cell_types[cell_type], positions[start:stop],
                                        chunk=Chunk(chunks[k], size))
        for name, (pre, post) in sets.items():
            stored = network.require_connectivity_set(network.cell_types[pre],
                                                      network.cell_types[post], name)
            _connect_by_chunk(stored, arrays[f"pairs.{name}"], arrays, pre, post, chunk_of, size)
    problems: list[str] = []
    cells, pairs = {}, {}
    with network.storage.read_scope():
        _compare(network, data, sets, arrays, mapping, cells, pairs, problems)
    duplicates = {name: int(len(rows) - len(np.unique(rows, axis=0)))
                  for name in sets for rows in [arrays[f"pairs.{name}"]]}
    return {"cells": cells, "pairs": pairs, "duplicates": duplicates, "problems": problems}


def _compare(network: Any, data: dict[str, Any], sets: dict[str, Any], arrays: Any,
             mapping: dict[str, Any], cells: dict[str, int], pairs: dict[str, int],
             problems: list[str]) -> None:
    """Read the rebuilt network back: its counts into ``cells`` and ``pairs``, each
    difference from ours (positions cell for cell, pairs as sets) into ``problems``."""
    import numpy as np

    for cell_type in data["cell_types"]:
        ours = arrays[f"positions.{cell_type}"]
        theirs = network.get_placement_set(cell_type).load_positions()
        cells[cell_type] = len(theirs)
        if len(theirs) != len(ours):
            problems.append(f"{cell_type}: {len(theirs)} cells in BSB, {len(ours)} ours")
        elif len(ours) and not np.array_equal(theirs[mapping[cell_type]], ours):
            problems.append(f"{cell_type}: positions differ cell for cell")
    for name, (pre, post) in sets.items():
        rows = arrays[f"pairs.{name}"]
        stored = network.get_connectivity_set(name)
        sources, targets = stored.load_connections().as_globals().all()
        pairs[name] = len(sources)
        expected = np.column_stack((mapping[pre][rows[:, 0]], mapping[post][rows[:, 1]]))
        found = np.column_stack((sources[:, 0], targets[:, 0]))
        if len(found) != len(expected):
            problems.append(f"{name}: {len(found)} pairs in BSB, {len(expected)} ours")
        elif not np.array_equal(np.unique(found, axis=0), np.unique(expected, axis=0)):
            problems.append(f"{name}: pairs differ")


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "build":
        raise SystemExit("usage: python bench/bsb_reference.py build NPZ CONFIG ROOT")
    print(json.dumps(build(*sys.argv[2:])), flush=True)
