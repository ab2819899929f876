"""The background-job engine: one queue, a fixed number of slots, per-session limits, warm
worker processes, progress with an estimate of the time left, cancel (no Streamlit here).

Long computations (fine-tuning, probes, corpus sweeps) never run inside a page. A job waits in
one queue shared by every session and runs when one of ``CLSVIZ_MAX_JOBS`` slots is free
(default 1), so eight visitors starting eight fine-tunes get eight places in a queue, not eight
trainings on two cores. A session may hold at most ``CLSVIZ_SESSION_JOBS`` active jobs (default
2). A queued or running job can be cancelled; the jobs of a session whose browser tab has closed
are cancelled by the scheduler after a grace period.

Where the job's function and arguments can be pickled, it runs in its slot's warm worker
process (:mod:`ui.pool`: a loky executor whose process keeps the models loaded between jobs)
at a lower priority, so the server keeps drawing pages while it computes;
``CLSVIZ_JOB_PROCESS=0`` runs jobs in threads of the server instead (less memory, less
isolation). Either way ``fn(*args, progress=report, cancel=event, **kwargs)``.

A worker killed mid-job (``kill -9``, the out-of-memory killer) fails only the job it was
computing, with a message that says so and :attr:`Job.retry` set; its slot starts a fresh
worker for the next job, and the other slots' workers (other visitors' jobs) run on untouched.
Every job is written to a small journal (:mod:`ui.journal`) so that a restarted server can say
what was lost and start it again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic

from clsviz.progress import Cancelled

from . import journal, worker
from .pool import Slot, WorkerDied

__all__ = [
    "CANCELLED",
    "DONE",
    "ETA_MIN_REPORTS",
    "ETA_MIN_SECONDS",
    "ETA_MIN_SHARE",
    "FAILED",
    "LOST",
    "QUEUED",
    "RUNNING",
    "Job",
    "JobLimitError",
    "Scheduler",
    "grace_seconds",
    "max_jobs",
    "scheduler",
    "session_limit",
    "time_left_text",
    "use_processes",
    "warm",
    "watch_sessions",
]

QUEUED, RUNNING, DONE, FAILED, CANCELLED, LOST = "queued", "running", "done", "failed", "cancelled", "lost"
WATCH_SECONDS = 2.0
"""How often the scheduler looks for jobs of closed sessions."""
ETA_MIN_SECONDS = 3.0
ETA_MIN_SHARE = 0.05
ETA_MIN_REPORTS = 3
"""No estimate of the time left until a job has reported this often, over at least
:data:`ETA_MIN_SECONDS`, and moved :data:`ETA_MIN_SHARE` of the way since its first report."""
_log = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return max(1, int(raw)) if raw.isdigit() and int(raw) > 0 else default


def max_jobs() -> int:
    """Jobs computing at once in the whole process (``CLSVIZ_MAX_JOBS``, default 1)."""
    return _env_int("CLSVIZ_MAX_JOBS", 1)


def session_limit() -> int:
    """Active (queued or running) jobs one session may hold (``CLSVIZ_SESSION_JOBS``, default 2)."""
    return _env_int("CLSVIZ_SESSION_JOBS", 2)


def grace_seconds() -> float:
    """How long a closed tab's jobs survive (``CLSVIZ_JOB_GRACE_S``, default 60): a reload within
    it gets the job back, after it the job is cancelled."""
    raw = os.environ.get("CLSVIZ_JOB_GRACE_S", "").strip()
    try:
        return max(0.0, float(raw)) if raw else 60.0
    except ValueError:
        return 60.0


def use_processes() -> bool:
    """Run picklable jobs in a low-priority worker process (``CLSVIZ_JOB_PROCESS``, default on)."""
    return os.environ.get("CLSVIZ_JOB_PROCESS", "1").strip() != "0"


class JobLimitError(RuntimeError):
    """This session already has as many active jobs as it may; the message says what to do."""


def time_left_text(seconds: float) -> str:
    """'about 40 s left', 'about 3 min left', 'about 1 h 20 min left' (rounded as a person would)."""
    if seconds < 10:
        return "a few seconds left"
    if seconds < 60:
        return f"about {int(5 * round(seconds / 5))} s left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60:02d} min left"


@dataclass(eq=False)
class Job:
    """One background computation. Read its fields from any thread; only the scheduler writes.

    ``done`` / ``total`` / ``message`` are what the computation last reported (``message`` says
    the step: "run 2 of 4 (mean): epoch 1/2"); :attr:`fraction` is the share done,
    :meth:`seconds_left` the estimate of the time left, :attr:`ahead` the place in the queue.
    ``retry`` is True when the job can be started again as it was (its worker died, or it was
    lost with a server restart)."""

    fn: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    name: str = "job"
    session: str = "local"
    label: str = ""
    status: str = QUEUED
    done: float = 0.0
    total: float = 0.0
    message: str = "Waiting for a free slot…"
    result: object = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    mode: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    submitted: float = field(default_factory=monotonic)
    started: float | None = None
    finished: float | None = None
    counted: bool = True
    """Counted in its session's limit (a job the page waits for is not)."""
    retry: bool = False
    worker_pid: int | None = None
    """The worker process computing it (process mode, while running)."""
    payload: bytes | None = field(default=None, repr=False)
    """The job pickled for a worker process (None: it runs in a thread)."""
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    queue: Scheduler | None = field(default=None, repr=False)
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)
    _clock: list = field(default_factory=list, repr=False)  # [reports, first (t, f), last (t, f)]

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
        """Seconds spent computing so far (0 while queued)."""
        if self.started is None:
            return 0.0
        return (self.finished or monotonic()) - self.started

    @property
    def ahead(self) -> int | None:
        """Jobs ahead of this one in the queue (None unless queued)."""
        if self.status != QUEUED:
            return None
        return (self.queue or scheduler()).ahead(self)

    def report(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """The progress callback handed to ``fn``: ``(done, total)`` or ``(done, total, message)``."""
        self.done = float(done)
        if total is not None:
            self.total = float(total)
        if message is not None:
            self.message = str(message)
        if self.total:
            point = (monotonic(), self.fraction)
            if not self._clock:
                self._clock[:] = [1, point, point]
            else:
                self._clock[0] += 1
                self._clock[2] = point

    def seconds_left(self, now: float | None = None) -> float | None:
        """Estimated seconds until the job ends, from its rate since its first report; None while
        it is not running or too little is known (see :data:`ETA_MIN_REPORTS`)."""
        if self.status != RUNNING or len(self._clock) != 3:
            return None
        reports, (t0, f0), (t1, f1) = self._clock
        if reports < ETA_MIN_REPORTS or t1 - t0 < ETA_MIN_SECONDS or f1 - f0 < ETA_MIN_SHARE:
            return None
        left = (1.0 - f1) * (t1 - t0) / (f1 - f0) - ((now if now is not None else monotonic()) - t1)
        return max(0.0, left)

    def cancel(self) -> None:
        """Ask the job to stop: a queued job leaves the queue at once, a running one stops at its
        next check (or its worker is stopped when it does not check in time)."""
        self.cancel_event.set()
        if self.status == QUEUED and (self.queue or scheduler()).withdraw(self):
            self.end(CANCELLED, "Cancelled before it started.")

    def withdraw(self) -> bool:
        """Take the job out of the queue if it has not started (it then ends cancelled); False
        when it is running or has ended, which it then goes on doing."""
        if self.status == QUEUED and (self.queue or scheduler()).withdraw(self):
            self.cancel_event.set()
            self.end(CANCELLED, "Withdrawn before it started.")
            return True
        return False

    def begin(self, limit: int | None = None) -> Job:
        """Put the job in the process-wide queue (once); see :meth:`Scheduler.submit`."""
        (self.queue or scheduler()).submit(self, limit)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests, scripts); True when it has ended."""
        self._ended.wait(timeout)
        return not self.active

    def end(self, status: str, message: str) -> None:
        """Record the final status (the scheduler calls this once)."""
        self.finished = monotonic()
        self.message = message
        self.status = status
        journal.write(self)
        self._ended.set()


class Scheduler:
    """One queue and ``slots`` threads; each runs a job in a thread of the server or in its own
    warm worker process (:class:`ui.pool.Slot`) and relays its progress and cancellation.

    ``alive(session)`` says whether a session's browser tab is still open (default: the
    function given to :func:`watch_sessions`, else always True)."""

    def __init__(self, slots: int, alive: Callable[[str], bool] | None = None):
        self.slots = [Slot(i) for i in range(slots)]
        self.alive = alive
        self._queue: deque[Job] = deque()
        self._running: set[Job] = set()
        self._by_id: weakref.WeakValueDictionary[str, Job] = weakref.WeakValueDictionary()
        self._dead_since: dict[str, float] = {}
        self._cond = threading.Condition()
        threads = [threading.Thread(target=self._loop, args=(s,), name=f"clsviz-jobs-{s.index}", daemon=True)
                   for s in self.slots]
        threads.append(threading.Thread(target=self._watch, name="clsviz-jobs-watch", daemon=True))
        for thread in threads:
            thread.start()

    def submit(self, job: Job, limit: int | None = None) -> None:
        """Queue ``job`` (once). With ``limit``, raise :class:`JobLimitError` when the job's
        session already holds that many active counted jobs."""
        if job.status != QUEUED or job.finished is not None:
            return
        payload = _payload(job) if use_processes() else None
        with self._cond:
            if job in self._queue or job in self._running:
                return
            if limit is not None and job.counted:
                held = [j for j in (*self._running, *self._queue) if j.session == job.session and j.counted]
                if len(held) >= limit:
                    names = ", ".join(j.label or j.name for j in held)
                    raise JobLimitError(
                        f"You already have {len(held)} background jobs ({names}); a session may run {limit} at once. "
                        "Wait for one to finish or cancel it."
                    )
            job.queue, job.payload = self, payload
        journal.write(job)  # outside the lock: a large payload takes a moment to write
        with self._cond:
            self._by_id[job.id] = job
            self._queue.append(job)
            self._cond.notify()

    def ahead(self, job: Job) -> int | None:
        """Jobs that will run before ``job``: those computing now and those queued before it."""
        with self._cond:
            try:
                return self._queue.index(job) + len(self._running)
            except ValueError:
                return None

    def withdraw(self, job: Job) -> bool:
        """Take a queued job out of the queue; False when it is not (or no longer) queued."""
        with self._cond:
            try:
                self._queue.remove(job)
            except ValueError:
                return False
            return True

    def find(self, job_id: str) -> Job | None:
        """A job this process still knows by its id (queued, running or recently finished)."""
        with self._cond:
            return self._by_id.get(job_id)

    def active_jobs(self) -> list[Job]:
        with self._cond:
            return [*self._running, *self._queue]

    def warm(self, models: tuple[str, ...] = ()) -> None:
        """Start every slot's worker process now and load ``models`` in it (in the background)."""
        if use_processes():
            for slot in self.slots:
                slot.warm(models)

    def _loop(self, slot: Slot) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                job = self._queue.popleft()
                if job.cancel_event.is_set():
                    job.end(CANCELLED, "Cancelled before it started.")
                    continue
                self._running.add(job)
            try:
                self._execute(job, slot)
            finally:
                with self._cond:
                    self._running.discard(job)

    def _watch(self) -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            with self._cond:
                self._reap()

    def _reap(self) -> None:
        """Cancel the jobs of sessions whose browser tab has been closed for longer than the grace
        period (a reloaded tab gets its job back within it). Called with the lock held."""
        now = monotonic()
        alive = self.alive or _session_check[0]
        for job in [*self._queue, *self._running]:
            if alive(job.session):
                self._dead_since.pop(job.session, None)
            elif now - self._dead_since.setdefault(job.session, now) > grace_seconds():
                job.cancel()

    def _execute(self, job: Job, slot: Slot) -> None:
        job.status, job.started, job.message = RUNNING, monotonic(), "Starting…"
        journal.write(job)
        try:
            payload, job.payload = job.payload, None
            job.mode = "process" if payload is not None else "thread"
            if payload is None:
                result = job.fn(*job.args, progress=job.report, cancel=job.cancel_event, **job.kwargs)
            else:
                result = slot.run(job, payload)
            job.result = result
            job.end(DONE, "Finished.")
        except WorkerDied as exc:
            job.exception, job.error, job.retry = exc, str(exc), True
            job.end(CANCELLED if job.cancel_event.is_set() else FAILED, "The worker process stopped.")
        except Exception as exc:  # the scheduler must record every failure, never die silently
            job.exception = exc
            if job.cancel_event.is_set() or isinstance(exc, Cancelled):
                job.end(CANCELLED, "Cancelled.")
            elif isinstance(exc, ValueError):
                job.error = str(exc)
                job.end(FAILED, "Failed.")
            else:
                _log.exception("background job %s failed", job.name)
                job.error = f"{type(exc).__name__}: {exc}"
                job.end(FAILED, "Failed.")


def _payload(job: Job) -> bytes | None:
    """The job pickled for the worker process, or None when it can only run in a thread."""
    try:
        return worker.dumps((job.fn, job.args, job.kwargs))
    except Exception:  # a lambda, a local function, a lock: run it in a thread instead
        return None


def _always(session: str) -> bool:
    return True


_session_check: list[Callable[[str], bool]] = [_always]


def watch_sessions(alive: Callable[[str], bool]) -> None:
    """Tell every scheduler how to learn whether a session's tab is open (the app's runtime)."""
    _session_check[0] = alive


_scheduler: Scheduler | None = None
_scheduler_lock = threading.Lock()


def scheduler() -> Scheduler:
    """The process-wide scheduler (started on first use with :func:`max_jobs` slots)."""
    global _scheduler
    with _scheduler_lock:
        if _scheduler is None:
            _scheduler = Scheduler(max_jobs())
        return _scheduler


def warm(models: tuple[str, ...] = ()) -> None:
    """Start the process-wide scheduler's worker processes and load ``models`` in them, in the
    background (the server calls this as it starts, so the first job finds a warm worker)."""
    scheduler().warm(models)
