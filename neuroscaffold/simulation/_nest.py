"""The NEST adapter (``simulator: nest``, extra ``nest``): the network built from arrays.

* One ``Create`` per cell type, in the configuration's order, before any device: the
  cells of a type are contiguous in node ids, so ``node id - first id`` is the cell's
  index in ``load_positions()`` (``adapter.first_ids``).
* One array ``Connect`` per block of a connection set's stored pairs (``one_to_one``
  with numpy arrays of sources, targets, weights and delays): no Python object per
  pair, and memory bounded by the block size whatever the set's size.
* Every model is a ``CopyModel`` of the configured one with its parameters, made in
  :meth:`NestAdapter.prepare`, so that a bad model or parameter name is refused before
  any cell is created, with the configuration path.
* ``threads:`` is NEST's ``local_num_threads``; the kernel's ``rng_seed`` comes from the
  simulation's seed (default: the network's), so the same simulation at the same
  thread count gives the same spikes.

The PyPI wheel of NEST has no MPI: under ``mpiexec -n K`` (K > 1) every rank would die
at ``import nest`` with NEST's FATAL error. :meth:`NestAdapter.check_environment`
refuses it first, in one line, without importing NEST. A NEST built with MPI is
detected (it has no such error text) and runs the same calls on every rank; NEST then
keeps each rank's share of the cells.
"""

from __future__ import annotations

import difflib
import importlib.util
import mmap
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ConfigurationError, DependencyError, SimulationError
from ._adapter import Projection, SimulationPlan, SimulatorAdapter
from ._imports import import_simulator
from .schema import DeviceKind

__all__ = ["NestAdapter", "nest_has_mpi"]

#: stored pairs per array Connect: 1 M pairs are 48 MB of arrays
BLOCK_ROWS = 1 << 20
#: the text NEST's kernel holds only when it was built without MPI
_NO_MPI_TEXT = b"although NEST was not compiled with MPI support"
#: our device name -> the NEST model that realises it, where it is not NEST's own.
#: ``poisson_generator``: NEST's ``poisson_generator_ps`` draws each target's train
#: spike by spike (its intervals), where ``poisson_generator`` draws a count for every
#: target at every time step: the same independent Poisson trains (a grid-based cell
#: receives each spike in the step that holds it), at 6x less cost for the example's
#: 93,600 granule cells at 80 Hz (0.45 s instead of 2.7 s of CPU per 100 ms).
_DEVICE_MODELS = {"poisson_generator": "poisson_generator_ps"}
#: NEST's largest rng_seed is 2**31 - 1 (and 0 is refused)
_SEED_RANGE = 2**31 - 2


def nest_has_mpi() -> bool | None:
    """Whether the installed NEST was built with MPI, found without importing it (an
    import under ``mpiexec`` would kill a NEST without MPI); None if NEST is missing."""
    try:
        spec = importlib.util.find_spec("nest")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for library in sorted(Path(folder).glob("nestkernel*.so")) + sorted(
                Path(folder).glob("lib*/libnest*.so*")):
            if _contains(library, _NO_MPI_TEXT):
                return False
    return True


def _contains(path: Path, text: bytes) -> bool:
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(text) >= 0
    except (OSError, ValueError):
        return False


def _import_nest() -> Any:
    """NEST, imported quietly: no banner, no warnings, errors only."""
    os.environ.setdefault("PYNEST_QUIET", "1")
    warnings.filterwarnings("ignore", module=r"nest(\..*)?$")
    # PyNEST switches the interpreter to RTLD_GLOBAL for every extension module loaded
    # after it (nest/ll_api.py): libraries loaded later then bind to each other's
    # symbols (an h5py loaded after NEST shares its HDF5 with libsonata, and a file open
    # in both is refused). NEST's own libraries are loaded by then, and its extension
    # modules come through its own loader: the process gets its flags back.
    flags = sys.getdlopenflags()
    try:
        nest = import_simulator("nest")
    except ImportError as error:
        raise DependencyError(f"NEST could not be imported ({error}); install it with: "
                              "pip install 'neuroscaffold[nest]'") from None
    finally:
        sys.setdlopenflags(flags)
    nest.verbosity = nest.VerbosityLevel.ERROR
    return nest


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "list"
    return type(value).__name__


_WORDS = {"bool": "true or false", "number": "a number", "str": "a string", "list": "a list"}


class NestAdapter(SimulatorAdapter):
    """Builds and runs a simulation in NEST (see the module text)."""

    name = "nest"
    module = "nest"
    extra = "nest"
    distributed = False

    def __init__(self, plan: SimulationPlan):
        super().__init__(plan)
        self.nest: Any = None
        #: cell type -> the node id of its first cell
        self.first_ids: dict[str, int] = {}
        self._cell_models: dict[str, str] = {}  # cell type -> its CopyModel's name
        self._synapse_models: dict[tuple[str, int], str] = {}  # (set, synapse) -> model
        self._recorders: dict[str, Any] = {}  # recorded cell type -> its spike recorder
        self._prepared = False
        self._time = 0.0

    # --- before importing NEST --------------------------------------------------------

    @classmethod
    def check_environment(cls, plan: SimulationPlan) -> None:
        if plan.size > 1 and not nest_has_mpi():
            raise SimulationError(
                f"{plan.path()}: NEST is installed without MPI, so it cannot run on "
                f"{plan.size} ranks (under mpiexec it would end every rank with a FATAL "
                f"error): run `neuroscaffold simulate` without mpiexec and set "
                f"{plan.path('threads')} to use several cores, or set "
                f"{plan.path('simulator')}: neuron to spread the simulation over MPI ranks")

    # --- the steps --------------------------------------------------------------------

    def prepare(self) -> None:
        nest = self.nest = _import_nest()
        plan = self.plan
        nest.ResetKernel()
        nest.verbosity = nest.VerbosityLevel.ERROR
        for index, module in enumerate(plan.simulation.modules):
            try:
                nest.Install(module)
            except nest.NESTError as error:
                raise ConfigurationError(f"{plan.path('modules', str(index))}: NEST cannot "
                                         f"install module '{module}' ({_nest_text(error)})") from None
        nest.SetKernelStatus({
            "local_num_threads": plan.threads,
            "resolution": plan.resolution,
            "rng_seed": plan.seed % _SEED_RANGE + 1,
        })
        for name, population in plan.populations.items():
            model = population.model
            self._cell_models[name] = self._copy_model(
                model.model, model.model_parameters(), model, "model", nest.node_models,
                "neuron model", f"ns_cell_{name}")
        for name, projection in plan.projections.items():
            for number, synapse in enumerate(projection.synapses):
                self._check_delay(synapse.delay, synapse.where("delay"))
                self._synapse_models[name, number] = self._copy_model(
                    synapse.model, synapse.model_parameters(), synapse, "model",
                    nest.synapse_models, "synapse model", f"ns_syn_{name}_{number}")
        for name, device in plan.devices.items():
            if device.kind is DeviceKind.STIMULUS:
                self._check_delay(device.delay, device.where("delay"))
            self._copy_model(device.device, device.device_parameters(), device, "device",
                             nest.node_models, "device", f"ns_dev_{name}",
                             realised=_DEVICE_MODELS.get(device.device))
        self._prepared = True

    def create_cells(self) -> None:
        nest = self.nest
        for name, population in self.plan.populations.items():
            if population.size == 0:
                continue
            cells = nest.Create(self._cell_models[name], population.size)
            self.populations[name] = cells
            self.first_ids[name] = int(cells[0].global_id)
            if int(cells[-1].global_id) - self.first_ids[name] != population.size - 1:
                raise SimulationError(f"{self.plan.path()}: NEST did not give the cells of "
                                      f"'{name}' contiguous node ids")

    def connect(self, projection: Projection) -> int:
        nest = self.nest
        if projection.size == 0 or projection.presynaptic not in self.first_ids or \
                projection.postsynaptic not in self.first_ids:
            return 0
        pre_first = self.first_ids[projection.presynaptic]
        post_first = self.first_ids[projection.postsynaptic]
        made = 0
        for pairs in projection.blocks(BLOCK_ROWS):
            sources = np.add(pairs[:, 0], pre_first, dtype=np.int64)  # one pass, no copy first
            targets = np.add(pairs[:, 1], post_first, dtype=np.int64)
            for number, synapse in enumerate(projection.synapses):
                spec: dict[str, Any] = {
                    "synapse_model": self._synapse_models[projection.name, number],
                    "weight": np.full(len(pairs), synapse.weight, dtype=np.float64),
                    "delay": np.full(len(pairs), synapse.delay, dtype=np.float64),
                }
                if synapse.receptor_type is not None:
                    spec["receptor_type"] = np.full(len(pairs), synapse.receptor_type,
                                                    dtype=np.float64)
                self._call(lambda: nest.Connect(sources, targets, "one_to_one", spec),
                           self.plan.path(*synapse.where()))
            made += len(pairs) * len(projection.synapses)
        return made

    def create_devices(self) -> int:
        """Each device, connected by array ``Connect`` too (NEST's own path for
        ``Connect(cells, recorder)`` took 5.7 s for 93,600 cells, the arrays 0.02 s)."""
        nest = self.nest
        made = 0
        for name, device in self.plan.devices.items():
            model = f"ns_dev_{name}"
            where = f"simulations.{self.plan.name}.devices.{name}"
            targets = [t for t in device.target_types() if t in self.populations]
            if device.kind is DeviceKind.RECORDER:
                for cell_type in targets:
                    recorder = nest.Create(model)
                    cells = self._ids(name, cell_type)
                    ones = np.ones(len(cells))
                    self._call(lambda: nest.Connect(
                        cells, np.full(len(cells), recorder.global_id, dtype=np.int64),
                        "one_to_one", {"synapse_model": "static_synapse", "weight": ones,
                                       "delay": ones * self.recorder_delay()}), where)
                    self._recorders.setdefault(cell_type, recorder)
                    made += len(cells)
                continue
            generator = nest.Create(model)
            for cell_type in targets:
                cells = self._ids(name, cell_type)
                spec: dict[str, Any] = {
                    "synapse_model": "static_synapse",
                    "weight": np.full(len(cells), device.weight, dtype=np.float64),
                    "delay": np.full(len(cells), device.delay, dtype=np.float64)}
                if device.receptor_type is not None:
                    spec["receptor_type"] = np.full(len(cells), device.receptor_type,
                                                    dtype=np.float64)
                self._call(lambda: nest.Connect(
                    np.full(len(cells), generator.global_id, dtype=np.int64), cells,
                    "one_to_one", spec), where)
                made += len(cells)
        return made

    def recorder_delay(self) -> float:
        """The delay of the connections into a spike recorder: the least delay the
        simulation already has (else NEST's default, 1 ms).

        A spike recorder stores each spike's own time whatever the delay, but NEST's
        ``min_delay`` is the least delay of *every* connection, and NEST updates all
        cells and exchanges spikes once per ``min_delay``: recorder connections at the
        resolution (0.1 ms) made the example's 100 ms simulate 3.5x slower at one
        thread (10x as many slices, each a pass over every cell) and slower at two
        threads than at one (10x as many thread barriers)."""
        delays = [synapse.delay for projection in self.plan.projections.values()
                  if projection.size for synapse in projection.synapses]
        delays += [device.delay for device in self.plan.devices.values()
                   if device.kind is DeviceKind.STIMULUS]
        return float(min(delays, default=1.0))

    def _ids(self, device: str, cell_type: str) -> np.ndarray:
        """The node ids of the cells of ``cell_type`` that ``device`` targets."""
        return self.plan.target_indices(device, cell_type) + self.first_ids[cell_type]

    def step_quantum(self) -> float:
        """NEST's ``min_delay``: NEST updates the cells a ``min_delay`` at a time, so a
        step that ends inside one cuts it in two (one more pass over every cell), and
        changes the spikes when two random devices share a thread's random stream
        (each draws its part of the cut slice before the other's)."""
        return float(self.nest.GetKernelStatus("min_delay"))

    def advance(self, until: float) -> None:
        nest = self.nest
        if self._time == 0.0:
            nest.Prepare()
        nest.Run(until - self._time)
        self._time = until

    def finish(self) -> None:
        if self._time > 0.0:
            self.nest.Cleanup()

    def collect_spikes(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out = {}
        for cell_type in self.plan.recorded:
            recorder = self._recorders.get(cell_type)
            if recorder is None:
                out[cell_type] = (np.empty(0, np.uint64), np.empty(0, np.float64))
                continue
            events = recorder.get("events")
            senders = np.asarray(events["senders"], dtype=np.int64) - self.first_ids[cell_type]
            out[cell_type] = (senders.astype(np.uint64),
                              np.asarray(events["times"], dtype=np.float64))
        return out

    # --- checks -----------------------------------------------------------------------

    def _copy_model(self, model: str, parameters: dict[str, Any], node: Any, key: str,
                    known: Any, what: str, new_name: str, realised: str | None = None) -> str:
        """``CopyModel(model, new_name, parameters)``, each name checked first (against
        ``model``, the configured name, when NEST's ``realised`` model stands for it).
        ``node`` is the configuration node that gave them, with ``model`` under ``key``:
        an error line names the keys as the user wrote them."""
        nest = self.nest
        plan = self.plan
        known = list(known)
        if model not in known:
            hint = difflib.get_close_matches(model, known, n=1)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigurationError(f"{plan.path(*node.where(key))}: NEST has no {what} "
                                     f"'{model}'{suffix}")
        defaults = nest.GetDefaults(model)
        for key, value in parameters.items():
            if key not in defaults:
                hint = difflib.get_close_matches(key, list(defaults), n=1)
                suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigurationError(f"{plan.path(*node.where('parameters', key))}: NEST's "
                                         f"{model} has no parameter '{key}'{suffix}")
            expected = _kind(defaults[key])
            if _kind(value) != expected and expected in _WORDS:
                raise ConfigurationError(f"{plan.path(*node.where('parameters', key))}: expected "
                                         f"{_WORDS[expected]} for NEST's {model}.{key}, got {value!r}")
        try:
            nest.CopyModel(realised or model, new_name, parameters)
        except nest.NESTError as error:
            text = _nest_text(error)
            if "Unaccessed" in type(error).__name__ or "Unaccessed" in text:
                names = ", ".join(f"'{k}'" for k in parameters if k in text) or "a parameter"
                raise ConfigurationError(f"{plan.path(*node.where('parameters'))}: NEST's {model} "
                                         f"does not let {names} be set (read-only)") from None
            raise ConfigurationError(f"{plan.path(*node.where('parameters'))}: NEST refused the "
                                     f"parameters of {model}: {text}") from None
        return new_name

    def _check_delay(self, delay: float, path: tuple[str, ...]) -> None:
        if delay < self.plan.resolution:
            raise ConfigurationError(f"{self.plan.path(*path)}: the delay {delay:g} ms is "
                                     f"shorter than the resolution {self.plan.resolution:g} ms")

    def _call(self, fn: Any, where: str) -> Any:
        try:
            return fn()
        except self.nest.NESTError as error:
            raise SimulationError(f"{where}: NEST refused it: {_nest_text(error)}") from None


def _nest_text(error: BaseException) -> str:
    """NEST's message on one line, without its 'in function ...' noise."""
    text = " ".join(str(error).split())
    return text[:300]
