"""A rank's shard: the rows its jobs made, appended, then committed in its journal.

Any thread of the rank may write (the main rank runs two jobs at once); one lock keeps
each job's rows contiguous. Commits are batched ("group commit") by a thread of the
writer: every :data:`COMMIT_INTERVAL` seconds it ``fdatasync``-s the data and only then
appends the jobs' lines to the journal, in one ``write``. Jobs never wait for the disk
(an ``fdatasync`` takes milliseconds here), and ``flush`` commits at once.
"""

from __future__ import annotations

import errno
import os
import threading
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from ..exceptions import StorageError
from ._blocks import ROW
from ._parts import encode_commit, storage_error
from ._writeback import Writeback

__all__ = ["COMMIT_INTERVAL", "ShardWriter"]

#: Seconds between two commits of a rank's jobs: the most work an interrupt can undo.
COMMIT_INTERVAL = 0.2

#: Bytes kept free for the journal: a job is refused before the disk is full, so that
#: the jobs written before it can still be committed.
RESERVE = 1 << 20

#: Bytes of rows handed to the disk writeback at a time (see :mod:`._writeback`).
WRITEBACK = 1 << 20

_KIND_TAG = {"placement": "p", "connectivity": "c"}


class ShardWriter:
    """Appends jobs' rows to ``data`` and commits them in ``journal``.

    Files are created on the first write (a rank that writes nothing leaves nothing).
    After an error (a full disk) every later write raises the same error at once.
    """

    def __init__(self, data: Path, journal: Path, network: Path):
        self.data = data
        self.journal = journal
        self.network = network
        self._lock = threading.Lock()  # data offset, pending lines
        self._commit_lock = threading.Lock()  # one commit at a time, journal in order
        self._data_fd: int | None = None
        self._journal_fd: int | None = None
        self._offset = 0
        self._writeback: Writeback | None = None
        self._pending: list[bytes] = []
        self._error: StorageError | None = None
        self._committer: threading.Thread | None = None
        self._stop = threading.Event()
        self.committed = 0  #: jobs committed by this writer

    def write_job(self, job: str, blocks: Sequence[tuple[str, str, str, tuple, np.ndarray]]) -> None:
        """Append the rows of one job; it is committed within :data:`COMMIT_INTERVAL`.

        Args:
            job: the job's key (the same on every rank and in every attempt).
            blocks: ``(kind, set name, strategy, chunk, rows)`` per block; an empty
                block is recorded too (the chunk was done and holds nothing).
        """
        # Converted and checksummed before the lock: the main rank's two job threads
        # overlap here (zlib releases the GIL on large buffers).
        prepared = []
        for kind, name, strategy, chunk, rows in blocks:
            dtype, width = ROW[kind]
            rows = np.ascontiguousarray(rows, dtype=dtype).reshape(-1, width)
            prepared.append((kind, name, strategy, chunk, rows, zlib.crc32(rows)))
        size = sum(rows.nbytes for *_, rows, _ in prepared)
        records = []
        with self._lock:
            self._check()
            try:
                self._open()
                self._make_room(size)
                for kind, name, strategy, chunk, rows, crc in prepared:
                    self._append(rows)
                    records.append([_KIND_TAG[kind], name, strategy, *map(int, chunk),
                                    self._offset - rows.nbytes, len(rows), crc])
            except OSError as error:
                self._error = failure = storage_error(self.data, error,
                                                      "writing a job's results")
            else:
                self._pending.append(encode_commit(job, records))
                return
        # The jobs written before this one are still committed, in the room kept for it.
        self._commit(after_error=True)
        raise failure from None

    def flush(self) -> None:
        """Commit every job written so far (a pool ended, or the run is interrupted)."""
        self._commit()
        self._check()

    def close(self) -> None:
        """Commit, stop the committer and close the files."""
        self._stop.set()
        committer = self._committer
        if (committer is not None and committer.ident is not None
                and committer is not threading.current_thread()):
            committer.join()
        try:
            self._commit()
            self._check()
        finally:
            with self._lock:
                for fd in (self._data_fd, self._journal_fd):
                    if fd is not None:
                        os.close(fd)
                self._data_fd = self._journal_fd = None

    # --- inside the lock ------------------------------------------------------------

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _open(self) -> None:
        if self._data_fd is None:
            # Truncated: an earlier process of this attempt number never committed.
            self._data_fd = os.open(self.data, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self._offset = 0
            # The rows go to the disk as they come (kept cached: the next phase and the
            # merge read them), so that a commit's fdatasync finds little left to write.
            self._writeback = Writeback(self._data_fd, WRITEBACK, drop=False)
            # Started before it is kept: a Ctrl-C between the two must not leave a
            # thread that ``close`` would join unstarted (the thread stops by itself).
            committer = threading.Thread(target=self._commit_regularly, daemon=True,
                                         name=f"commit {self.data.name}")
            committer.start()
            self._committer = committer

    def _make_room(self, size: int) -> None:
        stats = os.fstatvfs(self._data_fd)
        if stats.f_bavail * stats.f_frsize < size + RESERVE:
            raise OSError(errno.ENOSPC, "No space left on device")

    def _append(self, rows: np.ndarray) -> None:
        view = memoryview(rows.reshape(-1).view(np.uint8))
        done = 0
        while done < len(view):
            done += os.pwrite(self._data_fd, view[done:], self._offset + done)
        self._writeback.add(self._offset, len(view))
        self._offset += len(view)

    # --- commits ----------------------------------------------------------------------

    def _commit_regularly(self) -> None:
        while not self._stop.wait(COMMIT_INTERVAL):
            try:
                self._commit()
            except Exception:
                return  # the error is kept: the next write or flush raises it

    def _commit(self, after_error: bool = False) -> None:
        with self._commit_lock:
            with self._lock:
                if (self._error is not None and not after_error) or not self._pending:
                    return
                batch, self._pending = self._pending, []
                data_fd = self._data_fd
            try:
                os.fdatasync(data_fd)  # the rows are durable before they are committed
                if self._journal_fd is None:
                    self._journal_fd = os.open(self.journal,
                                               os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                lines = b"".join(batch)
                if os.write(self._journal_fd, lines) != len(lines):
                    # a full disk mid-batch: the torn line is ignored when read
                    raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as error:
                if self._error is None:
                    self._error = storage_error(self.journal, error, "committing jobs")
                raise self._error from None
            self.committed += len(batch)
