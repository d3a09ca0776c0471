"""The SONATA export (issue 18): libsonata reads back every cell and every pair, the
indices answer afferent and efferent queries, the files are the same at any rank count
and block size, and bad input gets one line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from neuroscaffold.cli import main
from neuroscaffold.export import export_sonata
from neuroscaffold.storage import HDF5Storage
from tests._mpi import ROOT, run_script

EXAMPLES = {"small": ROOT / "examples" / "small.yaml",
            "cerebellum": ROOT / "examples" / "cerebellum.yaml"}


def _compile(config: Path | dict, out: Path) -> Path:
    if isinstance(config, dict):
        path = out.with_suffix(".yaml")
        path.write_text(yaml.safe_dump(config))
        config = path
    assert main(["compile", str(config), "-o", str(out), "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def networks(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("networks")
    return {name: _compile(path, folder / f"{name}.hdf5") for name, path in EXAMPLES.items()}


def _expand(ranges: np.ndarray) -> np.ndarray:
    if not len(ranges):
        return np.empty(0, dtype=np.int64)
    return np.concatenate([np.arange(a, b) for a, b in ranges.astype(np.int64)])


def check_index(edges_file: Path, name: str, pairs: np.ndarray, sizes: tuple[int, int]) -> None:
    """Both indices of one edge population give each node exactly its edges."""
    with h5py.File(edges_file, "r") as file:
        population = file[f"edges/{name}"]
        for column, direction in enumerate(("source_to_target", "target_to_source")):
            index = population[f"indices/{direction}"]
            lookup = index["node_id_to_ranges"][()]
            assert index["node_id_to_range"].id == index["node_id_to_ranges"].id  # hard link
            ranges = index["range_to_edge_id"][()]
            assert lookup.shape == (sizes[column], 2)
            # all nodes' edges, node by node, equal the edges sorted (stably) by node
            edges = _expand(np.concatenate([ranges[a:b] for a, b in lookup.astype(np.int64)])
                            if len(lookup) else ranges[:0])
            expected = np.argsort(pairs[:, column], kind="stable")
            assert np.array_equal(edges, expected), (name, direction)
            counts = np.array([sum(int(e) - int(s) for s, e in ranges[a:b])
                               for a, b in lookup.astype(np.int64)], dtype=np.int64)
            assert np.array_equal(counts, np.bincount(pairs[:, column], minlength=sizes[column]))


def check_export(network: Path, directory: Path, queries: int) -> None:
    """libsonata reads back every population, position and pair, and both indices of
    every edge population hold."""
    sizes = _check_with_libsonata(network, directory, queries)
    # h5py opens the files only once libsonata's objects are gone: when NEST was imported
    # first in this process (it makes later libraries load RTLD_GLOBAL), libsonata shares
    # h5py's HDF5, and a file open in both with different locking flags is refused.
    storage = HDF5Storage(network)
    for name in storage.connectivity_names():
        pairs, _ = storage.read_connections(name)
        check_index(directory / "network" / f"edges_{name}.h5", name, pairs, sizes[name])


def _check_with_libsonata(network: Path, directory: Path,
                          queries: int) -> dict[str, tuple[int, int]]:
    """libsonata's view of the export against the network; the sizes of each edge
    population's source and target populations."""
    import libsonata

    storage = HDF5Storage(network)
    config = json.loads((directory / "circuit_config.json").read_text())
    assert "target_simulator" not in config
    circuit = libsonata.CircuitConfig.from_file(str(directory / "circuit_config.json"))
    assert sorted(circuit.node_populations) == storage.cell_type_names()
    assert sorted(circuit.edge_populations) == storage.connectivity_names()
    for name in storage.cell_type_names():
        population = circuit.node_population(name)
        positions = storage.load_positions(name)
        assert population.size == len(positions)
        every = population.select_all()
        got = np.stack([population.get_attribute(axis, every) for axis in "xyz"], axis=1)
        assert np.array_equal(got.reshape(-1, 3), positions), name
    sizes_of = {}
    for name in storage.connectivity_names():
        pairs, meta = storage.read_connections(name)
        edges = circuit.edge_population(name)
        assert (edges.source, edges.target) == (meta["presynaptic"], meta["postsynaptic"])
        assert edges.size == len(pairs)
        every = edges.select_all()
        got = np.stack([edges.source_nodes(every), edges.target_nodes(every)], axis=1)
        assert np.array_equal(got.reshape(-1, 2), pairs), name
        sizes = (storage.count_cells(edges.source), storage.count_cells(edges.target))
        for column, ask in ((1, edges.afferent_edges), (0, edges.efferent_edges)):
            step = max(1, sizes[column] // queries)
            for node in range(0, sizes[column], step):
                found = np.sort(ask(node).flatten())
                assert np.array_equal(found, np.flatnonzero(pairs[:, column] == node)), \
                    (name, column, node)
        sizes_of[name] = sizes
    return sizes_of


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_libsonata_reads_back_every_cell_and_pair(networks, tmp_path, example):
    out = export_sonata(networks[example], tmp_path / "sonata")
    check_export(networks[example], out, queries=200)


def test_small_blocks_and_buckets_give_the_same_files(networks, tmp_path, monkeypatch):
    """Rows cut into many blocks and the indices into many buckets: the same bytes
    (block and run boundaries everywhere)."""
    from neuroscaffold.export import _index, _sonata

    reference = export_sonata(networks["small"], tmp_path / "reference")
    monkeypatch.setattr(_sonata, "ROWS", 97)
    monkeypatch.setattr(_index, "BUCKET_RANGES", 50)
    cut = export_sonata(networks["small"], tmp_path / "cut")
    assert _files(reference) == _files(cut)
    check_export(networks["small"], cut, queries=1000)


def _files(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


_PARALLEL = """
import sys
from neuroscaffold.export import _index, _sonata, export_sonata
_sonata.ROWS = 101
_index.BUCKET_RANGES = 64
export_sonata(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
"""


@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_every_rank_count_writes_the_same_files(networks, tmp_path):
    network = _compile(_with_simulation(), tmp_path / "sim.hdf5")
    outputs = {}
    for ranks in (None, 2, 3):
        out = tmp_path / f"out-{ranks}"
        run_script(_PARALLEL, ranks, timeout=120, args=[str(network), str(out), "basal"],
                   tmp_path=tmp_path).check()
        outputs[ranks] = _files(out)
    assert outputs[None] == outputs[2] == outputs[3]
    check_export(network, tmp_path / "out-3", queries=1000)


def _with_simulation() -> dict:
    config = yaml.safe_load(EXAMPLES["small"].read_text())
    config["simulations"] = {"basal": {
        "simulator": "nest", "duration": 100, "resolution": 0.1,
        "cell_models": {"pyramidal": {"model": "iaf_psc_alpha", "parameters": {"t_ref": 2.0}},
                        "interneuron": {"model": "iaf_psc_alpha"}},
        "connection_models": {
            "pyramidal_to_interneuron": {"synapse": "static_synapse", "weight": 20.0, "delay": 1.5},
            "interneuron_to_pyramidal": {"weight": -10.0, "delay": 2.0}},
        "devices": {
            "background": {"device": "poisson_generator", "rate": 800.0,
                           "targets": ["pyramidal"], "weight": 90.0, "delay": 1.0},
            "spikes": {"device": "spike_recorder", "targets": ["pyramidal", "interneuron"]}},
    }}
    return config


_BMTK = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from run_bmtk import run
import nest
network, simulator = run(sys.argv[1])
connections = nest.GetConnections().get(["source", "target", "weight", "delay"])
lookup = {}
for pool in (network.gid_map, network._virtual_gids):  # cells, and the input's generators
    frame = pool.nestid2nodeid_df
    lookup.update(zip(frame.index.tolist(), zip(frame["populations"], frame["node_ids"])))
# BMTK's own spike recorder gets a connection from every cell: the only other ones
keep = [n for n, target in enumerate(connections["target"]) if target in lookup]
others = {connections["target"][n] for n in range(len(connections["target"])) if n not in set(keep)}
assert all(nest.NodeCollection([t]).get("model") == "spike_recorder" for t in others), others
out = {}
for key in ("source", "target"):
    out[key] = [[str(lookup[connections[key][n]][0]), int(lookup[connections[key][n]][1])]
                for n in keep]
out["weight"] = [float(connections["weight"][n]) for n in keep]
out["delay"] = [float(connections["delay"][n]) for n in keep]
print("RESULT " + json.dumps(out), flush=True)
"""


def _run_in_bmtk(config: dict, script: str, tmp_path: Path) -> tuple[Path, dict]:
    """Compile ``config``, export its simulation ``basal`` and run ``script`` on it in
    BMTK: the network and what the script printed after ``RESULT``."""
    network = _compile(config, tmp_path / "sim.hdf5")
    out = tmp_path / "sonata"
    assert main(["export", str(network), "--sonata", str(out), "--simulation", "basal"]) == 0
    result = run_script(script, None, timeout=240,
                        args=[str(out), str(ROOT / "examples" / "sonata")], tmp_path=tmp_path)
    result.check()
    return network, json.loads(result.lines("RESULT ")[0])


@pytest.mark.timeout(300)
def test_bmtk_pointnet_runs_the_simulation_export(tmp_path):
    pytest.importorskip("bmtk")
    network, got = _run_in_bmtk(_with_simulation(), _BMTK, tmp_path)
    storage = HDF5Storage(network)
    sources = [tuple(s) for s in got["source"]]
    targets = [tuple(t) for t in got["target"]]
    made: dict[tuple, list] = {}
    for source, target, weight, delay in zip(sources, targets, got["weight"], got["delay"]):
        made.setdefault((source[0], target[0]), []).append((source[1], target[1], weight, delay))
    expected = {"pyramidal_to_interneuron": (20.0, 1.5), "interneuron_to_pyramidal": (-10.0, 2.0)}
    for name, (weight, delay) in expected.items():
        pairs, meta = storage.read_connections(name)
        key = (meta["presynaptic"], meta["postsynaptic"])
        assert sorted(made.pop(key)) == sorted((int(a), int(b), weight, delay) for a, b in pairs)
    background = made.pop(("background", "pyramidal"))
    cells = storage.count_cells("pyramidal")
    assert sorted(background) == [(i, i, 90.0, 1.0) for i in range(cells)]
    assert not made, f"connections that are not in the network: {sorted(made)}"
    with h5py.File(tmp_path / "sonata" / "output" / "spikes.h5", "r") as spikes:
        fired = spikes["spikes/pyramidal/node_ids"][()]
    assert len(np.unique(fired)) > cells // 2  # driven cells fire


@pytest.mark.timeout(300)
def test_every_synapse_of_a_pair_is_made_in_bmtk(tmp_path):
    """Two synapses per pair: the stored pairs twice, each with its synapse's weight
    and delay (a further edge population holds the copy)."""
    pytest.importorskip("bmtk")
    config = _with_simulation()
    config["simulations"]["basal"]["connection_models"]["interneuron_to_pyramidal"] = {
        "synapses": [{"model": "static_synapse", "weight": -10.0, "delay": 2.0},
                     {"model": "static_synapse", "weight": -4.0, "delay": 3.5}]}
    network, got = _run_in_bmtk(config, _BMTK, tmp_path)
    made = [(int(s[1]), int(t[1]), w, d) for s, t, w, d in zip(
        got["source"], got["target"], got["weight"], got["delay"])
        if (s[0], t[0]) == ("interneuron", "pyramidal")]
    pairs, _ = HDF5Storage(network).read_connections("interneuron_to_pyramidal")
    expected = [(int(a), int(b), w, d) for a, b in pairs for w, d in ((-10.0, 2.0), (-4.0, 3.5))]
    assert len(pairs) and sorted(made) == sorted(expected)
    assert (tmp_path / "sonata" / "simulation" / "edges_interneuron_to_pyramidal_synapse1.h5").exists()


_BMTK_INPUTS = """
import json, sys
sys.path.insert(0, sys.argv[2])
from run_bmtk import run
import nest
network, simulator = run(sys.argv[1])
cells = {}
for frame in (network.gid_map.nestid2nodeid_df, network._virtual_gids.nestid2nodeid_df):
    cells.update(zip(frame.index.tolist(), zip(frame["populations"], frame["node_ids"])))
out = {"clamps": [], "background": []}
for generator in nest.GetNodes({"model": "step_current_generator"}):
    targets = nest.GetConnections(source=generator).get("target")
    targets = [targets] if isinstance(targets, int) else targets
    out["clamps"].append({"times": list(generator.get("amplitude_times")),
                          "values": list(generator.get("amplitude_values")),
                          "targets": sorted(cells[t][1] for t in targets),
                          "populations": sorted({str(cells[t][0]) for t in targets})})
connections = nest.GetConnections().get(["source", "target"])
for source, target in zip(connections["source"], connections["target"]):
    if source in cells and str(cells[source][0]) == "background":
        out["background"].append(int(cells[target][1]))
print("RESULT " + json.dumps(out), flush=True)
"""


@pytest.mark.timeout(300)
def test_a_dc_generator_and_a_sampled_poisson_input_reach_the_same_cells_in_bmtk(tmp_path):
    """A dc_generator becomes BMTK current clamps that reach the cells when and as
    strongly as in ``simulate``; a Poisson input with a ``fraction`` stimulates the
    cells of its sample, the ones ``simulate`` stimulates, not every cell."""
    pytest.importorskip("bmtk")
    from neuroscaffold.simulation import sampled_cells

    config = _with_simulation()
    simulation = config["simulations"]["basal"]
    simulation["cell_models"]["relay"] = {"model": "iaf_psc_alpha"}
    simulation["devices"]["background"]["fraction"] = 0.5
    simulation["devices"]["drive"] = {"device": "dc_generator", "amplitude": 150.0,
                                      "weight": 2.0, "delay": 1.5, "start": 10.0, "stop": 60.0,
                                      "targets": ["relay"]}
    network, got = _run_in_bmtk(config, _BMTK_INPUTS, tmp_path)
    storage = HDF5Storage(network)
    relays, pyramidal = storage.count_cells("relay"), storage.count_cells("pyramidal")
    (clamp,) = got["clamps"]
    # on from 10 + 1.5 ms (minus BMTK's own one-step delay) to 60 + 1.5 ms, at 2 x 150 pA
    assert clamp["times"] == pytest.approx([11.4, 61.4]) and clamp["values"] == [300.0, 0.0]
    assert clamp["populations"] == ["relay"] and clamp["targets"] == list(range(relays))
    seed = int(config.get("seed", 0) or 0)
    expected = sampled_cells(seed, "background", "pyramidal", pyramidal, 0.5)
    assert 0 < len(expected) < pyramidal
    assert sorted(got["background"]) == expected.tolist()


def test_a_dc_generator_that_starts_in_the_first_step_is_moved_in_one_warning_line(tmp_path, capsys):
    config = _with_simulation()
    simulation = config["simulations"]["basal"]
    simulation["devices"]["drive"] = {"device": "dc_generator", "amplitude": 100.0,
                                      "delay": 0.1, "targets": ["interneuron"]}
    network = _compile(config, tmp_path / "sim.hdf5")
    capsys.readouterr()
    assert main(["export", str(network), "--sonata", str(tmp_path / "o"), "--simulation",
                 "basal"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "neuroscaffold: warning: simulations.basal.devices.drive: BMTK's current clamp cannot "
        "start within the first time step; exported to reach the cells at 0.3 ms instead of "
        "0.1 ms"]
    inputs = json.loads((tmp_path / "o" / "simulation_config.json").read_text())["inputs"]
    assert inputs["drive"]["delay"] == pytest.approx(0.2)
    assert inputs["drive"]["node_set"] == {"population": "interneuron"}


def test_exporting_imports_no_simulator(networks, tmp_path):
    result = run_script(f"""
import sys
from neuroscaffold.export import export_sonata
export_sonata({str(networks['small'])!r}, {str(tmp_path / 'out')!r})
loaded = [m for m in ('nest', 'neuron', 'bmtk') if m in sys.modules]
print("LOADED", loaded, flush=True)
""", None, timeout=60, tmp_path=tmp_path).check()
    assert result.lines("LOADED") == ["[]"]


def _error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_an_existing_directory_is_replaced_only_with_force(networks, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    err = _error(capsys, "export", str(networks["small"]), "--sonata", str(out))
    assert "not empty" in err and "--force" in err
    assert (out / "mine.txt").read_text() == "keep me"
    assert main(["export", str(networks["small"]), "--sonata", str(out), "--force"]) == 0
    assert not (out / "mine.txt").exists() and (out / "circuit_config.json").exists()
    assert not list(tmp_path.glob(".out.*"))  # no staging or old directory left


def test_an_export_killed_outright_leaves_nothing_the_next_export_keeps(networks, tmp_path):
    """SIGKILL gives no chance to clean up: the staging directory of the killed export
    stays, until the next export of that directory removes it. The working directory
    of a running export, or of another host's, is never touched."""
    import socket
    import subprocess

    out = tmp_path / "out"
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"],
                            stdout=subprocess.PIPE, text=True)
    dead_pid = int(dead.communicate(timeout=30)[0])  # a process that ended
    killed = tmp_path / f".out.export-{host}-{dead_pid}"
    (killed / "network").mkdir(parents=True)
    half = tmp_path / f".out.old-{host}-{dead_pid}"
    half.mkdir()
    live = tmp_path / f".out.export-{host}-{os.getppid()}"  # a process that runs
    other_host = tmp_path / f".out.export-{host}x-{dead_pid}"
    mine = tmp_path / ".out.notes"  # not ours at all
    for kept in (live, other_host, mine):
        kept.mkdir()
    export_sonata(networks["small"], out)
    assert not killed.exists() and not half.exists()
    assert live.exists() and other_host.exists() and mine.exists()
    assert (out / "circuit_config.json").exists()


def test_the_directory_of_the_network_itself_is_refused(networks, tmp_path, capsys):
    inside = tmp_path / "folder"
    inside.mkdir()
    network = inside / "net.hdf5"
    network.write_bytes(networks["small"].read_bytes())
    err = _error(capsys, "export", str(network), "--sonata", str(inside), "--force")
    assert "holds the network" in err and network.exists()


def test_an_unfinished_network_is_refused_with_how_to_resume(tmp_path, capsys):
    path = tmp_path / "net.hdf5"
    storage = HDF5Storage(path)
    config = yaml.safe_load(EXAMPLES["small"].read_text())
    storage.open_session("compile", json.dumps(config), jobs={"{root}.placement.x": 4})
    storage.release()
    err = _error(capsys, "export", str(path), "--sonata", str(tmp_path / "out"))
    assert "unfinished" in err and "--resume" in err
    assert not (tmp_path / "out").exists()


def test_a_simulation_that_does_not_exist(networks, tmp_path, capsys):
    network = _compile(_with_simulation(), tmp_path / "sim.hdf5")
    err = _error(capsys, "export", str(network), "--sonata", str(tmp_path / "o"),
                 "--simulation", "basel")
    assert "no simulation 'basel'" in err and "did you mean 'basal'" in err
    err = _error(capsys, "export", str(networks["small"]), "--sonata", str(tmp_path / "o"),
                 "--simulation", "basal")
    assert "no simulations section" in err
    assert not (tmp_path / "o").exists()


def test_a_cell_type_of_the_simulation_without_a_cell_model(tmp_path, capsys):
    network = _compile(_with_simulation(), tmp_path / "sim.hdf5")
    # the stored configuration edited by hand (a compile would refuse it)
    with h5py.File(network, "r+") as file:
        config = json.loads(file["configuration"][()])
        del config["simulations"]["basal"]["cell_models"]["interneuron"]
        del file["configuration"]
        file.create_dataset("configuration", data=json.dumps(config))
    err = _error(capsys, "export", str(network), "--sonata", str(tmp_path / "o"),
                 "--simulation", "basal")
    assert "'interneuron'" in err and "no cell model" in err and ".connection_models." in err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
