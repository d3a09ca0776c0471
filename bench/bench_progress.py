"""What progress costs: a pool of many tiny jobs, with and without each listener.

Run it serially or under MPI::

    python bench/bench_progress.py                  # 100,000 jobs of 0 and 50 µs
    mpiexec -n 3 python bench/bench_progress.py
    python bench/bench_progress.py --quick          # 20,000 jobs, 2 rounds

Each variant runs the same pool (``quiet=True``) with one listener added: none; a no-op
function (what the pool itself spends making events: ~4 per job); the live rich display
(drawing to a fake terminal that discards its output, so drawing costs what it costs);
the plain log; the trace recorder. Rounds alternate between the variants so that drift
of the machine hits them alike; the table gives the median time of each from the first
submission to the end of ``execute()``, its cost over ``quiet=True`` in percent and in
µs per job, in wall time and in the main rank's CPU time (steadier on a shared machine:
other processes do not count). A listener's own cost is its row minus the no-op row.

The target is at most 5 % over ``quiet=True``. With jobs that do nothing at all (a few
µs per job in the pool) no Python listener can meet it, since the pool's own event
making already costs more; the ``--work-us`` sizes show from which job size it holds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from rich.console import Console

from neuroscaffold.network import Network
from neuroscaffold.progress import LogProgress, RichProgress, TraceRecorder
from neuroscaffold.services import MPI


def _job(network, seconds):
    """A job of about ``seconds`` (spins: sleeping would hide the listener's cost)."""
    if seconds:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass


def _variants(devnull):
    return {
        "quiet=True": lambda: [],
        "no-op listener": lambda: [lambda event: None],
        "rich live display": lambda: [
            RichProgress(Console(file=devnull, force_terminal=True, width=120))
        ],
        "plain log": lambda: [LogProgress(devnull)],
        "trace recorder": lambda: [TraceRecorder()],
    }


def _run(n_jobs: int, seconds: float, listeners: list) -> tuple[float, float]:
    """(wall, main rank CPU) seconds from the first submission to the end of execute."""
    MPI.barrier()
    with Network().create_job_pool(quiet=True, listeners=listeners) as pool:
        start, cpu = time.perf_counter(), time.process_time()
        if pool.is_main():
            queue = pool.queue
            for _ in range(n_jobs):
                queue(_job, (seconds,))
        pool.execute()
        return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-us", default="0,50", help="job sizes in µs, comma separated")
    parser.add_argument("--quick", action="store_true", help="20,000 jobs, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.rounds = 20_000, 2
    sizes = [float(size) for size in args.work_us.split(",")]
    main_rank = MPI.get_rank() == 0
    with open(os.devnull, "w") as devnull:
        variants = _variants(devnull)
        _run(5000, 0, [])  # warm up imports and caches
        for size in sizes:
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, make in variants.items():
                    times[name].append(_run(args.jobs, size * 1e-6, make()))
            if main_rank:
                _print_table(args, size, times)


def _print_table(args, size: float, times: dict[str, list[tuple[float, float]]]) -> None:
    medians = {
        name: [statistics.median(run[i] for run in runs) for i in (0, 1)]
        for name, runs in times.items()
    }
    base = medians["quiet=True"]
    print(
        f"\n{args.jobs:,} jobs of {size:g} µs on {MPI.get_size()} rank(s), "
        f"median of {args.rounds} rounds"
    )
    print(f"{'':<20} {'wall time':>36}   {'main rank CPU time':>36}")
    print(f"{'listener':<20}" + f" {'s':>8} {'µs/job':>8} {'cost':>8} {'µs/job+':>8}  " * 2)
    for name, values in medians.items():
        cells = []
        for value, reference in zip(values, base):
            per_job = value / args.jobs * 1e6
            if name == "quiet=True":
                cells.append(f" {value:>8.3f} {per_job:>8.2f} {'':>8} {'':>8}  ")
            else:
                cost = (value / reference - 1) * 100
                more = (value - reference) / args.jobs * 1e6
                cells.append(f" {value:>8.3f} {per_job:>8.2f} {cost:>+7.1f}% {more:>8.2f}  ")
        print(f"{name:<20}" + "".join(cells))


if __name__ == "__main__":
    main()
