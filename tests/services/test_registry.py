"""The service registry: fallback chains, mocks, unavailable and unknown services."""

from __future__ import annotations

import pickle
import re
import threading

import pytest

import neuroscaffold
import neuroscaffold.services as services
from neuroscaffold.exceptions import DependencyError, UnknownServiceError
from neuroscaffold.services import FallbackProvider, register_service
from neuroscaffold.services._registry import LazyService, UnavailableService


def _chain(*providers, **kwargs) -> FallbackProvider:
    return FallbackProvider(providers, requires="x", install="pip install x", **kwargs)


def _missing(module: str):
    def provider():
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    return provider


def _giving(value, calls: list):
    def provider():
        calls.append(value)
        return value

    return provider


def test_first_provider_that_imports_wins_and_later_ones_are_not_tried(registry):
    calls = []
    chain = _chain(
        _missing("fast"), _giving("real", calls), _giving("other", calls), mock=lambda: "mock"
    )
    register_service("Thing", chain)
    assert services.Thing.upper() == "REAL"
    assert calls == ["real"]


def test_providers_resolve_on_first_use_and_only_once(registry):
    calls = []
    register_service("Thing", _chain(_giving("real", calls)))
    thing = services.Thing
    assert isinstance(thing, LazyService)
    assert calls == []
    assert repr(thing) == "<service 'Thing' (not resolved yet)>"
    assert thing.upper() == "REAL"
    assert thing.lower() == "real"
    assert calls == ["real"]
    assert repr(thing) == "<service 'Thing': 'real'>"


def test_concurrent_first_uses_resolve_once(registry):
    calls = []
    register_service("Thing", _chain(_giving("real", calls)))
    thing = services.Thing
    start = threading.Barrier(8)

    def use():
        start.wait()
        thing.upper()

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["real"]


def test_mock_when_no_provider_imports(registry):
    chain = _chain(_missing("a"), _missing("b"), mock=lambda: "mock")
    register_service("Thing", chain)
    assert services.Thing.title() == "Mock"


def test_calls_are_forwarded(registry):
    register_service("Thing", _chain(lambda: len))
    assert services.Thing([1, 2, 3]) == 3


def test_no_provider_and_no_mock_fails_on_first_use_naming_the_package(registry):
    chain = FallbackProvider(
        (_missing("fancylib"),),
        requires="fancylib",
        install="pip install 'neuroscaffold[fancy]'",
    )
    register_service("Fancy", chain)
    fancy = services.Fancy  # naming it is fine
    message = re.escape(
        "the Fancy service needs fancylib, which is not installed; "
        "install it with: pip install 'neuroscaffold[fancy]'"
    )
    with pytest.raises(DependencyError, match=rf"^{message}$") as info:
        fancy.anything
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    assert info.value.__cause__.name == "fancylib"
    with pytest.raises(DependencyError, match=rf"^{message}$"):
        fancy()
    with pytest.raises(DependencyError, match=rf"^{message}$"):
        fancy.attribute = 1


def test_mock_may_refuse_with_a_dependency_error(registry):
    def refuse():
        raise DependencyError("not here")

    register_service("Thing", _chain(_missing("x"), mock=refuse))
    with pytest.raises(DependencyError, match=r"^not here$") as info:
        services.Thing.use()
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_introspection_is_not_a_use():
    error = UnavailableService("Gone", DependencyError("gone"))
    assert not hasattr(error, "__array_interface__")
    assert repr(error) == "<unavailable service 'Gone': gone>"
    assert repr(pickle.loads(pickle.dumps(error))) == repr(error)
    lazy = LazyService("Gone", _chain(_missing("x")))
    assert not hasattr(lazy, "__wrapped__")
    assert repr(lazy) == "<service 'Gone' (not resolved yet)>"


def test_unknown_service_fails_on_first_use_naming_it(registry):
    from neuroscaffold.services import NoSuchService  # importing the name works

    message = re.escape(
        "no service named 'NoSuchService' is registered (registered: MPI, MPILock, ProgressListener)"
    )
    with pytest.raises(UnknownServiceError, match=rf"^{message}$"):
        NoSuchService.get_rank()
    with pytest.raises(UnknownServiceError, match=rf"^{message}$"):
        NoSuchService()


def test_private_names_are_plain_attribute_errors():
    with pytest.raises(AttributeError, match=r"^module 'neuroscaffold.services' has no attribute '_nope'$"):
        services._nope


def test_register_service_overrides_and_returns_the_object_itself(registry):
    fake = object()
    register_service("MPI", fake)
    assert services.MPI is fake
    assert "MPI" in services.registered_services()


def test_unregister_service(registry):
    register_service("Thing", "value")
    assert services.registered_services() == {"MPI", "MPILock", "ProgressListener", "Thing"}
    services.unregister_service("Thing")
    assert services.registered_services() == {"MPI", "MPILock", "ProgressListener"}
    with pytest.raises(UnknownServiceError, match=r"^no service named 'Thing' is registered$"):
        services.unregister_service("Thing")


def test_register_service_needs_a_public_identifier(registry):
    with pytest.raises(ValueError, match=r"^service name must be a public identifier, got '_x'$"):
        register_service("_x", object())


def test_builtin_services_are_the_same_object_everywhere():
    assert neuroscaffold.MPI is services.MPI
    assert services.registered_services() >= {"MPI", "MPILock"}
    assert set(services.__all__) >= {
        "MPI", "MPILock", "JobPool", "register_service", "pool_cache", "WorkflowError"
    }
    assert services.WorkflowError is neuroscaffold.exceptions.WorkflowError


def test_lazy_service_travels_by_name():
    assert pickle.loads(pickle.dumps(services.MPI)) is services.MPI


def test_the_progress_listener_is_a_service_the_pool_asks_for(registry):
    # Issue 11.14: the pool no longer imports the progress package; it asks for the
    # ProgressListener service, which another factory can replace.
    from neuroscaffold.network import Network
    from neuroscaffold.progress import default_listener
    from neuroscaffold.services import ProgressListener, register_service

    assert ProgressListener.__call__ is not None
    made = []

    def factory(pool):
        made.append(pool)
        return lambda event: None

    register_service("ProgressListener", factory)
    with Network().create_job_pool() as pool:
        pool.execute()
    assert made == [pool]
    registry._SERVICES.pop("ProgressListener")
    from neuroscaffold.services import _register_builtins

    _register_builtins()
    from neuroscaffold.services import _registry as reg

    assert reg.get_service("ProgressListener")._resolve() is default_listener


def test_the_services_import_no_layer_above_them():
    import ast
    from pathlib import Path

    import neuroscaffold.services as services

    root = Path(services.__file__).parent.parent  # the neuroscaffold package
    allowed = ("neuroscaffold.services", "neuroscaffold.exceptions", "neuroscaffold._backoff",
               "neuroscaffold._signals")
    for path in Path(services.__file__).parent.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts if path.name == "__init__.py" else parts[:-1]
        if package[-1] == "__init__":
            package = package[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            else:
                continue
            if module == "neuroscaffold" and isinstance(node, ast.ImportFrom):
                # ``from ... import _signals``: the names are the modules
                for alias in node.names:
                    assert f"{module}.{alias.name}".startswith(allowed), (str(path), alias.name)
            elif module.startswith("neuroscaffold"):
                assert module.startswith(allowed), (str(path), module)
