"""Benchmark: compile the example network serially and under ``mpiexec -n 2, 3, 4``.

Run it from anywhere (it launches the compiles itself)::

    .venv/bin/python bench/bench_compile.py              # 3 repeats per rank count
    .venv/bin/python bench/bench_compile.py --repeats 1 --ranks 1 2

It prints a Markdown table: the compile time the command reports (placement and
connectivity, from the first pool to the last), the wall time of the whole command
(with interpreter and MPI start-up), and whether every file holds the same network as
the serial one.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cerebellum.yaml"


def _command(ranks: int, config: Path, output: Path) -> list[str]:
    command = [sys.executable, "-m", "neuroscaffold", "compile", str(config), "-o",
               str(output), "--clear", "-q"]
    if ranks > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        command = [str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", str(ranks), *command]
    return command


def compile_once(ranks: int, config: Path, output: Path) -> tuple[float, float, str]:
    """(reported compile seconds, wall seconds, the summary line) of one compile."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    done = subprocess.run(_command(ranks, config, output), capture_output=True, text=True,
                          env=env, timeout=600)
    wall = time.perf_counter() - start
    match = re.search(r"^(compiled .* in ([0-9.]+) s .*)$", done.stdout, re.M)
    if done.returncode != 0 or match is None:
        raise SystemExit(f"compile on {ranks} rank(s) failed:\n{done.stdout}\n{done.stderr}")
    return float(match[2]), wall, match[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=EXAMPLE)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from neuroscaffold.storage import canonical_contents

    rows = []
    reference = None
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as folder:
        for ranks in args.ranks:
            output = Path(folder) / f"n{ranks}.hdf5"
            runs = [compile_once(ranks, args.config, output) for _ in range(args.repeats)]
            contents = canonical_contents(output)
            reference = contents if reference is None else reference
            rows.append((ranks, [r[0] for r in runs], [r[1] for r in runs],
                         contents == reference, runs[-1][2]))
    print(f"Compile of `{args.config.name}` (median of {args.repeats}; {os.cpu_count()} cores)\n")
    print("| ranks | compile (s) | wall incl. start-up (s) | same file as the first |")
    print("|------:|------------:|------------------------:|:----------------------:|")
    for ranks, compile_s, wall_s, same, _ in rows:
        label = "serial" if ranks == 1 else f"mpiexec -n {ranks}"
        print(f"| {label} | {statistics.median(compile_s):.2f} | "
              f"{statistics.median(wall_s):.2f} | {'yes' if same else 'NO'} |")
    print(f"\n{rows[-1][4]}")


if __name__ == "__main__":
    main()
