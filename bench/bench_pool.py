"""Benchmark of the job pool; prints a table on the main rank.

Run it serially or under MPI, for example::

    python bench/bench_pool.py
    mpiexec -n 2 python bench/bench_pool.py
    mpiexec -n 2 python bench/bench_pool.py --quick      # smaller sizes

Every figure is measured with ``quiet=True`` (no progress display), from the first
submission to the end of ``execute()``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from neuroscaffold import MPI
from neuroscaffold.network import Network


def _trivial(network, i):
    return i


def _burn(network, seconds):
    """CPU-bound work of about ``seconds`` (spins on the process clock)."""
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1
    return x


def _sleep(network, seconds):
    time.sleep(seconds)


def _quiet_barrier() -> None:
    """A barrier whose waiting ranks sleep instead of spinning on a core."""
    comm = MPI.get_communicator()
    if comm is None:
        return
    from neuroscaffold._backoff import Backoff

    request = comm.Ibarrier()
    backoff = Backoff()
    while not request.Test():
        backoff.sleep()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _run(network, submit, main_executes=True, **kwargs):
    """Seconds from the first submission to the end of execute (main rank's clock)."""
    MPI.barrier()
    with network.create_job_pool(quiet=True, main_executes=main_executes, **kwargs) as pool:
        start = time.perf_counter()
        if pool.is_main():
            submit(pool)
        pool.execute()
        elapsed = time.perf_counter() - start
    return elapsed, pool


def trivial(network, n, main_executes=True):
    def submit(pool):
        queue = pool.queue
        for i in range(n):
            queue(_trivial, (i,))

    elapsed, _ = _run(network, submit, main_executes)
    return n / elapsed, elapsed / n * 1e6


def cpu_bound(network, jobs=64, seconds=0.05):
    start = time.perf_counter()
    if MPI.get_rank() == 0:
        for _ in range(jobs):
            _burn(network, seconds)
    plain = time.perf_counter() - start
    _quiet_barrier()  # MPICH's blocking collectives spin: they would slow the loop down
    plain = MPI.bcast(plain)

    def submit(pool):
        for _ in range(jobs):
            pool.queue(_burn, (seconds,))

    elapsed, _ = _run(network, submit)
    return plain, elapsed


def chain(network, links=200):
    def submit(pool):
        previous = None
        for i in range(links):
            previous = pool.queue(_trivial, (i,), deps=(previous,) if previous else None)

    elapsed, _ = _run(network, submit)
    return elapsed / links * 1e6


def layers(network, depth=10, width=20):
    def submit(pool):
        previous = None
        for _ in range(depth):
            previous = tuple(pool.queue(_trivial, (i,), deps=previous) for i in range(width))

    elapsed, _ = _run(network, submit)
    return elapsed / (depth * width) * 1e6


def waiting_cpu(network, seconds=2.0):
    """CPU seconds each rank uses while one long job runs on rank 0's executor."""
    MPI.barrier()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()

    def submit(pool):
        pool.queue(_sleep, (seconds,))

    _run(network, submit)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    return MPI.gather(cpu / wall * 100)


def memory_per_job(network, n):
    """Main-rank resident memory growth per finished trivial job (results kept)."""
    import gc

    gc.collect()
    before = _rss_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def submit(pool):
        queue = pool.queue
        for i in range(n):
            queue(_trivial, (i,))

    MPI.barrier()
    pool = Network().create_job_pool(quiet=True)
    with pool:
        if pool.is_main():
            submit(pool)
        pool.execute()
        after = _rss_bytes()
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del pool
    return (after - before) / n, max(0, peak_after - peak_before) * 1024 / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 10 s)")
    args = parser.parse_args()
    network = Network()
    size = MPI.get_size()
    sizes = [1_000, 10_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    rows = []
    trivial(network, 2_000)  # warm up imports and code paths
    # Memory first: later runs would already have raised the process's peak.
    rss, peak = memory_per_job(network, 100_000 if args.quick else 1_000_000)
    trivial(network, 2_000)  # the first pool after a huge one pays for its clean-up
    for n in sizes:
        rate, per_job = trivial(network, n)
        row = [f"trivial jobs, {n:,}", f"{rate:,.0f} jobs/s", f"{per_job:.2f} us/job"]
        if size > 1:
            rate2, per_job2 = trivial(network, n, main_executes=False)
            row.append(f"main only dispatching: {rate2:,.0f} jobs/s ({per_job2:.2f} us/job)")
        rows.append(row)
    plain, pooled = cpu_bound(network, jobs=32 if args.quick else 64)
    rows.append(
        [
            f"{32 if args.quick else 64} CPU-bound jobs of 50 ms",
            f"{pooled:.2f} s",
            f"speed-up {plain / pooled:.2f} over a plain loop ({plain:.2f} s)",
        ]
    )
    rows.append(["chain of 200 dependent jobs", f"{chain(network):.1f} us/link", ""])
    rows.append(["10 layers x 20 jobs, all-to-all deps", f"{layers(network):.1f} us/job", ""])
    cpu = waiting_cpu(network, seconds=1.0 if args.quick else 2.0)
    if cpu is not None:
        rows.append(
            ["CPU while one long job runs", ", ".join(f"rank {r}: {c:.1f}%" for r, c in enumerate(cpu)), "(rank 0 runs the job)"]
        )
    if MPI.get_rank() == 0:
        rows.append(["main-rank memory per finished job", f"{rss:.0f} B resident", f"{peak:.0f} B peak growth"])
        print(f"\nneuroscaffold job pool benchmark, {size} rank(s), quiet=True")
        width = max(len(r[0]) for r in rows)
        for row in rows:
            print(f"  {row[0]:<{width}}  {'  '.join(row[1:])}")


if __name__ == "__main__":
    main()
