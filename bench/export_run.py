"""One measured SONATA export, serially or under ``mpiexec -n K`` (used by
``bench_export.py``).

    python bench/export_run.py NET DIR

Exports NET to DIR (replacing it) as ``neuroscaffold export`` does and prints one JSON
line from the main rank: the export's seconds and every rank's peak memory (VmHWM).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compile_run import _peak_rss_mb  # noqa: E402


def main() -> None:
    import resource

    from neuroscaffold.export import export_sonata
    from neuroscaffold.services import MPI

    MPI.get_rank()  # MPI's start-up is the launch's, not the export's
    start = time.perf_counter()
    export_sonata(sys.argv[1], sys.argv[2], force=True)
    elapsed = time.perf_counter() - start
    peaks = MPI.gather(_peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF)))
    if MPI.get_rank() == 0:
        print(json.dumps({"export_s": elapsed, "max_rss_mb": peaks}), flush=True)


if __name__ == "__main__":
    main()
