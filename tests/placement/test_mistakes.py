"""Mistakes that used to give a silently wrong network (exit 0), each now caught, on
the command line serially and at -n 2 and -n 3: a place() that returns its positions,
a strategy drawing from np.random, a bug repeated in every chunk (grouped into one
line), and --resume with nothing to resume."""

from __future__ import annotations

import json
import warnings

import pytest

from neuroscaffold import Configuration, Network
from neuroscaffold.exceptions import NeuroscaffoldWarning, WorkflowError
from tests._mpi import run_script
from tests.placement.test_poisson_disk import COMPILE_SCRIPT

RANKS = [pytest.param(None, id="serial"),
         pytest.param(2, id="n2", marks=pytest.mark.mpi),
         pytest.param(3, id="n3", marks=pytest.mark.mpi)]


def model(strategy: str) -> dict:
    return {
        "name": "mistake", "seed": 1,
        "network": {"x": 300, "y": 100, "z": 300, "chunk_size": 100},
        "partitions": {"layer": {"type": "layer", "thickness": 100}},
        "cell_types": {"a": {"radius": 1.0, "density": 1e-5}},
        "placement": {"p": {"strategy": f"tests.placement._mistakes.{strategy}",
                            "cell_types": ["a"], "partitions": ["layer"]}},
    }


def compile_cli(tmp_path, strategy: str, ranks, *options: str, quiet: bool = True):
    config = tmp_path / "model.json"
    config.write_text(json.dumps(model(strategy)))
    script = COMPILE_SCRIPT if quiet else COMPILE_SCRIPT.replace('"-q", ', "")
    return run_script(script, ranks, args=[str(config), str(tmp_path / "net.hdf5"),
                                                   *options], timeout=120, tmp_path=tmp_path)


@pytest.mark.parametrize("ranks", RANKS)
def test_a_place_that_returns_its_positions_is_an_error_saying_what_to_call(tmp_path, ranks):
    result = compile_cli(tmp_path, "ReturnsPositions", ranks)
    assert result.lines("exit") == ["1"], result.describe()
    assert ("StrategyError: placement 'p' (ReturnsPositions): place() returned a ndarray of "
            "shape (5, 3) instead of storing it; call self.place_cells(cell_type, positions, "
            "chunk) for each cell type in place(), which returns nothing") in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("ranks", RANKS)
def test_drawing_from_numpy_s_global_generator_warns_once_per_rank(tmp_path, ranks):
    result = compile_cli(tmp_path, "GlobalRandom", ranks)
    assert result.lines("exit") == ["0"], result.describe()
    warned = [line for line in result.stderr.splitlines() if "global random generator" in line]
    assert 1 <= len(warned) <= (ranks or 1), result.describe()
    assert warned[0] == (
        "neuroscaffold: warning: placement 'p' (GlobalRandom) draws from numpy's global random "
        "generator (np.random); its cells or connections then depend on which jobs each rank "
        "ran before, so the network differs with the rank count: draw from self.rng() "
        "instead (seeded per chunk)")


def test_self_rng_does_not_warn(tmp_path):
    data = model("GlobalRandom")
    data["placement"]["p"]["strategy"] = "random"
    with warnings.catch_warnings():
        warnings.simplefilter("error", NeuroscaffoldWarning)
        Network(Configuration(data), tmp_path / "net.hdf5").compile(quiet=True)


@pytest.mark.parametrize("ranks", RANKS)
def test_a_bug_in_every_chunk_is_one_line_with_its_count_and_first_job(tmp_path, ranks):
    result = compile_cli(tmp_path, "BugInEveryChunk", ranks, quiet=False)
    assert result.lines("exit") == ["1"], result.describe()
    lines = result.stderr.splitlines()
    assert sum("my bug" in line for line in lines) == 2, result.describe()  # live + summary
    assert "8 more jobs failed with an error written above" in lines, result.describe()
    summary = lines[lines.index("neuroscaffold: error: 9 of 9 jobs failed:") + 1]
    assert summary.startswith("  9 jobs failed with one error, the first: job 'place p "), summary
    assert summary.endswith(": ValueError: my bug (_mistakes.py:33)"), summary


def test_different_errors_stay_apart(tmp_path):
    from neuroscaffold.cli._errors import format_error

    errors = [ValueError("a"), ValueError("a"), KeyError("b")]
    message = "3 of 3 jobs failed:\n" + "\n".join(
        f"  job 'j{i}' failed on rank 0: {type(e).__name__}: {e}" for i, e in enumerate(errors))
    text = format_error(WorkflowError(message, errors))
    assert text.splitlines() == [
        "3 of 3 jobs failed:",
        "  2 jobs failed with one error, the first: job 'j0' failed on rank 0: ValueError: a",
        "  job 'j2' failed on rank 0: KeyError: 'b'"]


@pytest.mark.parametrize("ranks", RANKS)
def test_resume_with_nothing_there_says_so_and_compiles(tmp_path, ranks):
    result = compile_cli(tmp_path, "GlobalRandom", ranks, "--resume")
    assert result.lines("exit") == ["0"], result.describe()
    said = [line for line in result.stderr.splitlines() if "nothing to resume" in line]
    assert said == [f"neuroscaffold: warning: {tmp_path / 'net.hdf5'}: nothing to resume (no "
                    "unfinished compile there): compiling it from the start"], result.describe()
