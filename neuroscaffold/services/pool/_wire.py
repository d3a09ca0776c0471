"""Framing and nonblocking sends of the pool's messages (see ``_protocol``)."""

from __future__ import annotations

import pickle
import struct
import time

from ..._backoff import Backoff

_HEADER = struct.Struct("<BQ")  # message kind, a number (batch id, ...)
_SPLIT = struct.Struct("<Q")


def encode(kind: int, number: int = 0, body: bytes = b"") -> bytes:
    return _HEADER.pack(kind, number) + body


def decode(buffer) -> tuple[int, int, memoryview]:
    kind, number = _HEADER.unpack_from(buffer)
    return kind, number, memoryview(buffer)[_HEADER.size :]


def join(first: bytes, second: bytes) -> bytes:
    """Two blobs in one body, so the second can fail to load without losing the first."""
    return _SPLIT.pack(len(first)) + first + second


def split(body: memoryview) -> tuple[memoryview, memoryview]:
    (length,) = _SPLIT.unpack_from(body)
    start = _SPLIT.size
    return body[start : start + length], body[start + length :]


def plain(obj) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


class Outbox:
    """Nonblocking sends on one tag, kept alive until MPI has finished with them."""

    def __init__(self, comm, tag: int):
        from mpi4py import MPI

        self._byte = MPI.BYTE
        self.comm = comm
        self.tag = tag
        self.pending: list = []

    def send(self, dest: int, data: bytes) -> None:
        request = self.comm.Isend([data, self._byte], dest, self.tag)
        if not request.Test():
            self.pending.append((request, data))

    def prune(self) -> None:
        if self.pending:
            self.pending = [(req, data) for req, data in self.pending if not req.Test()]

    def wait(self, bound: float) -> bool:
        """Wait (without spinning) until every send completed, at most ``bound`` seconds.

        Sends still pending after that are not cancelled (MPI-4 deprecates cancelling
        sends): they are kept, with their buffers, in :data:`_unfinished` until they
        complete, so MPI never writes from freed memory.
        """
        deadline = time.monotonic() + bound
        backoff = Backoff()
        while True:
            self.prune()
            _prune_unfinished()
            if not self.pending:
                return True
            if time.monotonic() > deadline:
                _unfinished.extend(self.pending)
                self.pending = []
                return False
            backoff.sleep()


#: sends whose receiver never took them (its rank left): kept until they complete
_unfinished: list = []


def _prune_unfinished() -> None:
    if _unfinished:
        _unfinished[:] = [(req, data) for req, data in _unfinished if not req.Test()]


class Inbox:
    """Nonblocking receives of whole messages on one tag (matched probes, no spinning)."""

    def __init__(self, comm, tag: int, source: int | None = None):
        from mpi4py import MPI

        self._byte = MPI.BYTE
        self._status = MPI.Status()
        self.comm = comm
        self.tag = tag
        self.source = MPI.ANY_SOURCE if source is None else source

    def waiting(self) -> bool:
        """Whether a message waits (it stays in the queue)."""
        return self.comm.Iprobe(self.source, self.tag)

    def poll(self):
        """``(source, buffer)`` of the next message, or None when there is none yet."""
        status = self._status
        message = self.comm.improbe(self.source, self.tag, status)
        if message is None:
            return None
        buffer = bytearray(status.Get_count(self._byte))
        message.Recv([buffer, self._byte])
        return status.Get_source(), buffer
