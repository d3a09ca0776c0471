"""The chunking never shapes the tissue (sparse types are uniform over the partitions
at any chunk size, the same at any rank count), and overlapping partitions are placed
once (one strategy: their union) or refused (two strategies, or a lattice)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import chisquare

from neuroscaffold import Configuration, Network
from neuroscaffold.exceptions import ConfigurationError
from neuroscaffold.storage import HDF5Storage, canonical_contents
from tests._mpi import run_script
from tests.placement.test_poisson_disk import COMPILE_SCRIPT


def sparse_model(chunk_size, strategy="random") -> dict:
    return {
        "name": "sparse", "seed": 3,
        "network": {"x": 400, "y": 40, "z": 40, "chunk_size": chunk_size},
        "partitions": {"slab": {"type": "layer", "origin": 0, "thickness": 40}},
        "cell_types": {"rare": {"radius": 3.0, "count": 400}},
        "placement": {"rare": {"strategy": strategy, "cell_types": ["rare"],
                               "partitions": ["slab"]}},
    }


@pytest.mark.parametrize("strategy", ["random", "poisson_disk"])
@pytest.mark.parametrize("chunk_size", [10, 40, 100])
def test_a_sparse_type_is_uniform_along_x_at_any_chunk_size(tmp_path, chunk_size, strategy):
    # 400 cells over 160 chunks of 10 µm (fewer cells than chunks in y-z columns): the
    # counts per x-quarter must look like 100 each (fixed seed: never flakes).
    path = tmp_path / "net.hdf5"
    Network(Configuration(sparse_model(chunk_size, strategy)), path).compile(quiet=True)
    x = HDF5Storage(path).load_positions("rare")[:, 0]
    assert len(x) == 400
    quarters = np.histogram(x, bins=4, range=(0, 400))[0]
    assert chisquare(quarters).pvalue > 0.01, quarters
    tenths = np.histogram(x, bins=10, range=(0, 400))[0]
    assert chisquare(tenths).pvalue > 0.01, tenths


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_sparse_types_are_the_same_at_any_rank_count(tmp_path, ranks):
    config = tmp_path / "sparse.json"
    config.write_text(json.dumps(sparse_model(10)))
    Network(Configuration.from_file(config), tmp_path / "serial.hdf5").compile(quiet=True)
    out = tmp_path / "net.hdf5"
    result = run_script(COMPILE_SCRIPT, ranks, args=[str(config), str(out)], timeout=120,
                        tmp_path=tmp_path).check()
    assert result.lines("exit") == ["0"], result.describe()
    assert canonical_contents(out) == canonical_contents(tmp_path / "serial.hdf5")


def overlapping(first="random", second=None) -> dict:
    data = {
        "name": "overlap", "seed": 1,
        "network": {"x": 100, "y": 300, "z": 100, "chunk_size": 100},
        "partitions": {"a": {"type": "layer", "origin": 0, "thickness": 200},
                       "b": {"type": "layer", "origin": 150, "thickness": 150}},
        "cell_types": {"c": {"radius": 2.0, "density": 1e-4}},
        "placement": {"p": {"strategy": first, "cell_types": ["c"], "partitions": ["a", "b"]}},
    }
    if second is not None:
        data["placement"]["p"]["partitions"] = ["a"]
        data["placement"]["q"] = {"strategy": second, "cell_types": ["c"], "partitions": ["b"]}
    return data


@pytest.mark.parametrize("strategy", ["random", "poisson_disk"])
def test_overlapping_partitions_of_one_strategy_are_filled_once(tmp_path, strategy):
    path = tmp_path / "net.hdf5"
    Network(Configuration(overlapping(strategy)), path).compile(quiet=True)
    y = HDF5Storage(path).load_positions("c")[:, 1]
    assert len(y) == round(1e-4 * 100 * 300 * 100)  # the union, 0..300, not 350 µm of layers
    in_overlap = np.count_nonzero((y >= 150) & (y < 200))
    assert abs(in_overlap - 50) < 4 * np.sqrt(50)  # the density once, not twice


def test_two_strategies_placing_one_type_in_overlapping_partitions_are_refused():
    with pytest.raises(ConfigurationError) as caught:
        Configuration(overlapping("random", "random"))
    assert str(caught.value) == (
        "placement.q.partitions: cell type 'c' is placed by 'p' in partition 'a' and by 'q' "
        "in partition 'b', which overlap (x 0..100, y 150..200, z 0..100): the cells there "
        "would be placed twice; list both partitions in one strategy (their union is filled "
        "once) or make them disjoint")


def test_a_lattice_over_overlapping_partitions_is_refused():
    data = overlapping("lattice")
    data["placement"]["p"]["spacing"] = [10, 10, 10]
    with pytest.raises(ConfigurationError, match=r"^placement\.p\.partitions: partitions 'a' "
                                                 r"and 'b' overlap \(x 0\.\.100, y 150\.\.200"):
        Configuration(data)
