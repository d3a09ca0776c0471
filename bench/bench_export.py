"""Benchmark: the SONATA export of the example network at 1x, 4x and 8x, serially and
under mpiexec, against the compile of the same network.

    .venv/bin/python bench/bench_export.py                    # 1x 4x 8x, serial and -n 2
    .venv/bin/python bench/bench_export.py --sizes 1 8 --ranks 1 2 3 --repeats 1

Per size and rank count: the compile time (``bench/compile_run.py``), the export time,
the export's peak memory per rank (VmHWM), the ratio of export to compile time, the peak
against the 1x export's at the same rank count (the export streams: at most 1.5x is the
bound), and whether the exported files equal the serial export's byte for byte.
Each figure is the median of ``--repeats`` runs, alternating rank counts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_compile import SIZES, _bytecode, _config, compile_once  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "export_run.py"


def export_once(ranks: int, network: Path, out: Path) -> dict:
    import json

    command = [sys.executable, str(RUNNER), str(network), str(out)]
    if ranks > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        command = [str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", str(ranks), *command]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"export on {ranks} rank(s) failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(lines[-1])
    result["wall_s"] = time.perf_counter() - start
    return result


def digest(directory: Path) -> str:
    total = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            total.update(str(path.relative_to(directory)).encode())
            total.update(hashlib.sha256(path.read_bytes()).digest())
    return total.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8], choices=sorted(SIZES))
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    _bytecode()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
        work = Path(folder)
        for factor in args.sizes:
            config = _config(work, factor)
            network = work / f"net-{factor}x.hdf5"
            compiles: dict[int, list[float]] = {r: [] for r in args.ranks}
            exports: dict[int, list[dict]] = {r: [] for r in args.ranks}
            for _ in range(args.repeats):
                for ranks in args.ranks:
                    compiles[ranks].append(compile_once(ranks, config, network)["compile_s"])
            serial = None
            for _ in range(args.repeats):
                for ranks in args.ranks:
                    out = work / f"sonata-{factor}x-{ranks}"
                    exports[ranks].append(export_once(ranks, network, out))
            for ranks in args.ranks:
                same = digest(work / f"sonata-{factor}x-{ranks}")
                serial = serial or same
                runs = exports[ranks]
                peaks = [statistics.median(run["max_rss_mb"][r] for run in runs)
                         for r in range(ranks)]
                rows.append({"size": f"{factor}x", "ranks": ranks,
                             "compile": statistics.median(compiles[ranks]),
                             "export": statistics.median(run["export_s"] for run in runs),
                             "peaks": peaks, "same": same == serial})
    base = {row["ranks"]: max(row["peaks"]) for row in rows if row["size"] == "1x"}
    print(f"SONATA export of the example network (median of {args.repeats}):")
    print("| size | ranks | compile (s) | export (s) | export / compile | peak RSS/rank (MB) "
          "| peak vs 1x | same files as serial |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        label = "serial" if row["ranks"] == 1 else f"-n {row['ranks']}"
        against = (f"{max(row['peaks']) / base[row['ranks']]:.2f}x"
                   if row["ranks"] in base else "–")
        print(f"| {row['size']} | {label} | {row['compile']:.2f} | {row['export']:.2f} | "
              f"{row['export'] / row['compile']:.2f} | "
              f"{', '.join(f'{p:.0f}' for p in row['peaks'])} | {against} | "
              f"{'yes' if row['same'] else 'NO'} |")


if __name__ == "__main__":
    main()
