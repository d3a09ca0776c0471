"""fixed_indegree: exactly N partners per postsynaptic cell, within the radius, without
autapses or multapses unless allowed; a shortage fails in one line (the rule that
fixed_outdegree shares); the same network serially and under mpiexec."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from neuroscaffold import Configuration, Network
from neuroscaffold.exceptions import ShortfallError, WorkflowError
from tests._mpi import run_script
from tests.config._models import two_layers

CLI = "import sys; from neuroscaffold.cli import main; sys.exit(main(sys.argv[1:]))"


def _model(**rule) -> dict:
    data = two_layers()
    data["connectivity"] = {"a_to_a": {"strategy": "fixed_indegree", "presynaptic": "a",
                                       "postsynaptic": "a", **rule},
                            "b_to_a": {"strategy": "fixed_indegree", "presynaptic": "b",
                                       "postsynaptic": "a", "indegree": 7}}
    return data


def _compile(data: dict, path) -> Network:
    network = Network(Configuration(data), path)
    network.compile(quiet=True)
    return network


@pytest.mark.parametrize("radius", [None, 60])
def test_every_postsynaptic_cell_gets_exactly_n_distinct_partners(tmp_path, radius):
    rule = {"indegree": 12} | ({"radius": radius} if radius else {})
    network = _compile(_model(**rule), tmp_path / "n.hdf5")
    a = network.get_placement_set("a").load_positions()
    pairs = np.asarray(network.get_connectivity_set("a_to_a"))
    assert np.array_equal(np.bincount(pairs[:, 1], minlength=len(a)), np.full(len(a), 12))
    assert not np.any(pairs[:, 0] == pairs[:, 1])  # no autapses
    assert len(np.unique(pairs, axis=0)) == len(pairs)  # no multapses
    if radius:
        assert np.linalg.norm(a[pairs[:, 0]] - a[pairs[:, 1]], axis=1).max() <= radius
    other = np.asarray(network.get_connectivity_set("b_to_a"))
    assert np.array_equal(np.bincount(other[:, 1], minlength=len(a)), np.full(len(a), 7))


def test_multapses_and_autapses_when_allowed(tmp_path):
    network = _compile(_model(indegree=300, multapses=True, autapses=True, radius=30),
                       tmp_path / "m.hdf5")
    pairs = np.asarray(network.get_connectivity_set("a_to_a"))
    assert len(np.unique(pairs, axis=0)) < len(pairs)
    assert np.any(pairs[:, 0] == pairs[:, 1])


@pytest.mark.parametrize("strategy, degree, fixed, partners", [
    ("fixed_indegree", "indegree", "postsynaptic", "presynaptic"),
    ("fixed_outdegree", "outdegree", "presynaptic", "postsynaptic")])
def test_a_shortage_fails_in_one_line_naming_the_count(tmp_path, capsys, strategy, degree,
                                                       fixed, partners):
    # one rule for both: the job fails, naming how many of its cells were short
    from neuroscaffold.cli import main

    data = _model(**{degree: 50, "radius": 20})
    data["connectivity"]["a_to_a"]["strategy"] = strategy
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump(data))
    assert main(["compile", str(config), "-o", str(tmp_path / "s.hdf5"), "-q"]) == 1
    err = capsys.readouterr().err
    # (how many cells a chunk holds is a seeded draw: every cell of the chunk is short)
    assert re.search(rf"job 'connect a_to_a \(0, 0, 0\)' failed on rank 0: ShortfallError: "
                     rf"(\d+) of \1 {fixed} cells have fewer than {degree}=50 {partners} "
                     rf"cells within 20 µm \(the fewest: 0\); allow multapses, widen the "
                     rf"radius or lower {degree}\n", err), err


@pytest.mark.parametrize("strategy, fixed, partners", [
    ("fixed_indegree", "postsynaptic", "presynaptic"),
    ("fixed_outdegree", "presynaptic", "postsynaptic")])
def test_with_multapses_only_a_cell_without_any_candidate_is_short(tmp_path, strategy, fixed,
                                                                  partners):
    data = _model(radius=2, multapses=True)
    rule = data["connectivity"]["a_to_a"]
    rule["strategy"] = strategy
    rule["indegree" if strategy == "fixed_indegree" else "outdegree"] = 3
    with pytest.raises(WorkflowError) as caught:
        _compile(data, tmp_path / "n.hdf5")
    errors = [e for e in caught.value.exceptions if isinstance(e, ShortfallError)]
    assert errors, caught.value.exceptions
    assert re.fullmatch(rf"(\d[\d,]*) of (\d[\d,]*) {fixed} cells have no {partners} cell "
                        r"within 2 µm; widen the radius", str(errors[0])), str(errors[0])


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_the_same_network_at_any_rank_count(tmp_path, ranks):
    data = _model(indegree=12, radius=60)
    serial = _compile(data, tmp_path / "serial.hdf5")
    config = tmp_path / "net.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "mpi.hdf5"
    run_script(CLI, n=ranks, timeout=110, tmp_path=tmp_path,
               args=["compile", str(config), "-o", str(out), "-q"]).check()
    from neuroscaffold import from_storage

    parallel = from_storage(out)
    for name in data["connectivity"]:
        assert np.array_equal(np.asarray(serial.get_connectivity_set(name)),
                              np.asarray(parallel.get_connectivity_set(name)))
