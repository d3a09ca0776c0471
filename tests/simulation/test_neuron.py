"""The NEURON adapter: the network spread over MPI ranks gives the same spikes at 1, 2
and 3 ranks (also where events tie, which NEURON's default queue orders by rank), every rank makes only the connections to its own cells (their sum is the
stored pairs plus the devices'), weights and delays are as configured, and what NEURON
cannot run is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from neuroscaffold import ConfigurationError, Network, from_storage
from neuroscaffold.configuration import Configuration
from tests._mpi import run_script

pytest.importorskip("neuron")

ROOT = Path(__file__).resolve().parents[2]

SIMULATION = {
    "simulator": "neuron", "duration": 200, "resolution": 0.1,
    "cell_models": {"pyramidal": {"model": "IntFire1", "parameters": {"tau": 10, "refrac": 2}},
                    "interneuron": {"model": "IntFire1", "parameters": {"tau": 5}},
                    "relay": {"model": "IntFire4", "constants": {"taum": 20}}},
    "connection_models": {
        "pyramidal_to_interneuron": {"weight": 0.35, "delay": 1.5},
        "interneuron_to_pyramidal": {"synapses": [{"weight": -0.25, "delay": 2.0}]},
        "relay_to_interneuron": {"weight": 0.06, "delay": 1.2}},
    "devices": {
        "background": {"device": "poisson_generator", "rate": 60.0, "weight": 0.45,
                       "delay": 1.0, "targets": ["pyramidal", "relay"]},
        "late": {"device": "poisson_generator", "parameters": {"rate": 40.0, "start": 50,
                 "stop": 150}, "weight": 0.5, "delay": 0.7,
                 "targetting": {"strategy": "cell_model", "cell_models": ["interneuron"]}},
        "spikes": {"device": "spike_recorder", "targets": ["pyramidal", "interneuron", "relay"]}},
}

#: events that tie, crafted: every background event fires its relay cell on arrival
#: (weight 2: IntFire1 fires at the arrival time), whose spike fires every interneuron
#: 1 ms later (all to all), which fire pyramidal cells 1 ms later, whose spikes reach
#: the interneurons 1 ms later: exactly when their 2 ms refractory period ends. Whether
#: that input counts depends on the order of two events of one time, the end of the
#: refractory period (a self event) and the input. NEURON's default queue takes it from
#: the order they were queued in, so from which rank each spike came from: only
#: queue_mode(0, 1) gives the same spikes at every rank count here (the control test
#: below checks that this network tells the two apart).
TIES = {
    "simulator": "neuron", "duration": 100, "resolution": 0.1,
    "cell_models": {"pyramidal": {"model": "IntFire1", "parameters": {"tau": 10, "refrac": 1}},
                    "interneuron": {"model": "IntFire1", "parameters": {"tau": 10, "refrac": 2}},
                    "relay": {"model": "IntFire1", "parameters": {"tau": 10, "refrac": 1}}},
    "connection_models": {name: {"weight": 2.0, "delay": 1.0} for name in (
        "relay_to_interneuron", "interneuron_to_pyramidal", "pyramidal_to_interneuron")},
    "devices": {
        "drive": {"device": "poisson_generator", "rate": 20.0, "weight": 2.0, "delay": 1.0,
                  "targets": ["relay"]},
        "spikes": {"device": "spike_recorder", "targets": ["pyramidal", "interneuron", "relay"]}},
}

#: a simulation's spike file; with "default-queue", under NEURON's default event queue
SPIKES = """
import sys
from neuroscaffold import from_storage
from neuroscaffold.simulation import _neuron
if sys.argv[4] == "default-queue":
    prepare = _neuron.NeuronAdapter.prepare
    def default_queue(self):
        prepare(self)
        self.h.CVode().queue_mode(0, 0)
    _neuron.NeuronAdapter.prepare = default_queue
from_storage(sys.argv[1]).simulate(sys.argv[2], quiet=True, output=sys.argv[3])
"""

SCRIPT = """
import json, sys
import numpy as np
from neuroscaffold import MPI, from_storage
network = from_storage(sys.argv[1])
result = network.simulate(sys.argv[2], quiet=True, output=sys.argv[3])
adapter = result.adapter
h = adapter.h
weights = {}
for netcon in list(h.List("NetCon")):
    if netcon.precell() is None and netcon.pre() is None and netcon.syn() is None:
        continue
    if netcon.syn() is None:
        continue  # a cell's own spike source for pc.cell
    key = f"{netcon.weight[0]:.6g}/{netcon.delay:.6g}"
    weights[key] = weights.get(key, 0) + 1
stops = len(adapter._stops)
weights["-1/1"] = weights.get("-1/1", 0)
print("RESULT " + json.dumps({"rank": MPI.get_rank(), "connections": result.connections,
      "devices": result.device_connections, "netcons": adapter.connection_count(),
      "weights": weights, "stops": stops}), flush=True)
"""


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    folder = tmp_path_factory.mktemp("neuron")
    raw = yaml.safe_load((ROOT / "examples" / "small.yaml").read_text())
    raw["simulations"] = {"activity": SIMULATION, "ties": TIES}
    config = folder / "small_sim.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    path = folder / "net.hdf5"
    Network(Configuration.from_file(config), path).compile(quiet=True)
    return path


def _run(network: Path, tmp_path: Path, ranks: int | None, name: str = "activity"):
    out = tmp_path / f"spikes-{ranks}.h5"
    result = run_script(SCRIPT, ranks, timeout=120, tmp_path=tmp_path,
                        args=[str(network), name, str(out)]).check()
    return out, [json.loads(line) for line in result.lines("RESULT ")]


def _spikes(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from neuroscaffold.simulation import read_spike_file

    result = read_spike_file(path)
    return {name: (t.node_ids, t.timestamps) for name, t in result.spikes.items()}


@pytest.fixture(scope="module")
def serial(network, tmp_path_factory):
    return _run(network, tmp_path_factory.mktemp("serial"), None)


def test_netcons_summed_over_ranks_are_the_stored_pairs_and_the_devices(network, serial):
    net = from_storage(network)
    pairs = sum(len(net.get_connectivity_set(name)) for name in SIMULATION["connection_models"])
    cells = {name: len(net.get_placement_set(name)) for name in ("pyramidal", "interneuron", "relay")}
    devices = cells["pyramidal"] + cells["relay"] + cells["interneuron"]
    (_, [rank]) = serial
    assert rank["connections"] == pairs and rank["devices"] == devices
    assert rank["netcons"] == pairs + devices


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_spikes_are_the_same_at_every_rank_count(network, serial, tmp_path, ranks):
    spikes, reports = _run(network, tmp_path, ranks)
    assert sorted(r["rank"] for r in reports) == list(range(ranks))
    (serial_spikes, [alone]) = serial
    # each rank made a share of the connections; together, exactly the serial ones
    assert all(0 < r["connections"] < alone["connections"] for r in reports)
    assert sum(r["connections"] for r in reports) == alone["connections"]
    assert sum(r["devices"] for r in reports) == alone["devices"]
    assert sum(r["netcons"] for r in reports) == alone["netcons"]
    merged: dict[str, int] = {}
    for report in reports:
        for key, count in report["weights"].items():
            merged[key] = merged.get(key, 0) + count
    assert merged == alone["weights"]
    expected = _spikes(serial_spikes)
    got = _spikes(spikes)
    assert expected.keys() == got.keys()
    for name, (ids, times) in expected.items():
        assert np.array_equal(got[name][0], ids), name
        assert np.array_equal(got[name][1], times), name


def _tie_spikes(network: Path, tmp_path: Path, ranks: int | None, queue: str = "ours"):
    out = tmp_path / f"ties-{ranks}-{queue}.h5"
    run_script(SPIKES, ranks, timeout=120, tmp_path=tmp_path,
               args=[str(network), "ties", str(out), queue]).check()
    return _spikes(out)


@pytest.fixture(scope="module")
def ties_serial(network, tmp_path_factory):
    return _tie_spikes(network, tmp_path_factory.mktemp("ties"), None)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k][0], b[k][0]) and np.array_equal(a[k][1], b[k][1]) for k in a)


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_spikes_of_events_that_tie_are_the_same_at_every_rank_count(network, ties_serial,
                                                                     tmp_path, ranks):
    assert all(len(ids) > 50 for ids, _ in ties_serial.values())
    assert _same(_tie_spikes(network, tmp_path, ranks), ties_serial)


@pytest.mark.mpi
def test_the_network_of_ties_tells_the_event_queues_apart(network, tmp_path):
    """The control of the test above: under NEURON's default queue, the same network
    gives other spikes at 2 ranks than serially (so the test above can fail)."""
    serial = _tie_spikes(network, tmp_path, None, "default-queue")
    assert not _same(_tie_spikes(network, tmp_path, 2, "default-queue"), serial)


def test_weights_and_delays_are_as_configured_and_spikes_repeat(network, serial, tmp_path):
    net = from_storage(network)
    count = {name: len(net.get_connectivity_set(name)) for name in SIMULATION["connection_models"]}
    cells = {name: len(net.get_placement_set(name)) for name in ("pyramidal", "interneuron", "relay")}
    (first, [rank]) = serial
    assert rank["weights"] == {
        "0.35/1.5": count["pyramidal_to_interneuron"],
        "-0.25/2": count["interneuron_to_pyramidal"],
        "0.06/1.2": count["relay_to_interneuron"],
        "0.45/1": cells["pyramidal"] + cells["relay"],
        "0.5/0.7": cells["interneuron"],
        "-1/1": rank["stops"],  # the 'late' device's off switches
    }
    again, _ = _run(network, tmp_path, None)
    a, b = _spikes(first), _spikes(again)
    assert all(np.array_equal(a[k][1], b[k][1]) and np.array_equal(a[k][0], b[k][0]) for k in a)
    # activity in every type, and the late input only between its start and stop
    assert all(len(ids) > 10 for ids, _ in a.values())


def _with(network: Path, tmp_path: Path, change) -> Network:
    raw = json.loads(json.dumps(SIMULATION))
    change(raw)
    config = yaml.safe_load((ROOT / "examples" / "small.yaml").read_text())
    config["simulations"] = {"activity": raw}
    return Network(Configuration(config), network)


@pytest.mark.parametrize("change, message", [
    (lambda s: s["cell_models"]["relay"].update(model="IntFire9"),
     "simulations.activity.cell_models.relay.model: NEURON has no artificial cell "
     "'IntFire9' (did you mean 'IntFire4'?); use IntFire1, IntFire2, IntFire4"),
    (lambda s: s["cell_models"]["pyramidal"]["parameters"].update(taum=3),
     "simulations.activity.cell_models.pyramidal.parameters.taum: NEURON's IntFire1 has no "
     "parameter 'taum' (did you mean 'tau'?); it has tau, refrac"),
    (lambda s: s["cell_models"]["pyramidal"]["parameters"].update(tau="slow"),
     "simulations.activity.cell_models.pyramidal.parameters.tau: expected a number for "
     "NEURON's IntFire1.tau, got 'slow'"),
    (lambda s: s["devices"].update(current={"device": "dc_generator", "amplitude": 1,
                                            "targets": ["relay"]}),
     "simulations.activity.devices.current.device: NEURON's artificial cells take no "
     "dc_generator (they have no membrane current); use a poisson_generator"),
    (lambda s: s["devices"]["background"].update(parameters={"rte": 3}),
     "simulations.activity.devices.background.parameters.rte: NEURON's poisson_generator "
     "has no parameter 'rte' (did you mean 'rate'?)"),
    # the keys as the user wrote them: BSB's `constants`, a flat connection model's keys
    (lambda s: s["cell_models"]["relay"]["constants"].update(tau=3),
     "simulations.activity.cell_models.relay.constants.tau: NEURON's IntFire4 has no "
     "parameter 'tau' (did you mean 'taum'?); it has taue, taui1, taui2, taum"),
    (lambda s: s["connection_models"]["pyramidal_to_interneuron"].update(receptor_type=1),
     "simulations.activity.connection_models.pyramidal_to_interneuron.receptor_type: "
     "NEURON's artificial cells have no receptors (the weight's sign excites or inhibits)"),
    (lambda s: s["connection_models"]["interneuron_to_pyramidal"]["synapses"][0].update(
        parameters={"U": 0.5}),
     "simulations.activity.connection_models.interneuron_to_pyramidal.synapses.0.parameters.U: "
     "a NEURON connection is a NetCon: it takes only weight and delay"),
])
def test_what_neuron_cannot_run_is_refused_in_one_line(network, tmp_path, change, message):
    with pytest.raises(ConfigurationError) as info:
        _with(network, tmp_path, change).simulate("activity", quiet=True)
    assert str(info.value) == message


@pytest.mark.mpi
def test_ranks_that_neuron_sees_as_worlds_of_their_own_are_refused(network, tmp_path):
    from tests._mpi import base_env

    result = run_script(SCRIPT, 2, timeout=120, tmp_path=tmp_path,
                        env=base_env(MPI_LIB_NRN_PATH=str(tmp_path / "no-libmpi.so")),
                        args=[str(network), "activity", str(tmp_path / "x.h5")])
    assert result.returncode != 0
    assert "NEURON's MPI did not start (NEURON sees 1 rank(s), MPI has 2), so every rank " \
           "would simulate the whole network" in result.stderr, result.describe()
    assert not (tmp_path / "x.h5").exists()


def test_ties_of_opposite_sign_are_found(network):
    from neuroscaffold.simulation._neuron import coincident_inputs
    from neuroscaffold.simulation._run import build_plan

    def plan(change):
        raw = json.loads(json.dumps(SIMULATION))
        change(raw)
        config = yaml.safe_load((ROOT / "examples" / "small.yaml").read_text())
        config["simulations"] = {"activity": raw}
        net = Network(Configuration(config), network)
        return build_plan(net, net.configuration.simulations["activity"])

    assert coincident_inputs(plan(lambda s: None)) == {}
    # one spike by two synapses of opposite sign and the same delay: an IntFire4 spike
    mixed = [{"weight": 0.3, "delay": 1.2}, {"weight": -0.3, "delay": 1.2}]
    assert coincident_inputs(plan(lambda s: s["connection_models"].update(
        relay_to_interneuron={"synapses": mixed}))) == {"interneuron": ("relay", 1.2)}
    # an IntFire1 spike is the time of its input: the tie is traced to the background
    # event that made the interneuron fire (1.0 + 1.5 ms later) and arrives 2 ms after
    mixed = [{"weight": 0.3, "delay": 2.0}, {"weight": -0.3, "delay": 2.0}]
    assert coincident_inputs(plan(lambda s: s["connection_models"].update(
        interneuron_to_pyramidal={"synapses": mixed}))) == {
        "pyramidal": ("device background -> pyramidal", 4.5)}
    # one background event by two routes of equal delay: directly (-) and through the
    # IntFire1 pyramidal cells, which fire when it arrives (+ 1.0, then + 1.5)
    def routes(s):
        s["devices"]["inhibit"] = {"device": "poisson_generator", "rate": 5, "weight": -0.1,
                                   "delay": 2.5, "targets": ["interneuron"]}
        s["devices"]["background"]["targets"] = ["pyramidal", "relay"]
    assert coincident_inputs(plan(routes)) == {}  # different streams: no tie
    def same_stream(s):
        s["connection_models"]["pyramidal_to_interneuron"] = {"synapses": [
            {"weight": 0.35, "delay": 1.5}, {"weight": -0.1, "delay": 1.5}]}
    assert coincident_inputs(plan(same_stream)) == {
        "interneuron": ("device background -> pyramidal", 2.5)}


def test_a_tie_of_opposite_sign_is_one_warning_line_on_the_command_line(network, tmp_path):
    import subprocess
    import sys

    from tests._mpi import base_env

    simulation = json.loads(json.dumps(SIMULATION))
    simulation["connection_models"]["relay_to_interneuron"] = {"synapses": [
        {"weight": 0.3, "delay": 1.2}, {"weight": -0.3, "delay": 1.2}]}
    config = tmp_path / "tie.yaml"
    config.write_text(yaml.safe_dump({"simulations": {"activity": simulation}}))
    done = subprocess.run(
        [sys.executable, "-m", "neuroscaffold", "simulate", str(network), "activity", "-q",
         "--config", str(config), "-o", str(tmp_path / "out.h5")],
        capture_output=True, text=True, timeout=120, env=base_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "neuroscaffold: warning: simulations.activity.cell_models.interneuron: an excitatory "
        "and an inhibitory input can arrive at exactly the same time (1.2 ms after an event "
        "of relay, by two routes); its spikes may then differ between rank counts (see "
        "docs/simulating.md)"]


def test_a_second_simulation_in_one_process_replaces_the_first(network, serial):
    """In-process (as a notebook would): the second run frees the first one's cells and
    gids, and gives the spikes of a fresh process."""
    expected = _spikes(serial[0])
    for _ in range(2):
        result = from_storage(network).simulate("activity", quiet=True)
        for name, (ids, times) in expected.items():
            assert np.array_equal(result[name].node_ids, ids), name
            assert np.array_equal(result[name].timestamps, times), name
    assert result.adapter.connection_count() == serial[1][0]["netcons"]
