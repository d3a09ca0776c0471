"""An output path that is a symbolic link is followed (the file it points to is
replaced atomically, the link stays), and what a killed merge leaves next to the
network is named by ``show``, which removes it when no writer holds the lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest

from neuroscaffold.storage import canonical_contents
from tests.storage._crash import compile_cmd, run, show
from tests.storage._killing import killed_compile, killing_reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A configuration whose compile kills itself once, and its clean compile."""
    return killing_reference(tmp_path_factory.mktemp("links-leftovers"))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("n", [None, 2, 3], ids=["serial", "n2", "n3"])
def test_an_output_link_is_followed_and_stays_a_link(reference, tmp_path, n):
    config, _, clean, expected = reference
    runs = tmp_path / "runs"
    runs.mkdir()
    target = runs / "today.hdf5"
    link = tmp_path / "current.hdf5"
    link.symlink_to(Path("runs") / "today.hdf5")  # relative, dangling for now
    made = run(compile_cmd(config, link, n), timeout=120)
    assert made.returncode == 0, made.describe()
    assert link.is_symlink() and os.readlink(link) == str(Path("runs") / "today.hdf5")
    assert canonical_contents(target) == expected
    assert sorted(p.name for p in runs.iterdir()) == ["today.hdf5"]  # no parts, no temporaries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.hdf5", "runs"]

    # --clear over an old network behind the link: the target is replaced, not the link.
    target.unlink()
    shutil.copy(clean, target)
    old = target.stat().st_ino
    cleared = run(compile_cmd(config, link, n, "--clear"), timeout=120)
    assert cleared.returncode == 0, cleared.describe()
    assert target.stat().st_ino != old, "the target was not replaced by a new file"
    assert link.is_symlink() and canonical_contents(link) == expected
    assert canonical_contents(target) == expected
    shown = show(link)
    assert shown.returncode == 0 and "24,071 cells" in shown.stdout, shown.describe()


def _merge_leftover(out: Path) -> Path:
    leftover = out.with_name(f".{out.name}.merge-999999")
    with open(leftover, "wb") as file:
        file.truncate(3_000_000)
    return leftover


@pytest.mark.timeout(180)
def test_show_names_a_killed_merges_file_and_removes_it_when_no_one_writes(reference, tmp_path):
    config, marker, _, expected = reference
    out = tmp_path / "net.hdf5"
    parts = killed_compile(config, marker, out, None)
    leftover = _merge_leftover(out)

    # A writer holds the lock: the file may be its own; it is named, not touched.
    with open(parts / "lock", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shown = show(out)
    assert shown.returncode == 0, shown.describe()
    assert shown.stdout.splitlines()[-1] == (
        f"note: {leftover.name} next to the network: left by a killed compile (or in use "
        "by the one running now); the next compile of this path removes it"), shown.describe()
    assert leftover.exists()

    # No writer: show removes it, and says so.
    shown = show(out)
    assert shown.returncode == 0 and "UNFINISHED" in shown.stdout, shown.describe()
    assert shown.stdout.splitlines()[-1] == (
        "note: removed what a killed compile had left next to the network: "
        f"{leftover.name} (3.0 MB)"), shown.describe()
    assert not leftover.exists()
    assert (parts / "manifest.json").exists() and (parts / "lock").exists()
    again = show(out)
    assert "note:" not in again.stdout, again.describe()

    resumed = run(compile_cmd(config, out, None, "--resume"), timeout=120)
    assert resumed.returncode == 0, resumed.describe()
    assert canonical_contents(out) == expected
    # Left next to a complete network (no parts, no lock to take): named, and the next
    # compile of the path removes it.
    leftover = _merge_leftover(out)
    shown = show(out)
    assert shown.returncode == 0 and "24,071 cells" in shown.stdout, shown.describe()
    assert shown.stdout.splitlines()[-1].startswith(f"note: {leftover.name} next to the network")
    cleared = run(compile_cmd(config, out, None, "--clear"), timeout=120)
    assert cleared.returncode == 0 and not leftover.exists(), cleared.describe()
