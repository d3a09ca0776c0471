"""Strategy output is checked before it is stored: placement positions (finite, inside
the job's chunk) and connect() pairs (integer, (m, 2), in range). Errors name the
strategy, the chunk and the row, and stay short."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from neuroscaffold import Configuration, Network, WorkflowError
from neuroscaffold.connectivity._checks import check_pairs
from neuroscaffold.placement import Chunk
from neuroscaffold.placement._checks import check_positions
from tests._mpi import run_script
from tests.config._models import two_layers

CHUNK = Chunk((1, 0, 0), (100.0, 100.0, 100.0))


class _Strategy:
    name = "mine"


def test_positions_must_be_finite_and_the_error_names_the_row_and_stays_short():
    positions = np.random.default_rng(0).uniform([100, 0, 0], [200, 100, 100], (100_000, 3))
    positions[61_234, 2] = np.nan
    with pytest.raises(ValueError) as info:
        check_positions(_Strategy(), CHUNK, "granule", positions)
    message = str(info.value)
    assert message.startswith("placement 'mine' (_Strategy), cell type 'granule', chunk (1, 0, 0): "
                              "1 of 100,000 positions are not finite; the first is row 61234: [")
    assert "nan]" in message and len(message) < 300


def test_positions_must_lie_in_the_chunk_give_or_take_a_rounding():
    inside = np.array([[100.0, 0.0, 0.0], [200.0 + 1e-10, 100.0, 50.0]])
    assert check_positions(_Strategy(), CHUNK, "a", inside).dtype == np.float64
    outside = np.vstack([inside, [[150.0, 0.0, 100.5]]])
    with pytest.raises(ValueError, match=re.escape(
            "1 of 3 positions lie outside the chunk [100, 0, 0] to [200, 100, 100]; the "
            "first is row 2: [150, 0, 100.5]")):
        check_positions(_Strategy(), CHUNK, "a", outside)
    with pytest.raises(ValueError, match=re.escape("positions must have shape (n, 3), got (4, 2)")):
        check_positions(_Strategy(), CHUNK, "a", np.zeros((4, 2)))
    assert check_positions(_Strategy(), CHUNK, "a", []).shape == (0, 3)


@pytest.mark.parametrize("found, message", [
    (np.array([[0, 1], [-1, 0]]), "returned 1 of 2 pre indices out of range 0..9 (it has 10 "
                                  "presynaptic cells); the first is row 1: [-1, 0]"),
    (np.array([[0, 1], [2, 5]]), "returned 1 of 2 post indices out of range 0..4 (it has 5 "
                                 "postsynaptic cells); the first is row 1: [2, 5]"),
    (np.zeros((4, 3), dtype=int), "must return an (m, 2) array of (pre, post) index pairs, "
                                  "got shape (4, 3)"),
    (np.zeros(6, dtype=int), "got shape (6,)"),
    (np.array([[0.5, 1.0]]), "must return integer indices, got dtype float64 (first row: "
                             "[0.5, 1.0])"),
    (None, "returned None"),
])
def test_pairs_are_integer_m_by_2_and_in_range(found, message):
    with pytest.raises(ValueError) as info:
        check_pairs(_Strategy(), CHUNK, found, 10, 5)
    assert str(info.value).startswith("connectivity 'mine' (_Strategy), chunk (1, 0, 0): connect()")
    assert message in str(info.value)


def test_good_pairs_pass_unchanged_and_empty_means_none():
    pairs = check_pairs(_Strategy(), CHUNK, [[9, 4], [0, 0]], 10, 5)
    assert pairs.dtype == np.int64 and pairs.tolist() == [[9, 4], [0, 0]]
    for empty in ((), [], np.empty((0, 2), dtype=np.int32), np.empty(0)):
        assert check_pairs(_Strategy(), CHUNK, empty, 10, 5).shape == (0, 2)


def _with(placement=None, connectivity=None) -> dict:
    data = two_layers()
    if placement:
        data["placement"]["place_a"].update(placement)
    if connectivity is not None:
        data["connectivity"] = connectivity
    return data


@pytest.mark.parametrize("placement, expected", [
    ({"strategy": "tests._user_strategies.NaNPlacement", "bad_row": 7},
     r"placement 'place_a' \(NaNPlacement\), cell type 'a', chunk \(\d, 0, \d\): 1 of \d+ "
     r"positions are not finite; the first is row 7: \[[-0-9.e]+, nan, [-0-9.e]+\]"),
    ({"strategy": "tests._user_strategies.WrongChunk"},
     r"placement 'place_a' \(WrongChunk\), cell type 'a', chunk \(\d, 0, \d\): 5 of 5 "
     r"positions lie outside the chunk .*; the first is row 0: \[.*\]"),
    ({"strategy": "tests._user_strategies.OutsidePlacement"},
     r"placement 'place_a' \(OutsidePlacement\), cell type 'a', chunk \(\d, 0, \d\): 1 of \d+ "
     r"positions lie outside the chunk .*; the first is row 2: \[.*\]"),
])
def test_a_compile_refuses_bad_positions_before_storing_them(tmp_path, placement, expected):
    network = Network(Configuration(_with(placement)), tmp_path / "n.hdf5")
    with pytest.raises(WorkflowError) as info:
        network.compile(quiet=True)
    assert len(info.value.exceptions) == 4  # every chunk of place_a, nothing else ran
    for error in info.value.exceptions:
        assert re.fullmatch(expected, str(error)), str(error)
    progress = network.storage.progress()  # unfinished: nothing of place_a was stored
    assert progress.planned["{root}.placement.place_a"] == 4
    assert progress.done.get("{root}.placement.place_a", 0) == 0


@pytest.mark.parametrize("kind, expected", [
    ("minus_one", "pre indices out of range"),
    ("three_columns", "got shape (4, 3)"),
    ("floats", "must return integer indices, got dtype float64"),
    ("too_big", "post indices out of range"),
])
def test_a_compile_refuses_bad_pairs(tmp_path, kind, expected):
    bad = {"bad": {"strategy": "tests._user_strategies.BadPairs", "kind": kind,
                   "presynaptic": "a", "postsynaptic": "b"}}
    network = Network(Configuration(_with(connectivity=bad)), tmp_path / "n.hdf5")
    with pytest.raises(WorkflowError) as info:
        network.compile(quiet=True)
    for error in info.value.exceptions:
        assert str(error).startswith("connectivity 'bad' (BadPairs), chunk (")
        assert expected in str(error)


def test_good_custom_pairs_are_stored(tmp_path):
    good = {"good": {"strategy": "tests._user_strategies.BadPairs", "kind": "good",
                     "presynaptic": "a", "postsynaptic": "b"}}
    network = Network(Configuration(_with(connectivity=good)), tmp_path / "n.hdf5")
    network.compile(quiet=True)
    assert len(network.get_connectivity_set("good").load_connections()) == 4  # one per chunk


STRATEGIES = '''
import numpy as np
from neuroscaffold import PlacementStrategy, config

@config.node
class NaNPlacement(PlacementStrategy):
    def place(self, chunk, indicators):
        for name, indicator in indicators.items():
            positions = self.rng().uniform(chunk.ldc, chunk.mdc, size=(indicator.guess(chunk), 3))
            positions[5, 0] = np.nan
            self.place_cells(name, positions, chunk)  # line 11
'''

CLI = "import sys; from neuroscaffold.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.mpi
def test_under_mpiexec_the_error_names_strategy_chunk_row_and_user_line(tmp_path):
    (tmp_path / "nanstrategies.py").write_text(STRATEGIES)
    data = _with({"strategy": "nanstrategies.NaNPlacement"})
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(data))
    result = run_script(CLI, n=2, timeout=60, tmp_path=tmp_path,
                        args=["compile", str(tmp_path / "net.yaml"), "-o",
                              str(tmp_path / "n.hdf5"), "-q"])
    assert result.returncode == 1, result.describe()
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0] == "neuroscaffold: error: 4 of 12 jobs failed, 4 jobs cancelled:", result.describe()
    for line in lines[1:5]:
        assert re.fullmatch(
            r"  job 'place place_a \(\d, 0, \d\)' failed on rank [01]: ValueError: placement "
            r"'place_a' \(NaNPlacement\), cell type 'a', chunk \(\d, 0, \d\): 1 of \d+ positions "
            r"are not finite; the first is row 5: \[nan, [-0-9.e]+, [-0-9.e]+\] "
            r"\(nanstrategies\.py:11\)", line), line
    assert {"rank 0", "rank 1"} <= set(re.findall(r"rank \d", result.stderr)), result.describe()
