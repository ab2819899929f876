"""What a restarted server can say about jobs it never saw, and the files a worker process
reports through (no Streamlit here).

Under ``CLSVIZ_STATE_DIR`` (default ``~/.cache/clsviz/state``), folder ``jobs/``:

- ``ID.json``: the job's key, label and last status, rewritten at each change of status;
- ``ID.job``: the job pickled (encoders as references), kept while it is queued or running, so
  that a server that died can start it again on request;
- ``ID.progress``: what the worker process last reported (``done``, ``total``, ``message``, its
  ``pid``), written by the worker, read by the server's slot thread;
- ``ID.cancel``: present once the job was asked to stop (the worker checks for it).

Every file is written to a temporary name and renamed into place (the journal's through
:mod:`clsviz.artifacts`, flushed to disk first), so a reader never sees half of one. Results are never written here: they stay in memory, so nothing half-computed can be taken
for a result.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from clsviz.artifacts import write_bytes_atomic

__all__ = [
    "MAX_JOURNAL_BYTES",
    "cancel_path",
    "forget_live",
    "payload_path",
    "progress_path",
    "read",
    "read_json",
    "state_dir",
    "write",
    "write_json",
]

MAX_JOURNAL_BYTES = 50_000_000
"""A job whose arguments pickle to more than this is not kept for a restart."""
_log = logging.getLogger(__name__)


def state_dir() -> Path:
    """The journal's folder: ``CLSVIZ_STATE_DIR/jobs``."""
    root = os.environ.get("CLSVIZ_STATE_DIR", "").strip() or os.path.join(Path.home(), ".cache", "clsviz", "state")
    return Path(root) / "jobs"


def _valid(job_id: str) -> bool:
    return bool(job_id) and job_id.isalnum()


def payload_path(job_id: str) -> Path:
    return state_dir() / f"{job_id}.job"


def progress_path(job_id: str) -> Path:
    return state_dir() / f"{job_id}.progress"


def cancel_path(job_id: str) -> Path:
    return state_dir() / f"{job_id}.cancel"


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_json(path: Path, record: dict, durable: bool = True) -> None:
    """``record`` as JSON at ``path``, whole or not at all (OSError when the disk refuses).
    ``durable``: through :func:`clsviz.artifacts.write_bytes_atomic` (flushed to disk, so it
    survives a crash of the machine); the worker's progress reports, written several times a
    second and worthless after the job, are only renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(record).encode("utf-8")
    if durable:
        write_bytes_atomic(path, data)
    else:
        _replace(path, data)


def read_json(path: Path) -> dict | None:
    """The JSON record at ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write(job) -> None:
    """Record ``job`` (an :class:`ui.engine.Job`): its status, and its payload while queued."""
    record = {"id": job.id, "key": job.name, "label": job.label, "status": job.status, "time": time.time()}
    if job.error:
        record["error"] = job.error
    try:
        write_json(state_dir() / f"{job.id}.json", record)
        if job.status == "queued" and job.payload is not None and len(job.payload) <= MAX_JOURNAL_BYTES:
            write_bytes_atomic(payload_path(job.id), job.payload)  # what a restart after a crash needs to run it again
        elif job.status in ("done", "failed", "cancelled"):
            payload_path(job.id).unlink(missing_ok=True)
            forget_live(job.id)
    except OSError:  # a read-only disk must not stop the job itself
        _log.warning("could not write the job journal in %s", state_dir(), exc_info=True)


def read(job_id: str) -> dict | None:
    """The journal record of ``job_id`` (None when there is none or the id is not one)."""
    if not _valid(job_id):
        return None
    return read_json(state_dir() / f"{job_id}.json")


def forget_live(job_id: str) -> None:
    """Remove a job's progress and cancel files (it has ended)."""
    for path in (progress_path(job_id), cancel_path(job_id)):
        path.unlink(missing_ok=True)
