"""Run an export made with ``neuroscaffold export NET --sonata DIR --simulation SIM`` in
BMTK's PointNet (NEST):

    python examples/sonata/run_bmtk.py DIR

Spikes go to ``DIR/output/spikes.h5`` (SONATA spike file). After ``run(...)``, NEST's
kernel still holds the network: ``nest.GetConnections()`` shows what BMTK built.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def run(directory: str | os.PathLike):
    """Build and simulate the export in ``directory``; returns (network, simulator)."""
    from bmtk.simulator import pointnet

    config = pointnet.Config.from_json(str(Path(directory) / "simulation_config.json"))
    config.build_env()
    network = pointnet.PointNetwork.from_config(config)
    simulator = pointnet.PointSimulator.from_config(config, network)
    simulator.run()
    return network, simulator


if __name__ == "__main__":
    run(sys.argv[1])
