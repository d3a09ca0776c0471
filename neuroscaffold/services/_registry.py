"""Service registry: named services, each resolved from a fallback chain on first use.

A service is whatever object :func:`register_service` stored under its name. A
:class:`FallbackProvider` stored there is wrapped in a :class:`LazyService` proxy, so
nothing is imported until the service is first used. On that first use the chain is
resolved: the first provider that imports wins; if none does, the chain's mock (a
working stand-in); if there is no mock either, an :class:`UnavailableService` that
raises a :class:`~neuroscaffold.exceptions.DependencyError` naming the missing package
and the ``pip install`` command that fixes it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from ..exceptions import DependencyError, UnknownServiceError

__all__ = [
    "FallbackProvider",
    "LazyService",
    "UnavailableService",
    "get_service",
    "register_service",
    "registered_services",
    "unregister_service",
]

_SERVICES: dict[str, Any] = {}
_SERVICES_LOCK = threading.Lock()


def _is_dunder(name: str) -> bool:
    # Introspection (hasattr(obj, "__array__"), copy, inspect, pytest) probes dunders;
    # those probes are not a use of the service and must get a plain AttributeError.
    return name.startswith("__") and name.endswith("__")


class UnavailableService:
    """Stand-in for a service that cannot be provided: its first use raises why.

    Any attribute access (other than dunder probes) or call raises a fresh copy of the
    stored error, chained to the error that caused it, so the import of code that
    merely names the service never fails.
    """

    def __init__(self, name: str, error: BaseException):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_error", error)

    def _raise(self):
        error = self._error
        fresh = type(error)(*error.args)
        raise fresh from error.__cause__

    def __getattr__(self, attr: str):
        if _is_dunder(attr):
            raise AttributeError(attr)
        self._raise()

    def __setattr__(self, attr: str, value: Any):
        self._raise()

    def __call__(self, *args: Any, **kwargs: Any):
        self._raise()

    def __reduce__(self):
        return (UnavailableService, (self._name, self._error))

    def __repr__(self) -> str:
        return f"<unavailable service {self._name!r}: {self._error}>"


@dataclass(frozen=True)
class FallbackProvider:
    """A service's fallback chain: real providers in order of preference, then a mock.

    Args:
        providers: Zero-argument factories tried in order; one that raises
            :class:`ImportError` is skipped, the first that returns provides the service.
        requires: The package the providers need, named in the error when neither a
            provider nor the mock is available.
        install: The command that installs ``requires``, given in that error.
        mock: Zero-argument factory of a working stand-in, used when no provider
            imports. It may raise :class:`DependencyError` to refuse (the service is
            then unavailable with that error).
    """

    providers: Sequence[Callable[[], Any]]
    _: KW_ONLY
    requires: str
    install: str
    mock: Callable[[], Any] | None = None

    def resolve(self, name: str) -> Any:
        """Return the service object named ``name``, trying the chain in order."""
        cause: ImportError | None = None
        for provider in self.providers:
            try:
                return provider()
            except ImportError as error:
                cause = error
        if self.mock is not None:
            try:
                return self.mock()
            except DependencyError as error:
                if error.__cause__ is None:
                    error.__cause__ = cause
                return UnavailableService(name, error)
        error = DependencyError(
            f"the {name} service needs {self.requires}, which is not installed; "
            f"install it with: {self.install}"
        )
        error.__cause__ = cause
        return UnavailableService(name, error)


class LazyService:
    """Proxy of a service that resolves its :class:`FallbackProvider` on first use.

    Attribute access and calls are forwarded to the resolved object; resolution happens
    once (thread-safe), so importing or naming the service costs nothing.
    """

    def __init__(self, name: str, provider: FallbackProvider):
        self._name = name
        self._provider = provider
        self._target: Any = None
        self._resolved = False
        self._lock = threading.Lock()

    def _resolve(self) -> Any:
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    self._target = self._provider.resolve(self._name)
                    self._resolved = True
        return self._target

    def __getattr__(self, attr: str):
        if _is_dunder(attr) or attr in _LAZY_SLOTS:
            raise AttributeError(attr)
        return getattr(self._resolve(), attr)

    def __setattr__(self, attr: str, value: Any):
        if attr in _LAZY_SLOTS:
            object.__setattr__(self, attr, value)
        else:
            setattr(self._resolve(), attr, value)

    def __call__(self, *args: Any, **kwargs: Any):
        return self._resolve()(*args, **kwargs)

    def __dir__(self):
        return dir(self._resolve())

    def __reduce__(self):
        # Travel by name (cloudpickle ships closures that use MPI to other ranks);
        # the receiver gets its own process's service.
        return (get_service, (self._name,))

    def __repr__(self) -> str:
        if not self._resolved:
            return f"<service {self._name!r} (not resolved yet)>"
        return f"<service {self._name!r}: {self._target!r}>"


# Attributes LazyService sets in __init__: if one is missing (half-built object, e.g.
# during unpickling) __getattr__ must not recurse into _resolve.
_LAZY_SLOTS = frozenset({"_name", "_provider", "_target", "_resolved", "_lock"})


def register_service(name: str, provider: Any) -> None:
    """Make ``neuroscaffold.services.<name>`` return ``provider``.

    Args:
        name: The service's attribute name in :mod:`neuroscaffold.services`.
        provider: The service object itself, or a :class:`FallbackProvider`, which is
            wrapped in a :class:`LazyService` and resolved on first use.
    """
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"service name must be a public identifier, got {name!r}")
    if isinstance(provider, FallbackProvider):
        provider = LazyService(name, provider)
    with _SERVICES_LOCK:
        _SERVICES[name] = provider


def unregister_service(name: str) -> None:
    """Forget the service ``name``; later lookups get an unknown-service stand-in."""
    with _SERVICES_LOCK:
        if _SERVICES.pop(name, None) is None:
            raise UnknownServiceError(f"no service named {name!r} is registered")


def registered_services() -> frozenset[str]:
    """Names of the services registered so far."""
    with _SERVICES_LOCK:
        return frozenset(_SERVICES)


def get_service(name: str) -> Any:
    """The service registered as ``name``, or an object whose first use raises an
    :class:`~neuroscaffold.exceptions.UnknownServiceError` naming it."""
    with _SERVICES_LOCK:
        try:
            return _SERVICES[name]
        except KeyError:
            known = ", ".join(sorted(_SERVICES)) or "none"
    return UnavailableService(
        name,
        UnknownServiceError(
            f"no service named {name!r} is registered (registered: {known})"
        ),
    )
