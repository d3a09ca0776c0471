"""Connection rules that interrupt their own compile, for the resume tests.

The job of chunk ``$NS_INTERRUPT_CHUNK`` (``i,j,k``) of the set ``$NS_INTERRUPT_SET``
sends SIGINT to its own process (one rank, under ``mpiexec``) while the file
``$NS_INTERRUPT_MARKER`` exists, as Ctrl-C would; then it goes on. Without those
variables the rules are the built-ins, so a compile without them is the reference.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from neuroscaffold import config
from neuroscaffold.connectivity import DistanceConnectivity, FixedIndegree, FixedOutdegree


class _Interrupting:
    def connect(self, pre, post):
        marker = os.environ.get("NS_INTERRUPT_MARKER")
        job = self._current_job()
        if (marker and Path(marker).exists() and os.environ.get("NS_INTERRUPT_SET") == self.name
                and ",".join(map(str, job.chunk.index)) == os.environ.get("NS_INTERRUPT_CHUNK")):
            os.kill(os.getpid(), signal.SIGINT)
        return super().connect(pre, post)


@config.node
class InterruptingOutdegree(_Interrupting, FixedOutdegree):
    """fixed_outdegree, interrupting as the module says."""


@config.node
class InterruptingIndegree(_Interrupting, FixedIndegree):
    """fixed_indegree, interrupting as the module says."""


@config.node
class InterruptingDistance(_Interrupting, DistanceConnectivity):
    """distance (with its kernel), interrupting as the module says."""
