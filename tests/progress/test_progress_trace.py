"""The timeline recorder and its Chrome trace event file."""

import json

import pytest

from neuroscaffold.progress import TraceRecord, TraceRecorder, read_trace
from neuroscaffold.progress._trace import as_records
from neuroscaffold.services.pool import JobRecord
from tests.progress._fakes import FakePool, FakeWorkflow, JobStatus, submitter


def check_trace(path, expected=None):
    """Validate a trace file against the format and ``expected`` {name: rank}.

    Every job that ran appears once, as a complete event on the row of the rank that
    ran it, starting before it ends; each such row is named by metadata events. Without
    ``expected``, job names must be unique and the ranks are taken from the file.
    """
    document = json.loads(path.read_text())
    assert isinstance(document, dict) and isinstance(document["traceEvents"], list)
    assert document.get("displayTimeUnit") in (None, "ms", "ns")
    slices = [e for e in document["traceEvents"] if e["ph"] == "X"]
    meta = [e for e in document["traceEvents"] if e["ph"] == "M"]
    assert len(slices) + len(meta) == len(document["traceEvents"])
    for event in slices:
        assert isinstance(event["name"], str)
        assert isinstance(event["pid"], int) and event["tid"] == event["pid"]
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0
        assert isinstance(event["dur"], (int, float)) and event["dur"] > 0  # start < end
        assert {"status", "group"} <= set(event["args"])
    names = [e["name"] for e in slices]
    if expected is None:
        assert len(set(names)) == len(names), "every job exactly once"
        expected = {e["name"]: e["pid"] for e in slices}
    assert sorted(names) == sorted(expected), "every job exactly once"
    assert {e["name"]: e["pid"] for e in slices} == expected, "each on the rank that ran it"
    row_names = {(e["pid"], e["args"]["name"]) for e in meta if e["name"] == "thread_name"}
    assert row_names == {(rank, f"rank {rank}") for rank in set(expected.values())}
    return document


def _recorded_run(recorder, pools=1):
    for p in range(pools):
        pool = FakePool(recorder, workflow=FakeWorkflow(f"phase{p}")).open()
        a = pool.add(f"p{p} a", submitter("root.placement.a"))
        b = pool.add(f"p{p} b", submitter("root.placement.b"))
        c = pool.add(f"p{p} c", submitter("root.placement.b"))
        pool.execute()
        pool.run(a, 0, 100.0 + p * 10, 101.5 + p * 10)
        pool.run(b, 2, 100.5 + p * 10, 103.0 + p * 10, error=ValueError("broken"))
        pool.cancel(c)
        pool.close()


def test_records_every_ended_job_across_pools(tmp_path):
    recorder = TraceRecorder()
    _recorded_run(recorder, pools=2)
    assert [(r.name, r.pool, r.phase, r.status, r.rank) for r in recorder.records] == [
        ("p0 a", 0, "phase0", "success", 0),
        ("p0 b", 0, "phase0", "failed", 2),
        ("p0 c", 0, "phase0", "cancelled", None),
        ("p1 a", 1, "phase1", "success", 0),
        ("p1 b", 1, "phase1", "failed", 2),
        ("p1 c", 1, "phase1", "cancelled", None),
    ]
    failed = recorder.records[1]
    assert (failed.group, failed.error) == ("root.placement.b", "ValueError: broken")
    assert failed.duration == 2.5


def test_trace_file_format_and_round_trip(tmp_path):
    recorder = TraceRecorder()
    _recorded_run(recorder, pools=2)
    path = recorder.write(tmp_path / "run.json")
    document = check_trace(path, {"p0 a": 0, "p0 b": 2, "p1 a": 0, "p1 b": 2})
    first = min((e for e in document["traceEvents"] if e["ph"] == "X"), key=lambda e: e["ts"])
    assert (first["name"], first["ts"], first["dur"]) == ("p0 a", 0, 1.5e6)
    assert [r["name"] for r in document["otherData"]["not_run"]] == ["p0 c", "p1 c"]
    loaded = TraceRecorder.load(path).records
    key = lambda r: (r.pool, r.name)  # noqa: E731
    for got, want in zip(sorted(loaded, key=key), sorted(recorder.records, key=key)):
        assert got.name == want.name and got.rank == want.rank and got.status == want.status
        assert got.group == want.group and got.error == want.error and got.phase == want.phase
        if want.ran:
            assert got.start == pytest.approx(want.start) and got.end == pytest.approx(want.end)


def test_a_job_seen_ended_twice_is_recorded_once():
    recorder = TraceRecorder()
    pool = FakePool(recorder).open()
    job = pool.add("j")
    pool.run(job, 1, 1.0, 2.0)
    pool._move(job, JobStatus.SUCCESS)  # a late duplicate
    pool.close()  # the sweep at closing sees it again
    assert [r.name for r in recorder.records] == ["j"]


def test_pool_timeline_records_are_accepted():
    timeline = [
        JobRecord(3, "place a", "root.placement.a", 1, 10.0, 12.0, JobStatus.SUCCESS, None),
        JobRecord(4, "place b", None, 2, 10.0, 11.0, JobStatus.FAILED, "ValueError: x"),
    ]
    records = as_records(timeline)
    assert records[0] == TraceRecord(
        "place a", "root.placement.a", 1, 10.0, 12.0, "success", job_id=3
    )
    second = records[1]
    assert (second.group, second.status, second.error) == ("place b", "failed", "ValueError: x")


def test_not_a_trace_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"not a trace file: no 'traceEvents' list$"):
        read_trace(path)
    path.write_text("{")
    with pytest.raises(ValueError, match=r"not a trace file: "):
        read_trace(path)
