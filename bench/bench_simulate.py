"""Benchmark: simulate the example network (1x and 4x) in NEST and NEURON, and in BSB 8.0.2.

Run it from anywhere (it compiles the networks and launches the simulations itself)::

    .venv/bin/python bench/bench_simulate.py                        # 1x and 4x, every row
    .venv/bin/python bench/bench_simulate.py --sizes 1 --rows neuron-1 neuron-2
    .venv/bin/python bench/bench_simulate.py --sizes 1 --rows bsb  # the reference only

Sizes as ``bench/bench_compile.py`` makes them (the example, 400 x 400 µm, and 4x,
800 x 800 µm); a ``simulations:`` section is added to a copy of the example: every cell
type a simple integrate-and-fire model (NEST ``iaf_psc_alpha``, NEURON ``IntFire1``),
every connection set a weight and delay (Golgi, stellate and basket cells inhibit),
Poisson background into the granule cells, and spike recorders on every cell type (a
tenth of the granule cells, as in the example: NEST keeps 32 KB per recorded cell).
Each granule cell excites weakly (its targets receive thousands of them).

Rows: NEST at 1 and 2 threads, NEURON serially and under ``mpiexec -n 2``, and the
reference framework (``bsb``, below). Each of ours is two runs in fresh processes, one
simulating 100 ms and one 1,000 ms; the build figures
are from the 100 ms run. Columns: time to read the network, create the cells, connect
(stored pairs), add the devices (stimuli and recorders), simulate 100 ms and 1,000 ms, peak RSS per rank
(``VmHWM``, of the 1,000 ms run), and the connections (pairs and devices) made per rank.

Then the targets: NEST's connect of the stored pairs (read from the file and connected,
as ``simulate`` does) against ``nest.Connect`` of the same pairs from arrays already in
memory, both in one process, best of three (at most 1.5x); the whole ``neuroscaffold
simulate`` command (interpreter start to exit, spike file written) of the example's own
``basal_activity`` for 100 ms at 1 and 2 threads, wall and CPU seconds (against the
reference's 21.7 s: at most 7.2 s and 4.3 s); NEURON at -n 2 against serial
(simulation at least 1.8x faster, peak RSS per rank at most 0.6x). On a loaded machine
the CPU seconds are the steadier figure.

The reference row (``--rows bsb``; ``bench/bsb_reference.py`` does its steps): BSB
8.0.2 with bsb-nest 8.0.2 and nest-simulator 3.10.0 in a throw-away virtual
environment under /tmp (``--bsb-venv``; made on first use, never a dependency: if it
does not install, the row says why in one line and the bench goes on). The compiled
network is rebuilt in BSB's own HDF5 storage with BSB's public API (positions chunk by
chunk, the stored pairs of every set) and read back: the row's comment says whether it
is ours cell for cell (positions and pairs). The example's ``basal_activity`` becomes a
BSB ``simulations:`` entry (``constants``, ``synapses: [...]``, ``targetting:``; the
tenth of the granule cells recorded is ours, by id), at ``threads: 1`` and ``2`` (BSB
accepts ``threads:`` and never applies it). Its table row is one run with bsb-nest's
steps timed (read: imports, opening the network and the adapter's setup; no 1,000 ms
run). Then, for 1 and 2 threads, the whole ``neuroscaffold simulate`` and the whole
``bsb simulate`` (interpreter start to exit, result file written) back to back on the
same load (``--repeats`` pairs, best of each), wall and CPU seconds and peak RSS, against
the targets (ours at least 3x faster at 1 thread, 5x at 2 threads); the same at one
thread with BSB's Poisson generators made NEST ``poisson_generator_ps``, as ours are
(what that choice is worth); and the firing rates of both 1-thread runs per cell type
(the same network and devices should fire alike, not spike for spike). It works at 4x
too (the rebuild then takes minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bsb_reference  # noqa: E402  (beside this file: the BSB steps)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cerebellum.yaml"
SIZES = {1: (400, 400), 4: (800, 800)}
ROWS = ("nest-1", "nest-2", "neuron-1", "neuron-2", "bsb")
#: the reference row's label
BSB = "BSB 8.0.2 + bsb-nest 8.0.2"
#: the example's simulation for the whole command, as `_config` names it (1 thread)
EXAMPLE_100 = "example_100_1"
INHIBITORY = ("golgi", "stellate", "basket")

#: one simulation in a fresh process: prints a JSON line per rank
CHILD = r"""
import json, sys, time
started = time.perf_counter()
from neuroscaffold import MPI, from_storage
network = from_storage(sys.argv[1])
result = network.simulate(sys.argv[2], quiet=True)
peak = 0.0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) / 1024
print(json.dumps({"rank": MPI.get_rank(), "timings": result.timings,
                  "connections": result.connections, "devices": result.device_connections,
                  "rss_mb": peak, "wall": time.perf_counter() - started}), flush=True)
"""

#: NEST's own speed, in one process (the same load on both): our build (read the
#: stored pairs and connect them, as `simulate` does) against Create and array Connect
#: of the same pairs already in memory, each the best of three fresh kernels
ARRAYS = r"""
import json, sys, time
import numpy as np
from neuroscaffold import from_storage
from neuroscaffold.simulation._nest import NestAdapter
from neuroscaffold.simulation._run import build_plan
network = from_storage(sys.argv[1])
simulation = network.configuration.simulations[sys.argv[2]]
pairs = {name: network.get_connectivity_set(name).load_connections()
         for name in simulation.connection_models}
best = {}
def now():
    return time.perf_counter(), time.process_time()
def keep(key, since, until):  # wall and CPU seconds (one thread: CPU is steadier)
    for suffix, seconds in (("", until[0] - since[0]), ("_cpu", until[1] - since[1])):
        best[key + suffix] = min(best.get(key + suffix, seconds), seconds)
for _ in range(3):
    plan = build_plan(network, simulation)
    adapter = NestAdapter(plan)
    adapter.prepare()  # imports NEST (once) and resets the kernel
    nest = adapter.nest
    prepared = now()
    adapter.create_cells()
    created = now()
    for projection in plan.projections.values():
        adapter.connect(projection)
    keep("ours_cells", prepared, created)
    keep("ours_connect", created, now())
    nest.ResetKernel()
    started = now()
    first = {name: nest.Create("iaf_psc_alpha", population.size)[0].global_id
             for name, population in plan.populations.items()}
    created = now()
    for name, rows in pairs.items():
        model = simulation.connection_models[name]
        strategy = network.configuration.connectivity[name]
        nest.Connect(rows[:, 0] + first[strategy.presynaptic.name],
                     rows[:, 1] + first[strategy.postsynaptic.name], "one_to_one", {
            "synapse_model": "static_synapse", "weight": np.full(len(rows), model.weight),
            "delay": np.full(len(rows), model.delay)})
    keep("cells", started, created)
    keep("connect", created, now())
print(json.dumps(best), flush=True)
"""


def _weight(presynaptic: str) -> float:
    """Inhibitory cells inhibit; each granule cell excites weakly (a Golgi or Purkinje
    cell receives thousands of them), so that activity stays moderate."""
    if presynaptic in INHIBITORY:
        return -2.0
    return 0.05 if presynaptic == "granule" else 1.0


def _config(folder: Path, factor: int) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["network"]["x"], data["network"]["z"] = SIZES[factor]
    data.pop("simulations", None)
    sets = data["connectivity"]
    for label, model, scale, threads in (("nest", "iaf_psc_alpha", 20.0, 1),
                                         ("nest2", "iaf_psc_alpha", 20.0, 2),
                                         ("neuron", "IntFire1", 0.1, 1)):
        simulator = "neuron" if label == "neuron" else "nest"
        for duration in (100, 1000):
            data.setdefault("simulations", {})[f"{label}_{duration}"] = {
                "simulator": simulator, "duration": duration, "resolution": 0.1,
                "threads": threads,
                "cell_models": {name: {"model": model} for name in data["cell_types"]},
                "connection_models": {
                    name: {"weight": _weight(strategy["presynaptic"]) * scale,
                           "delay": 1.0 + 0.5 * (strategy["presynaptic"] in INHIBITORY)}
                    for name, strategy in sets.items()},
                "devices": {
                    "background": {"device": "poisson_generator", "rate": 20.0,
                                   "targets": ["granule"], "weight": 3 * scale, "delay": 1.0},
                    # as the example: a tenth of the granule cells (NEST: 32 KB per cell)
                    "granule_spikes": {"device": "spike_recorder", "targets": ["granule"],
                                       "fraction": 0.1},
                    "spikes": {"device": "spike_recorder",
                               "targets": [t for t in data["cell_types"] if t != "granule"]}},
            }
    example = yaml.safe_load(EXAMPLE.read_text())["simulations"]["basal_activity"]
    for threads in (1, 2):  # the example's own simulation, for the whole command
        data["simulations"][f"example_100_{threads}"] = dict(example, duration=100,
                                                             threads=threads)
    path = folder / f"cerebellum-sim-{factor}x.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def _run(code: str, args: list[str], ranks: int, folder: Path) -> list[dict]:
    script = folder / f"child_{abs(hash(code)) % 10**6}.py"
    script.write_text(code)
    command = [sys.executable, str(script), *args]
    if ranks > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        command = [str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", str(ranks), *command]
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=3600)
    lines = _objects(done.stdout)
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    return sorted(lines, key=lambda line: line.get("rank", 0))


def _command(network: Path, simulation: str, folder: Path) -> tuple[float, float, float]:
    """The wall and CPU seconds and the peak RSS (MB) of the whole `neuroscaffold
    simulate` command, from the interpreter's start to its exit (the spike file
    written)."""
    return _timed([sys.executable, "-m", "neuroscaffold", "simulate", str(network), simulation,
                   "-o", str(folder / f"{simulation}.spikes.h5"), "-q"], folder, env=_env())


def _timed(command: list[str], folder: Path, timeout: float = 3600, **options) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, with the processes it waited for) and
    peak RSS (MB) of one command, from this child's own resource usage (``wait4``)."""
    log = folder / "command.log"
    started = time.perf_counter()
    with open(log, "w") as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, **options)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n"
                         + log.read_text()[-3000:])
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _objects(text: str) -> list[dict]:
    """The JSON objects the ranks printed (mpiexec may join two ranks' lines)."""
    decoder, found, at = json.JSONDecoder(), [], text.find("{")
    while at >= 0:
        try:
            value, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at = text.find("{", at + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        at = text.find("{", end)
    return found


def _bytecode() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "neuroscaffold")],
                   check=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE=""))


def _compile(config: Path, output: Path) -> None:
    subprocess.run([sys.executable, "-m", "neuroscaffold", "compile", str(config), "-o",
                    str(output), "-q"], check=True, env=_env(), timeout=3600)


def _row(network: Path, row: str, folder: Path) -> dict:
    simulator, count = row.split("-")
    ranks = int(count) if simulator == "neuron" else 1
    label = "nest2" if row == "nest-2" else simulator
    short = _run(CHILD, [str(network), f"{label}_100"], ranks, folder)
    long = _run(CHILD, [str(network), f"{label}_1000"], ranks, folder)
    t = short[0]["timings"]
    return {"row": row, "read": t.get("read", 0.0) + t.get("prepare", 0.0),
            "cells": t.get("cells", 0.0), "connect": t.get("connect", 0.0),
            "devices": t.get("devices", 0.0),
            "sim100": max(r["timings"]["simulate"] for r in short),
            "sim1000": max(r["timings"]["simulate"] for r in long),
            "cpu1000": max(r["timings"].get("simulate_cpu", 0.0) for r in long),
            "rss": [r["rss_mb"] for r in long],
            "connections": [r["connections"] + r["devices"] for r in long],
            "wall": max(r["wall"] for r in long)}


def _reference(network: Path, factor: int, folder: Path, venv: Path, repeats: int) -> list[str]:
    """The reference rows: our network rebuilt in BSB's storage (checked cell for cell),
    one instrumented BSB run for the table, then the whole `bsb simulate` and
    `neuroscaffold simulate` commands back to back at 1 and 2 threads. Prints the table
    row and returns the target lines (or one line that says why it was skipped)."""
    python = bsb_reference.bsb_python(venv)
    if isinstance(python, str):
        print(f"| {factor}x | {BSB} | skipped: {python} ||||||||", flush=True)
        return [f"{factor}x side by side with {BSB}: skipped ({python})"]
    npz, config, names, recorded = bsb_reference.export(network, EXAMPLE_100, folder, 100.0)
    root = folder / f"bsb-{factor}x.hdf5"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    started = time.perf_counter()
    built = subprocess.run([str(python), bsb_reference.__file__, "build", str(npz), str(config),
                            str(root)], capture_output=True, text=True, timeout=7200, env=env,
                           cwd=folder)
    summary = _objects(built.stdout)
    if built.returncode != 0 or not summary:
        last = (built.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"| {factor}x | {BSB} | skipped: the network could not be rebuilt in BSB's "
              f"storage: {last} ||||||||", flush=True)
        return [f"{factor}x side by side with {BSB}: skipped (rebuild failed: {last})"]
    check = summary[-1]
    cells, pairs = sum(check["cells"].values()), sum(check["pairs"].values())
    print(f"<!-- {factor}x rebuilt in BSB's storage in {time.perf_counter() - started:.1f} s: "
          f"{cells:,} cells, {pairs:,} pairs, "
          + ("the same as ours cell for cell" if not check["problems"] else
             "NOT the same as ours: " + "; ".join(check["problems"]))
          + "".join(f"; {name}: {count:,} repeated pairs (BSB connects each pair once, with "
                    "the summed weight)" for name, count in check["duplicates"].items() if count)
          + " -->", flush=True)
    # the table's row: one run with bsb-nest's steps timed (the 1,000 ms run is not
    # made: it would cost ten times the 100 ms simulation again, for a target that
    # concerns 100 ms)
    phases = folder / "bsb_phases.py"
    phases.write_text(bsb_reference.PHASES)
    done = subprocess.run([str(python), str(phases), str(root), names[1],
                           str(folder / "phases.nio")], capture_output=True, text=True,
                          timeout=3600, env=env, cwd=folder)
    lines = _objects(done.stdout)
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the instrumented BSB run failed:\n{done.stderr[-3000:]}")
    r, t = lines[-1], lines[-1]["timings"]
    print(f"| {factor}x | {BSB}, 1 thread | {t['read']:.2f} | {t['cells']:.2f} | "
          f"{t['connect']:.2f} | {t['devices']:.2f} | {t['simulate']:.2f} | not run | "
          f"{r['rss_mb']:,.0f} | {r.get('connections', 0):,} |", flush=True)
    out = [f"{factor}x {BSB} (1 thread, 100 ms, one instrumented run): connect {t['connect']:.2f} s, "
           f"{r['wall']:.2f} s from its imports to the result file, peak RSS {r['rss_mb']:,.0f} MB"]
    for threads in (1, 2):
        ours: list[tuple[float, float, float]] = []
        theirs: list[tuple[float, float, float]] = []
        for _ in range(max(1, repeats)):  # back to back, on the same load
            ours.append(_command(network, f"example_100_{threads}", folder))
            output = folder / f"bsb-out-{threads}"
            theirs.append(_timed([str(python.parent / "bsb"), "simulate", str(root), names[threads],
                                  "-o", str(output), "--exists"], folder, env=env, cwd=folder))
        (wall, cpu, rss), (bwall, bcpu, brss) = min(ours), min(theirs)
        goal = 3 if threads == 1 else 5
        out.append(f"{factor}x whole simulate of the example for 100 ms at {threads} thread(s), "
                   f"side by side: `bsb simulate` {bwall:.2f} s ({bcpu:.2f} s CPU, {brss:,.0f} MB) "
                   f"vs `neuroscaffold simulate` {wall:.2f} s ({cpu:.2f} s CPU, {rss:,.0f} MB): "
                   f"{bwall / max(wall, 1e-9):.2f}x faster, {bcpu / max(cpu, 1e-9):.2f}x in CPU "
                   f"seconds (target >= {goal}x; load {os.getloadavg()[0]:.1f})")
        if threads == 1:  # what NEST's poisson_generator_ps (as ours uses it) is worth to BSB
            pwall, pcpu, _ = _timed([str(python.parent / "bsb"), "simulate", str(root), names[0],
                                     "-o", str(folder / "bsb-out-ps"), "--exists"], folder,
                                    env=env, cwd=folder)
            out.append(f"{factor}x the same with BSB's poisson_generator devices made NEST "
                       f"poisson_generator_ps ones (as ours makes them): `bsb simulate` "
                       f"{pwall:.2f} s ({pcpu:.2f} s CPU): ours {pwall / max(wall, 1e-9):.2f}x faster, "
                       f"{pcpu / max(cpu, 1e-9):.2f}x in CPU seconds")
    out.append(_activity(python, folder, recorded, env))
    return out


def _activity(python: Path, folder: Path, recorded: dict[str, int], env: dict[str, str]) -> str:
    """Spikes per recorded cell per second, ours against BSB's, of the 1-thread runs:
    the same network and devices should give about the same rates (not the same
    spikes: the random streams differ)."""
    import h5py

    rates = folder / "bsb_rates.py"
    rates.write_text(bsb_reference.RATES)
    results = sorted((folder / "bsb-out-1").glob("*.nio"), key=lambda path: path.stat().st_mtime)
    done = subprocess.run([str(python), str(rates), str(results[-1])], capture_output=True,
                          text=True, timeout=600, env=env, cwd=folder) if results else None
    if done is None or done.returncode != 0 or not _objects(done.stdout):
        return "activity: BSB's result file could not be read"
    theirs = _objects(done.stdout)[-1]
    parts = []
    with h5py.File(folder / "example_100_1.spikes.h5", "r") as spikes:
        for cell_type, cells in recorded.items():
            mine = len(spikes[f"spikes/{cell_type}/timestamps"]) / max(cells, 1) / 0.1
            count = theirs["cells"].get(cell_type, 0)
            other = theirs["spikes"].get(cell_type, 0) / max(count, 1) / 0.1
            parts.append(f"{cell_type} {mine:.1f} vs {other:.1f}"
                         + ("" if count == cells else f" ({count:,} cells recorded, ours {cells:,})"))
    return "activity of the 1-thread runs, Hz per recorded cell, ours vs BSB's: " + ", ".join(parts)


def _build(row: dict) -> float:
    return row["cells"] + row["connect"] + row["devices"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4], choices=sorted(SIZES))
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS,
                        help="bsb: the reference framework's row and the whole simulate "
                             "command side by side with it")
    parser.add_argument("--bsb-venv", type=Path, default=Path("/tmp/neuroscaffold-bench-bsb"),
                        help="the throw-away venv of the reference (made on first use)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="side-by-side pairs of whole commands per thread count (the "
                             "best of each side is reported)")
    args = parser.parse_args(argv)
    _bytecode()
    with tempfile.TemporaryDirectory(prefix="ns-bench-sim-") as tmp:
        folder = Path(tmp)
        print("| size | row | read (s) | create cells (s) | connect (s) | devices (s) | simulate "
              "100 ms (s) | simulate 1,000 ms (s) | peak RSS per rank (MB) | connections "
              "per rank |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        targets = []
        for factor in args.sizes:
            network = folder / f"cerebellum-{factor}x.hdf5"
            started = time.perf_counter()
            _compile(_config(folder, factor), network)
            print(f"<!-- {factor}x compiled in {time.perf_counter() - started:.1f} s -->",
                  flush=True)
            results = {}
            for row in (row for row in args.rows if row != "bsb"):
                r = results[row] = _row(network, row, folder)
                print(f"| {factor}x | {row} | {r['read']:.2f} | {r['cells']:.2f} | "
                      f"{r['connect']:.2f} | {r['devices']:.2f} | {r['sim100']:.2f} | {r['sim1000']:.2f} | "
                      + " + ".join(f"{v:,.0f}" for v in r["rss"]) + " | "
                      + " + ".join(f"{v:,}" for v in r["connections"]) + " |", flush=True)
            if "bsb" in args.rows:
                targets += _reference(network, factor, folder, args.bsb_venv, args.repeats)
            if "nest-1" in results:
                a = _run(ARRAYS, [str(network), "nest_100"], 1, folder)[0]
                ours, bare = a["ours_cells"] + a["ours_connect"], a["cells"] + a["connect"]
                targets.append(
                    f"{factor}x NEST connect of the stored pairs {a['ours_connect']:.2f} s vs "
                    f"nest.Connect of the same pairs from arrays in memory {a['connect']:.2f} s: "
                    f"{a['ours_connect'] / max(a['connect'], 1e-9):.2f}x, in CPU seconds "
                    f"{a['ours_connect_cpu']:.2f} vs {a['connect_cpu']:.2f}: "
                    f"{a['ours_connect_cpu'] / max(a['connect_cpu'], 1e-9):.2f}x (target <= 1.5x); "
                    f"cells + connect {ours:.2f} s vs {bare:.2f} s: {ours / max(bare, 1e-9):.2f}x "
                    "(best of 3 in one process)")
            for threads in (1, 2):
                if f"nest-{threads}" in results:
                    whole, cpu, _ = _command(network, f"example_100_{threads}", folder)
                    targets.append(f"{factor}x `neuroscaffold simulate` of the example's "
                                   f"basal_activity for 100 ms at {threads} thread(s): "
                                   f"{whole:.2f} s ({cpu:.2f} s of CPU; target "
                                   f"<= {21.7 / (3 if threads == 1 else 5):.1f} s)")
            if "neuron-1" in results and "neuron-2" in results:
                one, two = results["neuron-1"], results["neuron-2"]
                targets.append(f"{factor}x NEURON -n 2: simulates 1,000 ms "
                               f"{one['sim1000'] / max(two['sim1000'], 1e-9):.2f}x faster "
                               f"(in CPU seconds per rank {one['cpu1000'] / max(two['cpu1000'], 1e-9):.2f}x) "
                               f"(target >= 1.8x), peak RSS per rank {max(two['rss']) / one['rss'][0]:.2f}x "
                               f"serial (target <= 0.6x), build {_build(one) / max(_build(two), 1e-9):.2f}x faster")
        print()
        for line in targets:
            print(line)


if __name__ == "__main__":
    main()
