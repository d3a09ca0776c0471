"""A pool run with three strategies and two failures, watched by every progress listener.

Run serially or under ``mpiexec -n K``: ``python progress_run.py OUT_DIR [N_JOBS]``.
Each rank sends its stderr to ``OUT_DIR/stderr.RANK`` (the default listener writes
there) and logs each job it runs to ``OUT_DIR/ran.RANK``. The main rank also draws the
rich display on a recording console (``OUT_DIR/rich.txt``), writes the trace
(``OUT_DIR/run.json``) and the pool's timeline (``OUT_DIR/timeline.json``).
"""

import io
import json
import sys
import time
from pathlib import Path

from rich.console import Console

from neuroscaffold.network import Network
from neuroscaffold.progress import RichProgress, TraceRecorder
from neuroscaffold.services import MPI
from neuroscaffold.services.pool import WorkflowError, create_job_pool
from tests.progress._fakes import submitter  # looks like a configuration node

out = Path(sys.argv[1])
n_jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
rank = MPI.get_rank()
sys.stderr = open(out / f"stderr.{rank}", "w")


def work(network, name, seconds, fail):
    with open(out / f"ran.{MPI.get_rank()}", "a") as log:
        log.write(name + "\n")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass
    if fail:
        raise ValueError(f"no room for {name}")


strategies = [submitter(f"root.placement.{cell}") for cell in ("granule", "golgi", "purkinje")]
recorder = TraceRecorder()
console = Console(record=True, force_terminal=True, width=120, file=io.StringIO())
rich_display = RichProgress(console, live_thread=False)
failed = None
with create_job_pool(Network(), listeners=[recorder, rich_display]) as pool:
    if pool.is_main():
        for i in range(n_jobs):
            strategy = strategies[i % 3]
            name = f"{strategy.name.rsplit('.', 1)[1]} chunk {i}"
            args = (name, 0.002 * (1 + i % 3), i in (4, 8))
            pool.queue(work, args, submitter=strategy, name=name)
    try:
        pool.execute()
    except WorkflowError as exc:
        failed = exc
print(f"rank {rank}: failed jobs reported: {failed is not None}")
if pool.is_main():
    recorder.write(out / "run.json")
    (out / "rich.txt").write_text(console.export_text())
    timeline = [[r.name, r.rank, r.start, r.end, r.status.name] for r in pool.timeline]
    (out / "timeline.json").write_text(json.dumps(timeline))
sys.stderr.close()
