"""What a simulator adapter implements, and the plan of a simulation it is given.

The driver (:mod:`._run`) checks the network and the configuration, builds a
:class:`SimulationPlan` (which cell types and connection sets are simulated, with their
sizes), then calls the adapter's steps in this order, on every rank::

    check_environment()   class method, before the simulator is imported: refuse a
                          setting the simulator cannot run (NEST without MPI under
                          mpiexec) in one line instead of letting it crash
    prepare()             import the simulator (DependencyError naming the extra if it
                          is missing), reset it, apply resolution/threads/seed, and
                          check every model and parameter name against the simulator
                          itself (ConfigurationError naming the configuration path)
    create_cells()        every simulated cell type, in plan order
    connect(projection)   once per simulated connection set; returns the connections
                          this rank made
    create_devices()      the stimuli and recorders; returns their connections here
    step_quantum()        the simulated time every step is a whole multiple of
    advance(until)        repeatedly, to absolute times (ms) ending at the duration
    finish()              after the last advance
    collect_spikes()      this rank's spikes of the recorded cell types

Errors: raise :class:`~neuroscaffold.exceptions.ConfigurationError` for what the
configuration got wrong (its message starts with the path), ``DependencyError`` for a
missing simulator, ``SimulationError`` for what the simulator refused at run time.
Never print: the driver shows progress on the main rank.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import numpy as np

from ..exceptions import DependencyError
from .schema import CellModel, ConnectionModel, Device, DeviceKind, Simulation, Synapse

__all__ = ["Population", "Projection", "SimulationPlan", "SimulatorAdapter", "sampled_cells"]


@dataclass(frozen=True)
class Population:
    """A simulated cell type: ``size`` cells, indices ``0 .. size-1`` (the order of
    ``load_positions()``)."""

    name: str
    size: int
    model: CellModel


@dataclass(frozen=True)
class Projection:
    """A simulated connection set: ``size`` stored pairs, each given every synapse of
    ``synapses``."""

    name: str
    presynaptic: str
    postsynaptic: str
    size: int
    model: ConnectionModel
    synapses: tuple[Synapse, ...]
    network: Any = field(repr=False, compare=False, default=None)

    def blocks(self, rows: int = 1 << 20) -> Iterator[np.ndarray]:
        """The stored (presynaptic index, postsynaptic index) pairs, ``(m, 2)`` int64,
        at most ``rows`` at a time (one read each), in stored order."""
        if self.size == 0:
            return iter(())
        return self.network.get_connectivity_set(self.name).iter_connections(rows)


def sampled_cells(seed: int, device: str, cell_type: str, size: int,
                  fraction: float) -> np.ndarray:
    """The cells (indices within ``cell_type``, sorted, int64) that device ``device``
    with ``fraction`` targets among ``size``: all of them, or a sample drawn from the
    simulation's seed, the device's and the cell type's names. The same cells in every
    run, on any number of ranks, in every simulator and in an export."""
    if fraction >= 1.0:
        return np.arange(size, dtype=np.int64)
    count = min(size, max(1 if size and fraction > 0 else 0, round(fraction * size)))
    words = [int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
             for text in (device, cell_type)]
    rng = np.random.default_rng([seed, *words])
    return np.sort(rng.choice(size, size=count, replace=False)).astype(np.int64)


@dataclass
class SimulationPlan:
    """What a simulation simulates, as every rank knows it."""

    simulation: Simulation
    network: Any  #: the :class:`~neuroscaffold.network.Network`
    populations: dict[str, Population]  #: in creation order
    projections: dict[str, Projection]
    devices: dict[str, Device]
    recorded: tuple[str, ...]  #: the cell types a spike recorder records
    rank: int = 0
    size: int = 1  #: MPI ranks

    @property
    def name(self) -> str:
        return self.simulation.name

    @property
    def seed(self) -> int:
        return self.simulation.simulation_seed()

    @property
    def duration(self) -> float:
        return float(self.simulation.duration)

    @property
    def resolution(self) -> float:
        return float(self.simulation.resolution)

    @property
    def threads(self) -> int:
        return int(self.simulation.threads)

    def target_indices(self, device: str, cell_type: str) -> np.ndarray:
        """The indices (within ``cell_type``, sorted, int64) of the cells that device
        ``device`` targets: all of them, or its ``fraction`` of them drawn from the
        simulation's seed, the device's and the cell type's names (the same cells in
        every run, on any number of ranks, in every simulator)."""
        return sampled_cells(self.seed, device, cell_type, self.populations[cell_type].size,
                             float(self.devices[device].fraction))

    def recorded_indices(self, cell_type: str) -> np.ndarray | None:
        """The cells of ``cell_type`` whose spikes are recorded: None for all of them,
        else the indices the first spike recorder that records it samples."""
        for name, device in self.devices.items():
            if device.kind is DeviceKind.RECORDER and cell_type in device.target_types():
                return None if device.fraction >= 1.0 else self.target_indices(name, cell_type)
        return None

    def path(self, *keys: str) -> str:
        """The configuration path of a key of this simulation, for error messages:
        ``simulations.basal.cell_models.granule.model``."""
        return ".".join(("simulations", self.name) + keys)


class SimulatorAdapter(abc.ABC):
    """One simulator's way to build and run a :class:`SimulationPlan` (see the module
    text for the order of the calls). One instance per simulation run."""

    #: the ``simulator:`` name it is registered under
    name: ClassVar[str]
    #: the importable module of the simulator (checked without importing it)
    module: ClassVar[str]
    #: the pip extra that installs the simulator: ``pip install 'neuroscaffold[<extra>]'``
    extra: ClassVar[str]
    #: whether it spreads one simulation over MPI ranks (else it needs one rank)
    distributed: ClassVar[bool] = False

    def __init__(self, plan: SimulationPlan):
        self.plan = plan
        #: cell type -> the simulator's handle of its cells (for the user to inspect)
        self.populations: dict[str, Any] = {}

    @classmethod
    def check_installed(cls) -> None:
        """Raise :class:`DependencyError` naming the extra if the simulator's module
        cannot be found (without importing it)."""
        try:
            found = importlib.util.find_spec(cls.module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise DependencyError(cls.missing_message())

    @classmethod
    def missing_message(cls) -> str:
        return (f"simulator '{cls.name}' is not installed (no module '{cls.module}'); "
                f"install it with: pip install 'neuroscaffold[{cls.extra}]'")

    @classmethod
    def check_environment(cls, plan: SimulationPlan) -> None:
        """Refuse, before the simulator is imported, what it cannot run here (for
        example several MPI ranks for a simulator built without MPI)."""

    @abc.abstractmethod
    def prepare(self) -> None:
        """Import and reset the simulator, apply the settings, check the models."""

    @abc.abstractmethod
    def create_cells(self) -> None:
        """Create the cells of every population of the plan."""

    @abc.abstractmethod
    def connect(self, projection: Projection) -> int:
        """Create the connections of ``projection``; return how many this rank made."""

    @abc.abstractmethod
    def create_devices(self) -> int:
        """Create the devices and connect them; return their connections on this rank."""

    def step_quantum(self) -> float:
        """After the build: the simulated time (ms) every step should be a whole
        multiple of, so that stopping between steps (for progress and Ctrl-C) costs
        nothing and changes nothing. Default: the resolution. Called on every rank;
        the driver uses the least over the ranks (so their steps end together)."""
        return self.plan.resolution

    @abc.abstractmethod
    def advance(self, until: float) -> None:
        """Simulate up to the absolute time ``until`` (ms)."""

    def finish(self) -> None:
        """After the last :meth:`advance` (the network stays in the simulator)."""

    @abc.abstractmethod
    def collect_spikes(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """This rank's spikes: recorded cell type -> (indices within the type, times in
        ms). Every recorded cell type appears, with empty arrays if it was silent."""
