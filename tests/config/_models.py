"""Small model configurations shared by the model-layer tests."""

from __future__ import annotations

import copy


def two_layers() -> dict:
    """Two layers, three cell types, three placement and three connection strategies
    (random, lattice, distance with a probability, all-to-all, depends_on in both
    phases): every code path of a compile, in about a thousand cells."""
    return copy.deepcopy(
        {
            "name": "two_layers",
            "seed": 3,
            "network": {"x": 200, "y": 200, "z": 200, "chunk_size": 100},
            "partitions": {
                "bottom": {"type": "layer", "thickness": 100},
                "top": {"type": "layer", "origin": 100, "thickness": 100},
            },
            "cell_types": {
                "a": {"density": 1.0e-4},
                "b": {"count": 90},
                "c": {},
            },
            "placement": {
                "place_a": {"strategy": "random", "cell_types": ["a"], "partitions": ["bottom"]},
                "place_b": {
                    "strategy": "random",
                    "cell_types": ["b"],
                    "partitions": ["top"],
                    "depends_on": ["place_a"],
                },
                "place_c": {
                    "strategy": "lattice",
                    "cell_types": ["c"],
                    "partitions": ["top"],
                    "spacing": [50, 50, 50],
                },
            },
            "connectivity": {
                "a_to_b": {
                    "strategy": "distance",
                    "presynaptic": "a",
                    "postsynaptic": "b",
                    "radius": 70,
                    "probability": 0.5,
                },
                "a_to_a": {"strategy": "distance", "presynaptic": "a", "postsynaptic": "a",
                           "radius": 40},
                "c_to_b": {
                    "strategy": "all_to_all",
                    "presynaptic": "c",
                    "postsynaptic": "b",
                    "depends_on": ["a_to_b"],
                },
            },
        }
    )
