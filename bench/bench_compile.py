"""Benchmark: compile the example network at 1x, 4x and 8x, serially and under mpiexec.

Run it from anywhere (it launches the compiles itself)::

    .venv/bin/python bench/bench_compile.py                       # 1x 4x 8x, serial and -n 2
    .venv/bin/python bench/bench_compile.py --sizes 1 --ranks 1 2 4 --repeats 1

Sizes: the example (``examples/cerebellum.yaml``, 400 x 400 µm), 4x (800 x 800) and 8x
(1600 x 800). Runs alternate between rank counts (serial, -n 2, serial, ...) so that a
busy machine slows both alike; each figure is the median of ``--repeats`` runs.

Printed per size and rank count: wall time of the whole command (start-up included),
the compile time, the share of it spent merging the shards into the network file, CPU
seconds summed over ranks, the share of that CPU spent in the
strategies' own ``place``/``connect`` (the rest is the framework: scheduling, reading
cells, writing, merging), max RSS per rank, the file size, bytes the main rank received
per job, MPI lock acquisitions, the speed-up over serial (of the whole command, and of the
compile), and whether the file is the serial one. The package's bytecode is compiled
first, as an installed package has it. Then, per size, the serial CPU of the built-in
``distance`` rule's jobs against its floor (one whole-population KD-tree pair search per
set, the draws and the file write; see ``compile_run.distance_floor``) and their ratio,
and the serial CPU per connection at each size, against 1x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cerebellum.yaml"
RUNNER = Path(__file__).resolve().parent / "compile_run.py"
SIZES = {1: (400, 400), 4: (800, 800), 8: (1600, 800)}


def _config(folder: Path, factor: int) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["network"]["x"], data["network"]["z"] = SIZES[factor]
    path = folder / f"cerebellum-{factor}x.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def compile_once(ranks: int, config: Path, output: Path) -> dict:
    command = [sys.executable, str(RUNNER), str(config), str(output)]
    if ranks > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        command = [str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", str(ranks), *command]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"compile on {ranks} rank(s) failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


def _median(runs: list[dict], key) -> float:
    return statistics.median(key(run) for run in runs)


def _bytecode() -> None:
    """Compile the package's bytecode once, as an installed package has it. Where
    ``PYTHONDONTWRITEBYTECODE`` is set (some shells and CI images set it), every run
    would otherwise compile each of the package's modules from source again, the ones
    a compile imports late (the pool's dispatcher and worker) inside the timed compile.
    """
    import compileall

    compileall.compile_dir(ROOT / "neuroscaffold", quiet=1)


def _floor_row(factor: int, runs: list[dict]) -> dict:
    """The serial distance jobs' CPU against their floor (``compile_run.distance_floor``),
    each run's ratio taken within its own process, where load hits both alike."""
    jobs = [run["ranks"][0]["distance_cpu"] for run in runs]
    floor = [run["floor_cpu"] for run in runs]
    return {"size": f"{factor}x", "jobs": statistics.median(jobs),
            "floor": statistics.median(floor),
            "ratio": statistics.median(j / f for j, f in zip(jobs, floor))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8], choices=sorted(SIZES))
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from neuroscaffold.storage import canonical_contents

    _bytecode()
    rows, per_connection, floors = [], {}, []
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as folder:
        folder = Path(folder)
        for factor in args.sizes:
            config = _config(folder, factor)
            runs: dict[int, list[dict]] = {ranks: [] for ranks in args.ranks}
            same = {}
            for _ in range(args.repeats):
                for ranks in args.ranks:  # alternating
                    output = folder / f"{factor}x-n{ranks}.hdf5"
                    runs[ranks].append(compile_once(ranks, config, output))
            reference = canonical_contents(folder / f"{factor}x-n{args.ranks[0]}.hdf5")
            for ranks in args.ranks:
                same[ranks] = canonical_contents(folder / f"{factor}x-n{ranks}.hdf5") == reference
            base = _median(runs[args.ranks[0]], lambda r: r["wall_s"])
            base_compile = _median(runs[args.ranks[0]], lambda r: r["compile_s"])
            for ranks in args.ranks:
                rs = runs[ranks]
                cpu = _median(rs, lambda r: sum(x["cpu"] for x in r["ranks"]))
                strategy = _median(rs, lambda r: sum(x["strategy_cpu"] for x in r["ranks"]))
                wall = _median(rs, lambda r: r["wall_s"])
                rows.append({
                    "size": f"{factor}x", "ranks": ranks, "wall": wall,
                    "compile": _median(rs, lambda r: r["compile_s"]), "cpu": cpu,
                    "merge": _median(rs, lambda r: r["merge_s"] / r["compile_s"]),
                    "strategies": strategy / cpu if cpu else 0.0,
                    "rss": [round(x["max_rss_mb"]) for x in rs[-1]["ranks"]],
                    "size_mb": rs[-1]["size"] / 1e6,
                    "bytes_per_job": rs[-1]["ranks"][0]["received"] / rs[-1]["jobs"],
                    "locks": sum(x["locks"] for x in rs[-1]["ranks"]),
                    "speedup": base / wall, "same": same[ranks],
                    "compile_speedup": base_compile / _median(rs, lambda r: r["compile_s"]),
                    "cells": rs[-1]["cells"], "connections": rs[-1]["connections"],
                })
                if ranks == 1:
                    per_connection[factor] = cpu / rs[-1]["connections"]
                    floors.append(_floor_row(factor, rs))
    print(f"Compile of the example network (median of {args.repeats}, alternating; "
          f"{os.cpu_count()} cores)\n")
    print("| size | ranks | wall (s) | compile (s) | merge | CPU (s) | in strategies "
          "| max RSS/rank (MB) | file (MB) | main rank recv/job (B) | MPI locks "
          "| speed-up: wall (compile) | same file |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        label = "serial" if row["ranks"] == 1 else f"-n {row['ranks']}"
        print(f"| {row['size']} ({row['cells']:,} cells, {row['connections']:,} pairs) | {label} "
              f"| {row['wall']:.2f} | {row['compile']:.2f} | {row['merge']:.0%} | {row['cpu']:.2f} "
              f"| {row['strategies']:.0%} | {row['rss']} | {row['size_mb']:.0f} "
              f"| {row['bytes_per_job']:.0f} | {row['locks']} "
              f"| {row['speedup']:.2f} ({row['compile_speedup']:.2f}) "
              f"| {'yes' if row['same'] else 'NO'} |")
    if floors:
        print("\nBuilt-in distance sets, serial: CPU of their jobs against the floor, one "
              "whole-population KD-tree pair search per set plus the file write, measured "
              "in the same process right after the compile (median of the ratios)\n")
        print("| size | distance jobs CPU (s) | floor CPU (s) | jobs / floor |")
        print("|---|---|---|---|")
        for row in floors:
            print(f"| {row['size']} | {row['jobs']:.2f} | {row['floor']:.2f} | {row['ratio']:.2f}x |")
    if per_connection and min(per_connection) in per_connection:
        first = per_connection[min(per_connection)]
        print("\nSerial CPU per connection: " + ", ".join(
            f"{factor}x {value * 1e6:.2f} µs ({value / first:.2f}x)"
            for factor, value in sorted(per_connection.items())))


if __name__ == "__main__":
    main()
