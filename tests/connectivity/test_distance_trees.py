"""The distance rule's KD-trees per presynaptic chunk: one tree per chunk and rank,
bounded memory, and the same pairs, in the same order of draws, as a brute-force
search over the whole populations, serially and under mpiexec."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroscaffold import Configuration, Network
from neuroscaffold.chunks import Chunk
from neuroscaffold.connectivity import _trees
from neuroscaffold.connectivity._cells import CellSelection
from neuroscaffold.connectivity._trees import kd_tree, pairs_within, radix_order
from tests._mpi import run_script
from tests.config._models import two_layers

GRID = (100.0, 100.0, 100.0)


def _model() -> dict:
    """Distance sets with a probability, both kernels and a radius wider than a chunk
    (a job then looks at 5 x 5 x 5 chunks)."""
    data = two_layers()
    data["connectivity"] = {
        "a_to_a": {"strategy": "distance", "presynaptic": "a", "postsynaptic": "a",
                   "radius": 150, "probability": 0.4},
        "a_to_b": {"strategy": "distance", "presynaptic": "a", "postsynaptic": "b",
                   "radius": 90, "kernel": {"type": "gaussian", "sigma": 40, "peak": 0.9}},
        "b_to_a": {"strategy": "distance", "presynaptic": "b", "postsynaptic": "a",
                   "radius": 120, "probability": 0.8,
                   "kernel": {"type": "exponential", "scale": 50}},
        "b_to_b": {"strategy": "distance", "presynaptic": "b", "postsynaptic": "b",
                   "radius": 60},
    }
    return data


def _reference(network: Network, name: str) -> np.ndarray:
    """The pairs of set ``name`` by brute force over the whole populations: per
    postsynaptic chunk, every candidate pair in (post, pre index) order, each kept with
    its chance drawn from the chunk's generator, then autapses dropped."""
    rule = network.connectivity[name]
    pre_type, post_type = rule.presynaptic.name, rule.postsynaptic.name
    pre = network.get_placement_set(pre_type).load_positions()
    kept = []
    for index in np.ndindex(2, 2, 2):
        post, post_indices = network.get_placement_set(post_type).load_positions_in([index])
        if not len(post):
            continue
        distance = np.linalg.norm(post[:, None, :] - pre[None, :, :], axis=2)
        rows, columns = np.nonzero(distance <= rule.radius)  # (post, pre index) order
        if rule.kernel is not None or rule.probability < 1:
            draws = rule.rng(Chunk(index, GRID)).random(len(rows))
            keep = draws < rule.chance(distance[rows, columns])
            rows, columns = rows[keep], columns[keep]
        pairs = np.column_stack([columns, post_indices[rows]])
        if pre_type == post_type:
            pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        kept.append(pairs)
    return _sorted(np.concatenate(kept))


def _sorted(pairs: np.ndarray) -> np.ndarray:
    return pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))]


def _stores(monkeypatch) -> list:
    """Every ChunkTrees made from now on."""
    made = []
    init = _trees.ChunkTrees.__init__

    def recording(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(_trees.ChunkTrees, "__init__", recording)
    return made


def _compile(path) -> Network:
    network = Network(Configuration(_model()), path)
    network.compile(quiet=True)
    return network


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> Network:
    return _compile(tmp_path_factory.mktemp("trees") / "serial.hdf5")


@pytest.mark.parametrize("name", ["a_to_a", "a_to_b", "b_to_a", "b_to_b"])
def test_the_pairs_and_their_draws_are_those_of_a_whole_population_search(serial, name):
    stored = _sorted(np.asarray(serial.get_connectivity_set(name)))
    reference = _reference(serial, name)
    assert len(reference) > 100
    assert np.array_equal(stored, reference)


def test_each_presynaptic_chunk_goes_into_one_tree_per_rank(tmp_path, monkeypatch):
    made = _stores(monkeypatch)
    network = _compile(tmp_path / "once.hdf5")
    by_type = {}
    for store in made:
        by_type.setdefault(store.cells.cell_type.name, []).append(store)
    # one store per set (a_to_a, a_to_b from a; b_to_a, b_to_b from b) for the whole
    # compile, not one per job; every chunk that holds cells built once
    assert sorted((name, len(stores)) for name, stores in by_type.items()) == [("a", 2), ("b", 2)]
    chunks_of = {"a": 4, "b": 4}  # a fills the bottom layer, b the top: 2 x 2 chunks each
    for name, stores in by_type.items():
        assert [store.built for store in stores] == [chunks_of[name]] * 2
    assert len(network.get_placement_set("a")) > 300


def test_a_budget_smaller_than_one_chunk_keeps_one_and_connects_the_same(
        tmp_path, monkeypatch, serial):
    made = _stores(monkeypatch)
    monkeypatch.setattr(_trees, "TREE_CACHE_BYTES", 1)
    network = _compile(tmp_path / "small.hdf5")
    assert made and all(len(store._kept) <= 1 for store in made)
    assert sum(store.built for store in made) > 16  # evicted trees were built again
    for name in network.connectivity:
        assert np.array_equal(np.asarray(network.get_connectivity_set(name)),
                              np.asarray(serial.get_connectivity_set(name)))


MPI_COMPILE = """
import json, sys
import numpy as np
from neuroscaffold import Configuration, Network
from neuroscaffold.connectivity import _trees
from neuroscaffold.services import MPI

data, path, budget = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
_trees.TREE_CACHE_BYTES = budget
network = Network(Configuration(data), path)
network.compile(quiet=True)
if MPI.get_rank() == 0:
    print("DONE", flush=True)
"""


@pytest.mark.mpi
@pytest.mark.parametrize("ranks,budget", [(2, 32 << 20), (3, 20_000)])
def test_the_same_pairs_at_any_rank_count_and_cache_size(tmp_path, serial, ranks, budget):
    path = tmp_path / f"n{ranks}.hdf5"
    result = run_script(MPI_COMPILE, n=ranks, timeout=120, tmp_path=tmp_path,
                        args=[json.dumps(_model()), str(path), str(budget)]).check()
    assert result.lines("DONE") == [""]
    from neuroscaffold import from_storage

    parallel = from_storage(path)
    for name in serial.connectivity:
        assert np.array_equal(np.asarray(parallel.get_connectivity_set(name)),
                              np.asarray(serial.get_connectivity_set(name))), name


def _selection(positions: np.ndarray, indices: np.ndarray, runs: list[int] | None) -> CellSelection:
    """A selection of ``positions``; with ``runs``, one tree per run of rows (as the
    rule's chunk trees), else none."""
    trees = []
    if runs is not None:
        starts = np.cumsum([0, *runs[:-1]])
        trees = [(int(s), kd_tree(positions[s:s + n])) for s, n in zip(starts, runs) if n]
    return CellSelection("cells", positions, indices, np.zeros((len(indices), 3), dtype=np.int64),
                         trees=trees)


def test_pairs_come_in_post_then_placement_set_order_whatever_the_trees():
    rng = np.random.default_rng(5)
    pre_positions = rng.random((300, 3)) * 100
    post_positions = rng.random((40, 3)) * 100
    # the pre cells in an order that is not the set's: two runs whose set indices
    # interleave (as when two strategies place one type into the same chunks)
    pre_indices = np.concatenate([np.arange(0, 300, 2), np.arange(1, 300, 2)]) + 1000
    post = _selection(post_positions, np.arange(40), None)
    distance = np.linalg.norm(post_positions[:, None] - pre_positions[None], axis=2)
    expected = sorted((post_row, int(pre_indices[pre_row]))
                      for post_row, pre_row in zip(*np.nonzero(distance <= 25)))
    for runs in (None, [150, 150], [10, 0, 140, 150]):
        pre = _selection(pre_positions, pre_indices, runs)
        pre_rows, post_rows, distances = pairs_within(pre, post, 25)
        assert list(zip(post_rows.tolist(), pre_indices[pre_rows].tolist())) == expected
        assert np.allclose(distances, distance[post_rows, pre_rows])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 70_000)), max_size=300),
       st.integers(0, 3))
def test_radix_order_sorts_like_lexsort(rows, scale):
    first = np.array([a >> (10 * scale) for a, _ in rows], dtype=np.int64)
    second = np.array([b for _, b in rows], dtype=np.int64)
    assert np.array_equal(radix_order(first, second), np.lexsort((second, first)))


def test_the_plan_counts_the_trees_a_rank_keeps(monkeypatch):
    from neuroscaffold.plan import build_plan

    plan = build_plan(Configuration(_model()))
    by_name = {s.name: s for s in plan.strategies}
    a_cells = plan.cells["a"]
    assert by_name["a_to_b"].cache_memory == pytest.approx(a_cells * _trees.TREE_BYTES_PER_CELL)
    monkeypatch.setattr(_trees, "TREE_CACHE_BYTES", 1000)  # a store keeps at most that
    small = build_plan(Configuration(_model())).strategies
    assert {s.name: s.cache_memory for s in small if s.phase == "connectivity"} \
        == dict.fromkeys(_model()["connectivity"], 1000)
