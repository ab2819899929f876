"""Writing a lab model so that it is either wholly there or not there at all.

Everything is written to a hidden staging sibling (``.NAME.partial-PID-XXXXXXXX``) and renamed into
place in one step once complete; on an error or a cancel the staging copy is removed, and a process
killed mid-write leaves only the hidden sibling, never a folder under the real name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_file", "atomic_folder", "check_new_folder"]


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def check_new_folder(path) -> Path:
    """``path`` as a Path if a new folder can be made there, else ``FileExistsError`` /
    ``FileNotFoundError`` saying what to change (nothing is ever overwritten)."""
    path = Path(path).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"'{path}' already exists and is not an empty folder; choose another (nothing is overwritten).")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"The folder '{path.parent}' does not exist; create it or choose another place for '{path.name}'.")
    return path


@contextmanager
def atomic_folder(path) -> Iterator[Path]:
    """Yield a staging folder; on leaving the block without an error it becomes ``path`` (which
    must not exist, or be an empty folder). On any error, cancel included, it is removed."""
    path = check_new_folder(path)
    tmp = _staging(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.is_dir():
            path.rmdir()  # empty (checked above): a folder the caller made for the result
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path) -> Iterator[Path]:
    """Yield a staging file path; on success it replaces ``path`` in one rename."""
    path = Path(path)
    tmp = _staging(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
