"""Reading a network file runs no code (issue 16.9): the modules its stored
configuration names are imported only to run their jobs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from neuroscaffold.cli import main
from neuroscaffold.network import from_storage
from tests._mpi import ROOT, base_env

GUIDE = ROOT / "examples" / "own_strategies"
MARKER_MODULE = "ns_marker_strategies"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The guide's model (its own strategies), compiled in a folder of its own."""
    folder = tmp_path_factory.mktemp("own")
    shutil.copy(GUIDE / "model.yaml", folder)
    shutil.copy(GUIDE / "gradient_strategies.py", folder)
    run = subprocess.run([sys.executable, "-m", "neuroscaffold", "compile", "model.yaml",
                          "-o", "own.hdf5", "--quiet"], cwd=folder, env=base_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return folder


def _restore(path: Path, change) -> None:
    """Rewrite the stored configuration of ``path`` with ``change(dict)``."""
    with h5py.File(path, "r+") as file:
        stored = json.loads(file["configuration"][()].decode())
        change(stored)
        del file["configuration"]
        file.create_dataset("configuration", data=json.dumps(stored))


@pytest.fixture
def hostile(built, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A copy of the network whose stored configuration names ``this.Zen`` (prints
    the Zen of Python when imported) and a module, importable here, that writes a
    marker file when imported."""
    path = tmp_path / "hostile.hdf5"
    shutil.copy(built / "own.hdf5", path)
    marker = tmp_path / "imported"
    (tmp_path / f"{MARKER_MODULE}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "from neuroscaffold import ConnectionStrategy\n"
        "class Marker(ConnectionStrategy):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def change(stored):
        stored["placement"]["l23_pyramidal"]["strategy"] = "this.Zen"
        stored["connectivity"]["stellate_to_pyramidal"]["strategy"] = f"{MARKER_MODULE}.Marker"

    _restore(path, change)
    monkeypatch.delitem(sys.modules, "this", raising=False)
    monkeypatch.delitem(sys.modules, MARKER_MODULE, raising=False)
    return path, marker


def _nothing_imported(marker: Path, capsys) -> None:
    out = capsys.readouterr()
    assert "this" not in sys.modules and MARKER_MODULE not in sys.modules
    assert not marker.exists()
    assert "Beautiful is better than ugly" not in out.out + out.err


def test_reading_a_network_imports_nothing_it_names(hostile, tmp_path, capsys):
    path, marker = hostile
    network = from_storage(path)
    assert network.configuration.deferred() == [
        "this.Zen", f"{MARKER_MODULE}.Marker", "gradient_strategies.GaussianConnectivity"]
    assert network.get_placement_set("pyramidal").load_positions().shape == (540, 3)
    assert len(network.get_connectivity_set("stellate_to_pyramidal").load_connections()) > 0
    # Its keys read back as stored, and the stored configuration is kept as it was.
    assert network.placement["l23_pyramidal"].bottom_density == 2.0e-5
    with h5py.File(path, "r") as file:
        assert network.configuration.to_dict() == json.loads(file["configuration"][()].decode())
    assert network.configuration.copy().to_dict() == network.configuration.to_dict()
    _nothing_imported(marker, capsys)


def test_plot_and_show_import_nothing(hostile, tmp_path, capsys):
    path, marker = hostile
    assert main(["show", str(path)]) == 0
    assert main(["plot", str(path), "-o", str(tmp_path / "net.png")]) == 0
    assert (tmp_path / "net.png").stat().st_size > 0
    _nothing_imported(marker, capsys)


def test_compiling_it_again_imports_them(hostile, tmp_path, capsys):
    # Only running a strategy's jobs imports it: a deferred class is imported then.
    path, marker = hostile
    network = from_storage(path)
    with pytest.raises(Exception, match="this.Zen"):
        network.configuration.imported()
    capsys.readouterr()


def _read_elsewhere(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        "from neuroscaffold.network import from_storage\n"
        "from neuroscaffold.plot import summarise_network\n"
        f"network = from_storage({str(path)!r})\n"
        "print(network.get_placement_set('pyramidal').load_positions().shape)\n"
        "print(sorted(s.name for s in summarise_network(network).sets))\n"
        "print('gradient_strategies' in sys.modules)\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=base_env(),
                          capture_output=True, text=True, timeout=120)


def test_a_network_with_its_own_strategies_reads_where_they_are_not_importable(built, tmp_path):
    run = _read_elsewhere(built / "own.hdf5", tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == [
        "(540, 3)", "['pyramidal_to_pyramidal', 'stellate_to_pyramidal']", "False"]
    cli = subprocess.run([sys.executable, "-m", "neuroscaffold", "plot", str(built / "own.hdf5"),
                          "-o", str(tmp_path / "own.png")], cwd=tmp_path, env=base_env(),
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr


def test_jobs_find_the_module_in_the_configurations_folder(built, tmp_path):
    # A configuration read from a network file, with the folder it was loaded from:
    # compiling imports its strategies from there (they are not on the import path);
    # without the folder, the compile names the module it cannot import.
    code = (
        "from neuroscaffold import Configuration, Network\n"
        "from neuroscaffold.network import from_storage\n"
        f"stored = from_storage({str(built / 'own.hdf5')!r}).configuration.to_dict()\n"
        "try:\n"
        "    Network(Configuration.from_stored(stored), 'lost.hdf5').compile(quiet=True)\n"
        "except Exception as error:\n"
        "    print('without:', type(error).__name__, error)\n"
        f"configuration = Configuration.from_stored(stored, folder={str(built)!r})\n"
        "network = Network(configuration, 'again.hdf5')\n"
        "network.compile(quiet=True)\n"
        "print(network.configuration.deferred(), len(network.get_placement_set('pyramidal')"
        ".load_positions()))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=base_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("without: ConfigurationError placement.l23_pyramidal.strategy: "
                               "cannot import 'gradient_strategies.DepthGradient'"), lines
    assert lines[1] == "[] 540"


def test_the_network_records_its_configurations_folder(built, tmp_path):
    # The folder the configuration was loaded from is recorded in the network file, so
    # that a network read back (from anywhere) compiles again with its own strategies:
    # here a copy of it recompiled with clear=True from another folder.
    code = (
        "import shutil\n"
        "from neuroscaffold.network import from_storage\n"
        f"shutil.copy({str(built / 'own.hdf5')!r}, 'copy.hdf5')\n"
        "network = from_storage('copy.hdf5')\n"
        "print(network.configuration.folder)\n"
        "network.compile(clear=True, quiet=True)\n"
        "print(network.configuration.deferred(), from_storage('copy.hdf5').configuration.folder)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=base_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [str(built.resolve()), f"[] {built.resolve()}"]


def test_append_and_resume_find_the_module_next_to_the_configuration(built, tmp_path):
    # The compile command, run from another folder, imports the strategies from the
    # configuration's folder when it runs their jobs (--append adds a connection set).
    folder = tmp_path / "model"
    shutil.copytree(built, folder)
    more = (folder / "model.yaml").read_text() + (
        "  stellate_to_stellate:\n"
        "    strategy: gradient_strategies.GaussianConnectivity\n"
        "    presynaptic: stellate\n    postsynaptic: stellate\n    sigma: 20\n    peak: 0.5\n")
    (folder / "more.yaml").write_text(more)
    for args in (["more.yaml", "--append"], ["more.yaml", "--resume"]):
        run = subprocess.run(
            [sys.executable, "-m", "neuroscaffold", "compile", str(folder / args[0]), "-o",
             str(folder / "own.hdf5"), "--quiet", *args[1:]],
            cwd=tmp_path, env=base_env(), capture_output=True, text=True, timeout=120)
        if args[1] == "--append":
            assert run.returncode == 0, run.stderr
        else:  # nothing to resume: refused with one line, not an import error
            assert "cannot import" not in run.stderr and "no module" not in run.stderr, run.stderr
    network = from_storage(folder / "own.hdf5")
    assert len(network.get_connectivity_set("stellate_to_stellate").load_connections()) > 0
