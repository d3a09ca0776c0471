"""One-line (or one line per failed job) error messages for the command line.

Messages are bounded (a line never prints a whole value) and a failed job's line ends
with the file and line of the user's code that raised, found in the local traceback or
in the text of a remote one: ``job 'place l4 (1, 1, 1)' failed on rank 1: ValueError:
my bug (mystrategies.py:42)``.
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback
from pathlib import Path

__all__ = ["format_error", "user_location", "MAX_LINE"]

MAX_LINE = 400  # characters of one printed line
_MAX_LINES = 25
_PACKAGE = str(Path(__file__).resolve().parent.parent) + os.sep
_REMOTE_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+)', re.M)


def _library_dirs() -> tuple[str, ...]:
    dirs = {_PACKAGE}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(str(Path(path).resolve()) + os.sep)
    return tuple(dirs)


def _is_user_file(filename: str) -> bool:
    if filename.startswith("<"):
        return False
    try:
        resolved = str(Path(filename).resolve())
    except OSError:
        resolved = filename
    return not resolved.startswith(_library_dirs())


def _frames(error: BaseException) -> list[tuple[str, int]]:
    if error.__traceback__ is not None:
        return [(f.filename, f.lineno or 0) for f in traceback.extract_tb(error.__traceback__)]
    cause = error.__cause__
    text = getattr(cause, "text", None) if cause is not None else None
    if isinstance(text, str):
        return [(m["file"], int(m["line"])) for m in _REMOTE_FRAME.finditer(text)]
    return []


def user_location(error: BaseException) -> str | None:
    """``file.py:42``: the innermost frame of ``error`` in the user's own code (not in
    neuroscaffold, the standard library or installed packages), or None."""
    for filename, line in reversed(_frames(error)):
        if _is_user_file(filename):
            return f"{Path(filename).name}:{line}"
    return None


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 5] + " ...]"


def _grouped(error) -> str:
    """A :class:`WorkflowError`'s lines, jobs that failed with one error (same type,
    text and place in the user's code) grouped into one line: its count and the first
    job (a bug repeated in every chunk is one line, not one per chunk)."""
    lines = error.message.splitlines()
    members = list(error.exceptions)
    job_lines = [line for line in lines[1:] if line.lstrip().startswith("job '")]
    other = [line for line in lines[1:] if not line.lstrip().startswith("job '")
             and not line.lstrip().startswith("... and ")]
    failed = members[: max(len(members) - len(other), 0)]
    groups: dict[tuple, list] = {}  # key -> [count, index of the first job]
    for index, member in enumerate(failed):
        key = (type(member).__name__, str(member), user_location(member))
        groups.setdefault(key, [0, index])[0] += 1
    out = [lines[0]] if lines else []
    for (kind, text, where), (count, first) in groups.items():
        place = f" ({where})" if where else ""
        if first < len(job_lines):
            lead = f"  {count} jobs failed with one error, the first: " if count > 1 else "  "
            out.append(_cut(lead + job_lines[first].lstrip()) + place)  # the place is kept
        else:
            out.append(_cut(f"  {count} job{'s' if count > 1 else ''} failed: {kind}: {text}")
                       + place)
    out.extend(_cut(line) for line in other)
    return "\n".join(out)


def format_error(error: BaseException) -> str:
    """The message printed for ``error``: bounded, with user locations of failed jobs."""
    from ..exceptions import WorkflowError

    if isinstance(error, WorkflowError):
        return _grouped(error)
    text = str(error)
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror.lower()}"
    lines = [_cut(line) for line in text.splitlines()[:_MAX_LINES]] or [type(error).__name__]
    return "\n".join(lines)
