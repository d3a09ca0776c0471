"""Short names of the pool's events and states, shared by the in-process pool tests
(``_pool_fixtures``) and the scripts they launch under ``mpiexec`` (``pool_scripts``)."""

from __future__ import annotations

from neuroscaffold.services.pool import JobStatus, PoolProgressReason, PoolStatus

ADDED = PoolProgressReason.JOB_ADDED
CHANGE = PoolProgressReason.JOB_STATUS_CHANGE
POOL = PoolProgressReason.POOL_STATUS_CHANGE
PING = PoolProgressReason.MAX_TIMEOUT_PING
PENDING, QUEUED, RUNNING = JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING
SUCCESS, FAILED, CANCELLED, ABORTED = (
    JobStatus.SUCCESS,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.ABORTED,
)
SCHEDULING, EXECUTING, CLOSING = PoolStatus.SCHEDULING, PoolStatus.EXECUTING, PoolStatus.CLOSING
#: what a job that succeeds reports, in order
LIFE = [(ADDED, PENDING), (CHANGE, QUEUED), (CHANGE, RUNNING), (CHANGE, SUCCESS)]
