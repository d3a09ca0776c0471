"""Simulating with NEST (issue 17.2, 17.3, 17.5, 17.6): the network as NEST holds it,
the spikes and their file, and every bad input as one line.

The network is ``examples/small.yaml`` (982 cells), compiled once per module.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

pytest.importorskip("nest")

from neuroscaffold import (Configuration, ConfigurationError, DependencyError, Network,  # noqa: E402
                           SimulationError, SimulationInterrupted, StorageError, from_storage)
from neuroscaffold.cli import main  # noqa: E402
from neuroscaffold.simulation import read_spike_file  # noqa: E402
from tests._mpi import ROOT, base_env, run_script  # noqa: E402

SMALL = yaml.safe_load((ROOT / "examples" / "small.yaml").read_text())

SIMULATION = {
    "simulator": "nest", "duration": 200, "resolution": 0.1, "threads": 2,
    "cell_models": {
        "pyramidal": {"model": "iaf_psc_alpha", "parameters": {"t_ref": 2.0}},
        "interneuron": {"model": "iaf_psc_alpha", "constants": {"t_ref": 1.0}},
        "relay": {"model": "iaf_psc_alpha"},
    },
    "connection_models": {
        "pyramidal_to_interneuron": {"synapse": "static_synapse", "weight": 400.0, "delay": 1.5},
        "interneuron_to_pyramidal": {"synapses": [
            {"model": "static_synapse", "weight": -60.0, "delay": 2.0},
            {"model": "static_synapse", "weight": -5.0, "delay": 3.2}]},
        # relay_to_interneuron has no connection model: not simulated
    },
    "devices": {
        "background": {"device": "poisson_generator", "rate": 900.0, "targets": ["pyramidal"],
                       "weight": 60.0, "delay": 1.0},
        "drive": {"device": "dc_generator", "amplitude": 500.0,
                  "targetting": {"strategy": "cell_model", "cell_models": ["relay"]}},
        "spikes": {"device": "spike_recorder", "targets": ["pyramidal", "interneuron", "relay"]},
    },
}


def _data(simulation=None, name="activity") -> dict:
    data = copy.deepcopy(SMALL)
    data["simulations"] = {name: copy.deepcopy(simulation or SIMULATION)}
    return data


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("nest") / "small.hdf5"
    Network(Configuration(_data()), path).compile(quiet=True)
    return path


def network_with(path, simulation, name="activity") -> Network:
    """The compiled network with another simulations: section."""
    stored = from_storage(path)
    data = stored.configuration.to_dict()
    data["simulations"] = {name: copy.deepcopy(simulation)}
    return Network(Configuration(data), stored.storage)


def edited(path: str, value) -> dict:
    simulation = copy.deepcopy(SIMULATION)
    *parents, last = path.split(".")
    item = simulation
    for key in parents:
        item = item[int(key)] if isinstance(item, list) else item[key]
    item[int(last) if isinstance(item, list) else last] = value
    return simulation


# --- the network in NEST -------------------------------------------------------------------

def test_nest_holds_the_stored_pairs_with_their_weights_and_delays(compiled):
    import nest

    network = from_storage(compiled)
    result = network.simulate("activity", quiet=True)
    adapter = result.adapter
    # one Create per cell type, contiguous ids: node id - first id = index
    for name in ("pyramidal", "interneuron", "relay"):
        cells = adapter.populations[name]
        size = len(network.get_placement_set(name))
        assert len(cells) == size
        assert cells.tolist() == list(range(adapter.first_ids[name], adapter.first_ids[name] + size))
    pairs = {name: network.get_connectivity_set(name).load_connections()
             for name in ("pyramidal_to_interneuron", "interneuron_to_pyramidal")}
    stored = len(pairs["pyramidal_to_interneuron"]) + 2 * len(pairs["interneuron_to_pyramidal"])
    sizes = {name: len(network.get_placement_set(name)) for name in adapter.populations}
    devices = sizes["pyramidal"] + sizes["relay"] + sum(sizes.values())
    assert result.connections == stored and result.device_connections == devices
    assert nest.num_connections == stored + devices  # the kernel still holds the network

    def table(name, number):
        conns = nest.GetConnections(synapse_model=f"ns_syn_{name}_{number}")
        got = conns.get(["source", "target", "weight", "delay"], output="pandas")
        return got.sort_values(["source", "target"]).to_numpy()

    expected = [("pyramidal_to_interneuron", 0, "pyramidal", "interneuron", 400.0, 1.5),
                ("interneuron_to_pyramidal", 0, "interneuron", "pyramidal", -60.0, 2.0),
                ("interneuron_to_pyramidal", 1, "interneuron", "pyramidal", -5.0, 3.2)]
    for name, number, pre, post, weight, delay in expected:
        rows = table(name, number)
        want = pairs[name] + [adapter.first_ids[pre], adapter.first_ids[post]]
        want = want[np.lexsort((want[:, 1], want[:, 0]))]
        assert np.array_equal(rows[:, :2].astype(np.int64), want)
        assert np.all(rows[:, 2] == weight) and np.allclose(rows[:, 3], delay)
    assert nest.GetKernelStatus("local_num_threads") == 2
    assert nest.GetKernelStatus("resolution") == pytest.approx(0.1)


def test_the_activity_is_neither_silent_nor_saturated_and_the_file_reads_in_libsonata(compiled, tmp_path):
    import libsonata

    out = tmp_path / "spikes.h5"
    result = from_storage(compiled).simulate("activity", quiet=True, output=out)
    rates = result.mean_rates()
    assert set(rates) == {"pyramidal", "interneuron", "relay"}
    for name, rate in rates.items():
        assert 1.0 < rate < 200.0, (name, rate)
    reader = libsonata.SpikeReader(str(out))
    assert sorted(reader.get_population_names()) == sorted(result)
    for name, trains in result.items():
        population = reader[name]
        assert population.sorting == "by_time"
        got = np.array(population.get(), dtype=[("id", np.uint64), ("t", np.float64)])
        assert np.array_equal(got["id"], trains.node_ids)
        assert np.array_equal(got["t"], trains.timestamps)
        assert trains.timestamps.min() >= 0 and trains.timestamps.max() <= 200.0
        assert trains.node_ids.max() < trains.node_count
    import h5py

    with h5py.File(out) as file:
        for name in result:
            for dataset in ("timestamps", "node_ids"):
                assert file[f"spikes/{name}/{dataset}"].compression is None
            assert file[f"spikes/{name}/timestamps"].dtype == np.float64
            assert file[f"spikes/{name}/node_ids"].dtype == np.uint64
            assert file[f"spikes/{name}/timestamps"].attrs["units"] == "ms"
    back = read_spike_file(out)
    assert back.duration == 200.0
    for name, trains in result.items():
        assert np.array_equal(back[name].node_ids, trains.node_ids)


def test_the_same_simulation_twice_gives_the_same_spikes_and_its_seed_changes_them(compiled):
    first = from_storage(compiled).simulate("activity", quiet=True)
    second = from_storage(compiled).simulate("activity", quiet=True)
    for name in first:
        assert np.array_equal(first[name].node_ids, second[name].node_ids)
        assert np.array_equal(first[name].timestamps, second[name].timestamps)
    other = network_with(compiled, edited("seed", 1234)).simulate("activity", quiet=True)
    assert not np.array_equal(other["pyramidal"].timestamps, first["pyramidal"].timestamps)


def test_steps_of_simulated_time_do_not_change_the_spikes(compiled, monkeypatch):
    """Two random devices share a thread's random stream, and NEST updates the cells a
    min_delay (here 1 ms) at a time: a step ending inside one would change the order of
    their draws, hence the spikes. The steps end on whole min_delays instead."""
    from neuroscaffold.simulation import _run

    simulation = copy.deepcopy(SIMULATION)
    simulation["devices"]["noise"] = {"device": "poisson_generator", "rate": 700.0,
                                      "targets": ["pyramidal", "interneuron"],
                                      "weight": 40.0, "delay": 1.0}
    steps = []
    real = _run.step_ends

    def spy(duration, resolution, quantum=None):
        steps.append(quantum)
        return real(duration, resolution, quantum)

    monkeypatch.setattr(_run, "step_ends", spy)
    many = network_with(compiled, simulation).simulate("activity", quiet=True)
    assert steps == [pytest.approx(1.0)]  # NEST's min_delay: the least delay configured
    monkeypatch.setattr(_run, "step_ends", lambda duration, resolution, quantum=None: [duration])
    one = network_with(compiled, simulation).simulate("activity", quiet=True)
    for name in many:
        assert len(many[name]) > 0
        assert np.array_equal(many[name].node_ids, one[name].node_ids)
        assert np.array_equal(many[name].timestamps, one[name].timestamps)


def test_step_ends_are_whole_time_steps_ending_at_the_duration():
    from neuroscaffold.simulation._run import MAX_STEPS, step_ends

    ends = step_ends(1000.0, 0.1)
    assert ends[-1] == 1000.0 and ends[0] == pytest.approx(0.1)
    assert len(ends) <= MAX_STEPS + 12 and all(b > a for a, b in zip(ends, ends[1:]))
    assert all(abs(t / 0.1 - round(t / 0.1)) < 1e-6 for t in ends)
    assert step_ends(0.05, 0.1) == [0.05]
    aligned = step_ends(1000.0, 0.1, 1.5)
    assert aligned[-1] == 1000.0 and len(aligned) <= MAX_STEPS + 12
    assert all(abs(t / 1.5 - round(t / 1.5)) < 1e-6 for t in aligned[:-1])
    assert step_ends(0.5, 0.1, 1.0) == [0.5] and step_ends(3.0, 0.1, 1.0)[-1] == 3.0


def test_a_poisson_generator_gives_each_target_its_own_train_at_the_rate_between_start_and_stop(compiled):
    """Parrot neurons repeat each input spike: their spikes are the device's trains
    (NEST realises ``poisson_generator`` by ``poisson_generator_ps``, which draws them
    spike by spike: the same trains' statistics at a fraction of the cost)."""
    simulation = {
        "simulator": "nest", "duration": 1000, "resolution": 0.1,
        "cell_models": {"pyramidal": {"model": "parrot_neuron"}},
        "devices": {
            "background": {"device": "poisson_generator", "rate": 40.0, "start": 100.0,
                           "stop": 900.0, "targets": ["pyramidal"], "delay": 1.0},
            "spikes": {"device": "spike_recorder", "targets": ["pyramidal"]}},
    }
    trains = network_with(compiled, simulation).simulate("activity", quiet=True)["pyramidal"]
    cells = trains.node_count
    expected = 40.0 * 0.8 * cells  # 800 ms at 40 Hz per cell
    assert abs(len(trains) - expected) < 4 * np.sqrt(expected)  # a Poisson count
    assert trains.timestamps.min() > 100.0 + 1.0 and trains.timestamps.max() <= 900.0 + 1.0 + 1e-9
    counts = np.bincount(trains.node_ids.astype(np.int64), minlength=cells)
    assert abs(counts.var() / counts.mean() - 1.0) < 0.2  # Poisson: variance = mean
    first, second = (np.sort(trains.timestamps[trains.node_ids == i]) for i in (0, 1))
    assert not np.array_equal(first, second)  # independent trains, not one shared


def test_a_recorder_fraction_records_only_its_sample(compiled):
    simulation = edited("devices.spikes.fraction", 0.2)
    result = network_with(compiled, simulation).simulate("activity", quiet=True)
    trains = result["pyramidal"]
    assert trains.recorded is not None and trains.recorded_count == round(0.2 * trains.node_count)
    assert set(trains.node_ids.tolist()) <= set(trains.recorded.tolist())
    assert len(trains.rates(result.duration)) == trains.recorded_count


# --- progress and Ctrl-C -------------------------------------------------------------------

def test_progress_shows_each_step_and_simulated_ms_with_the_time_left(compiled):
    import io

    from neuroscaffold.simulation._progress import SimulationProgress
    from neuroscaffold.simulation._run import simulate

    stream = io.StringIO()
    progress = SimulationProgress("activity", 200.0, stream=stream, interval=0.0, live=False)
    simulate(from_storage(compiled), "activity", progress=progress)
    text = stream.getvalue()
    for step in ("read the network", "prepared nest", "created 982 cells",
                 "connected pyramidal_to_interneuron", "created 3 devices"):
        assert re.search(rf"^activity: {step} in [0-9.]+ s$", text, re.M), text
    assert re.search(r"^activity: simulated [0-9,]+/200 ms, \d+ s elapsed, ~\d+ s left$", text, re.M)
    assert re.search(r"^activity: simulated 200 of 200 ms in [0-9.]+ s$", text, re.M)


def test_an_interrupt_while_simulating_ends_with_one_line_and_no_file(compiled, tmp_path, monkeypatch):
    from neuroscaffold.simulation._nest import NestAdapter

    advance = NestAdapter.advance

    def interrupted(self, until):
        if until > 50:
            raise KeyboardInterrupt
        advance(self, until)

    monkeypatch.setattr(NestAdapter, "advance", interrupted)
    out = tmp_path / "spikes.h5"
    with pytest.raises(SimulationInterrupted, match=r"^simulation 'activity' interrupted at "
                       r"[0-9.]+ of 200 ms; no spike file was written$"):
        from_storage(compiled).simulate("activity", quiet=True, output=out)
    assert not out.exists()


def test_ctrl_c_ends_the_simulate_command_with_one_line(compiled, tmp_path):
    simulation = edited("duration", 200000)
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump({"simulations": {"long": simulation}}))
    out = tmp_path / "spikes.h5"
    proc = subprocess.Popen([sys.executable, "-m", "neuroscaffold", "simulate", str(compiled),
                             "long", "--config", str(config), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=base_env(), cwd=tmp_path)
    try:
        for line in proc.stderr:  # wait until it simulates (the devices are made)
            if "created 3 devices" in line:
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        err = proc.stderr.read() if proc.stderr and not proc.stderr.closed else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130
    lines = [line for line in (err or "").splitlines() if line.startswith("neuroscaffold:")]
    assert len(lines) <= 1
    assert "Traceback" not in (err or "")
    assert not out.exists()


# --- bad input: one line, exit 1 -----------------------------------------------------------

def _cli(args, capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def _with_config(tmp_path, simulation) -> str:
    config = tmp_path / "sim.yaml"
    config.write_text(yaml.safe_dump({"simulations": {"activity": simulation}}))
    return str(config)


@pytest.mark.parametrize("path, value, message", [
    ("cell_models.pyramidal.model", "iaf_psc_alpah",
     "simulations.activity.cell_models.pyramidal.model: NEST has no neuron model "
     "'iaf_psc_alpah' (did you mean 'iaf_psc_alpha'?)"),
    ("cell_models.pyramidal.model", "IntFire9",
     "simulations.activity.cell_models.pyramidal.model: NEST has no neuron model 'IntFire9'"),
    ("cell_models.pyramidal.parameters", {"t_rf": 2.0},
     "simulations.activity.cell_models.pyramidal.parameters.t_rf: NEST's iaf_psc_alpha has no "
     "parameter 't_rf' (did you mean 't_ref'?)"),
    ("cell_models.pyramidal.parameters", {"t_ref": "long"},
     "simulations.activity.cell_models.pyramidal.parameters.t_ref: expected a number for "
     "NEST's iaf_psc_alpha.t_ref, got 'long'"),
    ("cell_models.pyramidal.parameters", {"global_id": 3},
     "simulations.activity.cell_models.pyramidal.parameters: NEST's iaf_psc_alpha does not let "
     "'global_id' be set (read-only)"),
    # Each line names the key as the user wrote it: flat keys on the connection model,
    # items of a `synapses:` list by index, BSB's `constants`, a device-level `rate`.
    ("connection_models.pyramidal_to_interneuron.synapse", "static_synapes",
     "simulations.activity.connection_models.pyramidal_to_interneuron.synapse: NEST has "
     "no synapse model 'static_synapes' (did you mean 'static_synapse'?)"),
    ("connection_models.pyramidal_to_interneuron.delay", 0.01,
     "simulations.activity.connection_models.pyramidal_to_interneuron.delay: the "
     "delay 0.01 ms is shorter than the resolution 0.1 ms"),
    ("connection_models.pyramidal_to_interneuron.parameters", {"wieght": 1.0},
     "simulations.activity.connection_models.pyramidal_to_interneuron.parameters.wieght: "
     "NEST's static_synapse has no parameter 'wieght' (did you mean 'weight'?)"),
    ("connection_models.interneuron_to_pyramidal.synapses.1.model", "static_synapes",
     "simulations.activity.connection_models.interneuron_to_pyramidal.synapses.1.model: NEST "
     "has no synapse model 'static_synapes' (did you mean 'static_synapse'?)"),
    ("connection_models.interneuron_to_pyramidal.synapses.1.delay", 0.05,
     "simulations.activity.connection_models.interneuron_to_pyramidal.synapses.1.delay: the "
     "delay 0.05 ms is shorter than the resolution 0.1 ms"),
    ("cell_models.interneuron.constants", {"t_rf": 1.0},
     "simulations.activity.cell_models.interneuron.constants.t_rf: NEST's iaf_psc_alpha has "
     "no parameter 't_rf' (did you mean 't_ref'?)"),
    ("devices.background.rate", "fast",
     "simulations.activity.devices.background.rate: expected a number, got 'fast'"),
    ("devices.background.parameters", {"rte": 3.0},
     "simulations.activity.devices.background.parameters.rte: NEST's poisson_generator has no "
     "parameter 'rte' (did you mean 'rate'?)"),
    ("modules", ["nosuchmodule"], None),
])
def test_a_bad_model_or_parameter_is_one_line_before_any_cell_is_made(
        compiled, tmp_path, capsys, path, value, message):
    code, line = _cli(["simulate", str(compiled), "activity", "-o", str(tmp_path / "s.h5"),
                       "--config", _with_config(tmp_path, edited(path, value)), "-q"], capsys)
    assert code == 1
    if message is None:
        assert line.startswith("neuroscaffold: error: simulations.activity.modules.0: NEST "
                               "cannot install module 'nosuchmodule'"), line
    else:
        assert line == f"neuroscaffold: error: {message}"
    assert not (tmp_path / "s.h5").exists()


def test_an_unknown_simulation_suggests_the_closest(compiled, tmp_path, capsys):
    code, line = _cli(["simulate", str(compiled), "activty", "-o", str(tmp_path / "s.h5")], capsys)
    assert code == 1
    assert line == ("neuroscaffold: error: simulations: no simulation 'activty' (did you mean "
                    "'activity'?); the configuration has 'activity'")


def test_a_cell_model_that_is_needed_but_missing_names_both(compiled, tmp_path, capsys):
    simulation = copy.deepcopy(SIMULATION)
    del simulation["cell_models"]["interneuron"]
    code, line = _cli(["simulate", str(compiled), "activity", "--config",
                       _with_config(tmp_path, simulation)], capsys)
    assert code == 1
    assert line == ("neuroscaffold: error: simulations.activity.connection_models."
                    "interneuron_to_pyramidal: connects cell type 'interneuron' (its presynaptic "
                    "type), which has no cell model: add simulations.activity.cell_models."
                    "interneuron, or remove this connection model")


def test_an_unfinished_network_says_so_and_how_to_resume(tmp_path, capsys):
    from neuroscaffold import WorkflowError

    data = _data()
    data["placement"]["pyramidal_placement"]["strategy"] = "tests._user_strategies.NaNPlacement"
    data["placement"]["pyramidal_placement"]["bad_row"] = 0
    path = tmp_path / "unfinished.hdf5"
    with pytest.raises(WorkflowError):
        Network(Configuration(data), path).compile(quiet=True)
    code, line = _cli(["simulate", str(path), "activity"], capsys)
    assert code == 1
    assert re.fullmatch(rf"neuroscaffold: error: {re.escape(str(path))}: cannot simulate an "
                        r"unfinished network: an unfinished compile: \d+ of \d+ jobs committed; "
                        r"finish it with `neuroscaffold compile CONFIG -o .* --resume`", line), line
    with pytest.raises(StorageError, match="cannot simulate an unfinished network"):
        network_with(path, SIMULATION).simulate("activity")


def test_an_output_that_is_not_a_spike_file_is_never_overwritten(compiled, tmp_path, capsys):
    keep = tmp_path / "notes.h5"
    keep.write_text("my notes")
    code, line = _cli(["simulate", str(compiled), "activity", "-o", str(keep)], capsys)
    assert code == 1 and line == (f"neuroscaffold: error: {keep}: exists and is not a spike "
                                  "file; it is never overwritten: choose another output path")
    assert keep.read_text() == "my notes"
    code, line = _cli(["simulate", str(compiled), "activity", "-o", str(compiled)], capsys)
    assert code == 1 and line.endswith("is the network file; choose another output path")
    assert from_storage(compiled).storage.summary()["cells"]


def test_the_simulate_command_writes_the_file_and_a_summary(compiled, tmp_path, capsys):
    out = tmp_path / "spikes.h5"
    assert main(["simulate", str(compiled), "activity", "-o", str(out), "-q"]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"simulated 'activity' \(200 ms, nest\) in [0-9.]+ s: [0-9,]+ spikes "
                        rf"into {re.escape(str(out))}; mean rates: pyramidal [0-9.]+ Hz, "
                        r"interneuron [0-9.]+ Hz, relay [0-9.]+ Hz", line), line
    assert main(["simulate", str(compiled), "activity", "-o", str(out), "-q"]) == 0  # replaced
    assert set(read_spike_file(out)) == {"pyramidal", "interneuron", "relay"}


def test_nest_under_mpiexec_is_refused_in_one_line_before_nest_is_imported(compiled, tmp_path):
    pytest.importorskip("mpi4py")
    script = f"""
        import sys
        from neuroscaffold.cli import main
        code = main(["simulate", {str(compiled)!r}, "activity", "-o", {str(tmp_path / 's.h5')!r}])
        print("nest imported:", "nest" in sys.modules, flush=True)
        sys.exit(code)
    """
    result = run_script(script, n=2, timeout=90, tmp_path=tmp_path)
    assert result.returncode != 0
    assert "[FATAL]" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("neuroscaffold:")]
    assert errors == [
        "neuroscaffold: error: simulations.activity: NEST is installed without MPI, so it cannot "
        "run on 2 ranks (under mpiexec it would end every rank with a FATAL error): run "
        "`neuroscaffold simulate` without mpiexec and set simulations.activity.threads to use "
        "several cores, or set simulations.activity.simulator: neuron to spread the simulation "
        "over MPI ranks"]
    assert result.stdout.count("nest imported: False") == 2


# --- without a simulator -------------------------------------------------------------------

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("nest", "neuron"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def test_without_simulators_compile_works_and_simulate_names_the_extra(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(_data()))
    script = BLOCK + f"""
import neuroscaffold
from neuroscaffold import Network, Configuration, from_storage
from neuroscaffold.cli import main
assert main(["compile", {str(config)!r}, "-o", {str(tmp_path / 'n.hdf5')!r}, "-q"]) == 0
neuroscaffold.simulation.SimulationResult  # the simulation package imports, too
print("simulators imported:", sorted(m for m in sys.modules if m.split(".")[0] in ("nest", "neuron")))
sys.exit(main(["simulate", {str(tmp_path / 'n.hdf5')!r}, "activity", "-o", {str(tmp_path / 's.h5')!r}]))
"""
    result = run_script(script, timeout=90, tmp_path=tmp_path)
    assert result.returncode == 1, result.describe() if hasattr(result, "describe") else result
    assert "simulators imported: []" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        "neuroscaffold: error: simulator 'nest' is not installed (no module 'nest'); install it "
        "with: pip install 'neuroscaffold[nest]'")
    assert (tmp_path / "n.hdf5").exists() and not (tmp_path / "s.h5").exists()


def test_simulating_gives_the_process_its_library_loading_flags_back(compiled, tmp_path):
    """PyNEST makes every extension module loaded after it RTLD_GLOBAL; then an h5py
    loaded afterwards shares its HDF5 with libsonata, and a file open in both is
    refused. A simulation leaves the flags as they were."""
    script = f"""
import os, sys
before = sys.getdlopenflags()
from neuroscaffold import from_storage
network = from_storage({str(compiled)!r})
network.simulate("activity", quiet=True)
assert "nest" in sys.modules
print(before == sys.getdlopenflags(), not sys.getdlopenflags() & os.RTLD_GLOBAL)
"""
    result = run_script(script, timeout=90, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_importing_and_configuring_never_imports_a_simulator(tmp_path):
    script = f"""
import sys, neuroscaffold
from neuroscaffold import Configuration, Network
import neuroscaffold.simulation, neuroscaffold.simulation.schema
from neuroscaffold.simulation import _registry, _run, _spikes, _nest
from neuroscaffold.cli import build_parser
build_parser()
Configuration.from_file({str(ROOT / 'examples' / 'cerebellum.yaml')!r})
print(sorted(m for m in sys.modules if m.split(".")[0] in ("nest", "neuron")))
"""
    result = run_script(script, timeout=60, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_errors_are_typed():
    assert issubclass(SimulationError, Exception) and issubclass(SimulationInterrupted, KeyboardInterrupt)
    assert issubclass(DependencyError, ImportError) and issubclass(ConfigurationError, ValueError)
    assert os.environ.get("PYNEST_QUIET", "1")
