"""The parts directory of a network being written: manifest, writer lock, journals.

See :mod:`neuroscaffold.storage` for the design. Only the main rank creates, locks and
removes the directory; every rank reads the journals.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import socket
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..exceptions import DiskFullError, StorageError
from ._blocks import ROW, Block

__all__ = ["Commits", "PartsDir", "Verified", "WriterLock", "busy", "decode_commit",
           "encode_commit", "free_space", "parts_path"]

MANIFEST = "manifest.json"
OLD_NETWORK = "replaced.hdf5"  # the network a merge replaces, kept aside (see keep_aside)
_SHARD = re.compile(r"^a(\d+)-r(\d+)\.journal$")
_ANY_SHARD = re.compile(r"^a(\d+)-r(\d+)\.(journal|data)$")
#: Bytes per row of each kind tag of a commit line.
_ROW_OF_TAG = {"p": ROW["placement"][0].itemsize * ROW["placement"][1],
               "c": ROW["connectivity"][0].itemsize * ROW["connectivity"][1]}


def parts_path(network_path: Path) -> Path:
    """The parts directory of the network at ``network_path``."""
    return network_path.with_name(network_path.name + ".parts")


def free_space(path: Path) -> str:
    """The free space of the file system holding ``path``, for messages."""
    for candidate in (path, *path.parents):
        try:
            free = shutil.disk_usage(candidate).free
        except OSError:
            continue
        for unit in ("B", "kB", "MB", "GB", "TB"):
            if free < 1000 or unit == "TB":
                return f"{free:.0f} {unit} free" if unit == "B" else f"{free:.1f} {unit} free"
            free /= 1000
    return "free space unknown"


def storage_error(path: Path, error: OSError, doing: str) -> StorageError:
    """A one-line :class:`StorageError` for an ``OSError`` met while ``doing``."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"{path}: no space left on the device while {doing} "
                            f"({free_space(path.parent)})")
    reason = error.strerror or str(error)
    return StorageError(f"{path}: {reason.lower()} while {doing}")


@dataclass
class Commits:
    """What the journals of a parts directory hold."""

    jobs: set[str] = field(default_factory=set)  #: keys of committed jobs
    #: (kind, set name) -> blocks, in commit order
    blocks: dict[tuple[str, str], list[Block]] = field(default_factory=dict)
    attempts: int = 0  #: the highest attempt number seen


@dataclass
class Verified:
    """What :meth:`PartsDir.verify` found."""

    jobs: set[str] = field(default_factory=set)  #: keys of committed jobs
    damaged: set[str] = field(default_factory=set)  #: of those, jobs with damaged rows
    #: data file -> (commit lines with damaged rows, whether the file is missing)
    files: dict[Path, tuple[int, bool]] = field(default_factory=dict)

    @property
    def intact(self) -> set[str]:
        return self.jobs - self.damaged

    def describe(self) -> str:
        """One line: which shards are damaged, and what happens to their jobs."""
        parts = []
        for path, (lines, missing) in sorted(self.files.items()):
            what = "is missing" if missing else "has changed or short rows"
            parts.append(f"{path.parent.name}/{path.name} {what} ({lines:,} "
                         f"commit{'s' if lines != 1 else ''})")
        many = len(self.damaged) != 1
        return (f"{'; '.join(parts)}: {len(self.damaged):,} committed "
                f"{'jobs fail their checksums and run' if many else 'job fails its checksum and runs'}"
                " again")


def encode_commit(job: str, blocks: list[list]) -> bytes:
    """The journal line that commits ``job``: its blocks (kind tag, set, strategy, the
    chunk's 3 indices, byte offset, rows, CRC-32 of the rows), and a CRC-32 of the
    line's own content, so that a line changed after it was written is recognised."""
    body = json.dumps([job, blocks], separators=(",", ":")).encode()
    line = {"job": job, "blocks": blocks, "check": zlib.crc32(body)}
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def decode_commit(record: Any) -> tuple[str, list] | None:
    """``(job, blocks)`` of a parsed journal line, or None when it fails its check
    (changed, or written by a version that did not checksum its rows)."""
    try:
        job, blocks, check = record["job"], record["blocks"], record["check"]
        body = json.dumps([job, blocks], separators=(",", ":")).encode()
        if zlib.crc32(body) != check or not isinstance(job, str):
            return None
        for block in blocks:
            kind, name, strategy, i, j, k, offset, count, crc = block
            if kind not in _ROW_OF_TAG or not isinstance(name, str) or not all(
                    type(v) is int for v in (i, j, k, offset, count, crc)) \
                    or offset < 0 or count < 0:
                return None
    except (KeyError, TypeError, ValueError):
        return None
    return job, blocks


def _rows_intact(handles: dict[Path, int | None], data: Path, blocks: list) -> bool:
    """Whether every block of a commit line reads back from ``data`` with its CRC."""
    if data not in handles:
        try:
            handles[data] = os.open(data, os.O_RDONLY)
        except OSError:
            handles[data] = None
    fd = handles[data]
    if fd is None:
        return False
    for kind, _, _, _, _, _, offset, count, crc in blocks:
        size = count * _ROW_OF_TAG[kind]
        try:
            rows = os.pread(fd, size, offset) if size else b""
        except OSError:
            return False
        if len(rows) != size or zlib.crc32(rows) != crc:
            return False
    return True


def busy(network: Path, holder: str) -> StorageError:
    """The error for a network that another process writes."""
    return StorageError(f"{network}: another process is writing this network"
                        f"{f' ({holder})' if holder else ''}; wait for it to end, or write "
                        "to another path")


class WriterLock:
    """An exclusive ``flock`` on ``parts/lock``: one writing process per network.

    The lock belongs to the open file: it is released when the process ends, however
    it ends, so a killed compile never leaves a stale lock behind.
    """

    def __init__(self, path: Path, network: Path):
        self.path = path
        self.network = network
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + 0.5  # `show` may hold it for a few microseconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise busy(self.network, holder) from None
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._fd = fd

    def release(self, remove: bool = False) -> None:
        if self._fd is None:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self._fd)  # releases the flock
        self._fd = None

    @staticmethod
    @contextlib.contextmanager
    def free(path: Path) -> Iterator[bool]:
        """Hold the lock at ``path`` for the block if no process holds it (without
        creating it, or writing in it); yields whether it is held. For ``show``'s
        sweep of leftovers: a writer that starts meanwhile waits, then proceeds."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the flock

    @staticmethod
    def held(path: Path) -> bool:
        """Whether some process holds the lock at ``path`` now (for ``show``)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


class PartsDir:
    """The parts directory at ``path`` (which may not exist yet)."""

    def __init__(self, path: Path):
        self.path = path

    def exists(self) -> bool:
        return (self.path / MANIFEST).exists()

    def lock(self, network: Path) -> WriterLock:
        return WriterLock(self.path / "lock", network)

    def being_written(self) -> bool:
        return WriterLock.held(self.path / "lock")

    def check_not_busy(self, network: Path) -> None:
        """Raise when another process writes the network (before judging what the
        network path holds: a running compile's stub is not an abandoned one)."""
        if self.being_written():
            try:
                holder = (self.path / "lock").read_text().strip()
            except OSError:
                holder = ""
            raise busy(network, holder)

    # --- manifest -------------------------------------------------------------------

    def create(self, manifest: dict[str, Any]) -> None:
        """Make the directory (if needed) and write ``manifest`` atomically."""
        self.path.mkdir(exist_ok=True)
        self.write_manifest(manifest)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        temporary = self.path / (MANIFEST + ".tmp")
        with open(temporary, "w") as file:
            json.dump(manifest, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path / MANIFEST)

    def manifest(self) -> dict[str, Any]:
        try:
            with open(self.path / MANIFEST) as file:
                return json.load(file)
        except FileNotFoundError:
            raise StorageError(f"{self.path}: no unfinished compile here (no {MANIFEST})") from None
        except (OSError, ValueError) as error:
            raise StorageError(f"{self.path / MANIFEST}: unreadable ({error})") from None

    def remove(self) -> None:
        """Remove the directory (see :meth:`retire`)."""
        trash = self.retire()
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def retire(self) -> Path | None:
        """Take the directory out of use in one step, and return where it now is (to be
        removed; None when there was none).

        It is renamed away: a process killed midway through the removal leaves a hidden
        leftover (swept by the next session), never a parts directory that has lost
        its manifest or half its journals and would be taken for an unfinished compile.
        """
        trash = self.path.with_name(f".{self.path.name}.removing-{os.getpid()}")
        try:
            os.rename(self.path, trash)
        except FileNotFoundError:
            return None
        except OSError:  # cannot rename here: it is removed in place, the manifest first
            trash = self.path
            try:
                os.unlink(self.path / MANIFEST)
            except OSError:
                pass
        return trash

    def keep_aside(self, network: Path) -> None:
        """Hard-link the finished network at ``network`` into the directory, so that
        replacing it frees nothing yet: freeing a large file takes the file system
        tens of milliseconds, which the ranks then share while they remove the parts.
        Nothing is linked where hard links are not supported."""
        kept = self.path / OLD_NETWORK
        try:
            kept.unlink(missing_ok=True)
            os.link(network, kept)
        except OSError:
            pass

    def sweep(self) -> None:
        """Remove what killed removals left behind (call only when no process writes
        the network: a removal runs while its writer still holds the lock)."""
        for leftover in self.path.parent.glob(f".{glob.escape(self.path.name)}.removing-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    # --- shards ---------------------------------------------------------------------

    def shard(self, attempt: int, rank: int) -> tuple[Path, Path]:
        """The data and journal files of ``rank`` in ``attempt``."""
        stem = f"a{attempt:04d}-r{rank:04d}"
        return self.path / f"{stem}.data", self.path / f"{stem}.journal"

    def journals(self) -> Iterator[tuple[int, int, Path]]:
        """(attempt, rank, path) of every journal, in attempt then rank order."""
        if not self.path.is_dir():
            return iter(())
        found = []
        for entry in os.scandir(self.path):
            match = _SHARD.match(entry.name)
            if match:
                found.append((int(match[1]), int(match[2]), Path(entry.path)))
        return iter(sorted(found))

    def _records(self) -> Iterator[tuple[int, Path, str, list]]:
        """(attempt, data file, job, block records) of every commit line that reads
        back whole, in attempt then rank then commit order.

        A line that does not parse (the torn end of a journal whose writer was killed
        mid-line) ends its journal; a whole line that fails its own check (changed
        after it was written) is skipped, so its job counts as not committed.
        """
        for attempt, rank, journal in self.journals():
            data = self.shard(attempt, rank)[0]
            try:
                with open(journal, "rb") as file:
                    text = file.read()
            except OSError:
                continue  # gone meanwhile: its jobs are not committed
            for line in text.split(b"\n")[:-1]:  # the piece after the last \n is torn
                try:
                    record = json.loads(line)
                except ValueError:
                    break
                decoded = decode_commit(record)
                if decoded is not None:
                    yield attempt, data, decoded[0], decoded[1]

    def commits(self, kinds: tuple[str, ...] = ("placement", "connectivity")) -> Commits:
        """Every committed job and block, read from the journals (see :meth:`_records`)."""
        commits = Commits()
        wanted = {kind[0] for kind in kinds}
        for attempt, _, _ in self.journals():
            commits.attempts = max(commits.attempts, attempt)
        for _, data, job, blocks in self._records():
            commits.jobs.add(job)
            for kind, name, strategy, i, j, k, offset, count, crc in blocks:
                if kind in wanted:
                    key = ("placement" if kind == "p" else "connectivity", name)
                    commits.blocks.setdefault(key, []).append(
                        Block((i, j, k), strategy, count, str(data), offset, crc))
        return commits

    def verify(self) -> "Verified":
        """Check every committed block's rows against their checksum (main rank, before
        a resume reuses them): which jobs hold rows that are missing, short or changed.

        Such a job counts as not committed: it runs again, and its new blocks replace
        the damaged ones (a later attempt's block replaces an earlier one). Only the
        last line of a job counts, as only its blocks are read: a damaged line that a
        later commit of the same job replaced is harmless.
        """
        verified = Verified()
        last: dict[str, tuple[bool, Path]] = {}  # job -> its last line: intact, file
        handles: dict[Path, int | None] = {}
        try:
            for _, data, job, blocks in self._records():
                # Only a job's last line counts: its blocks replace the earlier ones'.
                last[job] = (_rows_intact(handles, data, blocks), data)
        finally:
            for fd in handles.values():
                if fd is not None:
                    os.close(fd)
        verified.jobs = set(last)
        for job, (intact, data) in last.items():
            if not intact:
                verified.damaged.add(job)
                lines, _ = verified.files.get(data, (0, False))
                verified.files[data] = (lines + 1, handles.get(data) is None)
        return verified

    def next_attempt(self) -> int:
        """A number no earlier attempt used (its data or its journal)."""
        if not self.path.is_dir():
            return 1
        used = [int(m[1]) for m in map(_ANY_SHARD.match, os.listdir(self.path)) if m]
        return max(used, default=0) + 1
