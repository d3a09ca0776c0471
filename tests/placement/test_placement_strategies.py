"""Placement: chunks, indicators, the built-in strategies, depends_on and pool_cache."""

from __future__ import annotations

import gc
import re
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroscaffold import Configuration, Network, PlacementStrategy, PoolProgressReason, config
from neuroscaffold.placement import Chunk
from neuroscaffold.chunks import apportion, chunk_indices_in_box, chunks_in_box
from neuroscaffold.services.pool import JobStatus
from tests.config._models import two_layers


def network_of(tmp_path, data: dict, name: str = "net.hdf5") -> Network:
    return Network(Configuration(data), tmp_path / name)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e4), min_size=1, max_size=30), st.integers(0, 10_000))
def test_apportion_adds_up_and_stays_within_one_of_the_share(expected, total):
    shares = apportion(expected, total)
    if sum(expected) == 0:
        assert shares == [0] * len(expected)
        return
    assert sum(shares) == total
    exact = np.array(expected) * total / sum(expected)
    assert np.all(np.abs(np.array(shares) - exact) < 1 + 1e-9)


def test_chunks_in_box_are_those_with_volume_inside():
    chunks = chunks_in_box([0, 50, 0], [100, 150, 100], (100, 100, 100))
    assert [c.index for c in chunks] == [(0, 0, 0), (0, 1, 0)]
    assert chunks_in_box([0, 100, 0], [100, 100, 100], (100, 100, 100)) == []
    chunk = Chunk((1, -1, 0), (10.0, 10.0, 10.0))
    assert chunk.ldc.tolist() == [10, -10, 0] and chunk.mdc.tolist() == [20, 0, 10]
    assert chunk.key == "1_-1_0" and str(chunk) == "(1, -1, 0)"
    assert [c.index for c in Chunk((1, 0, 0), (20, 10, 10)).subchunks((10, 10, 10))] == [
        (2, 0, 0), (3, 0, 0)]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-300, 300), min_size=3, max_size=3),
       st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 200)), min_size=3, max_size=3),
       st.lists(st.sampled_from([7.0, 20.0, 50.0]), min_size=3, max_size=3))
def test_chunk_indices_in_box_are_every_chunk_with_volume_inside(lo, extent, size):
    """Against testing every chunk of a wide neighbourhood one by one."""
    lo, hi = np.array(lo), np.array(lo) + np.array(extent)
    found = chunk_indices_in_box(lo, hi, size)
    assert found.dtype == np.int64 and found.shape[1:] == (3,) and found.flags.c_contiguous
    ranges = [range(int(np.floor(lo[a] / size[a])) - 2, int(np.ceil(hi[a] / size[a])) + 2)
              for a in range(3)]
    expected = [(i, j, k) for i in ranges[0] for j in ranges[1] for k in ranges[2]
                if all(min(hi[a], (c + 1) * size[a]) - max(lo[a], c * size[a]) > 0
                       for a, c in enumerate((i, j, k)))]
    assert [tuple(c) for c in found.tolist()] == expected  # in index order


def test_indicators_spread_a_density_or_a_count_over_the_chunks(tmp_path):
    network = network_of(tmp_path, two_layers())
    density = network.placement["place_a"].get_indicators()["a"]
    assert density.guess() == round(1e-4 * 200 * 100 * 200)
    chunks = network.placement["place_a"].get_chunks()
    assert sum(density.guess(c) for c in chunks) == density.guess() == 400
    assert density.guess(Chunk((0, 0, 0), (200.0, 200.0, 200.0))) == 400
    count = network.placement["place_b"].get_indicators()["b"]
    assert count.guess() == 90 and count.count == 90 and count.density is None
    per_chunk = [count.guess(c) for c in network.placement["place_b"].get_chunks()]
    assert sum(per_chunk) == 90 and len(per_chunk) == 4  # a multinomial draw: exact total
    again = network_of(tmp_path / "again", two_layers()).placement["place_b"]
    assert [again.get_indicators()["b"].guess(c) for c in again.get_chunks()] == per_chunk


def test_random_and_lattice_placement_fill_their_partitions(tmp_path):
    network = network_of(tmp_path, two_layers())
    network.compile(quiet=True)
    a = np.asarray(network.get_placement_set("a"))
    b = network.get_placement_set("b").load_positions()
    c = network.get_placement_set("c").load_positions()
    assert a.shape == (400, 3) and b.shape == (90, 3)
    assert a[:, 1].min() >= 0 and a[:, 1].max() < 100
    assert b[:, 1].min() >= 100 and b[:, 1].max() < 200
    # lattice: 4 x 2 x 4 points at half-spacing offsets, each placed exactly once
    assert c.shape == (32, 3)
    assert sorted(set(c[:, 0])) == [25, 75, 125, 175]
    assert sorted(set(c[:, 1])) == [125, 175]
    assert len({tuple(p) for p in c}) == 32
    assert network.get_placement_set("c").chunks() == [(0, 1, 0), (0, 1, 1), (1, 1, 0), (1, 1, 1)]


def test_the_seed_decides_the_random_positions(tmp_path):
    first = network_of(tmp_path, two_layers(), "1.hdf5")
    again = network_of(tmp_path, two_layers(), "2.hdf5")
    other_data = two_layers()
    other_data["seed"] = 4
    other = network_of(tmp_path, other_data, "3.hdf5")
    for network in (first, again, other):
        network.compile(quiet=True)
    positions = [network.get_placement_set("a").load_positions() for network in (first, again, other)]
    assert np.array_equal(positions[0], positions[1])
    assert not np.array_equal(positions[0], positions[2])


def test_fixed_positions_go_where_they_are_told(tmp_path):
    data = {
        "network": {"x": 100, "y": 100, "z": 100, "chunk_size": 50},
        "cell_types": {"p": {}},
        "placement": {"fixed": {"strategy": "fixed", "cell_types": ["p"],
                                "positions": [[60, 10, 10], [10, 10, 10], [10, 60, 70]]}},
    }
    network = network_of(tmp_path, data)
    network.compile(quiet=True)
    # stored per chunk, so read back in chunk order
    assert network.get_placement_set("p").load_positions().tolist() == [
        [10, 10, 10], [10, 60, 70], [60, 10, 10]]



def test_jobs_can_cover_regions_of_several_chunks(tmp_path):
    network = network_of(tmp_path, two_layers())
    strategy = network.placement["place_a"]
    regions = strategy.get_chunks(chunk_size=200)
    assert regions == [Chunk((0, 0, 0), (200.0, 200.0, 200.0))]
    with network.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            strategy.queue(pool, chunk_size=[200, 200, 200])
        pool.execute()
    placement_set = network.get_placement_set("a")
    assert len(placement_set) == 400
    assert placement_set.chunks() == [c.index for c in strategy.get_chunks()]
    with pytest.raises(ValueError, match=r"^chunk_size \[150\.0, 100\.0, 100\.0\] is not a whole "
                                         r"multiple of the network's chunk size "
                                         r"\[100\.0, 100\.0, 100\.0\]$"):
        strategy.get_chunks(chunk_size=[150, 100, 100])


def test_a_strategy_waits_for_its_depends_on(tmp_path):
    network = network_of(tmp_path, two_layers())
    changes = []

    def record(progress):
        if progress.reason is PoolProgressReason.JOB_STATUS_CHANGE:
            changes.append((progress.job, progress.job.status))

    network.compile(quiet=True, listeners=[record])
    ended_a = [i for i, (job, status) in enumerate(changes)
               if job.name.startswith("place place_a") and status is JobStatus.SUCCESS]
    started_b = [i for i, (job, status) in enumerate(changes)
                 if job.name.startswith("place place_b") and status is JobStatus.RUNNING]
    assert len(ended_a) == 4 and len(started_b) == 4
    assert max(ended_a) < min(started_b)
    b_job = changes[started_b[0]][0]
    assert {dep.submitter.name for dep in b_job.deps} == {"place_a"}
    assert len(b_job.deps) == len(network.placement["place_a"].get_chunks())


# --- pool_cache: the indicators live as long as their strategy's jobs ----------------------

_seen: dict[str, list] = {"first": [], "second": []}


@config.node
class _Recording(PlacementStrategy):
    """Remembers (weakly) the indicators each job got, and checks the other strategy's."""

    watch = config.attr(type=str)

    def place(self, chunk, indicators):
        _seen[self.name].append(weakref.ref(indicators))
        if self.watch:
            gc.collect()
            _seen.setdefault("watched_alive", []).append(
                [ref() is not None for ref in _seen[self.watch]])


def test_the_indicators_are_cached_then_freed_after_the_strategy_s_last_job(tmp_path, monkeypatch):
    from neuroscaffold.placement import _strategy

    built = []
    original = _strategy.build_indicators
    monkeypatch.setattr(_strategy, "build_indicators",
                        lambda strategy: built.append(strategy.name) or original(strategy))
    data = two_layers()
    data["placement"] = {
        "first": {"strategy": f"{__name__}._Recording", "cell_types": ["a"],
                  "partitions": ["bottom"]},
        "second": {"strategy": f"{__name__}._Recording", "cell_types": ["b"],
                   "partitions": ["top"], "depends_on": ["first"], "watch": "first"},
    }
    data["connectivity"] = {}
    for key in list(_seen):
        _seen[key] = []
    network = network_of(tmp_path, data)
    network.compile(quiet=True)
    # computed once per strategy for its four jobs ...
    assert built == ["first", "second"]
    assert len(_seen["first"]) == len(_seen["second"]) == 4
    # ... and freed as soon as the strategy's last job ended: "second" runs after it
    assert _seen["watched_alive"] == [[False] * 4] * 4


def test_place_cells_checks_its_input(tmp_path):
    network = network_of(tmp_path, two_layers())
    strategy = network.placement["place_a"]
    chunk = strategy.get_chunks()[0]
    with pytest.raises(ValueError, match=r"^place_a does not place cell type 'b'$"):
        strategy.place_cells("b", np.zeros((1, 3)), chunk)
    with pytest.raises(ValueError, match=re.escape("positions must have shape (n, 3), got (2,)")):
        strategy.place_cells("a", np.zeros(2), chunk)


def test_boxes_and_layers_along_other_axes_bound_the_cells(tmp_path):
    data = {
        "network": {"x": 300, "y": 100, "z": 100, "chunk_size": 100},
        "partitions": {"box": {"type": "box", "origin": [120, 10, 20], "size": [50, 30, 60]},
                       "slab": {"type": "layer", "axis": "x", "origin": 250, "thickness": 50}},
        "cell_types": {"in_box": {"count": 300}, "in_slab": {"density": 1e-4}},
        "placement": {
            "box": {"strategy": "random", "cell_types": ["in_box"], "partitions": ["box"]},
            "slab": {"strategy": "random", "cell_types": ["in_slab"], "partitions": ["slab"]},
        },
    }
    network = network_of(tmp_path, data)
    network.compile(quiet=True)
    box = network.get_placement_set("in_box").load_positions()
    assert len(box) == 300
    assert np.all(box >= [120, 10, 20]) and np.all(box < [170, 40, 80])
    slab = network.get_placement_set("in_slab").load_positions()
    assert len(slab) == round(1e-4 * 50 * 100 * 100)
    assert slab[:, 0].min() >= 250 and slab[:, 0].max() < 300
    assert network.partitions["box"].volume() == 50 * 30 * 60
