"""The examples: the seed's snippets as scripts (serially and under mpiexec), and the
layered example network compiled the way the README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from neuroscaffold.cli import main
from tests._mpi import ROOT, run_script

SNIPPETS = ROOT / "examples" / "snippets"

EXPECTED = {
    "job_pool.py": r"placed \{'pyramidal': 800, 'interneuron': 150, 'relay': 32\}",
    "scheduling.py": r"scheduled 12 jobs",
    "listeners.py": r"Pool execution finished\. [2-9]\.[0-9] seconds elapsed\.",  # not an epoch
    # at most once per rank: a rank that ran none of the jobs computed it 0 times
    "caching.py": r"rank \d: heavy_calculations computed [01] time\(s\); 4 jobs called it "
                  r"4000 times in all",
}


@pytest.mark.parametrize("ranks", [None, pytest.param(2, marks=pytest.mark.mpi)])
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_the_seed_snippets_run_as_scripts(tmp_path, script, ranks):
    result = run_script(Path(SNIPPETS / script), n=ranks, timeout=90, cwd=tmp_path).check()
    # (searched in the whole output: mpiexec may interleave lines of different ranks)
    matches = re.findall(EXPECTED[script], result.stdout)
    # the caching snippet reports from every rank, the others from the main rank only
    assert len(matches) == ((ranks or 1) if script == "caching.py" else 1), result.describe()
    if script == "caching.py":
        assert "computed 1 time" in result.stdout


CLI = "import sys; from neuroscaffold.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.mpi
def test_the_example_network_compiles_under_mpiexec_and_shows(tmp_path, capsys):
    out_file = tmp_path / "cerebellum.hdf5"
    config = ROOT / "examples" / "cerebellum.yaml"
    result = run_script(CLI, n=2, timeout=110, tmp_path=tmp_path,
                        args=["compile", str(config), "-o", str(out_file), "-q"]).check()
    match = re.search(r"compiled 'cerebellum' into .* in ([0-9.]+) s on 2 ranks: "
                      r"([0-9,]+) cells, ([0-9,]+) connections", result.stdout)
    assert match, result.describe()
    seconds, cells, pairs = float(match[1]), int(match[2].replace(",", "")), int(
        match[3].replace(",", ""))
    assert 90_000 <= cells <= 110_000 and 900_000 <= pairs <= 1_200_000
    assert seconds < 60
    assert main(["show", str(out_file)]) == 0
    shown = capsys.readouterr().out
    assert f"total: {cells:,} cells, {pairs:,} connections" in shown
    assert re.search(r"^  granule +93,600 cells$", shown, re.M)
    assert "64 chunks of 100 x 100 x 100 µm" in shown
