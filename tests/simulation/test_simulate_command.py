"""The ``neuroscaffold simulate`` process: what it imports and how it ends.

The command imports the simulator without the optional modules it would load only for
features the command never uses (NEST: pandas and matplotlib), and ends without the
interpreter's teardown once the spike file is written; a program that calls
``Network.simulate`` keeps the simulator whole. Both must lose nothing: the summary
line is flushed, exit functions run, and under ``mpiexec`` MPI is finalized on every
rank (exit 0, no launcher noise).
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from neuroscaffold import Configuration, Network
from neuroscaffold.simulation import _imports, optional_imports_left_out, read_spike_file
from tests._mpi import ROOT, base_env, run_script

SMALL = yaml.safe_load((ROOT / "examples" / "small.yaml").read_text())
RECORDED = ["pyramidal", "interneuron", "relay"]
NEST = {
    "simulator": "nest", "duration": 50, "resolution": 0.1, "threads": 1,
    "cell_models": {name: {"model": "iaf_psc_alpha"} for name in RECORDED},
    "connection_models": {"pyramidal_to_interneuron": {"weight": 400.0, "delay": 1.5}},
    "devices": {
        "background": {"device": "poisson_generator", "rate": 900.0, "targets": ["pyramidal"],
                       "weight": 60.0, "delay": 1.0},
        "spikes": {"device": "spike_recorder", "targets": RECORDED}},
}
NEURON = {
    "simulator": "neuron", "duration": 100, "resolution": 0.1,
    "cell_models": {name: {"model": "IntFire1", "parameters": {"tau": 10, "refrac": 2}}
                    for name in RECORDED},
    "connection_models": {"pyramidal_to_interneuron": {"weight": 0.35, "delay": 1.5},
                          "relay_to_interneuron": {"weight": 0.06, "delay": 1.2}},
    "devices": {
        "background": {"device": "poisson_generator", "rate": 60.0, "weight": 0.45,
                       "delay": 1.0, "targets": ["pyramidal", "relay"]},
        "spikes": {"device": "spike_recorder", "targets": RECORDED}},
}


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    data = copy.deepcopy(SMALL)
    data["simulations"] = {"nest_run": NEST, "neuron_run": NEURON}
    path = tmp_path_factory.mktemp("command") / "small.hdf5"
    Network(Configuration(data), path).compile(quiet=True)
    return path


# --- importing a simulator -----------------------------------------------------------------

def test_a_left_out_module_is_missing_only_while_the_simulator_is_imported(tmp_path, monkeypatch):
    (tmp_path / "ns_fake_extra.py").write_text("VALUE = 1\n")
    (tmp_path / "ns_fake_simulator.py").write_text(textwrap.dedent("""
        try:
            import ns_fake_extra
            HAVE_EXTRA = True
        except ImportError:
            HAVE_EXTRA = False
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("ns_fake_extra", "ns_fake_simulator"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with optional_imports_left_out(("ns_fake_extra",)):
        simulator = _imports.import_simulator("ns_fake_simulator")
    assert simulator.HAVE_EXTRA is False
    assert "ns_fake_extra" not in sys.modules  # no None entry left behind
    import ns_fake_extra  # importable again right after

    assert ns_fake_extra.VALUE == 1
    monkeypatch.delitem(sys.modules, "ns_fake_simulator")
    assert _imports.import_simulator("ns_fake_simulator").HAVE_EXTRA is True  # outside: whole


def test_a_module_loaded_already_is_never_hidden(tmp_path, monkeypatch):
    (tmp_path / "ns_fake_simulator2.py").write_text("import json\nHAVE_JSON = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ns_fake_simulator2", raising=False)
    with optional_imports_left_out(("json",)):
        assert _imports.import_simulator("ns_fake_simulator2").HAVE_JSON


IMPORTED = """
import sys
from neuroscaffold.cli import main
from neuroscaffold import from_storage
if sys.argv[1] == "command":
    code = main(["simulate", sys.argv[2], "nest_run", "-q", "-o", sys.argv[3]])
else:
    from_storage(sys.argv[2]).simulate("nest_run", quiet=True)
    code = 0
import nest
print("loaded:", "pandas" in sys.modules, "matplotlib" in sys.modules, flush=True)
import pandas, matplotlib  # importable either way
sys.exit(code)
"""


@pytest.mark.parametrize("how", ["command", "api"])
def test_the_command_imports_nest_without_pandas_and_matplotlib_a_program_with_them(
        network, tmp_path, how):
    pytest.importorskip("nest")
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    result = run_script(IMPORTED, timeout=120, tmp_path=tmp_path,
                        args=[how, str(network), str(tmp_path / "s.h5")])
    assert result.returncode == 0, result.stderr
    expected = "loaded: False False" if how == "command" else "loaded: True True"
    assert expected in result.stdout


# --- ending the process --------------------------------------------------------------------

ENDING = """
import atexit, sys
from pathlib import Path
marker = Path(sys.argv[1])
atexit.register(lambda: marker.write_text("ran"))
sys.argv = ["neuroscaffold", "simulate", *sys.argv[2:]]
from neuroscaffold.cli import program
program()
"""


def test_the_command_ends_with_its_line_flushed_its_file_whole_and_exit_functions_run(
        network, tmp_path):
    pytest.importorskip("nest")
    out, marker = tmp_path / "spikes.h5", tmp_path / "atexit-ran"
    script = tmp_path / "ending.py"
    script.write_text(ENDING)
    with open(tmp_path / "stdout.txt", "w") as stdout:  # a file: block-buffered
        done = subprocess.run([sys.executable, str(script), str(marker), str(network),
                               "nest_run", "-q", "-o", str(out)], stdout=stdout,
                              stderr=subprocess.PIPE, text=True, timeout=120, env=base_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (tmp_path / "stdout.txt").read_text().startswith("simulated 'nest_run' (50 ms, nest)")
    assert marker.read_text() == "ran"
    assert set(read_spike_file(out)) == set(RECORDED)


def _spikes(path) -> dict:
    return {name: (trains.node_ids, trains.timestamps)
            for name, trains in read_spike_file(path).items()}


def test_the_command_under_mpiexec_finalizes_every_rank_and_gives_the_serial_spikes(
        network, tmp_path):
    pytest.importorskip("neuron")
    pytest.importorskip("mpi4py")
    command = [sys.executable, "-m", "neuroscaffold", "simulate", str(network), "neuron_run",
               "-q", "-o"]
    serial = subprocess.run([*command, str(tmp_path / "serial.h5")], capture_output=True,
                            text=True, timeout=120, env=base_env(), cwd=tmp_path)
    assert serial.returncode == 0, serial.stderr
    script = tmp_path / "ranks.py"
    script.write_text("import runpy, sys\nsys.argv = ['neuroscaffold', *sys.argv[1:]]\n"
                      "runpy.run_module('neuroscaffold', run_name='__main__')\n")
    result = run_script(script, n=2, timeout=120, tmp_path=tmp_path,
                        args=["simulate", str(network), "neuron_run", "-q", "-o",
                              str(tmp_path / "ranks.h5")])
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("simulated 'neuron_run' (100 ms, neuron)") == 1
    assert result.stderr == ""  # no launcher noise: both ranks finalized MPI
    expected, got = _spikes(tmp_path / "serial.h5"), _spikes(tmp_path / "ranks.h5")
    assert set(got) == set(expected) == set(RECORDED)
    assert sum(len(ids) for ids, _ in expected.values()) > 0
    for name, (ids, times) in expected.items():
        assert np.array_equal(got[name][0], ids) and np.array_equal(got[name][1], times), name
