"""Warm worker processes, one per job slot (server side; no Streamlit here).

Each slot owns a loky ``ProcessPoolExecutor`` of one process. loky (kept by the joblib team) was
chosen over a hand-written pool and over a persistent task queue (huey with SQLite storage):

- its worker stays alive between jobs with whatever it loaded (:mod:`ui.worker` keeps the models),
  and :meth:`Slot.warm` starts it and loads the bundled model as the server starts, so a job
  finds the model in memory instead of paying for a fresh interpreter, torch and the weights;
- a worker that dies (``kill -9``, the out-of-memory killer) fails the futures it was running with
  ``TerminatedWorkerError`` and the exit code, instead of hanging; the slot then starts a fresh
  worker, and since every slot has its own process the other slots' jobs run on untouched;
- idle workers exit after ``CLSVIZ_WORKER_IDLE_S`` seconds (default one hour) and a worker that
  grows past the app's memory budget (``CLSVIZ_CACHE_MB``) after a job is replaced by a fresh one
  (loky's memory-growth check), so memory stays bounded.

huey's SQLite queue would persist queued jobs and their results across a restart, but a job here
serves one visitor's open page (after a restart the page asks before running it again, see
:mod:`ui.journal`), its result can be hundreds of megabytes of vectors or a fine-tuned model that
should not be written to a database, and huey can neither report progress nor stop a task that
has started. Progress and cancel travel through the small files of :mod:`ui.journal`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import loky

from clsviz.progress import Cancelled

from . import journal, priority, worker

__all__ = ["CANCEL_GRACE_S", "IDLE_ENV", "POLL_S", "Slot", "WorkerDied", "idle_seconds"]

IDLE_ENV = "CLSVIZ_WORKER_IDLE_S"
"""Environment variable: seconds an idle worker keeps its models before it exits (default 3600)."""
POLL_S = 0.1
"""How often a slot looks at its running job's progress and cancel request."""
CANCEL_GRACE_S = 20.0
"""A cancelled job that has not stopped after this many seconds has its worker stopped."""
_log = logging.getLogger(__name__)


def idle_seconds() -> float:
    raw = os.environ.get(IDLE_ENV, "").strip()
    try:
        return max(1.0, float(raw)) if raw else 3600.0
    except ValueError:
        return 3600.0


def _memory_limit() -> int:
    """Bytes a worker may grow by after its first job before loky replaces it: the app's cache
    budget (``CLSVIZ_CACHE_MB``, default 4000)."""
    raw = os.environ.get("CLSVIZ_CACHE_MB", "").strip().replace("_", "")
    try:
        mb = float(raw) if raw else 4000.0
    except ValueError:
        mb = 4000.0
    return int((mb if mb > 0 else 4000.0) * 1_000_000)


class WorkerDied(RuntimeError):
    """The worker process computing a job stopped before the job ended; the message says so in
    words a visitor can act on. ``signal`` is the signal that ended it, when known."""

    def __init__(self, message: str, signal_number: int | None = None):
        super().__init__(message)
        self.signal = signal_number


def _death_message(exc: BaseException, pid: int | None) -> WorkerDied:
    text = str(exc)
    number = None
    for sig in (signal.SIGKILL, signal.SIGSEGV, signal.SIGTERM, signal.SIGABRT, signal.SIGBUS):
        if f"(-{int(sig)})" in text:  # loky names the exit codes as "SIGKILL(-9)"
            number = int(sig)
            break
    how = {int(signal.SIGKILL): "it was killed (the system does this when memory runs out, or someone stopped it)",
           int(signal.SIGSEGV): "it crashed (a segmentation fault)"}.get(number, "it stopped unexpectedly")
    return WorkerDied(
        f"The worker process computing this job{f' (pid {pid})' if pid else ''} stopped before the end: {how}. "
        "Nothing it computed was kept. Retry it; if it stops again, try fewer texts or a smaller model.",
        number,
    )


class Slot:
    """One job slot's warm worker process (a loky executor of one process), started on first
    use or by :meth:`warm`, replaced by a fresh one after it died."""

    def __init__(self, index: int):
        self.index = index
        self._executor: loky.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._warmed: tuple[str, ...] = ()

    def executor(self) -> loky.ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = loky.ProcessPoolExecutor(
                    max_workers=1, timeout=idle_seconds(), initializer=priority.lower,
                    env={"TOKENIZERS_PARALLELISM": "false", "LOKY_MAX_MEMORY_LEAK_SIZE": str(_memory_limit())},
                )
                worker.remove_leftovers()  # result files of a server that died before reading them
                if self._warmed:  # a replacement after a death: load what its predecessor held
                    self._executor.submit(worker.warm, self._warmed)
            return self._executor

    def warm(self, models: tuple[str, ...] = ()):
        """Start the worker now (if it is not running) and load ``models`` in it, in the
        background; returns the future of the loading (its result: the models held)."""
        self._warmed = tuple(dict.fromkeys((*self._warmed, *models)))
        return self.executor().submit(worker.warm, tuple(models))

    def _discard(self, executor: loky.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, kill_workers=True)

    def run(self, job, payload: bytes):
        """Compute ``job`` (an :class:`ui.engine.Job`) from its ``payload`` in the worker,
        relaying progress into ``job.report`` and its cancel request to the worker; returns the
        result. Raises :class:`WorkerDied` when the worker stops, and
        :class:`~clsviz.progress.Cancelled` when a cancelled job had to be stopped by force."""
        progress, cancel = journal.progress_path(job.id), journal.cancel_path(job.id)
        progress.parent.mkdir(parents=True, exist_ok=True)
        for path in (progress, cancel):
            path.unlink(missing_ok=True)
        executor = self.executor()
        future = executor.submit(worker.run, payload, str(progress), str(cancel), os.getpid())
        seen, cancelled_at = None, None
        job.worker_pid = None
        try:
            while True:
                try:
                    (blob, files), last = future.result(timeout=POLL_S)
                    self._relay(job, last)
                    return worker.unpack(blob, files)
                except loky.TimeoutError:
                    pass
                except loky.BrokenProcessPool as exc:
                    self._discard(executor)
                    if cancelled_at is not None:
                        raise Cancelled(f"{job.label or job.name} was cancelled (its worker was stopped).") from None
                    raise _death_message(exc, job.worker_pid) from None
                try:
                    stamp = progress.stat().st_mtime_ns
                except OSError:
                    stamp = None
                if stamp is not None and stamp != seen:
                    seen = stamp
                    self._relay(job, journal.read_json(progress))
                if job.cancel_event.is_set():
                    if cancelled_at is None:
                        cancelled_at = time.monotonic()
                        cancel.touch()
                    elif time.monotonic() - cancelled_at > CANCEL_GRACE_S and job.worker_pid:
                        _log.warning("job %s did not stop within %.0f s of its cancel: stopping its worker",
                                     job.name, CANCEL_GRACE_S)
                        pid, job.worker_pid = job.worker_pid, None
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:  # it ended meanwhile
                            pass
        finally:
            job.worker_pid = None
            journal.forget_live(job.id)

    @staticmethod
    def _relay(job, state: dict | None) -> None:
        if not state:
            return
        job.worker_pid = state.get("pid") or job.worker_pid
        job.report(state.get("done", 0.0), state.get("total") or None, state.get("message"))
