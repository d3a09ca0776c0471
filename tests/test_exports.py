"""The public surface of shared/API.md: every name imports, from where it is promised."""

from __future__ import annotations

import importlib

import pytest

API = {
    "neuroscaffold": [
        "from_storage", "Network", "Scaffold", "Configuration", "config",
        "PlacementStrategy", "ConnectionStrategy", "pool_cache", "MPI", "WorkflowError",
        "JobStatus", "PoolStatus", "PoolProgressReason", "DependencyError",
        "JobPoolError", "JobCancelledError", "ConfigurationError",
    ],
    "neuroscaffold.services": [
        "MPI", "MPILock", "JobPool", "register_service", "pool_cache", "WorkflowError",
    ],
    "neuroscaffold.services.pool": [
        "JobPool", "Job", "JobStatus", "PoolStatus", "PoolProgressReason",
        "PoolProgress", "Workflow", "pool_cache", "WorkflowError",
    ],
}


@pytest.mark.parametrize("module_name", sorted(API))
def test_every_api_name_imports(module_name):
    module = importlib.import_module(module_name)
    for name in API[module_name]:
        assert getattr(module, name) is not None, f"{module_name}.{name}"
        assert name in module.__all__, f"{name} missing from {module_name}.__all__"


def test_names_are_the_same_objects_everywhere():
    import neuroscaffold
    from neuroscaffold import services
    from neuroscaffold.services import pool

    assert neuroscaffold.MPI is services.MPI
    assert neuroscaffold.pool_cache is services.pool_cache is pool.pool_cache
    assert neuroscaffold.WorkflowError is services.WorkflowError is pool.WorkflowError
    assert neuroscaffold.JobStatus is pool.JobStatus
    assert neuroscaffold.Scaffold is neuroscaffold.Network
    assert services.JobPool is pool.JobPool


def test_all_lists_only_existing_names():
    for module_name in API:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            assert hasattr(module, name), f"{module_name}.__all__ names missing {name}"


def test_statuses_are_the_documented_enums():
    from neuroscaffold import JobStatus, PoolProgressReason, PoolStatus

    assert [s.name for s in JobStatus] == [
        "PENDING", "QUEUED", "RUNNING", "SUCCESS", "FAILED", "CANCELLED", "ABORTED",
    ]
    assert [s.name for s in PoolStatus] == ["SCHEDULING", "EXECUTING", "CLOSING"]
    assert [s.name for s in PoolProgressReason] == [
        "POOL_STATUS_CHANGE", "JOB_ADDED", "JOB_STATUS_CHANGE", "MAX_TIMEOUT_PING",
    ]


def test_workflow_error_is_an_exception_group_of_job_errors():
    from neuroscaffold import WorkflowError

    err = WorkflowError("1 of 2 jobs failed", [ValueError("x")])
    assert isinstance(err, ExceptionGroup)
    assert err.message == "1 of 2 jobs failed"
    assert isinstance(err.exceptions[0], ValueError)


# Names beyond shared/API.md, each documented (README, docs/pool-contract.md, or the
# exceptions module). A new public name must be added here on purpose: nothing leaks.
DOCUMENTED_EXTRAS = {
    "neuroscaffold": {
        "NeuroscaffoldError", "UnknownServiceError", "StorageError", "JobSchedulingError",
        "InvalidStateError", "RemoteJobError", "ListenerError", "ParallelError",
        "InternalError", "PoolInterrupted", "CompileInterrupted", "CorruptDataError",
        "DiskFullError", "DamagedFileError", "SimulationError", "SimulationInterrupted",
        "PackingError", "ShortfallError", "StrategyError", "NeuroscaffoldWarning",
    },
    "neuroscaffold.services": {"FallbackProvider", "registered_services", "unregister_service"},
    "neuroscaffold.services.pool": {
        "JobRecord", "PoolStatistics", "SubmitterStatistics", "TERMINAL", "create_job_pool",
        "submitter_name", "PoolNetwork", "PoolNode", "SchedulableNode",
    },
}


@pytest.mark.parametrize("module_name", sorted(API))
def test_nothing_beyond_the_documented_api_leaks(module_name):
    module = importlib.import_module(module_name)
    public = set(module.__all__)
    allowed = set(API[module_name]) | DOCUMENTED_EXTRAS[module_name]
    assert public - allowed == set(), f"undocumented public names in {module_name}"
    # and no public attribute outside __all__ (modules, helpers) on the package
    leaked = {
        name for name in vars(module)
        if not name.startswith("_") and name not in public
        and not isinstance(vars(module)[name], type(importlib))
        and name not in {"annotations"}
    }
    assert leaked == set(), f"public names of {module_name} missing from __all__"


def test_pool_interrupted_is_a_keyboard_interrupt_naming_rank_and_signal():
    import pickle

    from neuroscaffold import PoolInterrupted
    from neuroscaffold.exceptions import PoolInterrupted as same

    assert PoolInterrupted is same
    error = PoolInterrupted(2, "SIGTERM")
    assert isinstance(error, KeyboardInterrupt)
    assert (error.rank, error.signal_name) == (2, "SIGTERM")
    assert str(error) == "the pool was interrupted by SIGTERM on rank 2"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.rank, copy.signal_name, str(copy)) == (2, "SIGTERM", str(error))
