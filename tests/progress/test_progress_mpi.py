"""The listeners under ``mpiexec -n 3``: only the main rank prints; the trace and the
report hold every job on the rank that ran it."""

import base64
import re

import pytest

from neuroscaffold.cli import main
from tests._mpi import ROOT, run_script
from tests.progress.test_progress_pool import SCRIPT, check_run
from tests.progress.test_progress_report import check_png
from tests.progress.test_progress_trace import check_trace

EXAMPLE = ROOT / "examples" / "small.yaml"
CLI = "import sys\nfrom neuroscaffold.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture(scope="module")
def mpi_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi_run")
    result = run_script(SCRIPT, 3, timeout=60, args=[str(out), "60"]).check()
    return out, result


@pytest.mark.mpi
def test_only_the_main_rank_prints_and_the_trace_is_complete(mpi_run):
    out, result = mpi_run
    ran = check_run(out, ranks=3, n_jobs=60)
    assert len(set(ran.values())) >= 2, "the jobs were spread over the ranks"
    # Every rank learnt of the failures, and printed nothing else.
    assert sorted(result.stdout.splitlines()) == [
        f"rank {r}: failed jobs reported: True" for r in range(3)
    ]


def _report(trace, out):
    """``neuroscaffold report TRACE -o OUT``, through the CLI's own entry point."""
    return main(["report", str(trace), "-o", str(out)])


@pytest.mark.mpi
def test_report_of_the_mpi_run(mpi_run, tmp_path, capsys):
    out, _ = mpi_run
    assert _report(out / "run.json", tmp_path / "report.png") == 0
    check_png((tmp_path / "report.png").read_bytes(), tmp_path / "check.png")
    assert _report(out / "run.json", tmp_path / "report.html") == 0
    html = (tmp_path / "report.html").read_text()
    # Self-contained: the picture is inline, nothing is fetched.
    assert not re.search(r"""(src|href)=["'](?!data:)""", html)
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    check_png(base64.b64decode(embedded), tmp_path / "embedded.png")
    for text in ("root.placement.granule", "Slowest jobs", "no room for golgi chunk 4"):
        assert text in html
    assert "report written to" in capsys.readouterr().out


def test_report_cli_errors(tmp_path, capsys):
    assert _report(tmp_path / "missing.json", tmp_path / "r.png") == 1
    assert capsys.readouterr().err == f"neuroscaffold: error: {tmp_path}/missing.json: no such file\n"
    assert _report(tmp_path / "missing.json", tmp_path / "r.pdf") == 1
    assert "-o must end in .html or .png, not 'r.pdf'" in capsys.readouterr().err


@pytest.mark.mpi
def test_report_from_a_real_compile(tmp_path):
    trace = tmp_path / "run.json"
    args = ["compile", str(EXAMPLE), "-o", str(tmp_path / "net.hdf5"), "--trace", str(trace)]
    result = run_script(CLI, 3, timeout=60, args=args, tmp_path=tmp_path).check()
    log = result.stderr.splitlines()
    for phase in ("placement", "connectivity"):
        assert sum(line.startswith(f"{phase} finished: ") for line in log) == 1, log
    document = check_trace(trace)
    slices = [e for e in document["traceEvents"] if e["ph"] == "X"]
    assert {e["args"]["phase"] for e in slices} == {"placement", "connectivity"}
    assert len({e["pid"] for e in slices}) >= 2
    assert _report(trace, tmp_path / "report.png") == 0
    check_png((tmp_path / "report.png").read_bytes(), tmp_path / "check.png")
