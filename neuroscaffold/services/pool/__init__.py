"""The job pool service: jobs with dependencies, run on every MPI rank.

Public names only; the machinery lives in the private modules: ``_status`` (states and
transitions), ``_job`` (jobs, dependency groups, workflows), ``_pool`` (the public
:class:`JobPool`), ``_ledger`` (its bookkeeping), ``_dispatch`` (main rank), ``_worker`` (other ranks),
``_protocol``/``_wire`` (messages), ``_cache`` (``pool_cache``), ``_events`` (listeners),
``_run`` (the one place a job runs), ``_interrupt`` (signals while executing), ``_types``
(the protocols the pool relies on).
"""

from ...exceptions import WorkflowError
from ._cache import pool_cache
from ._events import PoolProgress, PoolStatistics, SubmitterStatistics
from ._job import Job, JobRecord, Workflow, submitter_name
from ._pool import JobPool, create_job_pool
from ._status import TERMINAL, JobStatus, PoolProgressReason, PoolStatus
from ._types import PoolNetwork, PoolNode, SchedulableNode

__all__ = [
    "Job",
    "JobPool",
    "JobRecord",
    "JobStatus",
    "PoolProgress",
    "PoolNetwork",
    "PoolNode",
    "PoolProgressReason",
    "PoolStatistics",
    "PoolStatus",
    "SchedulableNode",
    "SubmitterStatistics",
    "TERMINAL",
    "Workflow",
    "WorkflowError",
    "create_job_pool",
    "pool_cache",
    "submitter_name",
]
