"""The timeline of a run: where and when each job ran, as records and as a trace file.

The file is in the Chrome trace event format (JSON object form), which Perfetto
(ui.perfetto.dev) and chrome://tracing open: one row per rank (``pid`` = ``tid`` = the
rank, named ``rank N`` by metadata events), one complete event (``"ph": "X"``) per job
that ran, named after the job, with its status, group and error in ``args``. Times are
microseconds since the first job started; ``otherData`` keeps that origin (Unix time)
and the jobs that ended without running (cancelled), so :func:`read_trace` gives back
every record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple, Union

from ..services.pool import TERMINAL, JobStatus, PoolProgressReason, PoolStatus
from ._stats import GroupNames, display_name, error_text

__all__ = ["TraceRecord", "TraceRecorder", "as_records", "read_trace", "write_trace"]

_FORMAT = "neuroscaffold-trace-1"
_QUEUED = JobStatus.QUEUED
_RUNNING = JobStatus.RUNNING



class TraceRecord(NamedTuple):
    """One ended job: where and when it ran (Unix seconds) and how it ended."""

    name: str
    group: str
    rank: int | None
    start: float | None
    end: float | None
    status: str  #: the lowercase status name: ``success``, ``failed``, ``cancelled``, ...
    error: str | None = None
    pool: int = 0  #: which pool of the recording (a compile runs several), from 0
    phase: str | None = None
    job_id: int | None = None

    @property
    def ran(self) -> bool:
        """Whether the job started on a rank and ended (it has a slice on the timeline)."""
        return self.rank is not None and self.start is not None and self.end is not None

    @property
    def duration(self) -> float:
        """Seconds from start to end (0 for a job that did not run)."""
        return self.end - self.start if self.ran else 0.0


TraceSource = Union[str, os.PathLike, "TraceRecorder", Iterable[Any]]


class TraceRecorder:
    """A pool listener that records every job that ends, across any number of pools.

    Attach one recorder to every pool of a run (``create_job_pool(listeners=[rec])``),
    then :meth:`write` the trace file, or analyse :attr:`records` directly.
    """

    # In a real pool it asks for no job events: it records every job once, when the
    # pool closes, so a pool of a million tiny jobs pays nothing per job for it.
    job_events = False

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []
        self._pool = -1
        self._recorded: set = set()  # jobs of the current pool already recorded
        self._names = GroupNames()

    def __call__(self, event: Any) -> None:
        reason = event.reason
        if reason is PoolProgressReason.JOB_STATUS_CHANGE:
            self._record(event.job, event.workflow)
        elif reason is PoolProgressReason.POOL_STATUS_CHANGE:
            if event.status is PoolStatus.SCHEDULING:
                self._pool += 1
                self._recorded = set()
            elif event.status is PoolStatus.CLOSING:
                # Every job not recorded from an event is recorded here, once.
                for job in event.jobs:
                    self._record(job, event.workflow)
                self._recorded = set()  # keeps no job (nor its result) alive

    def _record(self, job: Any, workflow: Any) -> None:
        status = job.status
        # ``is`` first: most events are these two, and an enum's hash runs Python code.
        if status is _QUEUED or status is _RUNNING or status not in TERMINAL:
            return
        if job in self._recorded:
            return  # a late-delivered event for a job already recorded
        self._recorded.add(job)
        self.records.append(
            TraceRecord(
                str(job.name),
                self._names(job),
                job.rank,
                job.started_at,
                job.ended_at,
                status.name.lower(),
                error_text(job.error),
                max(self._pool, 0),
                workflow.phase if workflow is not None else None,
                job.id,
            )
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write the records as a Chrome trace event file; returns its path."""
        return write_trace(self.records, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TraceRecorder:
        """A recorder holding the records of a trace file written by :meth:`write`."""
        recorder = cls()
        recorder.records = read_trace(path)
        recorder._pool = max((r.pool for r in recorder.records), default=-1)
        return recorder


def write_trace(records: TraceSource, path: str | os.PathLike) -> Path:
    """Write records (or a pool's ``timeline``) as a Chrome trace event file."""
    records = as_records(records)
    ran = sorted((r for r in records if r.ran), key=lambda r: r.start)
    origin = ran[0].start if ran else 0.0
    events: list[dict] = []
    for rank in sorted({r.rank for r in ran}):
        for kind in ("process_name", "thread_name"):
            events.append({"name": kind, "ph": "M", "pid": rank, "tid": rank,
                           "args": {"name": f"rank {rank}"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": rank, "tid": rank,
                       "args": {"sort_index": rank}})
    for r in ran:
        args = {"status": r.status, "group": r.group, "pool": r.pool}
        for key in ("phase", "job_id", "error"):
            if getattr(r, key) is not None:
                args[key] = getattr(r, key)
        events.append({
            "name": r.name,
            "cat": r.group,
            "ph": "X",
            "ts": round((r.start - origin) * 1e6, 3),
            "dur": round(max(r.end - r.start, 0.0) * 1e6, 3),
            "pid": r.rank,
            "tid": r.rank,
            "args": args,
        })
    document = {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "format": _FORMAT,
            "origin_unix_s": origin,
            "not_run": [r._asdict() for r in records if not r.ran],
        },
    }
    path = Path(path)
    path.write_text(json.dumps(document, indent=None, separators=(",", ":")))
    return path


def read_trace(path: str | os.PathLike) -> list[TraceRecord]:
    """Read the records of a trace file written by :func:`write_trace`.

    Raises:
        ValueError: the file is not a Chrome trace event file in object form.
    """
    with open(path, encoding="utf-8") as file:
        try:
            document = json.load(file)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{os.fspath(path)}: not a trace file: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("traceEvents"), list):
        raise ValueError(f"{os.fspath(path)}: not a trace file: no 'traceEvents' list")
    other = document.get("otherData") or {}
    origin = float(other.get("origin_unix_s", 0.0))
    records = []
    for event in document["traceEvents"]:
        if event.get("ph") != "X":
            continue
        args = event.get("args") or {}
        start = origin + event["ts"] / 1e6
        records.append(TraceRecord(
            name=event["name"],
            group=args.get("group", event.get("cat", "")),
            rank=event["pid"],
            start=start,
            end=start + event["dur"] / 1e6,
            status=args.get("status", "success"),
            error=args.get("error"),
            pool=args.get("pool", 0),
            phase=args.get("phase"),
            job_id=args.get("job_id"),
        ))
    records.extend(TraceRecord(**fields) for fields in other.get("not_run", ()))
    return records


def as_records(source: TraceSource) -> list[TraceRecord]:
    """Records from a trace file path, a :class:`TraceRecorder`, :class:`TraceRecord`\\ s
    or a pool's ``timeline`` (its ``JobRecord``\\ s)."""
    if isinstance(source, (str, os.PathLike)):
        return read_trace(source)
    if isinstance(source, TraceRecorder):
        return list(source.records)
    return [r if isinstance(r, TraceRecord) else _from_job_record(r) for r in source]


def _from_job_record(record: Any) -> TraceRecord:
    # The pool's JobRecord(job_id, name, submitter, rank, start, end, status, error).
    status = record.status
    return TraceRecord(
        name=str(record.name),
        group=display_name(record.submitter) if record.submitter else str(record.name),
        rank=record.rank,
        start=record.start,
        end=record.end,
        status=getattr(status, "name", str(status)).lower(),
        error=error_text(record.error),
        job_id=record.job_id,
    )
