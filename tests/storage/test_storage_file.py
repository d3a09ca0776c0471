"""The network file: unfinished networks say so, interrupted compiles resume to the same
file, a recompile keeps the old network until the new one is complete, and every file
that is not a readable network gets one line that says what it is."""

from __future__ import annotations

import re
import shutil
import signal

import h5py
import numpy as np
import pytest

from neuroscaffold import (CompileInterrupted, Configuration, JobStatus, Network,
                           PoolProgressReason, StorageError, from_storage)
from neuroscaffold.cli import main
from neuroscaffold.storage import HDF5Storage, canonical_contents
from tests.config._models import two_layers


def interrupt_after(successes: int):
    """A listener that sends this process SIGINT (a Ctrl-C) after ``successes`` jobs."""
    done = [0]

    def listener(progress):
        if progress.reason is PoolProgressReason.JOB_STATUS_CHANGE and \
                progress.job.status is JobStatus.SUCCESS:
            done[0] += 1
            if done[0] == successes:
                signal.raise_signal(signal.SIGINT)

    return listener


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "net.hdf5"
    Network(Configuration(two_layers()), path).compile(quiet=True)
    return canonical_contents(path)


def _interrupted(path, successes: int, **options) -> str:
    network = Network(Configuration(two_layers()), path)
    with pytest.raises(CompileInterrupted) as info:
        network.compile(quiet=True, listeners=[interrupt_after(successes)], **options)
    return str(info.value)


@pytest.mark.parametrize("successes", [1, 5, 12, 20])
def test_an_interrupted_compile_says_so_and_resumes_to_the_same_file(tmp_path, reference, capsys,
                                                                      successes):
    path = tmp_path / "net.hdf5"
    line = _interrupted(path, successes)
    found = re.fullmatch(r"interrupted: (\d+) of 24 jobs committed; resume with --resume", line)
    assert found, line
    assert HDF5Storage(path).header().complete is False
    reopened = from_storage(path)  # the configuration is there
    assert list(reopened.cell_types) == ["a", "b", "c"]
    with pytest.raises(StorageError, match=rf"^{re.escape(str(path))}: an unfinished compile: "
                                           rf"{found[1]} of 24 jobs committed; finish it with "
                                           r"`neuroscaffold compile CONFIG -o .* --resume`$"):
        reopened.get_placement_set("a").load_positions()
    assert main(["show", str(path)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].startswith(f"network 'two_layers' in {path}: UNFINISHED, an unfinished "
                               f"compile: {found[1]} of 24 jobs committed")
    assert re.fullmatch(r"  placement\.place_a +\d+/\d+ +jobs  (complete|\d+ jobs missing)",
                        shown[2]), shown
    Network(Configuration(two_layers()), path).compile(resume=True, quiet=True)
    assert canonical_contents(path) == reference
    assert not HDF5Storage(path).parts.path.exists()


def test_a_resume_needs_the_same_configuration(tmp_path, reference):
    path = tmp_path / "net.hdf5"
    _interrupted(path, 10)
    changed = two_layers()
    changed["connectivity"]["a_to_b"]["radius"] = 71
    with pytest.raises(StorageError, match=rf"^{re.escape(str(path))}: the unfinished compile was "
                                           r"started from a different configuration \(it differs "
                                           r"at connectivity\.a_to_b\.radius\); resume with the "
                                           r"same configuration, or start over with --clear$"):
        Network(Configuration(changed), path).compile(resume=True, quiet=True)
    with pytest.raises(StorageError, match=r"holds an unfinished network \(\d+ of 24 jobs "
                                           r"committed\); finish it \(--resume\) or start over "
                                           r"\(--clear\)$"):
        Network(Configuration(two_layers()), path).compile(quiet=True)
    Network(Configuration(two_layers()), path).compile(resume=True, quiet=True)
    assert canonical_contents(path) == reference


def test_a_resume_takes_a_changed_simulations_section(tmp_path, reference):
    """Simulations do not change the network: a resume accepts new ones (added, here,
    then changed) and the finished network carries the last; a change elsewhere is
    still refused, named without the simulations."""
    path = tmp_path / "net.hdf5"
    _interrupted(path, 10)
    simulated = two_layers()
    simulated["simulations"] = {"quick": {"simulator": "nest", "duration": 50,
                                          "cell_models": {"a": {"model": "iaf_psc_alpha"}}}}
    network = Network(Configuration(simulated), path)
    with pytest.raises(CompileInterrupted):
        network.compile(resume=True, quiet=True, listeners=[interrupt_after(3)])
    simulated["simulations"]["quick"]["duration"] = 80
    changed = {**simulated, "connectivity": two_layers()["connectivity"]}
    changed["connectivity"]["a_to_b"]["radius"] = 71
    with pytest.raises(StorageError, match=r"differs at connectivity\.a_to_b\.radius\)"):
        Network(Configuration(changed), path).compile(resume=True, quiet=True)
    Network(Configuration(simulated), path).compile(resume=True, quiet=True)

    def built(contents):  # all but the configuration, which now holds the simulations
        return [entry for entry in contents if entry[0] != "configuration"]

    assert built(canonical_contents(path)) == built(reference)
    assert len(built(reference)) == len(reference) - 1
    stored = from_storage(path).configuration.simulations
    assert list(stored) == ["quick"] and stored["quick"].duration == 80


def test_a_recompile_keeps_the_old_network_until_the_new_one_is_complete(tmp_path, reference,
                                                                          capsys):
    path = tmp_path / "net.hdf5"
    Network(Configuration(two_layers()), path).compile(quiet=True)
    _interrupted(path, 20, clear=True)
    assert canonical_contents(path) == reference  # the old network, untouched
    assert main(["show", str(path)]) == 0
    assert re.search(r"^note: a recompile of this path is unfinished: .*--resume`$",
                     capsys.readouterr().out, re.M)
    with pytest.raises(StorageError, match=r"already holds a compiled network \(and an unfinished "
                                           r"recompile of it waits in net\.hdf5\.parts: --resume "
                                           r"finishes it\)"):
        Network(Configuration(two_layers()), path).compile(quiet=True)
    Network(Configuration(two_layers()), path).compile(resume=True, quiet=True)
    assert canonical_contents(path) == reference


def test_a_network_can_be_copied_and_moved(tmp_path, reference):
    path = tmp_path / "net.hdf5"
    Network(Configuration(two_layers()), path).compile(quiet=True)
    elsewhere = tmp_path / "else" / "moved.hdf5"
    elsewhere.parent.mkdir()
    shutil.move(path, elsewhere)
    copy = tmp_path / "copy.hdf5"
    shutil.copy(elsewhere, copy)
    for moved in (elsewhere, copy):
        assert canonical_contents(moved) == reference
        network = from_storage(moved)
        assert len(network.get_placement_set("a")) == 400
        assert network.get_placement_set("a").load_positions().shape == (400, 3)
        assert len(network.get_connectivity_set("c_to_b")) == 32 * 90


def test_a_set_is_one_dataset_with_a_table_of_its_blocks(tmp_path):
    path = tmp_path / "net.hdf5"
    Network(Configuration(two_layers()), path).compile(quiet=True)
    with h5py.File(path, "r") as file:
        assert file.attrs["complete"]
        group = file["placement/a"]
        assert set(group) == {"positions", "blocks"}
        assert group["positions"].shape == (400, 3) and group["positions"].chunks is None
        assert group["blocks"]["count"].sum() == 400
        chunks = [tuple(c) for c in group["blocks"]["chunk"]]
        assert chunks == sorted(chunks)  # in set order
        assert set(file["connectivity/a_to_b"]) == {"pairs", "blocks"}
        assert file["connectivity/a_to_b"].attrs["presynaptic"] == "a"
    assert from_storage(path).get_placement_set("a").chunks() == chunks


def _damaged(tmp_path):
    path = tmp_path / "damaged.hdf5"
    Network(Configuration(two_layers()), path).compile(quiet=True)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 3]))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing.hdf5", "no such file"),
    (lambda tmp: tmp, "is a directory"),
    (lambda tmp: (tmp / "t.yaml").write_text("a: 1") and tmp / "t.yaml", "not an HDF5 file"),
    (_damaged, r"a damaged (HDF5|network) file \(.*\)"),
])
def test_show_says_in_one_line_what_a_file_is(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["show", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(rf"neuroscaffold: error: {re.escape(str(path))}: {message}\n", err), err


def test_other_hdf5_files_are_not_networks_and_are_never_overwritten(tmp_path):
    path = tmp_path / "other.hdf5"
    with h5py.File(path, "w") as file:
        file["x"] = np.arange(3)
    with pytest.raises(StorageError, match=r"^.*other\.hdf5: not a neuroscaffold network file$"):
        from_storage(path)
    for clear in (False, True):
        with pytest.raises(StorageError, match=r"not a neuroscaffold network file; refusing to "
                                               r"overwrite it: choose another output path$"):
            Network(Configuration(two_layers()), path).compile(quiet=True, clear=clear)
    with h5py.File(path, "r") as file:
        assert list(file) == ["x"]


def test_a_damaged_network_is_replaced_only_with_clear(tmp_path, reference):
    path = _damaged(tmp_path)
    with pytest.raises(StorageError, match=r"a damaged (HDF5|network) file \(.*\); --clear "
                                           r"replaces it$"):
        Network(Configuration(two_layers()), path).compile(quiet=True)
    Network(Configuration(two_layers()), path).compile(quiet=True, clear=True)
    assert canonical_contents(path) == reference


def test_show_during_a_compile_says_it_is_being_compiled(tmp_path, capsys):
    path = tmp_path / "net.hdf5"
    storage = HDF5Storage(path)
    network = Network(Configuration(two_layers()), path)
    # what the main rank of a running compile holds: the lock, the manifest and the stub
    storage.open_session("compile", network.configuration.to_json(), {"x": 3})
    try:
        assert main(["show", str(path)]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first == (f"network 'two_layers' in {path}: UNFINISHED, being compiled now: 0 of "
                         f"3 jobs committed; finish it with `neuroscaffold compile CONFIG -o "
                         f"{path} --resume`")
        with pytest.raises(StorageError, match="another process is writing this network"):
            HDF5Storage(path).open_session("compile", network.configuration.to_json())
    finally:
        storage.release()


def test_a_large_set_can_be_read_a_slice_at_a_time(tmp_path):
    path = tmp_path / "net.hdf5"
    Network(Configuration(two_layers()), path).compile(quiet=True)
    connections = from_storage(path).get_connectivity_set("a_to_a")
    slices = list(connections.iter_connections(rows=1000))
    assert len(slices) == -(-len(connections) // 1000) and all(len(s) <= 1000 for s in slices)
    assert np.array_equal(np.concatenate(slices), connections.load_connections())
