"""Benchmark: the fixed-degree rules on the example network, beside the distance rule.

Run it from anywhere::

    .venv/bin/python bench/bench_degree.py            # serially
    .venv/bin/python bench/bench_degree.py --repeats 3

Each row compiles the example's placement with one connection set (in this process,
serially) and prints its connections, the CPU seconds its ``connect`` calls took
(the strategies' own CPU, less that of the placement alone), the compile's wall time
less the placement's, and the strategy CPU per connection. The sets pair the same cell
types as the example's distance sets, so the rows compare like with like. The package's
bytecode is compiled first, as an installed package has it.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXAMPLE = ROOT / "examples" / "cerebellum.yaml"

SETS = {
    "none (placement only)": None,
    "distance granule->golgi 60 µm": {"strategy": "distance", "presynaptic": "granule",
                                      "postsynaptic": "golgi", "radius": 60},
    "fixed_indegree granule->golgi 400, 60 µm": {
        "strategy": "fixed_indegree", "presynaptic": "granule", "postsynaptic": "golgi",
        "indegree": 400, "radius": 60},
    "fixed_outdegree granule->golgi 2, 100 µm": {
        "strategy": "fixed_outdegree", "presynaptic": "granule", "postsynaptic": "golgi",
        "outdegree": 2, "radius": 100},
    "fixed_outdegree granule->purkinje 2, no radius": {
        "strategy": "fixed_outdegree", "presynaptic": "granule", "postsynaptic": "purkinje",
        "outdegree": 2},
    "fixed_indegree stellate->purkinje 20, no radius": {
        "strategy": "fixed_indegree", "presynaptic": "stellate", "postsynaptic": "purkinje",
        "indegree": 20},
}


def _compile(rule: dict | None, folder: Path) -> tuple[float, float, int]:
    """(wall s, strategy CPU s, connections) of one compile of the example with ``rule``."""
    from neuroscaffold import Configuration, Network
    from neuroscaffold.placement._chunked import strategy_cpu_seconds

    data = yaml.safe_load(EXAMPLE.read_text())
    data["connectivity"] = {"rule": rule} if rule else {}
    data.pop("simulations", None)
    network = Network(Configuration(data), folder / "net.hdf5")
    cpu = strategy_cpu_seconds()
    start = time.perf_counter()
    network.compile(quiet=True, clear=True)
    wall = time.perf_counter() - start
    count = network.storage.connectivity_meta("rule")[0] if rule else 0
    return wall, strategy_cpu_seconds() - cpu, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "neuroscaffold"), quiet=1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, rule in SETS.items():
            runs = [_compile(rule, Path(folder)) for _ in range(args.repeats)]
            rows.append((name, statistics.median(r[0] for r in runs),
                         statistics.median(r[1] for r in runs), runs[0][2]))
    _, base_wall, base_cpu, _ = rows[0]
    print(f"{'connection set':<48} {'connections':>12} {'connect CPU':>12} {'wall':>8} "
          f"{'µs/conn':>8}")
    for name, wall, cpu, count in rows[1:]:
        own = max(cpu - base_cpu, 0.0)
        per = f"{own / count * 1e6:8.2f}" if count else f"{'-':>8}"
        print(f"{name:<48} {count:>12,} {own:>11.2f}s {wall - base_wall:>7.2f}s {per}")
    print(f"(placement alone: {base_wall:.2f} s wall, {base_cpu:.2f} s strategy CPU; "
          "serial, one process)")


if __name__ == "__main__":
    main()
