"""A connection strategy that kills its own process once, for the tests of damaged
parts: when its job runs, every placement job has been committed on every rank (the
placement pool ended with each rank's commit), so the parts a kill leaves are known."""

from __future__ import annotations

import os
import signal

from neuroscaffold import config
from neuroscaffold.connectivity import DistanceConnectivity


@config.node
class KillOnce(DistanceConnectivity):
    """Distance connectivity whose first job SIGKILLs its process while the file
    ``marker`` exists (the first to remove it does); afterwards a normal strategy."""

    marker = config.attr(type=str, required=True)

    def connect(self, pre, post):
        try:
            os.unlink(self.marker)
        except FileNotFoundError:
            return super().connect(pre, post)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: SIGKILL was sent to this process")
