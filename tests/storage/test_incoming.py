"""Reading a share of a network by chunk: a connection set's pairs that target chosen
postsynaptic chunks or cells, and the cells (positions, index ranges) of each chunk.
This is what lets each simulating rank read only the rows of its own cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuroscaffold import Configuration, Network, from_storage

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    path = tmp_path_factory.mktemp("incoming") / "small.hdf5"
    Network(Configuration.from_file(ROOT / "examples" / "small.yaml"), path).compile(quiet=True)
    return from_storage(path)


def test_chunk_ranges_cover_each_placement_set_once_in_order(network):
    for name in ("pyramidal", "interneuron", "relay"):
        cells = network.get_placement_set(name)
        ranges = cells.chunk_ranges()
        assert len(ranges) > 1
        spans = sorted(ranges.values())
        assert spans[0][0] == 0 and spans[-1][1] == len(cells)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        everything = cells.load_positions()
        chunk, (start, stop) = sorted(ranges.items())[1]
        positions, indices = cells.load_positions_in([chunk])
        assert np.array_equal(indices, np.arange(start, stop))
        assert np.array_equal(positions, everything[start:stop])


def test_incoming_pairs_by_chunk_are_the_pairs_whose_target_is_there(network):
    for name in ("pyramidal_to_interneuron", "interneuron_to_pyramidal"):
        pairs = network.get_connectivity_set(name)
        everything = pairs.load_connections()
        ranges = network.get_placement_set(pairs.postsynaptic).chunk_ranges()
        pieces = []
        for chunk in pairs.chunks():
            start, stop = ranges[chunk]
            rows = pairs.load_incoming(chunks=[chunk])
            assert rows.shape[1] == 2 and len(rows)
            assert ((rows[:, 1] >= start) & (rows[:, 1] < stop)).all()
            pieces.append(rows)
        assert np.array_equal(np.concatenate(pieces), everything)
        # two chunks at once, in stored order; a chunk without pairs gives nothing
        two = pairs.chunks()[:2]
        assert np.array_equal(pairs.load_incoming(chunks=two[::-1]),
                              np.concatenate(pieces[:2]))
        assert pairs.load_incoming(chunks=[(99, 99, 99)]).shape == (0, 2)


def test_incoming_pairs_of_chosen_cells(network):
    pairs = network.get_connectivity_set("pyramidal_to_interneuron")
    everything = pairs.load_connections()
    cells = np.array([3, 40, 41, 149, 7])
    rows = pairs.load_incoming(cells=cells)
    assert np.array_equal(rows, everything[np.isin(everything[:, 1], cells)])
    assert set(rows[:, 1].tolist()) <= set(cells.tolist()) and len(rows)
    with pytest.raises(TypeError):
        pairs.load_incoming()
