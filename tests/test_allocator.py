"""The compile's allocator tuning: the arrays of the jobs are reused from the heap
instead of being mapped and faulted in afresh job after job (glibc only)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from neuroscaffold._allocator import OPT_OUT_VARIABLE

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cerebellum.yaml"

_COMPILE = """
import resource, sys
from neuroscaffold import Configuration, Network
from neuroscaffold._allocator import tune_allocator
import scipy.spatial  # a compile imports it first: its pages are code, not the jobs' arrays
network = Network(Configuration.from_file(sys.argv[1]), sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
network.compile(quiet=True)
print(tune_allocator(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _compile(tmp_path: Path, name: str, extra: dict[str, str]) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(extra)
    done = subprocess.run(
        [sys.executable, "-c", _COMPILE, str(EXAMPLE), str(tmp_path / name)],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    tuned, faults = done.stdout.split()
    return tuned, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
@pytest.mark.timeout(240)
def test_a_compile_reuses_memory_instead_of_faulting_in_fresh_pages(tmp_path):
    tuned, faults = _compile(tmp_path, "tuned.hdf5", {})
    untuned, untuned_faults = _compile(tmp_path, "untuned.hdf5", {OPT_OUT_VARIABLE: "0"})
    assert (tuned, untuned) == ("True", "False")
    # measured: about 1,800 page faults tuned, 27,000 not
    assert faults * 4 < untuned_faults, (faults, untuned_faults)
