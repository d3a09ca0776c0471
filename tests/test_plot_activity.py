"""``neuroscaffold plot spikes.h5 -o activity.png|.html``: the activity of a spike file."""

from __future__ import annotations

import numpy as np

from neuroscaffold.activity import is_spike_file, plot_activity
from neuroscaffold.cli import main
from neuroscaffold.simulation import SpikeTrains, write_spike_file


def _spike_file(path):
    rng = np.random.default_rng(3)
    big = 5_000  # more cells than a raster draws
    ids = rng.integers(0, big, 20_000).astype(np.uint64)
    times = rng.uniform(0, 1000, 20_000)
    few = SpikeTrains(np.array([0, 1, 1], np.uint64), np.array([5.0, 7.5, 900.0]), 4)
    return write_spike_file(path, {"granule": SpikeTrains(ids, times, big), "golgi": few},
                            duration=1000.0, simulation="basal")


def test_plot_draws_the_activity_of_a_spike_file(tmp_path, capsys):
    spikes = _spike_file(tmp_path / "spikes.h5")
    assert is_spike_file(spikes)
    assert main(["plot", str(spikes), "-o", str(tmp_path / "activity.png")]) == 0
    assert "picture written to" in capsys.readouterr().out
    assert (tmp_path / "activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = plot_activity(spikes, tmp_path / "activity.html").read_text()
    assert "data:image/png;base64," in page
    # the table: recorded cells, spikes, mean rate (3 spikes of 4 cells in 1 s: 0.75 Hz)
    assert "<td>golgi</td><td>4</td><td>3</td><td>0.750</td>" in page
    assert "<td>granule</td><td>5,000</td><td>20,000</td><td>4.000</td>" in page


def test_a_network_file_is_not_a_spike_file(tmp_path):
    import h5py

    with h5py.File(tmp_path / "net.hdf5", "w") as file:
        file.create_dataset("configuration", data="{}")
        file.create_group("spikes")
    assert not is_spike_file(tmp_path / "net.hdf5")
    (tmp_path / "text.h5").write_text("no")
    assert not is_spike_file(tmp_path / "text.h5")
