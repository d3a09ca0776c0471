"""Connectivity: distance-based and all-to-all pairs, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from neuroscaffold import ConnectionStrategy, Configuration, Network, config
from tests.config._models import two_layers


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Network:
    network = Network(Configuration(two_layers()), tmp_path_factory.mktemp("conn") / "net.hdf5")
    network.compile(quiet=True)
    return network


def _close_pairs(pre: np.ndarray, post: np.ndarray, radius: float) -> set:
    distance = np.linalg.norm(pre[:, None, :] - post[None, :, :], axis=2)
    return set(map(tuple, np.argwhere(distance <= radius)))


def _pairs(network, name) -> np.ndarray:
    return np.asarray(network.get_connectivity_set(name))


def test_distance_connects_exactly_the_pairs_within_the_radius(compiled):
    a = compiled.get_placement_set("a").load_positions()
    expected = {(i, j) for i, j in _close_pairs(a, a, 40) if i != j}  # no autapses
    pairs = _pairs(compiled, "a_to_a")
    assert len(pairs) == len(expected) > 0
    assert set(map(tuple, pairs)) == expected


def test_distance_with_a_probability_keeps_a_reproducible_subset(compiled, tmp_path):
    a = compiled.get_placement_set("a").load_positions()
    b = compiled.get_placement_set("b").load_positions()
    candidates = _close_pairs(a, b, 70)
    kept = set(map(tuple, _pairs(compiled, "a_to_b")))
    assert kept <= candidates
    assert 0.4 < len(kept) / len(candidates) < 0.6
    again = Network(Configuration(two_layers()), tmp_path / "again.hdf5")
    again.compile(quiet=True)
    assert np.array_equal(_pairs(again, "a_to_b"), _pairs(compiled, "a_to_b"))


def test_all_to_all_connects_every_pair(compiled):
    pairs = _pairs(compiled, "c_to_b")
    assert len(pairs) == 32 * 90
    assert set(map(tuple, pairs)) == {(i, j) for i in range(32) for j in range(90)}
    connectivity_set = compiled.get_connectivity_set("c_to_b")
    assert (connectivity_set.presynaptic, connectivity_set.postsynaptic) == ("c", "b")


def test_pairs_are_stored_per_postsynaptic_chunk_in_order(compiled):
    pairs = _pairs(compiled, "a_to_a")
    chunk_of_post = np.floor(compiled.get_placement_set("a").load_positions()[pairs[:, 1]] / 100)
    keys = [tuple(c) for c in chunk_of_post.astype(int)]
    assert keys == sorted(keys)


@config.node
class NearestOnly(ConnectionStrategy):
    """Each postsynaptic cell to the presynaptic cell nearest to it (a user strategy)."""

    def connect(self, pre, post):
        distance = np.linalg.norm(pre.positions[:, None] - post.positions[None], axis=2)
        return np.column_stack([distance.argmin(axis=0), np.arange(len(post))])


def test_user_strategies_return_local_pairs_that_become_global(tmp_path):
    data = two_layers()
    data["connectivity"] = {
        "nearest": {"strategy": f"{__name__}.NearestOnly", "presynaptic": "c",
                    "postsynaptic": "a", "autapses": True},
    }
    network = Network(Configuration(data), tmp_path / "net.hdf5")
    network.compile(quiet=True)
    a = network.get_placement_set("a").load_positions()
    c = network.get_placement_set("c").load_positions()
    pairs = _pairs(network, "nearest")
    assert len(pairs) == len(a)
    nearest = np.linalg.norm(c[:, None] - a[None], axis=2).argmin(axis=0)
    assert dict(zip(pairs[:, 1], pairs[:, 0])) == dict(enumerate(nearest))


def test_autapses_can_be_allowed(tmp_path):
    data = two_layers()
    data["connectivity"] = {"self": {"strategy": "distance", "presynaptic": "a",
                                     "postsynaptic": "a", "radius": 1e-6, "autapses": True}}
    network = Network(Configuration(data), tmp_path / "net.hdf5")
    network.compile(quiet=True)
    pairs = _pairs(network, "self")
    assert pairs.tolist() == [[i, i] for i in range(400)]


@pytest.mark.parametrize("kernel", [{"type": "gaussian", "sigma": 20, "peak": 0.8},
                                    {"type": "exponential", "scale": 15, "peak": 0.6}])
def test_a_distance_kernel_connects_each_pair_with_its_chance(tmp_path, kernel):
    from scipy import stats

    data = two_layers()
    data["connectivity"] = {"a_to_a": {"strategy": "distance", "presynaptic": "a",
                                       "postsynaptic": "a", "radius": 60, "kernel": kernel}}
    data["cell_types"]["a"]["density"] = 4e-4
    network = Network(Configuration(data), tmp_path / "k.hdf5")
    network.compile(quiet=True)
    a = network.get_placement_set("a").load_positions()
    distance = np.linalg.norm(a[:, None, :] - a[None, :, :], axis=2)
    pre, post = np.nonzero((distance <= 60) & ~np.eye(len(a), dtype=bool))
    d = distance[pre, post]
    if kernel["type"] == "gaussian":
        chance = kernel["peak"] * np.exp(-d ** 2 / (2 * kernel["sigma"] ** 2))
    else:
        chance = kernel["peak"] * np.exp(-d / kernel["scale"])
    stored = _pairs(network, "a_to_a")
    connected = np.zeros(distance.shape, dtype=bool)
    connected[stored[:, 0], stored[:, 1]] = True
    assert not connected[distance > 60].any()
    hit = connected[pre, post]
    # binned chi-square of the connected pairs per distance bin against the sum of
    # their chances (each candidate an independent Bernoulli draw); fixed seed
    bins = np.digitize(d, np.linspace(0, 60, 13)[1:-1])
    observed = np.bincount(bins, hit, 12)
    expected = np.bincount(bins, chance, 12)
    variance = np.bincount(bins, chance * (1 - chance), 12)
    chi2 = float(np.sum((observed - expected) ** 2 / variance))
    assert chi2 < stats.chi2.ppf(0.999, 12), (observed, expected)
    assert hit.sum() > 1000
    # and the plan expects what it makes
    from neuroscaffold.plan import build_plan
    assert build_plan(Configuration(data)).connections == pytest.approx(len(stored), rel=0.2)
