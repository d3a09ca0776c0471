"""The docs: the configuration reference is current, the docs and README never point
outside the repository, and the strategies guide's example compiles (the same network
serially and on 2 ranks)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from neuroscaffold import Configuration, Network
from neuroscaffold.cli import main
from neuroscaffold.configuration import build_reference
from tests._mpi import ROOT, run_script

GUIDE = ROOT / "examples" / "own_strategies"


def test_the_configuration_reference_is_current(capsys):
    assert (ROOT / "docs" / "configuration.md").read_text() == build_reference(), (
        "docs/configuration.md is stale: run `neuroscaffold reference -o docs/configuration.md`")
    assert main(["reference", "-o", str(ROOT / "docs" / "configuration.md"), "--check"]) == 0


def test_the_reference_lists_every_builtin_with_keys_types_defaults_and_units():
    text = build_reference()
    for heading in ("### type: layer", "### type: box", "### strategy: random",
                    "### strategy: lattice", "### strategy: fixed", "### strategy: distance",
                    "### strategy: all_to_all"):
        assert heading in text
    assert ("| `radius` | number > 0 | required | largest distance between connected cells "
            "(µm) |") in text
    assert "| `probability` | number >= 0 and <= 1 | 1 |" in text
    assert "| `thickness` | number > 0 | required | thickness along the axis (µm)" in text


def test_an_attribute_without_doc_is_refused(monkeypatch):
    from neuroscaffold.connectivity._builtins import DistanceConnectivity

    monkeypatch.setattr(DistanceConnectivity._config_attrs["radius"], "doc", None)
    with pytest.raises(ValueError, match="DistanceConnectivity.radius has no doc= string"):
        build_reference()


def test_docs_and_readme_stay_inside_the_repository():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        assert "../shared" not in text and "shared/API.md" not in text, path
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


def _compile_guide(tmp_path, ranks):
    out = tmp_path / f"own{ranks}.hdf5"
    script = ("import sys; from neuroscaffold.cli import main; sys.exit(main(sys.argv[1:]))")
    result = run_script(script, n=ranks, timeout=90, tmp_path=tmp_path, cwd=tmp_path,
                        args=["compile", str(GUIDE / "model.yaml"), "-o", str(out), "-q"]).check()
    assert re.search(r"compiled 'own_strategies' into .*: 1,440 cells, [0-9,]+ connections",
                     result.stdout), result.describe()
    return out


@pytest.mark.parametrize("ranks", [None, pytest.param(2, marks=pytest.mark.mpi)])
def test_the_guide_example_compiles_the_same_network_on_any_rank_count(tmp_path, ranks,
                                                                         monkeypatch):
    out = _compile_guide(tmp_path, ranks)
    monkeypatch.syspath_prepend(str(GUIDE))  # reading it back imports the strategies
    reference = Network(Configuration.from_file(GUIDE / "model.yaml"), tmp_path / "ref.hdf5")
    reference.compile(quiet=True)
    from neuroscaffold import from_storage

    network = from_storage(out)
    pyramidal = network.get_placement_set("pyramidal").load_positions()
    assert len(pyramidal) == 540  # mean density 6e-5 cells/µm³ in 300 x 100 x 300 µm
    counts = np.histogram(pyramidal[:, 1], bins=2, range=(100, 200))[0]
    assert counts[1] > 1.5 * counts[0]  # denser at the top of the layer
    assert np.array_equal(pyramidal, reference.get_placement_set("pyramidal").load_positions())
    for name in ("stellate_to_pyramidal", "pyramidal_to_pyramidal"):
        pairs = network.get_connectivity_set(name).load_connections()
        assert len(pairs) > 500
        assert np.array_equal(pairs, reference.get_connectivity_set(name).load_connections())


@pytest.mark.parametrize("example", ["small.yaml", "cerebellum.yaml"])
def test_example_headers_say_how_many_cells_they_make(example):
    from neuroscaffold.plan import build_plan

    path = ROOT / "examples" / example
    header = " ".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    said = int(re.search(r"about ([0-9,]+) cells", header)[1].replace(",", ""))
    planned = sum(build_plan(Configuration.from_file(path)).cells.values())
    assert abs(planned - said) <= 0.1 * said, (said, planned)
    if example == "cerebellum.yaml":
        assert "mpiexec -n 2 .venv/bin/neuroscaffold" in header and "#   mpiexec" not in header
