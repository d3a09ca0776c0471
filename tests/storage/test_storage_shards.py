"""A rank's shard and journal, the block tables read from them, and the writer lock."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from neuroscaffold import StorageError
from neuroscaffold.storage import Block, BlockTable
from neuroscaffold.storage._parts import PartsDir, WriterLock
from neuroscaffold.storage._writer import ShardWriter


def _writer(parts: PartsDir, attempt: int = 1, rank: int = 0) -> ShardWriter:
    data, journal = parts.shard(attempt, rank)
    return ShardWriter(data, journal, parts.path.with_suffix(""))


@pytest.fixture
def parts(tmp_path) -> PartsDir:
    folder = PartsDir(tmp_path / "net.hdf5.parts")
    folder.create({"mode": "compile"})
    return folder


def _cells(n: int, value: float) -> np.ndarray:
    return np.full((n, 3), value)


def test_committed_jobs_and_blocks_are_read_back(parts):
    writer = _writer(parts)
    writer.write_job("s:0_0_0:100", [("placement", "a", "s", (0, 0, 0), _cells(2, 1.0)),
                                     ("placement", "b", "s", (0, 0, 0), _cells(0, 0.0))])
    writer.write_job("c:1_0_0:100", [("connectivity", "a_to_a", "", (1, 0, 0),
                                      np.array([[0, 1], [1, 0]]))])
    assert parts.commits().jobs == set()  # nothing committed before a flush (or 0.2 s)
    writer.flush()
    commits = parts.commits()
    assert commits.jobs == {"s:0_0_0:100", "c:1_0_0:100"}
    assert commits.attempts == 1
    (a,) = commits.blocks[("placement", "a")]
    assert (a.chunk, a.strategy, a.count, a.offset) == ((0, 0, 0), "s", 2, 0)
    assert commits.blocks[("placement", "b")][0].count == 0
    (pairs,) = commits.blocks[("connectivity", "a_to_a")]
    table = BlockTable("connectivity", "a_to_a", [pairs])
    rows, indices = table.read([0])
    assert rows.tolist() == [[0, 1], [1, 0]] and indices.tolist() == [0, 1]
    assert parts.commits(kinds=("connectivity",)).blocks.keys() == {("connectivity", "a_to_a")}
    writer.close()


def test_commits_come_by_themselves_within_the_interval(parts):
    writer = _writer(parts)
    writer.write_job("j", [("placement", "a", "s", (0, 0, 0), _cells(1, 1.0))])
    deadline = time.monotonic() + 5
    while not parts.commits().jobs and time.monotonic() < deadline:
        time.sleep(0.02)
    assert parts.commits().jobs == {"j"}
    writer.close()


def test_a_torn_journal_and_uncommitted_rows_are_ignored(parts):
    writer = _writer(parts)
    for i in range(3):
        writer.write_job(f"j{i}", [("placement", "a", "s", (i, 0, 0), _cells(1, i))])
    writer.flush()
    writer.write_job("never committed", [("placement", "a", "s", (9, 0, 0), _cells(5, 9))])
    data, journal = parts.shard(1, 0)
    # a killed writer: the last line cut in the middle, rows without a commit
    with open(journal, "ab") as file:
        file.write(b'{"job":"j3","blocks":[["p","a","s",3,0,')
    commits = parts.commits()
    assert commits.jobs == {"j0", "j1", "j2"}
    table = BlockTable("placement", "a", commits.blocks[("placement", "a")])
    rows, indices = table.read(table.select())
    assert rows[:, 0].tolist() == [0, 1, 2] and indices.tolist() == [0, 1, 2]
    # a later attempt never reuses the files of an earlier one
    assert parts.next_attempt() == 2
    writer.close()


def test_block_tables_order_by_chunk_then_strategy_and_later_blocks_replace(tmp_path):
    path = tmp_path / "rows"
    rows = np.arange(30, dtype="<f8").reshape(10, 3)
    path.write_bytes(rows.tobytes())
    at = lambda row: row * 24  # noqa: E731 - byte offset of a row
    table = BlockTable("placement", "a", [
        Block((1, 0, 0), "s", 2, str(path), at(0)),
        Block((0, 0, 0), "t", 1, str(path), at(2)),
        Block((0, 0, 0), "s", 3, str(path), at(3)),
        Block((-1, 5, 0), "s", 0, str(path), 0),
        Block((1, 0, 0), "s", 1, str(path), at(9)),  # replaces the first block
    ])
    assert [(b.chunk, b.strategy, b.count) for b in table.blocks] == [
        ((-1, 5, 0), "s", 0), ((0, 0, 0), "s", 3), ((0, 0, 0), "t", 1), ((1, 0, 0), "s", 1)]
    assert len(table) == 5 and table.starts.tolist() == [0, 0, 3, 4, 5]
    assert table.chunks() == [(-1, 5, 0), (0, 0, 0), (1, 0, 0)]
    assert table.select([(1, 0, 0), (7, 7, 7)]) == [3]
    picked, indices = table.read(table.select(np.array([[1, 0, 0], [0, 0, 0]])))
    assert picked[:, 0].tolist() == [9, 12, 15, 6, 27]
    assert indices.tolist() == [0, 1, 2, 3, 4]
    assert table.chunks_of([3, 2]).tolist() == [[1, 0, 0], [0, 0, 0]]
    short = BlockTable("placement", "b", [Block((0, 0, 0), "s", 20, str(path), 0)])
    with pytest.raises(OSError, match="the file is shorter"):
        short.read([0])


def test_a_full_disk_fails_the_write_with_one_line_and_keeps_what_was_committed(parts, monkeypatch):
    writer = _writer(parts)
    writer.write_job("j0", [("placement", "a", "s", (0, 0, 0), _cells(1, 1.0))])
    writer.flush()

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(StorageError, match=r"^.*a0001-r0000\.data: no space left on the device "
                                           r"while writing a job's results \(.* free\)$"):
        writer.write_job("j1", [("placement", "a", "s", (1, 0, 0), _cells(1, 2.0))])
    monkeypatch.undo()
    with pytest.raises(StorageError, match="no space left"):  # and so does every later one
        writer.write_job("j2", [("placement", "a", "s", (2, 0, 0), _cells(1, 3.0))])
    assert parts.commits().jobs == {"j0"}


def test_one_writer_per_network(tmp_path, parts):
    network = tmp_path / "net.hdf5"
    first = parts.lock(network)
    first.acquire()
    assert parts.being_written()
    second = parts.lock(network)
    with pytest.raises(StorageError, match=rf"^{re.escape(str(network))}: another process is "
                                           rf"writing this network \(pid {os.getpid()} on .*\); "
                                           r"wait for it to end, or write to another path$"):
        second.acquire()
    first.release()
    assert not parts.being_written()
    second.acquire()
    second.release()


def test_a_killed_writer_leaves_no_stale_lock(tmp_path, parts):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(parts.path / 'lock')!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert WriterLock.held(parts.path / "lock")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        lock = parts.lock(tmp_path / "net.hdf5")
        lock.acquire()  # the kernel released the dead process's lock
        lock.release()
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_the_manifest_is_replaced_whole(parts):
    parts.write_manifest({"mode": "pool", "jobs": {"x": 3}})
    assert parts.manifest() == {"mode": "pool", "jobs": {"x": 3}}
    assert not any(name.endswith(".tmp") for name in os.listdir(parts.path))
    (parts.path / "manifest.json").write_text("{not json")
    with pytest.raises(StorageError, match=r"manifest\.json: unreadable"):
        parts.manifest()


def test_a_removal_killed_midway_leaves_no_parts_directory(parts, monkeypatch):
    """The end of a compile removes the parts; killed during that removal, it must not
    leave a parts directory without its manifest or with half its journals (which
    would be taken for an unfinished compile): the leftover is hidden and swept."""
    writer = _writer(parts)
    writer.write_job("s:0_0_0:100", [("placement", "a", "s", (0, 0, 0), _cells(2, 1.0))])
    writer.close()

    def killed(path, ignore_errors=False):
        os.unlink(next(path.glob("*.journal")))  # part of the tree is gone, then death
        raise KeyboardInterrupt

    monkeypatch.setattr("neuroscaffold.storage._parts.shutil.rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        parts.remove()
    monkeypatch.undo()
    assert not parts.path.exists()
    (leftover,) = parts.path.parent.glob(".net.hdf5.parts.removing-*")
    assert (leftover / "manifest.json").exists()
    parts.sweep()
    assert not leftover.exists()
    assert sorted(os.listdir(parts.path.parent)) == []
    parts.remove()  # removing what is gone is not an error


def test_an_interrupt_while_the_committer_starts_does_not_break_close(parts, monkeypatch):
    """A Ctrl-C that comes as the first write starts the commit thread (seen in the
    interrupt tests): ``close`` still commits and ends, with no 'cannot join thread'."""
    import threading

    writer = _writer(parts)
    real_start = threading.Thread.start

    def interrupted(thread):
        monkeypatch.setattr(threading.Thread, "start", real_start)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.write_job("s:0_0_0:100", [("placement", "a", "s", (0, 0, 0), _cells(2, 1.0))])
    writer.close()
    writer = _writer(parts, attempt=2)
    writer.write_job("s:1_0_0:100", [("placement", "a", "s", (1, 0, 0), _cells(1, 2.0))])
    writer.close()
    assert parts.commits().jobs == {"s:1_0_0:100"}
