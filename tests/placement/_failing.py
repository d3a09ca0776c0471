"""A poisson_disk that fails in one region while a marker file exists (for resumes)."""

from __future__ import annotations

import os
from pathlib import Path

from neuroscaffold import config
from neuroscaffold.placement import PoissonDiskPlacement


@config.node
class FailingPoissonDisk(PoissonDiskPlacement):
    """Fails the job of region (1, 0, 1) while ``$NS_FAIL_MARKER`` names a file."""

    def _sample(self, chunk, indicators, fixed):
        marker = os.environ.get("NS_FAIL_MARKER")
        if chunk.index == (1, 0, 1) and marker and Path(marker).exists():
            raise RuntimeError("failing on purpose")
        super()._sample(chunk, indicators, fixed)
