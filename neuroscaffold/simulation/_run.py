"""The driver of a simulation: check, plan, build, run in steps, collect the spikes.

It is the same for every simulator; the adapter (:mod:`._adapter`) does the
simulator's part. Collective: every rank calls :func:`simulate` with the same network
and name. After each build step the ranks agree on how it ended (a rank's error, or
its Ctrl-C, ends the simulation on every rank with the same line); while simulating
they agree after each step of simulated time, so a Ctrl-C stops every rank within
one step.
"""

from __future__ import annotations

import difflib
import math
import os
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import numpy as np

from .._agreement import Outcome, agree, collect, share
from ..exceptions import ConfigurationError, ParallelError, SimulationInterrupted, StorageError
from ..storage import NetworkState
from ._adapter import Population, Projection, SimulationPlan, SimulatorAdapter
from ._progress import SimulationProgress, silent_progress
from ._registry import adapter_class
from ._spikes import SimulationResult, SpikeTrains, check_spike_path
from ._watchdog import stall_guard
from .schema import Simulation

if TYPE_CHECKING:
    from ..network import Network

__all__ = ["build_plan", "find_simulation", "simulate", "step_ends"]

T = TypeVar("T")

#: the most steps of simulated time between two looks at progress and Ctrl-C
MAX_STEPS = 50
#: seconds the ranks wait for each other at the end of a step
STEP_WAIT = 600.0


def find_simulation(network: "Network", name: str) -> Simulation:
    """The simulation ``name`` of the network's configuration, or a one-line error
    with a suggestion and the names there are."""
    simulations = network.configuration.simulations
    if name in simulations:
        return simulations[name]
    known = list(simulations)
    if not known:
        raise ConfigurationError(f"simulations: no simulation '{name}': the configuration "
                                 "has no simulations section (add one, see docs/simulating.md)")
    hint = difflib.get_close_matches(name, known, n=1)
    suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
    raise ConfigurationError(f"simulations: no simulation '{name}'{suffix}; the configuration "
                             "has " + ", ".join(f"'{k}'" for k in known))


def _check_finished(network: "Network") -> None:
    storage = network.storage
    state = storage.state()
    if state is NetworkState.MISSING:
        raise StorageError(f"{storage.path}: no such network file")
    if state is NetworkState.INCOMPLETE:
        raise StorageError(f"{storage.path}: cannot simulate an unfinished network: "
                           f"{storage.progress().describe()}")


def build_plan(network: "Network", simulation: Simulation) -> SimulationPlan:
    """What ``simulation`` simulates in the stored network: the cell types with a cell
    model and their sizes, the connection sets with a connection model and theirs."""
    from ..services import MPI

    storage = network.storage
    stored_types = set(storage.cell_type_names())
    stored_sets = set(storage.connectivity_names())
    populations = {}
    for name in simulation.simulated_cell_types():
        size = storage.count_cells(name) if name in stored_types else 0
        populations[name] = Population(name, size, simulation.cell_models[name])
    projections = {}
    for name, model in simulation.connection_models.items():
        strategy = network.configuration.connectivity[name]
        size = len(network.get_connectivity_set(name)) if name in stored_sets else 0
        projections[name] = Projection(name, strategy.presynaptic.name, strategy.postsynaptic.name,
                                       size, model, tuple(model.synapse_list()), network)
    return SimulationPlan(simulation=simulation, network=network, populations=populations,
                          projections=projections, devices=dict(simulation.devices),
                          recorded=tuple(simulation.recorded_cell_types()),
                          rank=MPI.get_rank(), size=MPI.get_size())


def step_ends(duration: float, resolution: float, quantum: float | None = None) -> list[float]:
    """The absolute times (ms) each step of simulated time ends at: whole multiples of
    ``quantum`` (default: the resolution; rounded to whole time steps), short at first
    (progress shows early) and then about ``duration / MAX_STEPS``, the last one at the
    duration. The same on every rank, and for every run of a simulation."""
    unit = max(1, round((quantum or resolution) / resolution))  # time steps per quantum
    total = max(1, round(duration / resolution))
    whole = total // unit  # quanta that fit in the duration
    largest = max(1, math.ceil(whole / MAX_STEPS))
    ends, done, size = [], 0, 1
    while done < whole:
        size = min(size, largest, whole - done)
        done += size
        ends.append(round(done * unit * resolution, 9))  # 3.0, not 3.0000000000000004
        size *= 2
    if ends and done * unit >= total:
        ends[-1] = duration
    else:
        ends.append(duration)
    return ends


def simulate(network: "Network", name: str, *, quiet: bool = False,
             output: str | os.PathLike | None = None,
             progress: SimulationProgress | None = None) -> SimulationResult:
    """Run simulation ``name`` of ``network`` (collective; see
    :meth:`neuroscaffold.Network.simulate`)."""
    from .._writing import on_main
    from ..services import MPI

    simulation = find_simulation(network, name)
    cls = adapter_class(simulation.simulator, f"simulations.{name}.simulator")
    cls.check_installed()
    _check_finished(network)
    if output is not None:
        on_main(lambda: check_spike_path(output, network.storage.path))
    main = MPI.get_rank() == 0
    if progress is None:
        progress = silent_progress() if quiet or not main else SimulationProgress(
            name, float(simulation.duration))
    timings: dict[str, float] = {}
    runner = _Runner(name, progress, timings)

    plan = runner.step("read the network", lambda: build_plan(network, simulation), "read")
    cls.check_environment(plan)
    adapter = cls(plan)
    runner.step(f"prepared {cls.name}", adapter.prepare, "prepare")
    cells = sum(p.size for p in plan.populations.values())
    runner.step(f"created {cells:,} cells", adapter.create_cells, "cells")
    connections = 0
    for projection in plan.projections.values():
        connections += runner.step(f"connected {projection.name}",
                                   lambda p=projection: adapter.connect(p), "connect")
    devices = runner.step(f"created {len(plan.devices)} devices", adapter.create_devices,
                          "devices")
    runner.run(adapter, plan)
    local = runner.step("collected the spikes", adapter.collect_spikes, "collect", show=False)
    spikes = _gather_spikes(plan, local)
    result = SimulationResult(simulation=name, simulator=cls.name, duration=plan.duration,
                              spikes=spikes if spikes is not None else _as_trains(plan, local),
                              timings=timings, connections=connections,
                              device_connections=devices, adapter=adapter,
                              complete=spikes is not None)
    if output is not None:
        started = time.perf_counter()
        on_main(lambda: result.write(output))
        timings["write"] = time.perf_counter() - started
    return result


class _Runner:
    """Runs the steps of one simulation on this rank, in agreement with the others."""

    def __init__(self, name: str, progress: SimulationProgress, timings: dict[str, float]):
        from ..services import MPI

        self.name = name
        self.progress = progress
        self.timings = timings
        self.size = MPI.get_size()
        self.doing = "starting"

    def step(self, what: str, fn: Callable[[], T], key: str, show: bool = True) -> T:
        """``fn()``, on every rank; an error or an interrupt on one rank ends every rank."""
        self.doing = what
        started = time.perf_counter()
        failure: BaseException | None = None
        value: Any = None
        try:
            value = fn()
        except BaseException as error:  # agreed on below, then raised on every rank
            failure = error
        self._agree(failure)
        seconds = time.perf_counter() - started
        self.timings[key] = self.timings.get(key, 0.0) + seconds
        if show:
            self.progress.step(what, seconds)
        return value

    def _agree(self, failure: BaseException | None) -> None:
        interrupted = isinstance(failure, KeyboardInterrupt)
        if self.size > 1:
            summary = None if failure is None else (
                "interrupted" if interrupted else f"{type(failure).__name__}: {failure}")
            everyone = share(collect(summary))
            failures = {rank: text for rank, text in enumerate(everyone) if text is not None}
            if failures and failure is None:
                if all(text == "interrupted" for text in failures.values()):
                    raise self._interrupted()
                rank, text = next(iter(failures.items()))
                raise ParallelError(f"rank {rank} failed while the simulation "
                                    f"'{self.name}' {self.doing.split(' ')[0]}: {text}")
        if interrupted:
            raise self._interrupted() from None
        if failure is not None:
            raise failure

    def _interrupted(self, at: float | None = None, duration: float | None = None) -> SimulationInterrupted:
        where = (f"at {at:,.0f} of {duration:,.0f} ms" if at is not None
                 else f"before it had {self.doing}")
        return SimulationInterrupted(f"simulation '{self.name}' interrupted {where}; "
                                     "no spike file was written")

    def run(self, adapter: SimulatorAdapter, plan: SimulationPlan) -> None:
        """Simulate the duration in steps: progress and Ctrl-C between them. Under MPI
        each step is guarded (:mod:`._watchdog`): if the ranks stop making progress,
        the run ends on every rank with one line and exit status 12."""
        started, cpu = time.perf_counter(), time.process_time()
        done = 0.0
        self.progress.start()
        try:
            with stall_guard(self.name, plan.duration, float(plan.simulation.stall_timeout),
                             plan.rank, self.size) as guard:
                guard.expect(0.0, None)  # the quantum is collective in the simulator
                quantum = adapter.step_quantum()
                if self.size > 1:  # the same steps on every rank, or their collectives would cross
                    quantum = min(share(collect(quantum)))
                guard.ended(0.0, 0.0)
                for until in step_ends(plan.duration, plan.resolution, quantum):
                    outcome, begin = Outcome.OK, done
                    guard.expect(begin, until)
                    try:
                        adapter.advance(until)
                        done = until
                    except KeyboardInterrupt:
                        outcome = Outcome.INTERRUPTED
                    if self.size > 1:
                        outcome = agree(outcome, STEP_WAIT)
                    if outcome is not Outcome.OK:
                        if outcome is Outcome.UNREACHABLE:
                            raise ParallelError(f"simulation '{self.name}': a rank did not end "
                                                f"its step at {until:,.0f} ms within {STEP_WAIT:.0f} s")
                        raise self._interrupted(done, plan.duration)
                    guard.ended(begin, until)
                    self.progress.update(done)
                adapter.finish()
        finally:
            self.progress.stop(done)
            self.timings["simulate"] = time.perf_counter() - started
            # this process's CPU seconds meanwhile: on a loaded machine the steadier figure
            self.timings["simulate_cpu"] = time.process_time() - cpu


def _as_trains(plan: SimulationPlan, local: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, SpikeTrains]:
    out = {}
    for name in plan.recorded:
        ids, times = local.get(name, (np.empty(0, np.uint64), np.empty(0)))
        out[name] = SpikeTrains(ids, times, plan.populations[name].size,
                                plan.recorded_indices(name))
    return out


def _gather_spikes(plan: SimulationPlan, local: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, SpikeTrains] | None:
    """Every rank's spikes on the main rank (None on the others)."""
    if plan.size == 1:
        return _as_trains(plan, local)
    parts = collect({name: (np.asarray(ids, np.uint64), np.asarray(times, np.float64))
                     for name, (ids, times) in local.items()})
    if parts is None:
        return None
    merged = {}
    for name in plan.recorded:
        empty = (np.empty(0, np.uint64), np.empty(0))
        pieces = [SpikeTrains(part.get(name, empty)[0], part.get(name, empty)[1],
                              plan.populations[name].size, plan.recorded_indices(name))
                  for part in parts]
        merged[name] = SpikeTrains.concatenate(pieces)
    return merged
