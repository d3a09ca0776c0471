"""The network: compile, storage round trips, recompiling, and identical files on any
number of ranks."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from neuroscaffold import Configuration, Network, Scaffold, StorageError, from_storage
from neuroscaffold.storage import canonical_contents
from tests._mpi import run_script
from tests.config._models import two_layers


def compiled(path, **changes) -> Network:
    data = two_layers()
    data.update(changes)
    network = Network(Configuration(data), path)
    network.compile(quiet=True)
    return network


def test_a_network_shows_its_model(tmp_path):
    network = Network(Configuration(two_layers()), tmp_path / "net.hdf5")
    assert Scaffold is Network
    assert list(network.placement) == ["place_a", "place_b", "place_c"]
    assert list(network.connectivity) == ["a_to_b", "a_to_a", "c_to_b"]
    assert list(network.cell_types) == ["a", "b", "c"]
    assert list(network.partitions) == ["bottom", "top"]
    assert network.placement["place_a"].scaffold is network


def test_from_storage_reopens_the_network_with_its_configuration(tmp_path):
    network = compiled(tmp_path / "net.hdf5")
    reopened = from_storage(tmp_path / "net.hdf5")
    assert reopened.configuration.to_dict() == network.configuration.to_dict()
    assert reopened.placement["place_b"].scaffold is reopened
    for cell_type in network.cell_types:
        assert np.array_equal(np.asarray(reopened.get_placement_set(cell_type)),
                              np.asarray(network.get_placement_set(cell_type)))
    for name in network.connectivity:
        assert np.array_equal(np.asarray(reopened.get_connectivity_set(name)),
                              np.asarray(network.get_connectivity_set(name)))
    assert len(reopened.get_placement_set("a")) == 400
    with pytest.raises(StorageError, match=r"^.*net\.hdf5: no cell type 'z'$"):
        reopened.get_placement_set("z")
    with pytest.raises(StorageError, match=r"^.*net\.hdf5: no connectivity set 'z'$"):
        reopened.get_connectivity_set("z")
    with pytest.raises(StorageError, match=r"^.*nope\.hdf5: no such file$"):
        from_storage(tmp_path / "nope.hdf5")


def test_recompiling_needs_clear_append_or_resume(tmp_path):
    path = tmp_path / "net.hdf5"
    network = compiled(path)
    before = canonical_contents(path)
    with pytest.raises(StorageError, match=rf"^{re.escape(str(path))}: already holds a compiled "
                                           r"network; choose to rebuild it \(--clear\) or to add "
                                           r"the strategies it does not have \(--append\)$"):
        network.compile(quiet=True)
    assert canonical_contents(path) == before  # untouched
    with pytest.raises(ValueError, match=r"^choose one of clear, append and resume, not clear "
                                         r"and append$"):
        network.compile(clear=True, append=True)
    network.compile(clear=True, quiet=True)
    assert canonical_contents(path) == before
    with pytest.raises(StorageError, match=r"^.*: nothing to append: the network already has "
                                           r"every strategy of the configuration$"):
        network.compile(append=True, quiet=True)
    with pytest.raises(StorageError, match=r"^.*: nothing to resume: the network is complete$"):
        network.compile(resume=True, quiet=True)
    assert canonical_contents(path) == before


def test_append_adds_new_strategies_and_keeps_everything_stored(tmp_path):
    path = tmp_path / "net.hdf5"
    compiled(path)
    before = {name: np.asarray(from_storage(path).get_connectivity_set(name))
              for name in ("a_to_b", "a_to_a", "c_to_b")}
    cells = np.asarray(from_storage(path).get_placement_set("a"))
    data = two_layers()
    data["connectivity"]["b_to_a"] = {"strategy": "distance", "presynaptic": "b",
                                      "postsynaptic": "a", "radius": 50}
    Network(Configuration(data), path).compile(append=True, quiet=True)
    reopened = from_storage(path)
    assert "b_to_a" in reopened.configuration.connectivity
    assert np.array_equal(np.asarray(reopened.get_placement_set("a")), cells)
    for name, pairs in before.items():
        assert np.array_equal(np.asarray(reopened.get_connectivity_set(name)), pairs)
    added = np.asarray(reopened.get_connectivity_set("b_to_a"))
    # the same set compiled from scratch in one go is the same
    fresh = tmp_path / "fresh.hdf5"
    Network(Configuration(data), fresh).compile(quiet=True)
    assert np.array_equal(np.asarray(from_storage(fresh).get_connectivity_set("b_to_a")), added)
    assert len(added) > 0


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(seed=4), r"the configuration's 'seed' differs from the stored "
                                 r"network's; use --clear to rebuild"),
    (lambda d: d["connectivity"]["a_to_b"].update(radius=71),
     r"connectivity\.a_to_b differs from the stored network's; use --clear to rebuild"),
    (lambda d: d["placement"].update(more_a={"strategy": "random", "cell_types": ["a"],
                                             "partitions": ["top"]}),
     r"placement\.more_a: cell type 'a' is placed already \(more cells would change the "
     r"indices that stored connections use\); use --clear"),
    (lambda d: d["connectivity"].pop("c_to_b"),
     r"the stored connectivity strategy 'c_to_b' is missing from the configuration"),
])
def test_append_refuses_what_cannot_be_correct(tmp_path, change, message):
    path = tmp_path / "net.hdf5"
    compiled(path)
    before = canonical_contents(path)
    data = two_layers()
    change(data)
    with pytest.raises(StorageError, match=rf"^{re.escape(str(path))}: cannot append.*{message}$"):
        Network(Configuration(data), path).compile(append=True, quiet=True)
    assert canonical_contents(path) == before


def test_a_file_that_is_not_a_network_is_never_overwritten(tmp_path):
    path = tmp_path / "other.hdf5"
    path.write_text("not hdf5")
    network = Network(Configuration(two_layers()), path)
    for clear in (False, True):
        with pytest.raises(StorageError, match=r"^.*other\.hdf5: not an HDF5 file; refusing to "
                                               r"overwrite it: choose another output path$"):
            network.compile(quiet=True, clear=clear)
    assert path.read_text() == "not hdf5"


def test_a_network_without_storage_gets_a_temporary_file():
    network = Network()
    network.compile(quiet=True)
    assert network.storage.path.exists()
    assert network.storage.summary()["cells"] == {}
    assert network.storage.header().complete


IDENTICAL = """
import json, sys
from neuroscaffold import Configuration, Network, PoolProgressReason, from_storage
from neuroscaffold.services import MPI
from neuroscaffold.storage import canonical_contents

data, path = json.loads(sys.argv[1]), sys.argv[2]
ranks_used = set()

def record(progress):
    if progress.reason is PoolProgressReason.JOB_STATUS_CHANGE and progress.job.rank is not None:
        ranks_used.add(progress.job.rank)

network = Network(Configuration(data), path)
network.compile(quiet=True, listeners=[record])
# every rank can read the result, and reopen it
reopened = from_storage(path)
counts = MPI.gather([len(reopened.get_placement_set(name)) for name in reopened.cell_types])
if MPI.get_rank() == 0:  # only the main rank prints: lines of several ranks may interleave
    print("COUNTS", json.dumps(counts))
    print("RANKS", sorted(ranks_used))
    print("CONTENTS", json.dumps(repr(canonical_contents(path))))
"""


@pytest.fixture(scope="module")
def serial_contents(tmp_path_factory):
    path = tmp_path_factory.mktemp("serial") / "serial.hdf5"
    compiled(path)
    return repr(canonical_contents(path))


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_any_number_of_ranks_gives_the_serial_file(tmp_path, serial_contents, ranks):
    path = tmp_path / f"n{ranks}.hdf5"
    result = run_script(IDENTICAL, n=ranks, timeout=90, tmp_path=tmp_path,
                        args=[json.dumps(two_layers()), str(path)]).check()
    (contents,) = result.lines("CONTENTS")
    assert json.loads(contents) == serial_contents
    (counts,) = result.lines("COUNTS")
    assert json.loads(counts) == [[400, 90, 32]] * ranks
    (ranks_used,) = result.lines("RANKS")
    assert len(json.loads(ranks_used)) > 1, result.describe()
