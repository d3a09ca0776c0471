"""A connection strategy that kills its own process once, for the tests of damaged
parts: when its job runs, every placement job has been committed on every rank (the
placement pool ended with each rank's commit), so the parts a kill leaves are known."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml

from neuroscaffold import config
from neuroscaffold.connectivity import DistanceConnectivity

def _killer(marker: Path) -> dict:
    return {"strategy": "tests.storage._killing.KillOnce", "presynaptic": "golgi",
            "postsynaptic": "basket", "radius": 40, "marker": str(marker)}


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


def killing_config(folder: Path) -> tuple[Path, Path]:
    """A small example configuration with a :class:`KillOnce` set, and its marker."""
    from tests.storage._crash import write_config

    config = write_config(folder, x=200, z=200)
    marker = folder / "kill-marker"
    # added to the connectivity section itself (the example ends with others)
    data = yaml.safe_load(config.read_text())
    data["connectivity"]["killer"] = _killer(marker)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config, marker


def killed_compile(config: Path, marker: Path, out: Path, n: int | None) -> Path:
    """The parts directory a compile of ``config`` leaves when it is killed in its
    first connectivity job (placement fully committed)."""
    from tests.storage._crash import compile_cmd, run

    marker.write_text("")
    killed = run(compile_cmd(config, out, n), timeout=120)
    assert killed.returncode != 0 and not marker.exists(), killed.describe()
    parts = Path(f"{out}.parts")
    assert (parts / "manifest.json").exists(), killed.describe()
    return parts


def killing_reference(folder: Path) -> tuple[Path, Path, Path, list]:
    """:func:`killing_config` in ``folder``, its marker, its clean compile's path and
    contents (the network every repaired or resumed compile must give)."""
    from neuroscaffold.storage import canonical_contents
    from tests.storage._crash import compile_cmd, run

    config, marker = killing_config(folder)
    out = folder / "clean.hdf5"
    clean = run(compile_cmd(config, out), timeout=120)
    assert clean.returncode == 0, clean.describe()
    return config, marker, out, canonical_contents(out)
