"""Pictures of a network: `neuroscaffold plot` writes PNG and HTML for the examples, and
the numbers it draws are right."""

from __future__ import annotations

import numpy as np
import pytest

from neuroscaffold import Configuration, Network
from neuroscaffold.cli import main
from neuroscaffold.plot import plot_network, summarise_network
from tests._mpi import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("plot") / "small.hdf5"
    Network(Configuration.from_file(ROOT / "examples" / "small.yaml"), path).compile(quiet=True)
    return path


def test_plot_writes_png_and_html_for_the_small_example(small, tmp_path, capsys):
    png, page = tmp_path / "small.png", tmp_path / "small.html"
    assert main(["plot", str(small), "-o", str(png)]) == 0
    assert main(["plot", str(small), "-o", str(page)]) == 0
    assert capsys.readouterr().out == (f"picture written to {png}\npicture written to {page}\n")
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 50_000
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
    for name in ("pyramidal", "interneuron", "relay", "pyramidal_to_interneuron",
                 "relay_to_interneuron", "radius 60 µm"):
        assert name in text


def test_what_it_draws_matches_the_network(small):
    summary = summarise_network(small, max_points=100, max_pairs=50)
    types = {t.name: t for t in summary.types}
    assert {n: t.count for n, t in types.items()} == {"pyramidal": 800, "interneuron": 150,
                                                       "relay": 32}
    assert types["pyramidal"].expected == 800 and len(types["pyramidal"].sample) == 100
    assert types["relay"].sample.shape == (32, 3)  # small types are drawn whole
    assert types["pyramidal"].density == pytest.approx(800 / (200 * 100 * 200))
    assert types["pyramidal"].configured_density == pytest.approx(2e-4)
    sets = {s.name: s for s in summary.sets}
    relay = sets["relay_to_interneuron"]  # all to all
    assert relay.pairs == 32 * 150
    assert set(relay.out_degree.tolist()) == {150} and set(relay.in_degree.tolist()) == {32}
    near = sets["pyramidal_to_interneuron"]
    assert near.out_degree.sum() == near.in_degree.sum() == near.pairs
    assert len(near.out_degree) == 800 and len(near.in_degree) == 150
    assert len(near.distances) == 50 and near.distances.max() <= 60 and near.radius == 60


def test_plot_of_the_guide_example_with_its_own_strategies(tmp_path, monkeypatch):
    guide = ROOT / "examples" / "own_strategies"
    monkeypatch.syspath_prepend(str(guide))
    network = Network(Configuration.from_file(guide / "model.yaml"), tmp_path / "own.hdf5")
    network.compile(quiet=True)
    summary = summarise_network(tmp_path / "own.hdf5")
    assert {t.name: t.count for t in summary.types} == {"pyramidal": 540, "stellate": 900}
    gauss = {s.name: s for s in summary.sets}["stellate_to_pyramidal"]
    assert gauss.radius == 90 and gauss.radius_label == "3 sigma = 90 µm"
    assert np.all(gauss.distances <= 90)


def test_plot_errors_are_one_line(tmp_path, capsys, small):
    assert main(["plot", str(tmp_path / "nope.hdf5"), "-o", str(tmp_path / "x.png")]) == 1
    assert capsys.readouterr().err == f"neuroscaffold: error: {tmp_path}/nope.hdf5: no such file\n"
    assert main(["plot", str(small), "-o", str(tmp_path / "x.pdf")]) == 1
    assert capsys.readouterr().err == "neuroscaffold: error: -o must end in .png or .html, not 'x.pdf'\n"


def test_plot_shows_the_nearest_neighbour_distance_against_two_radii(tmp_path):
    from tests.placement.test_poisson_disk import model

    path = tmp_path / "disk.hdf5"
    Network(Configuration(model()), path).compile(quiet=True)
    types = {t.name: t for t in summarise_network(path).types}
    assert types["small"].radius == 2.0 and len(types["small"].nearest) == 576
    assert types["small"].nearest.min() >= 4.0  # poisson_disk: never closer than 2 radii
    plot_network(path, tmp_path / "disk.html")
    page = (tmp_path / "disk.html").read_text()
    assert "nearest neighbour: min / median (µm)" in page and "<td>4</td><td>0%</td>" in page
