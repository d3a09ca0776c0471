"""The HDF5 storage: layout, order, sessions, and its errors."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from neuroscaffold import StorageError
from neuroscaffold.storage import HDF5Storage, PlacementEntry, canonical_contents


@pytest.fixture
def storage(tmp_path) -> HDF5Storage:
    store = HDF5Storage(tmp_path / "net.hdf5")
    store.create('{"name": "x"}')
    return store


def _cells(n: int, value: float) -> np.ndarray:
    return np.full((n, 3), value)


def test_a_new_file_holds_the_configuration_and_nothing_else(storage):
    assert storage.read_configuration() == {"name": "x"}
    assert not storage.has_data()
    assert storage.begin_session() == (0, 1)
    assert storage.begin_session() == (0, 2)
    assert storage.start_run() == 1
    assert storage.begin_session() == (1, 3)


def test_cells_are_read_in_run_chunk_strategy_order(storage):
    storage.write_placement(1, 1, "s", {"a": {(0, 0, 0): _cells(1, 5)}})
    storage.write_placement(0, 1, "t", {"a": {(0, 0, 0): _cells(2, 2)}})
    storage.write_placement(0, 1, "s", {"a": {(0, 0, 0): _cells(1, 1), (-1, 0, 0): _cells(1, 0)}})
    storage.write_placement(0, 1, "s", {"a": {(0, 0, 10): _cells(1, 4), (0, 0, 2): _cells(1, 3)}})
    entries = storage.placement_entries("a")
    assert entries == [
        PlacementEntry(0, (-1, 0, 0), "s", 1),
        PlacementEntry(0, (0, 0, 0), "s", 1),
        PlacementEntry(0, (0, 0, 0), "t", 2),
        PlacementEntry(0, (0, 0, 2), "s", 1),
        PlacementEntry(0, (0, 0, 10), "s", 1),
        PlacementEntry(1, (0, 0, 0), "s", 1),
    ]
    assert storage.read_placement("a", entries)[:, 0].tolist() == [0, 1, 2, 2, 3, 4, 5]
    assert storage.has_data()


def test_a_chunk_written_twice_in_one_session_is_an_error(storage):
    storage.write_placement(0, 1, "s", {"a": {(0, 0, 0): _cells(1, 1)}})
    with pytest.raises(StorageError, match=r"^.*net\.hdf5: cells of 'a' in chunk 0_0_0 "
                                           r"written twice$"):
        storage.write_placement(0, 1, "s", {"a": {(0, 0, 0): _cells(1, 1)}})
    storage.write_connections(0, 1, "c", "a", "a", {(0, 0, 0): np.zeros((1, 2))})
    with pytest.raises(StorageError, match=r"^.*: connections of 'c' in chunk 0_0_0 "
                                           r"written twice$"):
        storage.write_connections(0, 1, "c", "a", "a", {(0, 0, 0): np.zeros((1, 2))})


def test_a_later_session_replaces_a_chunk(storage):
    storage.write_placement(0, 1, "s", {"a": {(0, 0, 0): _cells(3, 1)}})
    storage.write_placement(0, 2, "s", {"a": {(0, 0, 0): _cells(1, 9)}})
    assert storage.read_placement("a", storage.placement_entries("a")).tolist() == [[9, 9, 9]]


def test_connections_are_read_in_run_then_chunk_order(storage):
    storage.write_connections(0, 1, "c", "a", "b", {(1, 0, 0): np.array([[1, 1]]),
                                                     (0, 0, 0): np.array([[0, 0]])})
    storage.write_connections(1, 1, "c", "a", "b", {(0, 0, 0): np.array([[2, 2]])})
    pairs, meta = storage.read_connections("c")
    assert pairs.tolist() == [[0, 0], [1, 1], [2, 2]]
    assert pairs.dtype == np.int64
    assert meta == {"presynaptic": "a", "postsynaptic": "b"}
    summary = storage.summary()
    assert summary["connections"] == {"c": ("a", "b", 3)}
    with pytest.raises(StorageError, match=r"^.*: no connectivity set 'd'$"):
        storage.read_connections("d")


def test_canonical_contents_ignore_the_order_of_writing(tmp_path):
    first, second = HDF5Storage(tmp_path / "1.hdf5"), HDF5Storage(tmp_path / "2.hdf5")
    for store in (first, second):
        store.create("{}")
    first.write_placement(0, 1, "s", {"a": {(0, 0, 0): _cells(1, 1)}})
    first.write_placement(0, 1, "s", {"a": {(1, 0, 0): _cells(2, 2)}})
    second.write_placement(0, 1, "s", {"a": {(1, 0, 0): _cells(2, 2)}})
    second.write_placement(0, 1, "s", {"a": {(0, 0, 0): _cells(1, 1)}})
    assert canonical_contents(first.path) == canonical_contents(second.path)
    second.write_placement(0, 2, "s", {"a": {(0, 0, 0): _cells(1, 1.5)}})
    assert canonical_contents(first.path) != canonical_contents(second.path)


def test_files_that_are_not_networks_are_refused(tmp_path):
    missing = HDF5Storage(tmp_path / "missing.hdf5")
    with pytest.raises(StorageError, match=rf"^{re.escape(str(missing.path))}: no such file$"):
        missing.read_configuration()
    text = tmp_path / "text.hdf5"
    text.write_text("hello")
    with pytest.raises(StorageError, match=r"^.*text\.hdf5: not an HDF5 file$"):
        HDF5Storage(text).read_configuration()
    with h5py.File(tmp_path / "other.hdf5", "w") as file:
        file["x"] = 1
    with pytest.raises(StorageError, match=r"^.*other\.hdf5: not a neuroscaffold network file$"):
        HDF5Storage(tmp_path / "other.hdf5").read_configuration()
    nowhere = HDF5Storage(tmp_path / "no" / "such" / "dir.hdf5")
    with pytest.raises(StorageError, match=r"^.*dir\.hdf5: directory '.*such' does not exist$"):
        nowhere.create("{}")
