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


def format_error(error: BaseException) -> str:
    """The message printed for ``error``: bounded, with user locations of failed jobs."""
    from ..exceptions import WorkflowError

    if isinstance(error, WorkflowError):
        lines = error.message.splitlines()
        members = list(error.exceptions)
        out = [lines[0]] if lines else []
        index = 0
        for line in lines[1:]:
            line = _cut(line)
            if line.lstrip().startswith("job '") and index < len(members):
                where = user_location(members[index])
                index += 1
                if where:
                    line = f"{line} ({where})"
            out.append(line)
        return "\n".join(out)
    text = str(error)
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror.lower()}"
    lines = [_cut(line) for line in text.splitlines()[:_MAX_LINES]] or [type(error).__name__]
    return "\n".join(lines)
