"""``strategy: poisson_disk``: no two cells closer than the sum of their radii, across
chunk borders too; exact counts; the same network at any rank count and after a
resume; a density that cannot be packed is refused up front."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

from neuroscaffold import Configuration, Network
from neuroscaffold.exceptions import ConfigurationError, PackingError, WorkflowError
from neuroscaffold.placement._disk import sample_disk, sphere_volume
from neuroscaffold.storage import HDF5Storage, canonical_contents
from tests._mpi import base_env, mpi_matrix, run_script


def closest_violation(points: np.ndarray, radii: np.ndarray) -> float:
    """The largest amount by which two points are closer than their radii' sum (<= 0
    when none is)."""
    if len(points) < 2:
        return 0.0
    pairs = cKDTree(points).query_pairs(2 * radii.max(), output_type="ndarray")
    if not len(pairs):
        return 0.0
    gaps = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)
    return float(np.max(radii[pairs[:, 0]] + radii[pairs[:, 1]] - gaps))


@settings(max_examples=60, deadline=None, derandomize=True)  # the same examples every run
@given(st.lists(st.tuples(st.floats(0.5, 4.0), st.integers(0, 60)), min_size=1, max_size=3),
       st.integers(0, 2**31), st.integers(0, 40))
def test_sampled_points_keep_their_radii_apart_and_from_the_fixed_ones(wanted, seed, n_fixed):
    # within what the strategy lets through (a volume fraction of 0.3), with room for
    # the fixed points and the boxes' small size
    assume(sum(n * sphere_volume(r) for r, n in wanted) <= 0.25 * 50 * 30 * 20)
    rng = np.random.default_rng(seed)
    boxes = [(np.zeros(3), np.array([40.0, 30.0, 20.0]), 40 * 30 * 20.0),
             (np.array([40.0, 0, 0]), np.array([50.0, 30.0, 20.0]), 10 * 30 * 20.0)]
    fixed_points = rng.uniform([-5, -5, -5], [55, 35, 25], size=(n_fixed, 3))
    fixed_points = fixed_points[np.any((fixed_points < 0) | (fixed_points > [50, 30, 20]), axis=1)]
    fixed_points = fixed_points[closest_apart(fixed_points, 3.0)]
    found = sample_disk(rng, boxes, wanted, [(1.5, fixed_points)])
    assert [len(p) for p in found] == [n for _, n in wanted]  # exact counts
    points = np.concatenate([*found, fixed_points])
    radii = np.concatenate([np.full(n, r) for r, n in wanted] + [np.full(len(fixed_points), 1.5)])
    assert closest_violation(points, radii) <= 1e-9
    for p in found:
        assert np.all((p >= 0) & (p <= [50, 30, 20]))


def closest_apart(points: np.ndarray, distance: float) -> np.ndarray:
    keep = np.ones(len(points), dtype=bool)
    for i, j in cKDTree(points).query_pairs(distance):
        keep[max(i, j)] = False
    return keep


def test_a_type_that_does_not_fit_raises_with_the_count_reached():
    box = [(np.zeros(3), np.full(3, 10.0), 1000.0)]
    with pytest.raises(PackingError, match=r"only \d+ of 100 cells of radius 2 µm fit"):
        sample_disk(np.random.default_rng(0), box, [(2.0, 100)])


def model(strategy: str = "poisson_disk", chunk_size=20, density=3e-3, **extra) -> dict:
    return {
        "name": "disk", "seed": 7,
        "network": {"x": 80, "y": 40, "z": 60, "chunk_size": chunk_size},
        "partitions": {"low": {"type": "layer", "origin": 0, "thickness": 25},
                       "high": {"type": "layer", "origin": 20, "thickness": 20}},
        "cell_types": {"small": {"radius": 2.0, "density": density},
                       "big": {"radius": 3.5, "density": 1e-3}},
        "placement": {"disk": {"strategy": strategy, "cell_types": ["small", "big"],
                               "partitions": ["low", "high"], **extra}},
    }


def check_network(path) -> dict:
    storage = HDF5Storage(path)
    small, big = storage.load_positions("small"), storage.load_positions("big")
    points = np.concatenate([small, big])
    radii = np.r_[np.full(len(small), 2.0), np.full(len(big), 3.5)]
    assert closest_violation(points, radii) <= 1e-9, "two cells overlap"
    return {"small": len(small), "big": len(big)}


def test_cells_never_overlap_across_chunk_borders_and_counts_are_exact(tmp_path):
    network = Network(Configuration(model()), tmp_path / "net.hdf5")
    network.compile(quiet=True)
    counts = check_network(tmp_path / "net.hdf5")
    # the union of the two overlapping layers (0..40 along y) at each density, once
    assert counts == {"small": round(3e-3 * 80 * 40 * 60), "big": round(1e-3 * 80 * 40 * 60)}


@mpi_matrix(1, 2, 3, timeout=60)
def test_no_overlap_at_any_rank_count(world):
    path = world.tmp_path / "net.hdf5"
    Network(Configuration(model()), path).compile(quiet=True)
    if world.main:
        assert check_network(path) == {"small": 576, "big": 192}


COMPILE_SCRIPT = """
import json, sys
from neuroscaffold.cli import main
from neuroscaffold.services import MPI
config, out = sys.argv[1], sys.argv[2]
code = main(["compile", config, "-o", out, "-q", *sys.argv[3:]])
if MPI.get_rank() == 0:
    print("exit", code, flush=True)
"""


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("disk-ref")
    config = folder / "disk.json"
    config.write_text(json.dumps(model(chunk_size=20)))
    out = folder / "ref.hdf5"
    Network(Configuration.from_file(config), out).compile(quiet=True)
    return config, canonical_contents(out)


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_the_same_network_at_any_rank_count(serial_reference, tmp_path, ranks):
    config, expected = serial_reference
    out = tmp_path / "net.hdf5"
    result = run_script(COMPILE_SCRIPT, ranks, args=[str(config), str(out)], timeout=120,
                        tmp_path=tmp_path).check()
    assert result.lines("exit") == ["0"], result.describe()
    assert canonical_contents(out) == expected


def failing_model() -> dict:
    data = model()
    data["placement"]["disk"]["strategy"] = "tests.placement._failing.FailingPoissonDisk"
    return data


def test_a_resumed_compile_gives_the_same_network_serially(serial_reference, tmp_path,
                                                           monkeypatch):
    _, expected = serial_reference
    marker = tmp_path / "fail"
    marker.touch()
    monkeypatch.setenv("NS_FAIL_MARKER", str(marker))
    out = tmp_path / "net.hdf5"
    with pytest.raises(WorkflowError, match="failing on purpose"):
        Network(Configuration(failing_model()), out).compile(quiet=True)
    marker.unlink()
    Network(Configuration(failing_model()), out).compile(resume=True, quiet=True)
    assert _placement(canonical_contents(out)) == _placement(expected)


@pytest.mark.mpi
@pytest.mark.parametrize("first, then", [(2, 3), (3, 2)])
def test_a_resumed_compile_gives_the_same_network_at_other_rank_counts(
        serial_reference, tmp_path, first, then):
    _, expected = serial_reference
    config = tmp_path / "failing.json"
    config.write_text(json.dumps(failing_model()))
    marker = tmp_path / "fail"
    marker.touch()
    out = tmp_path / "net.hdf5"
    env = base_env(NS_FAIL_MARKER=str(marker))
    failed = run_script(COMPILE_SCRIPT, first, args=[str(config), str(out)], timeout=120,
                        tmp_path=tmp_path, env=env)
    assert failed.lines("exit") == ["1"] and "failing on purpose" in failed.stderr, \
        failed.describe()
    marker.unlink()
    resumed = run_script(COMPILE_SCRIPT, then, args=[str(config), str(out), "--resume"],
                         timeout=120, tmp_path=tmp_path, env=env).check()
    assert resumed.lines("exit") == ["0"], resumed.describe()
    assert _placement(canonical_contents(out)) == _placement(expected)


def _placement(contents: list[tuple]) -> list[tuple]:
    """The stored cells (the configuration differs: the failing strategy's name)."""
    return [entry for entry in contents if "placement" in str(entry[0]) and "config" not in str(entry[0])]


def test_a_density_that_cannot_be_packed_is_refused_naming_the_largest():
    with pytest.raises(ConfigurationError) as caught:
        Configuration(model(density=0.011))
    message = str(caught.value)
    assert message.startswith("placement.disk: cell type 'small' at 0.011 cells/µm³ cannot "
                              "be packed at radius 2 µm"), message
    largest = float(message.rsplit("largest packable density is ", 1)[1].split()[0])
    Configuration(model(density=largest * 0.999))  # just below: accepted
    with pytest.raises(ConfigurationError):
        Configuration(model(density=largest * 1.01))


def test_chunks_smaller_than_twice_the_largest_radius_are_placed_in_blocks(tmp_path):
    # 5 µm chunks, 7 µm halo: each job places a block of 2 x 2 x 2 chunks
    network = Network(Configuration(model(chunk_size=5)), tmp_path / "net.hdf5")
    assert network.placement["disk"].region_size() == (10.0, 10.0, 10.0)
    from neuroscaffold._writing import planned_jobs

    assert list(planned_jobs(network, set()).values()) == [8 * 4 * 6]  # jobs, not chunks
    network.compile(quiet=True)
    assert check_network(tmp_path / "net.hdf5") == {"small": 576, "big": 192}


def test_the_example_granule_density_is_packable():
    here = os.path.dirname(__file__)
    configuration = Configuration.from_file(os.path.join(here, "..", "..", "examples",
                                                         "cerebellum.yaml"))
    assert type(configuration.placement["granular"]).__name__ == "PoissonDiskPlacement"
