"""The report: a real PNG of a sensible size, and a self-contained HTML file."""

import base64
import random
import re

import pytest
from matplotlib import image

from neuroscaffold.progress import TraceRecord, build_report, write_trace

PNG = b"\x89PNG\r\n\x1a\n"


def check_png(data: bytes, path) -> tuple[int, int]:
    """Check that ``data`` is a PNG that decodes to a non-blank picture; returns its size."""
    assert data[:8] == PNG
    path.write_bytes(data)
    pixels = image.imread(path)
    height, width = pixels.shape[:2]
    assert 1000 <= width <= 2000 and 400 <= height <= 2500, (width, height)
    assert pixels.std() > 0.05, "a blank image"
    return width, height


def _records(ranks: int, groups: int, jobs: int, seed: int = 1) -> list[TraceRecord]:
    rng = random.Random(seed)
    free = {rank: 100.0 for rank in range(ranks)}
    records = []
    for i in range(jobs):
        rank = min(free, key=free.get)
        start = free[rank] + rng.uniform(0, 0.05)
        end = start + rng.expovariate(5)
        free[rank] = end
        failed = i % 23 == 7
        records.append(TraceRecord(
            f"job {i}", f"root.s{i % groups}", rank, start, end,
            "failed" if failed else "success", "ValueError: x" if failed else None,
        ))
    records.append(TraceRecord("never ran", "root.s0", None, None, None, "cancelled", "dep"))
    return records


def test_png_from_records(tmp_path):
    out = build_report(_records(4, 3, 200), tmp_path / "report.png")
    assert out == tmp_path / "report.png"
    check_png(out.read_bytes(), tmp_path / "check.png")


def test_html_is_self_contained_with_tables(tmp_path):
    trace = write_trace(_records(4, 3, 200), tmp_path / "run.json")
    html = build_report(trace, tmp_path / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["'](?!data:)""", html), "nothing is fetched"
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    check_png(base64.b64decode(embedded), tmp_path / "embedded.png")
    assert "<h2>Slowest strategies (by total time)</h2>" in html
    assert "<h2>Slowest jobs</h2>" in html
    assert "<h2>Failures (9)</h2>" in html
    assert "200 jobs ran on 4 ranks" in html and "1 never ran (cancelled)" in html


def test_many_ranks_and_groups(tmp_path):
    # 32 ranks: utilisation as a heat map; 30 groups: a cut legend.
    out = build_report(_records(32, 30, 2000), tmp_path / "big.png")
    check_png(out.read_bytes(), tmp_path / "check.png")


def test_no_job_ran(tmp_path):
    records = [TraceRecord("j", "g", None, None, None, "cancelled")]
    html = build_report(records, tmp_path / "empty.html").read_text()
    assert "0 jobs ran on 0 ranks" in html


def test_output_suffix():
    with pytest.raises(ValueError, match=r"^report must be a \.png or \.html file, not 'r\.pdf'$"):
        build_report([], "r.pdf")
