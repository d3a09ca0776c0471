"""A compile interrupted (SIGINT, as Ctrl-C) inside the jobs of fixed_outdegree,
fixed_indegree or a distance kernel, then resumed, at the same or another rank count,
gives the file of an uninterrupted compile."""

from __future__ import annotations

import re

import pytest
import yaml

from neuroscaffold.storage import canonical_contents
from tests._mpi import base_env
from tests.config._models import two_layers
from tests.storage._crash import (INTERRUPTED, compile_cmd, finish, interrupted_lines, run,
                                  show, start)

RULES = "tests.connectivity._interrupting."
#: the last job of each set (every set's jobs run on the chunks of cell type a)
LAST = "1,0,1"


def _model() -> dict:
    data = two_layers()
    data["connectivity"] = {
        "out": {"strategy": RULES + "InterruptingOutdegree", "presynaptic": "a",
                "postsynaptic": "a", "outdegree": 6, "radius": 60},
        "in": {"strategy": RULES + "InterruptingIndegree", "presynaptic": "b",
               "postsynaptic": "a", "indegree": 4},
        "kernel": {"strategy": RULES + "InterruptingDistance", "presynaptic": "a",
                   "postsynaptic": "a", "radius": 60,
                   "kernel": {"type": "gaussian", "sigma": 25, "peak": 0.7}},
    }
    return data


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The model's configuration file and the contents of its uninterrupted compile."""
    folder = tmp_path_factory.mktemp("resume-reference")
    config = folder / "model.yaml"
    config.write_text(yaml.safe_dump(_model()))
    out = folder / "reference.hdf5"
    outcome = run(compile_cmd(config, out), timeout=120)
    assert outcome.returncode == 0, outcome.describe()
    return config, canonical_contents(out)


def _interrupt_then_resume(reference, tmp_path, target: str, first, then) -> str:
    config, expected = reference
    marker = tmp_path / "interrupt"
    marker.touch()
    out = tmp_path / "net.hdf5"
    env = base_env(NS_INTERRUPT_MARKER=str(marker), NS_INTERRUPT_SET=target,
                   NS_INTERRUPT_CHUNK=LAST)
    outcome = finish(start(compile_cmd(config, out, first), env), timeout=120)
    assert outcome.returncode == 130, outcome.describe()
    lines = interrupted_lines(outcome.stderr)
    assert len(lines) == 1 and INTERRUPTED.match(lines[0]), outcome.describe()
    marker.unlink()
    shown = show(out).stdout
    resumed = run(compile_cmd(config, out, then, "--resume"), timeout=120, env=env)
    assert resumed.returncode == 0, resumed.describe()
    assert canonical_contents(out) == expected
    return shown


@pytest.mark.parametrize("target", ["out", "in", "kernel"])
def test_a_resumed_compile_gives_the_uninterrupted_file(reference, tmp_path, target):
    shown = _interrupt_then_resume(reference, tmp_path, target, None, None)
    # serially the jobs run in order: the set was stopped in its last job, so the
    # resume had some of its jobs to keep and one to run
    assert re.search(rf"connectivity\.{target} +3/4 +jobs +1 jobs missing", shown), shown


@pytest.mark.mpi
@pytest.mark.parametrize("target, first, then", [("out", 2, 3), ("out", 3, 2), ("in", 3, 2),
                                                 ("kernel", 2, 3)])
def test_a_resume_at_another_rank_count_gives_the_uninterrupted_file(
        reference, tmp_path, target, first, then):
    _interrupt_then_resume(reference, tmp_path, target, first, then)
