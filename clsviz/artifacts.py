"""Writing what a later run could take for complete - a saved model folder, a report, a vectors
file, a shard - so that it is either wholly there or not there at all.

Everything is written to a hidden staging sibling first (``.NAME.partial-PID-XXXX``), flushed to
disk, and renamed into place in one step when it is complete; on an error the staging copy is
removed, and a process killed mid-write (``kill -9``, out of memory) leaves only the hidden
staging copy, never a file or folder under the real name. A staging *folder* also holds the
marker file :data:`INCOMPLETE_MARKER` until the moment it is renamed, so a half-written folder is
recognised wherever it is found (:func:`unfinished_reason`; :func:`clsviz.load_encoder` refuses
one), and the staging copies a killed process left behind are removed by the next write to the
same name (:func:`remove_stale`), so they never block a rerun.

>>> with atomic_path("report.html") as tmp:
...     tmp.write_text(html)
>>> with atomic_folder("my-model") as tmp:
...     model.save_pretrained(tmp); tokenizer.save_pretrained(tmp)
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "INCOMPLETE_MARKER",
    "ArtifactError",
    "atomic_folder",
    "atomic_path",
    "is_partial",
    "remove_stale",
    "unfinished_reason",
    "write_bytes_atomic",
]

INCOMPLETE_MARKER = ".clsviz-incomplete"
"""File inside a staging folder while it is written; gone once the folder is in place."""
_PARTIAL = ".partial"


class ArtifactError(OSError):
    """The destination cannot be written as asked; the message says why and what to do."""


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}{_PARTIAL}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_partial(path: str | os.PathLike) -> bool:
    """True for a staging name written here (``.NAME.partial`` or ``.NAME.partial-PID-XXXX``)."""
    name = Path(path).name
    return name.startswith(".") and (name.endswith(_PARTIAL) or f"{_PARTIAL}-" in name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the staging copies of ``path`` left by processes that no longer run; returns them.
    A staging copy of a process still running (another save in progress) is left alone."""
    path = Path(path)
    removed = []
    prefix = f".{path.name}{_PARTIAL}-"
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in siblings:
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - file systems without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A staging path beside ``path`` to write one file to; when the block ends without an error
    the file is flushed to disk and renamed to ``path`` (replacing a file already there), else
    removed. The block must create the file."""
    path = Path(path)
    remove_stale(path)
    staging = _staging(path)
    try:
        yield staging
        if not staging.is_file():
            raise ArtifactError(f"nothing was written for '{path}'")
        _fsync_file(staging)
        os.replace(staging, path)
        _fsync_dir(path.parent)
    finally:
        staging.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_path`; returns the path."""
    with atomic_path(path) as staging:
        staging.write_bytes(data)
    return Path(path)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A staging folder beside ``path`` to write a folder's files into; when the block ends
    without an error every file is flushed, the marker is removed and the folder renamed to
    ``path`` (which must not exist, or be an empty folder), else the staging folder is removed.
    Raises :class:`ArtifactError` when ``path`` holds something already (nothing is overwritten)."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise ArtifactError(f"'{path}' already exists and is not empty; choose another name (nothing is overwritten).")
    if not path.parent.is_dir():
        raise ArtifactError(f"The folder '{path.parent}' does not exist; create it or choose another place.")
    remove_stale(path)
    staging = _staging(path)
    staging.mkdir()
    try:
        (staging / INCOMPLETE_MARKER).write_text(
            f"Being written by process {os.getpid()} as '{path.name}'; a folder holding this file is unfinished.\n")
        yield staging
        for file in staging.rglob("*"):
            if file.is_file() and file.name != INCOMPLETE_MARKER:
                _fsync_file(file)
        (staging / INCOMPLETE_MARKER).unlink()
        _fsync_dir(staging)
        try:
            os.rename(staging, path)  # replaces an empty folder; fails on a non-empty one
        except OSError as exc:
            raise ArtifactError(f"'{path}' could not be put in place ({exc.strerror}); nothing was written there.") from exc
        _fsync_dir(path.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def unfinished_reason(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` is a half-written folder of clsviz's (a staging folder, or one holding the
    marker), or None when nothing says so."""
    folder = Path(folder)
    if (folder / INCOMPLETE_MARKER).exists():
        return ("it holds the marker of a save that never finished (the process writing it was stopped "
                "before the end)")
    if is_partial(folder) and folder.is_dir():
        return "its name marks it as the staging copy of a save that never finished"
    return None
