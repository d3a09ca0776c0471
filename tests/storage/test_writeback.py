"""Early writeback: the bytes a shard or the merge writes are handed to the kernel's
disk writeback a few MB at a time, so that ``fdatasync`` (a commit, the end of a merge)
finds little left to write. It is advice only: a failed call changes nothing."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from neuroscaffold.storage import _writeback
from neuroscaffold.storage._parts import PartsDir
from neuroscaffold.storage._writeback import Writeback
from neuroscaffold.storage._writer import WRITEBACK, ShardWriter


@pytest.fixture
def handed(monkeypatch):
    """The ranges handed over, per way (drop or keep the pages)."""
    calls: list[tuple[str, int, int, int]] = []
    monkeypatch.setattr(_writeback, "_drop", lambda fd, o, n: calls.append(("drop", fd, o, n)))
    monkeypatch.setattr(_writeback, "_keep", lambda fd, o, n: calls.append(("keep", fd, o, n)))
    return calls


@pytest.mark.parametrize("drop, way", [(True, "drop"), (False, "keep")])
def test_contiguous_writes_are_handed_over_in_pieces(handed, drop, way):
    written = Writeback(7, 100, drop=drop)
    for offset, size in [(0, 40), (40, 40), (80, 40), (120, 10), (500, 10), (510, 0)]:
        written.add(offset, size)
    written.flush()
    written.flush()  # nothing left: nothing handed
    assert handed == [(way, 7, 0, 120), (way, 7, 120, 10), (way, 7, 500, 10)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_linux_keeps_the_pages_with_sync_file_range(tmp_path):
    assert _writeback._keep is not None
    path = tmp_path / "data"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 10_000)
        written = Writeback(fd, 4096, drop=False)
        written.add(0, 10_000)  # handed over at once (a real call, that must not fail)
        written.flush()
        os.fdatasync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 10_000


def test_a_failed_advice_changes_nothing(tmp_path, monkeypatch):
    def refused(*args):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(_writeback.os, "posix_fadvise", refused)
    path = tmp_path / "data"
    path.write_bytes(b"y" * 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        written = Writeback(fd, 10, drop=True)
        written.add(0, 100)
        written.flush()
        # a bad descriptor: sync_file_range fails too, and says nothing
        Writeback(10_000, 10, drop=False).add(0, 100)
    finally:
        os.close(fd)


def test_a_shards_rows_go_to_the_disk_as_they_come(tmp_path, handed):
    parts = PartsDir(tmp_path / "net.hdf5.parts")
    parts.create({"mode": "compile"})
    data, journal = parts.shard(1, 0)
    writer = ShardWriter(data, journal, tmp_path / "net.hdf5")
    rows = np.zeros((WRITEBACK // 24 + 1, 3))  # a little over one piece per job
    for index in range(3):
        writer.write_job(f"s:{index}", [("placement", "a", "s", (index, 0, 0), rows)])
    writer.close()
    assert [call[0] for call in handed] == ["keep"] * 3  # the pages stay cached
    assert [(offset, size) for _, _, offset, size in handed] == [
        (i * rows.nbytes, rows.nbytes) for i in range(3)]
    assert os.path.getsize(data) == 3 * rows.nbytes
