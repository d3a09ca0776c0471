"""Benchmark of ``poisson_disk`` placement against ``bsb-native``'s ``poisson_disk``.

Run it with the project's interpreter::

    python bench/bench_placement.py            # 3 repeats, median
    python bench/bench_placement.py --repeats 5

Both kernels sample the same box (a 100 µm cube, one network chunk of the example) at
the same minimum distance (2 x 2.5 µm, the granule cells of ``examples/cerebellum.yaml``)
and the same number of cells (3.9e-3 cells/µm³, the granule density, then higher ones).
``bsb-native`` (a Rust kernel, Bridson's algorithm) is never a dependency: the bench
installs it from PyPI into a throw-away virtual environment under ``/tmp`` the first
time (``--venv`` to choose where) and times it there, in its own process. The last
rows time whole compiles of the example's granular layer (jobs, storage, the merge)
with ``poisson_disk`` and with ``random``, per cell.
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIDE = 100.0
RADIUS = 2.5
DENSITIES = (3.9e-3, 4.2e-3, 4.5e-3)

_BSB_SCRIPT = """
import json, sys, time
from bsb_native import poisson_disk
side, distance, counts, repeats = json.loads(sys.argv[1])
rows = []
for count in counts:
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        points = poisson_disk([0, 0, 0], [side] * 3, distance, max_count=count, seed=seed)
        times.append(time.perf_counter() - start)
    rows.append([count, len(points), sorted(times)[len(times) // 2]])
start = time.perf_counter()
full = poisson_disk([0, 0, 0], [side] * 3, distance, seed=0)
rows.append([None, len(full), time.perf_counter() - start])
print(json.dumps(rows))
"""


def bsb_native_python(folder: Path) -> Path:
    """The interpreter of a throw-away venv with ``bsb-native`` (made on first use)."""
    python = folder / "bin" / "python"
    probe = [str(python), "-c", "import bsb_native"]
    if python.exists() and subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
        return python
    print(f"installing bsb-native into a throw-away venv at {folder} ...", flush=True)
    venv.create(folder, with_pip=True, clear=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "bsb-native", "numpy"],
                   check=True, timeout=900)
    return python


def ours(counts: list[int], repeats: int) -> list[tuple[int, int, float]]:
    from neuroscaffold.placement._disk import sample_disk

    box = [(np.zeros(3), np.full(3, SIDE), SIDE ** 3)]
    rows = []
    for count in counts:
        times = []
        for seed in range(repeats):
            start = time.perf_counter()
            points, = sample_disk(np.random.default_rng(seed), box, [(RADIUS, count)])
            times.append(time.perf_counter() - start)
        rows.append((count, len(points), statistics.median(times)))
    return rows


def compile_granular(strategy: str) -> tuple[int, float]:
    """Cells and seconds of a serial compile of the example's granular layer alone."""
    from neuroscaffold import Configuration, Network

    data = Configuration.from_file(ROOT / "examples" / "cerebellum.yaml").to_dict()
    data["placement"] = {"granular": {**data["placement"]["granular"], "strategy": strategy}}
    data["connectivity"] = {}
    with tempfile.TemporaryDirectory() as folder:
        network = Network(Configuration(data), Path(folder) / "net.hdf5")
        start = time.perf_counter()
        network.compile(quiet=True)
        elapsed = time.perf_counter() - start
        cells = sum(network.storage.summary()["cells"].values())
    return cells, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--venv", type=Path, default=Path("/tmp/neuroscaffold-bench-bsb-native"))
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "neuroscaffold", quiet=1)  # as installed packages have it
    counts = [int(round(d * SIDE ** 3)) for d in DENSITIES]
    python = bsb_native_python(args.venv)
    theirs = json.loads(subprocess.run(
        [str(python), "-c", _BSB_SCRIPT, json.dumps([SIDE, 2 * RADIUS, counts, args.repeats])],
        capture_output=True, text=True, check=True, timeout=900).stdout)
    mine = ours(counts, args.repeats)
    print(f"\npoisson_disk in a {SIDE:g} µm cube, radius {RADIUS:g} µm (minimum distance "
          f"{2 * RADIUS:g} µm), median of {args.repeats}")
    print(f"{'cells/µm³':>10} {'volume fr.':>10} {'cells':>7} {'ours µs/cell':>13} "
          f"{'bsb-native µs/cell':>19} {'ours / bsb-native':>18}")
    sphere = 4 / 3 * np.pi * RADIUS ** 3
    for (count, placed, seconds), (_, their_placed, their_seconds) in zip(mine, theirs):
        assert placed == count == their_placed, (count, placed, their_placed)
        print(f"{count / SIDE ** 3:>10.2g} {count / SIDE ** 3 * sphere:>10.3f} {count:>7,} "
              f"{seconds / count * 1e6:>13.1f} {their_seconds / count * 1e6:>19.1f} "
              f"{seconds / their_seconds:>17.2f}x")
    _, saturated, seconds = theirs[-1]
    print(f"bsb-native filled to saturation: {saturated:,} cells ({saturated / SIDE ** 3:.2g} "
          f"cells/µm³, volume fraction {saturated / SIDE ** 3 * sphere:.3f}) in {seconds:.3f} s")
    print("\nserial compile of the example's granular layer (granule + golgi, no connections)")
    print(f"{'strategy':>13} {'cells':>8} {'seconds':>8} {'µs/cell':>8}")
    for strategy in ("poisson_disk", "random"):
        cells, seconds = compile_granular(strategy)
        print(f"{strategy:>13} {cells:>8,} {seconds:>8.2f} {seconds / cells * 1e6:>8.1f}")


if __name__ == "__main__":
    sys.exit(main())
