"""Distance kernels: the chance that a pair at distance d connects, ``peak · f(d)``."""

from __future__ import annotations

import numpy as np

from .. import config
from ..config import types
from ..config._attrs import Attr
from ..config._node import Node

__all__ = ["ExponentialKernel", "GaussianKernel", "Kernel", "optional_kernel"]


@config.dynamic(
    "type",
    builtins={
        "gaussian": "neuroscaffold.connectivity._kernels.GaussianKernel",
        "exponential": "neuroscaffold.connectivity._kernels.ExponentialKernel",
    },
)
class Kernel(Node):
    """The probability of a connection as a function of the distance between the cells."""

    peak = config.attr(type=types.number(min=0, max=1), default=1.0,
                       doc="chance that two cells at distance 0 connect")

    def probability(self, distances: np.ndarray) -> np.ndarray:
        """The chance of a connection at each of ``distances`` (µm)."""
        raise NotImplementedError(f"{type(self).__name__} must implement probability(distances)")


@config.node
class GaussianKernel(Kernel):
    """``peak · exp(−d² / (2 sigma²))``, as NEST's and NetPyNE's gaussian rules."""

    sigma = config.attr(type=types.positive, required=True, doc="width of the gaussian (µm)")

    def probability(self, distances: np.ndarray) -> np.ndarray:
        return self.peak * np.exp(-np.square(distances) / (2.0 * self.sigma ** 2))


@config.node
class ExponentialKernel(Kernel):
    """``peak · exp(−d / scale)``."""

    scale = config.attr(type=types.positive, required=True, doc="decay length (µm)")

    def probability(self, distances: np.ndarray) -> np.ndarray:
        return self.peak * np.exp(-np.asarray(distances) / self.scale)


class _OptionalKernel(Attr):
    """A ``kernel`` key that stays None when it is not given (a node attribute would
    otherwise build a kernel from nothing)."""

    optional = True

    def __set__(self, instance, value) -> None:
        instance.__dict__[self.name] = None if value is None else self.cast(instance, value)

    def set_default(self, instance) -> None:
        instance.__dict__[self.name] = None


def optional_kernel(doc: str) -> _OptionalKernel:
    """A configuration key holding a :class:`Kernel`, or None when it is not given."""
    return _OptionalKernel(type=Kernel, doc=doc)
