"""Background jobs: long computations (fine-tuning) run in a thread while pages stay usable.

A :class:`Job` runs ``fn(*args, progress=..., cancel=..., **kwargs)`` in a daemon thread and
records progress, the result or the error; nothing in the thread touches Streamlit. Jobs
are kept per browser session under a key (:func:`start`, :func:`get`, :func:`cancel`,
:func:`clear`); the page polls them, e.g. from an ``st.fragment(run_every=1)``.

At most ``CLSVIZ_MAX_JOBS`` jobs (default 1) compute at once in the whole process; more
wait in the queue, so a few people fine-tuning cannot starve the app of CPU.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import streamlit as st

__all__ = ["Job", "cancel", "clear", "get", "start"]

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
_SESSION_KEY = "clsviz.jobs"
_SLOTS = threading.BoundedSemaphore(max(1, int(os.environ.get("CLSVIZ_MAX_JOBS", "1") or 1)))
_log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One background computation. Read its fields from any thread; only the worker writes."""

    fn: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    name: str = "job"
    status: str = QUEUED
    done: float = 0.0
    total: float = 0.0
    message: str = "Waiting for a free slot…"
    result: object = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        """Queued or running."""
        return self.status in (QUEUED, RUNNING)

    @property
    def fraction(self) -> float:
        """Progress in 0..1 (0 while the total is unknown)."""
        return min(1.0, max(0.0, self.done / self.total)) if self.total else 0.0

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def report(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """The progress callback handed to ``fn``: ``(done, total)`` or ``(done, total, message)``."""
        self.done = float(done)
        if total is not None:
            self.total = float(total)
        if message is not None:
            self.message = str(message)

    def cancel(self) -> None:
        """Ask the job to stop; ``fn`` sees the event set and stops at its next check."""
        self.cancel_event.set()
        if self.status == QUEUED:
            self.message = "Cancelling…"

    def begin(self) -> Job:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"clsviz-{self.name}", daemon=True)
            self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests, scripts); True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.active

    def _run(self) -> None:
        try:
            while not _SLOTS.acquire(timeout=0.25):
                if self.cancel_event.is_set():
                    self._end(CANCELLED, "Cancelled before it started.")
                    return
            try:
                if self.cancel_event.is_set():
                    self._end(CANCELLED, "Cancelled before it started.")
                    return
                self.status, self.message, self.started = RUNNING, "Starting…", time.monotonic()
                self.result = self.fn(*self.args, progress=self.report, cancel=self.cancel_event, **self.kwargs)
                self._end(DONE, "Finished.")
            finally:
                _SLOTS.release()
        except Exception as exc:  # the worker must record every failure, never die silently
            if self.cancel_event.is_set():
                self._end(CANCELLED, "Cancelled.")
            elif isinstance(exc, ValueError):
                self.error = str(exc)
                self._end(FAILED, "Failed.")
            else:
                _log.exception("background job %s failed", self.name)
                self.error = f"{type(exc).__name__}: {exc}"
                self._end(FAILED, "Failed.")

    def _end(self, status: str, message: str) -> None:
        self.finished = time.monotonic()
        self.message = message
        self.status = status


def _jobs() -> dict[str, Job]:
    return st.session_state.setdefault(_SESSION_KEY, {})


def start(key: str, fn: Callable, *args, **kwargs) -> Job:
    """Start ``fn`` under ``key`` for this session; an active job under that key is returned as is.

    ``fn`` is called as ``fn(*args, progress=report, cancel=event, **kwargs)``.
    """
    jobs = _jobs()
    current = jobs.get(key)
    if current is not None and current.active:
        return current
    job = Job(fn=fn, args=args, kwargs=kwargs, name=key)
    jobs[key] = job
    return job.begin()


def get(key: str) -> Job | None:
    """This session's job under ``key`` (active or finished), or None."""
    return _jobs().get(key)


def cancel(key: str) -> None:
    """Ask this session's job under ``key`` to stop."""
    job = get(key)
    if job is not None:
        job.cancel()


def clear(key: str) -> None:
    """Forget a job (cancelling it if still active)."""
    job = _jobs().pop(key, None)
    if job is not None and job.active:
        job.cancel()
