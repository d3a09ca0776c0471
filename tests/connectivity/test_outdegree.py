"""fixed_outdegree: exactly N partners per presynaptic cell, within the radius, without
autapses or multapses unless allowed, its pairs stored in the postsynaptic cells'
chunks; the same network at 1 to 4 ranks; the plan knows its size. (Its shortage rule,
shared with fixed_indegree, is tested in test_degree_rules.py; resumes in
test_resume.py.)"""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from neuroscaffold import Configuration, Network
from neuroscaffold.chunks import Chunk
from neuroscaffold.connectivity import CellSelection
from neuroscaffold.connectivity._degree import _draw
from neuroscaffold.exceptions import ConfigurationError, ShortfallError
from neuroscaffold.storage import canonical_contents
from tests._mpi import run_script
from tests.config._models import two_layers

CLI = "import sys; from neuroscaffold.cli import main; sys.exit(main(sys.argv[1:]))"


def _model(**rule) -> dict:
    data = two_layers()
    data["connectivity"] = {"a_to_a": {"strategy": "fixed_outdegree", "presynaptic": "a",
                                       "postsynaptic": "a", **rule},
                            "c_to_a": {"strategy": "fixed_outdegree", "presynaptic": "c",
                                       "postsynaptic": "a", "outdegree": 7},
                            "a_to_b": {"strategy": "fixed_outdegree", "presynaptic": "a",
                                       "postsynaptic": "b", "outdegree": 3, "radius": 150}}
    return data


def _compile(data: dict, path) -> Network:
    network = Network(Configuration(data), path)
    network.compile(quiet=True)
    return network


def _degrees_are_exact(network, name: str, n: int, radius=None, multapses=False) -> None:
    rule = network.configuration.connectivity[name]
    pre = network.get_placement_set(rule.presynaptic.name).load_positions()
    post = network.get_placement_set(rule.postsynaptic.name).load_positions()
    pairs = np.asarray(network.get_connectivity_set(name))
    assert np.array_equal(np.bincount(pairs[:, 0], minlength=len(pre)), np.full(len(pre), n))
    if not multapses:
        assert len(np.unique(pairs, axis=0)) == len(pairs)
    if radius is not None:
        assert np.linalg.norm(pre[pairs[:, 0]] - post[pairs[:, 1]], axis=1).max() <= radius


@pytest.mark.parametrize("radius", [None, 60])
def test_every_presynaptic_cell_gets_exactly_n_distinct_partners(tmp_path, radius):
    rule = {"outdegree": 12} | ({"radius": radius} if radius else {})
    network = _compile(_model(**rule), tmp_path / "n.hdf5")
    _degrees_are_exact(network, "a_to_a", 12, radius)
    pairs = np.asarray(network.get_connectivity_set("a_to_a"))
    assert not np.any(pairs[:, 0] == pairs[:, 1])  # no autapses
    _degrees_are_exact(network, "c_to_a", 7)
    _degrees_are_exact(network, "a_to_b", 3, 150)


def test_multapses_and_autapses_when_allowed(tmp_path):
    network = _compile(_model(outdegree=300, multapses=True, autapses=True, radius=30),
                       tmp_path / "m.hdf5")
    _degrees_are_exact(network, "a_to_a", 300, 30, multapses=True)
    pairs = np.asarray(network.get_connectivity_set("a_to_a"))
    assert len(np.unique(pairs, axis=0)) < len(pairs)
    assert np.any(pairs[:, 0] == pairs[:, 1])


def test_pairs_are_stored_with_the_chunk_of_their_postsynaptic_cell(tmp_path):
    # a job per presynaptic chunk writes into the blocks of other jobs' chunks: reading
    # a chunk's incoming pairs (as a simulator's rank does) finds all of them
    network = _compile(_model(outdegree=12, radius=60), tmp_path / "n.hdf5")
    for name, post in (("a_to_a", "a"), ("c_to_a", "a"), ("a_to_b", "b")):
        connections = network.get_connectivity_set(name)
        pairs = np.asarray(connections)
        ranges = network.get_placement_set(post).chunk_ranges()
        found = 0
        for chunk, (start, stop) in ranges.items():
            incoming = connections.load_incoming(chunks=[chunk])
            assert np.all((incoming[:, 1] >= start) & (incoming[:, 1] < stop)), (name, chunk)
            expected = pairs[(pairs[:, 1] >= start) & (pairs[:, 1] < stop)]
            assert sorted(map(tuple, incoming)) == sorted(map(tuple, expected))
            found += len(incoming)
        assert found == len(pairs)


@pytest.mark.parametrize("patch, message", [
    ({"outdegree": 0}, "connectivity.a_to_a.outdegree: expected an integer >= 1, got 0"),
    ({"radius": -1}, "connectivity.a_to_a.radius: expected a number > 0, got -1"),
    ({"multapses": "x"}, "connectivity.a_to_a.multapses: expected true or false, got 'x'"),
    ({"outdegree": None}, "connectivity.a_to_a: missing required key 'outdegree'"),
    ({"outdgree": 3}, "connectivity.a_to_a: unknown key 'outdgree' (did you mean 'outdegree'?)"),
])
def test_bad_keys_are_named_by_their_path(patch, message):
    data = _model(outdegree=3)
    rule = data["connectivity"]["a_to_a"]
    rule.update(patch)
    for key in [key for key, value in patch.items() if value is None]:
        del rule[key]
    with pytest.raises(ConfigurationError) as caught:
        Configuration(data)
    assert str(caught.value) == message


def test_the_plan_estimates_what_is_stored(tmp_path, capsys):
    from neuroscaffold.cli import main

    data = _model(outdegree=12, radius=60)
    config = tmp_path / "net.yaml"
    config.write_text(yaml.safe_dump(data))
    assert main(["compile", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    network = _compile(data, tmp_path / "n.hdf5")
    for name in data["connectivity"]:
        (line,) = [line for line in out.splitlines() if line.split()[:2] == [name, "fixed_outdegree"]]
        estimate = int(re.search(r"~([\d,]+) connections", line)[1].replace(",", ""))
        assert estimate == pytest.approx(len(network.get_connectivity_set(name)), rel=0.2), line


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_the_same_network_at_any_rank_count(tmp_path, ranks):
    from neuroscaffold.cli import main

    config = tmp_path / "net.yaml"
    config.write_text(yaml.safe_dump(_model(outdegree=12, radius=60)))
    assert main(["compile", str(config), "-o", str(tmp_path / "serial.hdf5"), "-q"]) == 0
    out = tmp_path / "mpi.hdf5"
    run_script(CLI, n=ranks, timeout=110, tmp_path=tmp_path,
               args=["compile", str(config), "-o", str(out), "-q"]).check()
    assert canonical_contents(out) == canonical_contents(tmp_path / "serial.hdf5")


def test_a_set_written_by_thousands_of_jobs_keeps_their_tags(tmp_path):
    # each job tags its blocks with its chunk; 5,000 tags outgrow an HDF5 attribute
    # (its 64 KiB object header), so the file keeps them in a dataset
    from neuroscaffold.storage._blocks import Block, BlockTable
    from neuroscaffold.storage._layout import NetworkFile, create_network_file

    blocks = [Block((i % 7, 0, 0), f"{i}_0_0", 0, "", 0) for i in range(5000)]
    table = BlockTable("connectivity", "out", blocks)
    path = tmp_path / "n.hdf5"
    create_network_file(path, "{}", {("connectivity", "out"): table},
                        {"out": {"presynaptic": "a", "postsynaptic": "b"}})
    with NetworkFile(path) as file:
        stored = file.table("connectivity", "out")
    assert [(b.chunk, b.strategy) for b in stored.blocks] == \
        [(b.chunk, b.strategy) for b in table.blocks]


# --- the draw itself, on cells made up here --------------------------------------------

def _selection(cell_type, positions: np.ndarray, size: float) -> CellSelection:
    """Cells as a job sees them: in placement set order (by chunk), indexed 0..n-1."""
    chunks = np.floor(positions / size).astype(np.int64)
    order = np.lexsort(chunks.T[::-1])
    return CellSelection(cell_type, positions[order], np.arange(len(positions)), chunks[order])


@settings(max_examples=80, deadline=None, derandomize=True)  # the same examples every run
@given(st.sampled_from(["fixed_outdegree", "fixed_indegree"]), st.integers(1, 50),
       st.integers(1, 50), st.integers(1, 6), st.one_of(st.none(), st.floats(20, 150)),
       st.booleans(), st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_drawn_partners_follow_the_rule_and_not_the_job_region(
        strategy, n_pre, n_post, n, radius, same, autapses, multapses, seed):
    out = strategy == "fixed_outdegree"
    data = _model(outdegree=n, autapses=autapses, multapses=multapses,
                  **({"radius": radius} if radius else {}))
    rule_data = data["connectivity"]["a_to_a"]
    if not out:
        rule_data.update(strategy=strategy, indegree=rule_data.pop("outdegree"))
    if not same:
        rule_data["postsynaptic"] = "b"
    rule = Configuration(data).connectivity["a_to_a"]
    rng = np.random.default_rng(seed)
    pre = _selection(rule.presynaptic, rng.uniform(0, 200, (n_pre, 3)), 100)
    post = pre if same else _selection(rule.postsynaptic, rng.uniform(0, 200, (n_post, 3)), 100)
    distance = np.linalg.norm(pre.positions[:, None] - post.positions[None], axis=2)
    allowed = distance <= radius if radius else np.ones_like(distance, dtype=bool)
    if same and not autapses:
        np.fill_diagonal(allowed, False)
    side = 0 if out else 1  # the column whose degree is fixed
    fixed = len(pre) if out else len(post)

    def connect(pre):
        with rule._job(Chunk((0, 0, 0), (200.0, 200.0, 200.0))):  # (indegree: its stream)
            return rule.connect(pre, post)

    short = allowed.sum(axis=1 - side) < (1 if multapses else n)
    if short.any():
        with pytest.raises(ShortfallError, match=rf"^{short.sum()} of {fixed} "
                           rf"{'pre' if out else 'post'}synaptic cells have"):
            connect(pre)
        return
    pairs = connect(pre)
    assert np.array_equal(np.bincount(pairs[:, side], minlength=fixed), np.full(fixed, n))
    assert allowed[pairs[:, 0], pairs[:, 1]].all()  # the radius, the autapses
    if not multapses:
        assert len(np.unique(pairs, axis=0)) == len(pairs)
    if not out:
        return
    # a job of one network chunk draws what a job of a larger region draws for its cells
    by_chunk = []
    for chunk in np.unique(pre.chunks, axis=0):
        mine = np.flatnonzero(np.all(pre.chunks == chunk, axis=1))
        found = connect(CellSelection(pre.cell_type, pre.positions[mine], pre.indices[mine],
                                      pre.chunks[mine]))
        by_chunk.append(np.column_stack([mine[found[:, 0]], found[:, 1]]))
    assert sorted(map(tuple, np.concatenate(by_chunk))) == sorted(map(tuple, pairs))


def test_the_partners_are_drawn_uniformly():
    # 3 of 10 candidates each for 6,000 cells: each candidate's share is 0.3, and the
    # 120 sets of partners are as frequent as one another (chi-square, a fixed seed)
    owner = np.repeat(np.arange(6000), 10)
    rows = _draw(owner, 3, False, np.random.default_rng(7))
    assert np.array_equal(np.bincount(owner[rows], minlength=6000), np.full(6000, 3))
    slot = rows % 10
    assert stats.chisquare(np.bincount(slot, minlength=10)).pvalue > 0.001
    drawn = slot.reshape(6000, 3) @ np.array([100, 10, 1])  # ascending within a cell
    sets = [a * 100 + b * 10 + c for a in range(10) for b in range(a + 1, 10)
            for c in range(b + 1, 10)]
    assert stats.chisquare(np.bincount(drawn, minlength=1000)[sets]).pvalue > 0.001
    assert rows.tolist() == sorted(rows.tolist())
