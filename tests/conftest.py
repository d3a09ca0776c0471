"""Suite-wide setup: make ``tests._mpi`` importable however pytest is started
(``pytest`` puts only the test folders on ``sys.path``, ``python -m pytest`` the cwd)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
