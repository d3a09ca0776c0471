"""The NEURON adapter (``simulator: neuron``, extra ``neuron``): artificial cells spread
over MPI ranks.

* **Ranks.** Under ``mpiexec -n K`` each rank owns the cells of a contiguous run of
  network chunks, balanced by cell count (:func:`own_chunks`); serially one rank owns
  them all. A cell's gid is its cell type's first gid plus its index in the placement
  set, whatever the rank count. A rank creates its own cells, reads only the stored
  pairs whose postsynaptic cell is in its chunks
  (:meth:`~neuroscaffold.storage.ConnectivitySet.load_incoming`) and makes them with
  ``pc.gid_connect``, so its memory shrinks with more ranks.
* **MPI without setting anything.** The PyPI wheel of NEURON finds MPI by loading a
  library; pip turns the mpich wheel's ``libmpi.so`` symlink into a 20-byte text file,
  so NEURON would find none and run each rank as a world of its own.
  :func:`point_neuron_at_mpi` sets ``MPI_LIB_NRN_PATH`` to the library mpi4py loaded
  (unless the user set it), before ``h.nrnmpi_init()``; it works whether mpi4py or
  NEURON started MPI first. If NEURON's world still differs from the MPI world (every
  rank would simulate the whole network), :meth:`NeuronAdapter.prepare` refuses.
* **Reproducible at any rank count.** ``CVode().queue_mode(0, 1)`` (exact event times,
  artificial cells on their own queue); background input is one ``NetStim`` per target
  cell whose Random123 stream is keyed by (simulation seed, device, gid), never by the
  rank. One condition remains (:func:`coincident_inputs`): no cell may receive inputs
  of opposite sign at exactly the same time.
* **A stalled rank.** NEURON's own watchdog (``pc.timeout``) ends a stalled run with
  ``MPI_Abort(comm, 0)``, so ``mpiexec`` exits 0; it is turned off, and the driver's
  stall guard (:mod:`._watchdog`) ends such a run on every rank with one line and a
  non-zero status.
* **Prompt exit.** Freeing a million NetCons at interpreter exit takes 5-12 s; at exit
  the adapter's objects are left to the operating system (:func:`_keep_at_exit`), so
  the process ends at once and with its own exit status (mpi4py still finalizes MPI,
  where no rank leaves before the others).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import difflib
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..exceptions import (ConfigurationError, DependencyError, NeuroscaffoldWarning,
                          SimulationError)
from ._adapter import Projection, SimulationPlan, SimulatorAdapter
from .schema import DeviceKind

__all__ = ["ARTIFICIAL_CELLS", "CoincidentInputWarning", "NeuronAdapter", "coincident_inputs",
           "own_chunks", "point_neuron_at_mpi"]

#: the artificial cells a cell model can name
ARTIFICIAL_CELLS = ("IntFire1", "IntFire2", "IntFire4")
#: artificial cells that fire at the very time an input arrives (so their spikes copy
#: the times of their inputs); IntFire2 and IntFire4 fire at times computed from a
#: continuous state, later than the input
_FIRES_ON_ARRIVAL = frozenset({"IntFire1"})
#: the keys a NEURON device takes (as device-level keys or parameters)
_DEVICE_KEYS = {"poisson_generator": {"rate", "start", "stop", "origin"},
                "spike_recorder": {"start", "stop", "origin"}}
#: the longest step between spike exchanges (ms); NEURON shortens it to the least delay
_MAX_STEP = 10.0


class CoincidentInputWarning(NeuroscaffoldWarning):
    """A cell type can receive inputs of opposite sign at exactly the same time: its
    spikes may then differ between rank counts (see :func:`coincident_inputs`). One
    ``neuroscaffold: warning:`` line on the command line, as every such warning."""


# --- MPI ------------------------------------------------------------------------------


def loaded_mpi_library() -> str | None:
    """The MPI library this process has loaded (mpi4py's), from ``/proc/self/maps``."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if line.strip() else ""
                name = os.path.basename(path)
                if name.startswith("libmpi") and ".so" in name and os.path.getsize(path) > 4096:
                    return path
    except OSError:
        return None
    return None


def point_neuron_at_mpi(size: int) -> None:
    """Before ``h.nrnmpi_init()``: show NEURON the MPI library mpi4py loaded (unless
    ``MPI_LIB_NRN_PATH`` is set already), and keep its GUI quiet."""
    os.environ.setdefault("NEURON_MODULE_OPTIONS", "-nogui")
    if size > 1 and "MPI_LIB_NRN_PATH" not in os.environ:
        library = loaded_mpi_library()
        if library is not None:
            os.environ["MPI_LIB_NRN_PATH"] = library


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Hide what NEURON's C code prints on standard output (``numprocs=2``)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _import_neuron(size: int) -> tuple[Any, Any]:
    """NEURON's ``h`` and its ParallelContext, with MPI started when ``size > 1``."""
    point_neuron_at_mpi(size)
    try:
        with _quiet_stdout():
            from neuron import h
    except ImportError as error:
        raise DependencyError(f"NEURON could not be imported ({error}); install it with: "
                              "pip install 'neuroscaffold[neuron]'") from None
    if size > 1:
        with _quiet_stdout():
            h.nrnmpi_init()
    return h, h.ParallelContext()


# --- ranks ----------------------------------------------------------------------------


def own_chunks(counts: dict[tuple[int, int, int], int], rank: int, size: int) -> set[tuple]:
    """The chunks rank ``rank`` of ``size`` simulates: chunks in order, cut into
    ``size`` contiguous runs of about equal cell counts (``counts``: chunk -> cells)."""
    chunks = sorted(counts)
    weights = np.array([counts[c] for c in chunks], dtype=np.float64)
    total = weights.sum()
    if size == 1 or total == 0:
        return set(chunks) if rank == 0 else set()
    middles = np.cumsum(weights) - weights / 2
    owners = np.minimum((middles * size / total).astype(np.int64), size - 1)
    return {chunk for chunk, owner in zip(chunks, owners.tolist()) if owner == rank}


# --- the one condition ------------------------------------------------------------------


def coincident_inputs(plan: SimulationPlan) -> dict[str, tuple[str, float]]:
    """The cell types that can receive an excitatory and an inhibitory input at exactly
    the same time, each with the origin of such a pair of events and the delay (ms)
    after it at which they would both arrive.

    No event queue orders two events of one time independently of the rank count, and
    for an integrate-and-fire cell their order matters (an input that crosses threshold
    first fires the cell). Two events have exactly the same time only when they come
    from one event by routes of equal total delay: every Poisson stream is one cell's
    own (its draws never repeat a time), and IntFire2/IntFire4 fire at times computed
    from a continuous state. IntFire1 fires at the arrival time of the excitatory input
    that crossed threshold, so its spikes carry their origin's time on, delayed.

    So each *origin* (a device's stream into a target type, or the spikes of an
    IntFire2/IntFire4 type) is followed through the IntFire1 types to every cell type
    with the sums of the delays on the way (up to the duration), and a cell type is at
    risk when an excitatory and an inhibitory input from one origin can arrive at the
    same delay. Conservative: origins are cell types, not cells.
    """
    models = {name: population.model.model for name, population in plan.populations.items()}
    scale = 1e6  # delays compared in ns: exact float ties are equal here too
    limit = round(plan.duration * scale)
    # edges: (source type or None for a device, target type, weight, delay, origin name)
    edges: list[tuple[str | None, str, float, int, str]] = []
    for projection in plan.projections.values():
        for synapse in projection.synapses:
            edges.append((projection.presynaptic, projection.postsynaptic,
                          float(synapse.weight), round(synapse.delay * scale), ""))
    for name, device in plan.devices.items():
        if device.kind is DeviceKind.STIMULUS:
            for target in device.target_types():
                edges.append((None, target, float(device.weight), round(device.delay * scale),
                              f"device {name} -> {target}"))
    # spikes[type][origin] = the delays after the origin's event at which type fires
    spikes: dict[str, dict[str, set[int]]] = {
        name: ({} if model in _FIRES_ON_ARRIVAL else {name: {0}}) for name, model in models.items()}
    arrivals: dict[str, dict[tuple[str, bool], set[int]]] = {name: {} for name in models}
    changed = True
    while changed:  # a fixpoint: what reaches IntFire1 types excitatorily, they send on
        changed = False
        for source, target, weight, delay, device in edges:
            if weight == 0:
                continue
            came = {device: {0}} if source is None else spikes[source]
            for origin, delays in came.items():
                shifted = {d + delay for d in delays if d + delay <= limit}
                bucket = arrivals[target].setdefault((origin, weight > 0), set())
                if shifted - bucket:
                    bucket |= shifted
                    changed = True
                if weight > 0 and models[target] in _FIRES_ON_ARRIVAL:
                    fired = spikes[target].setdefault(origin, set())
                    if shifted - fired:
                        fired |= shifted
                        changed = True
    risks = {}
    for name, buckets in arrivals.items():
        for (origin, excitatory), delays in sorted(buckets.items()):
            if not excitatory:
                continue
            common = delays & buckets.get((origin, False), set())
            if common:
                risks[name] = (origin, min(common) / scale)
                break
    return risks


# --- keeping NEURON's objects at exit -----------------------------------------------------

_LIVE: list[Any] = []  # the adapters whose NEURON objects exist


def _keep_at_exit() -> None:
    """At interpreter exit, never free the live adapters' NEURON objects: freeing a
    million NetCons one by one took 5-12 s, the operating system frees them at once."""
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_LIVE))


atexit.register(_keep_at_exit)


# --- the adapter --------------------------------------------------------------------------


class NeuronAdapter(SimulatorAdapter):
    """Builds and runs a simulation in NEURON (see the module text)."""

    name = "neuron"
    module = "neuron"
    extra = "neuron"
    distributed = True

    def __init__(self, plan: SimulationPlan):
        super().__init__(plan)
        self.h: Any = None
        self.pc: Any = None
        #: cell type -> its first gid
        self.first_gids: dict[str, int] = {}
        #: cell type -> the indices of the cells this rank owns (sorted)
        self.owned: dict[str, np.ndarray] = {}
        #: cell type -> the chunks whose cells this rank owns
        self.owned_chunks: dict[str, list[tuple]] = {}
        self.cells: dict[str, list[Any]] = {}  # cell type -> its owned cells, as owned
        self.netcons: list[Any] = []  # the connections of stored pairs
        self.device_objects: list[Any] = []  # NetStims and their NetCons
        self._source_netcons: list[Any] = []  # one per owned cell, for pc.cell
        self._spike_times: Any = None
        self._spike_gids: Any = None
        self._stops: list[tuple[Any, float]] = []
        self._started = False
        self._interval: float | None = None  # the spike exchange interval (ms)

    # --- the steps --------------------------------------------------------------------

    def prepare(self) -> None:
        plan = self.plan
        for earlier in list(_LIVE):
            earlier.release()
        self.h, self.pc = h, pc = _import_neuron(plan.size)
        if int(pc.nhost()) != plan.size or int(pc.id()) != plan.rank:
            raise SimulationError(
                f"{plan.path()}: NEURON's MPI did not start (NEURON sees {int(pc.nhost())} "
                f"rank(s), MPI has {plan.size}), so every rank would simulate the whole "
                f"network; MPI_LIB_NRN_PATH={os.environ.get('MPI_LIB_NRN_PATH', '(unset)')} "
                "must name the MPI library mpi4py uses")
        for population in plan.populations.values():
            self._check_cell_model(population.model)
        for name, projection in plan.projections.items():
            for synapse in projection.synapses:
                if synapse.receptor_type is not None:
                    raise ConfigurationError(f"{plan.path(*synapse.where('receptor_type'))}: "
                                             "NEURON's artificial "
                                             "cells have no receptors (the weight's sign "
                                             "excites or inhibits)")
                if synapse.model_parameters():
                    key = next(iter(synapse.model_parameters()))
                    raise ConfigurationError(f"{plan.path(*synapse.where('parameters', key))}: "
                                             "a NEURON connection "
                                             "is a NetCon: it takes only weight and delay")
        for name, device in plan.devices.items():
            self._check_device(name, device)
        h.dt = plan.resolution
        h.CVode().queue_mode(0, 1)
        # NEURON's own watchdog ends a stalled run with MPI_Abort(comm, 0), exit status
        # 0; the driver's stall guard replaces it (see _watchdog)
        pc.timeout(0)
        risks = coincident_inputs(plan) if plan.rank == 0 else {}
        for cell_type, (origin, delay) in risks.items():
            warnings.warn(CoincidentInputWarning(
                f"{plan.path('cell_models', cell_type)}: an excitatory and an inhibitory "
                f"input can arrive at exactly the same time ({delay:g} ms after an event of "
                f"{origin}, by two routes); its spikes may then differ between rank counts "
                "(see docs/simulating.md)"), stacklevel=2)
        self._share_cells()
        _LIVE.append(self)

    def _share_cells(self) -> None:
        """Gids and this rank's share of the cells: whole chunks, balanced by count."""
        plan = self.plan
        network = plan.network
        ranges = {name: network.get_placement_set(name).chunk_ranges() if p.size else {}
                  for name, p in plan.populations.items()}
        counts: dict[tuple, int] = {}
        for spans in ranges.values():
            for chunk, (start, stop) in spans.items():
                counts[chunk] = counts.get(chunk, 0) + stop - start
        mine = own_chunks(counts, plan.rank, plan.size)
        first = 0
        for name, population in plan.populations.items():
            self.first_gids[name] = first
            first += population.size
            chunks = sorted(c for c in ranges[name] if c in mine)
            self.owned_chunks[name] = chunks
            pieces = [np.arange(*ranges[name][c], dtype=np.int64) for c in chunks]
            self.owned[name] = np.concatenate(pieces) if pieces else np.empty(0, np.int64)

    def create_cells(self) -> None:
        h, pc, rank = self.h, self.pc, self.plan.rank
        for name, population in self.plan.populations.items():
            template = getattr(h, population.model.model)
            parameters = population.model.model_parameters()
            cells = self.cells[name] = []
            first = self.first_gids[name]
            for index in self.owned[name].tolist():
                cell = template()
                for key, value in parameters.items():
                    setattr(cell, key, value)
                gid = first + index
                pc.set_gid2node(gid, rank)
                source = h.NetCon(cell, None)
                pc.cell(gid, source)
                self._source_netcons.append(source)
                cells.append(cell)
            self.populations[name] = cells

    def connect(self, projection: Projection) -> int:
        post, pre = projection.postsynaptic, projection.presynaptic
        if projection.size == 0 or not self.owned[post].size:
            return 0
        pairs = projection.network.get_connectivity_set(projection.name).load_incoming(
            chunks=self.owned_chunks[post])
        if not len(pairs):
            return 0
        sources = (pairs[:, 0] + self.first_gids[pre]).tolist()
        # owned cells in chunk order are the owned indices, sorted: find each target
        cells = self.cells[post]
        targets = np.searchsorted(self.owned[post], pairs[:, 1]).tolist()
        gid_connect, netcons = self.pc.gid_connect, self.netcons
        for synapse in projection.synapses:
            weight, delay = float(synapse.weight), float(synapse.delay)
            for source, target in zip(sources, targets):
                netcon = gid_connect(source, cells[target])
                netcon.weight[0] = weight
                netcon.delay = delay
                netcons.append(netcon)
        return len(pairs) * len(projection.synapses)

    def create_devices(self) -> int:
        h, pc, plan = self.h, self.pc, self.plan
        made = 0
        self._spike_times, self._spike_gids = h.Vector(), h.Vector()
        for gid_type in plan.recorded:
            for gid in self._targets(None, gid_type).tolist():
                pc.spike_record(gid, self._spike_times, self._spike_gids)
        for number, (name, device) in enumerate(plan.devices.items()):
            if device.kind is DeviceKind.RECORDER:
                continue  # pc.spike_record: no connection
            keys = device.device_parameters()
            rate = float(keys.get("rate", 0.0))
            origin = float(keys.get("origin", 0.0))
            start = origin + float(keys.get("start", 0.0))
            stop = origin + float(keys["stop"]) if "stop" in keys else None
            seed = plan.seed % (1 << 32)
            for cell_type in device.target_types() if rate > 0 else ():
                gids = self._targets(name, cell_type)
                cells = self.cells[cell_type]
                places = np.searchsorted(self.owned[cell_type], gids - self.first_gids[cell_type])
                for gid, place in zip(gids.tolist(), places.tolist()):
                    cell = cells[place]
                    stim = h.NetStim()
                    stim.interval = 1000.0 / rate
                    stim.number = 1e9
                    stim.start = start
                    stim.noise = 1
                    stim.noiseFromRandom123(seed, number, gid)
                    netcon = h.NetCon(stim, cell, 0, float(device.delay), float(device.weight))
                    self.device_objects += [stim, netcon]
                    if stop is not None:
                        off = h.NetCon(None, stim)
                        off.weight[0] = -1
                        self.device_objects.append(off)
                        self._stops.append((off, stop))
                    made += 1
        return made

    def _targets(self, device: str | None, cell_type: str) -> np.ndarray:
        """The gids of this rank's cells that ``device`` targets (None: recorded)."""
        owned = self.owned[cell_type]
        chosen = (self.plan.recorded_indices(cell_type) if device is None
                  else self.plan.target_indices(device, cell_type))
        indices = owned if chosen is None else owned[np.isin(owned, chosen)]
        return indices + self.first_gids[cell_type]

    def step_quantum(self) -> float:
        """NEURON's spike exchange interval (collective): the least delay of a NetCon
        between ranks, at most ``_MAX_STEP``. A step that ends inside an interval
        makes one more exchange, which every rank waits for.

        ``set_maxstep`` returns each rank's own view (rank 0 said 1.0 ms, ranks 1 and 2
        0.7 ms, at 3 ranks); the driver takes the least over the ranks."""
        if self._interval is None:
            self._interval = float(self.pc.set_maxstep(_MAX_STEP))
        return self._interval

    def advance(self, until: float) -> None:
        h, pc = self.h, self.pc
        if not self._started:
            self.step_quantum()
            h.finitialize()
            for off, stop in self._stops:
                off.event(stop)
            self._started = True
        pc.psolve(until)

    def collect_spikes(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        times = np.array(self._spike_times.as_numpy(), dtype=np.float64) \
            if self._spike_times is not None else np.empty(0)
        gids = np.array(self._spike_gids.as_numpy(), dtype=np.int64) \
            if self._spike_gids is not None else np.empty(0, np.int64)
        out = {}
        windows = self._recorder_windows()
        for cell_type in self.plan.recorded:
            first = self.first_gids[cell_type]
            mask = (gids >= first) & (gids < first + self.plan.populations[cell_type].size)
            start, stop = windows.get(cell_type, (0.0, None))
            mask &= times >= start
            if stop is not None:
                mask &= times < stop
            out[cell_type] = ((gids[mask] - first).astype(np.uint64), times[mask])
        return out

    def _recorder_windows(self) -> dict[str, tuple[float, float | None]]:
        windows = {}
        for device in self.plan.devices.values():
            if device.kind is not DeviceKind.RECORDER:
                continue
            keys = device.device_parameters()
            origin = float(keys.get("origin", 0.0))
            stop = origin + float(keys["stop"]) if "stop" in keys else None
            for cell_type in device.target_types():
                windows.setdefault(cell_type, (origin + float(keys.get("start", 0.0)), stop))
        return windows

    def connection_count(self) -> int:
        """The NetCons of stored pairs and devices on this rank, counted by NEURON (the
        cells' own spike-source NetCons and the devices' off switches left out)."""
        return int(self.h.List("NetCon").count()) - len(self._source_netcons) - len(self._stops)

    def release(self) -> None:
        """Free this simulation's objects in NEURON (before another one is built in the
        same process); slow for large networks, so never done at exit."""
        if self in _LIVE:
            _LIVE.remove(self)
        if self.pc is not None:
            self.pc.gid_clear()
        self.netcons.clear()
        self.device_objects.clear()
        self._source_netcons.clear()
        self._stops.clear()
        self.cells.clear()
        self.populations.clear()
        self._spike_times = self._spike_gids = None

    # --- checks -----------------------------------------------------------------------

    def _check_cell_model(self, node: Any) -> None:
        plan = self.plan
        model, parameters = node.model, node.model_parameters()
        if model not in ARTIFICIAL_CELLS:
            hint = difflib.get_close_matches(model, ARTIFICIAL_CELLS, n=1)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigurationError(f"{plan.path(*node.where('model'))}: NEURON has no "
                                     "artificial cell "
                                     f"'{model}'{suffix}; use " + ", ".join(ARTIFICIAL_CELLS))
        known = self._parameter_names(model)
        for key, value in parameters.items():
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigurationError(f"{plan.path(*node.where('parameters', key))}: "
                                         f"NEURON's {model} has no "
                                         f"parameter '{key}'{suffix}; it has "
                                         + ", ".join(known))
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(f"{plan.path(*node.where('parameters', key))}: "
                                         "expected a number for "
                                         f"NEURON's {model}.{key}, got {value!r}")

    def _parameter_names(self, model: str) -> list[str]:
        """The PARAMETERs of an artificial cell, as NEURON itself lists them."""
        standard = self.h.MechanismStandard(model, 1)
        name = self.h.ref("")
        names = []
        for index in range(int(standard.count())):
            standard.name(name, index)
            names.append(str(name[0]))
        return names

    def _check_device(self, name: str, device: Any) -> None:
        path = self.plan.path("devices", name)
        allowed = _DEVICE_KEYS.get(device.device)
        if allowed is None:
            raise ConfigurationError(f"{path}.device: NEURON's artificial cells take no "
                                     f"{device.device} (they have no membrane current); use "
                                     "a poisson_generator")
        for key in device.model_parameters():
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigurationError(f"{self.plan.path(*device.where('parameters', key))}: "
                                         f"NEURON's {device.device} "
                                         f"has no parameter '{key}'{suffix}")
        if device.receptor_type is not None:
            raise ConfigurationError(f"{path}.receptor_type: NEURON's artificial cells have "
                                     "no receptors")
