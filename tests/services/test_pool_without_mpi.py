"""Without mpi4py (or mpilock) installed, pools and the compile run in one process."""

from __future__ import annotations

from pathlib import Path

from tests._mpi import ROOT, run_script

POOL_SCRIPT = r"""
import sys
from neuroscaffold.network import Network
from neuroscaffold.exceptions import WorkflowError
from neuroscaffold.services import MPI
from neuroscaffold.services.pool import JobStatus, PoolProgressReason
from tests._pool_support import Node

node = Node(None, "node", node_name="{root}.placement.node")
events = []
with Network().create_job_pool(quiet=True) as pool:
    pool.add_listener(lambda e: events.append(e.reason))
    a = pool.queue(lambda net, i: node.heavy()[i] * 10, (1,), submitter=node)
    b = pool.queue(lambda net, x: x + 1, (5,), deps=[a])
    c = pool.queue(lambda net: 1 / 0, name="divide")
    d = pool.queue(lambda net: None, deps=[c])
    try:
        pool.execute(return_results=True)
    except WorkflowError as exc:
        message = exc.message.splitlines()[0]
print("MPI", MPI.get_size(), MPI.get_communicator(), "mpi4py.MPI" in sys.modules)
print("RESULTS", a.result, b.result, c.status.name, d.status.name, node.computed)
print("ERROR", message)
print("EVENTS", events.count(PoolProgressReason.JOB_ADDED), events[0].name, events[-1].name)
"""


def test_a_pool_runs_serially_without_mpi4py(make_env, tmp_path):
    env = make_env(hide=("mpi4py", "mpilock"))
    result = run_script(POOL_SCRIPT, None, timeout=60, env=env, tmp_path=tmp_path).check()
    lines = result.stdout.splitlines()
    assert "MPI 1 None False" in lines
    assert "RESULTS 10 6 FAILED CANCELLED 1" in lines
    assert "ERROR 1 of 4 jobs failed, 1 jobs cancelled:" in lines
    assert "EVENTS 4 POOL_STATUS_CHANGE POOL_STATUS_CHANGE" in lines


def test_the_example_compiles_without_mpi4py(make_env, tmp_path):
    env = make_env(hide=("mpi4py", "mpilock"))
    out = tmp_path / "small.hdf5"
    script = Path(tmp_path / "compile.py")
    script.write_text(
        "import sys\nfrom neuroscaffold.cli import main\n"
        f"code = main(['compile', {str(ROOT / 'examples' / 'small.yaml')!r}, '-o', {str(out)!r}, '-q'])\n"
        "print('MPI LOADED', 'mpi4py.MPI' in sys.modules)\nsys.exit(code)\n"
    )
    result = run_script(script, None, timeout=120, env=env).check()
    assert "MPI LOADED False" in result.stdout
    assert "compiled" in result.stdout and out.exists(), result.describe()
