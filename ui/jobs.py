"""Background jobs: one process-wide queue, a fixed number of workers, cancel at any time.

Long computations (fine-tuning, probes, corpus sweeps) never run inside a page. A page calls
:func:`start`; the job waits in one queue shared by every session and runs when one of
``CLSVIZ_MAX_JOBS`` slots is free (default 1), so eight visitors starting eight fine-tunes
get eight places in a queue, not eight trainings on two cores. A session may hold at most
``CLSVIZ_SESSION_JOBS`` active jobs (default 2). While a job waits, its page shows how many
jobs are ahead; a queued or running job can be cancelled, and the jobs of a session whose
browser tab has closed are cancelled by the scheduler.

Where the job's function and arguments can be pickled, it runs in a worker process at a
lower priority (``ui/worker.py``), so the server keeps drawing pages for everyone else while
it computes; ``CLSVIZ_JOB_PROCESS=0`` runs jobs in threads of the server instead (less
memory, less isolation). Either way ``fn(*args, progress=report, cancel=event, **kwargs)``.

Every job is also written to a small journal (``CLSVIZ_STATE_DIR``, default
``~/.cache/clsviz/state``) and named in the page's URL, so after a server restart the page
can say that the job was lost and offer to start it again; results themselves are only ever
kept in memory, so nothing half-written is shown as a result.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from .text import plain

__all__ = [
    "CANCELLED",
    "DONE",
    "FAILED",
    "LOST",
    "QUEUED",
    "RUNNING",
    "Job",
    "JobLimitError",
    "cancel",
    "clear",
    "compute",
    "get",
    "panel",
    "restart",
    "scheduler",
    "start",
]

QUEUED, RUNNING, DONE, FAILED, CANCELLED, LOST = "queued", "running", "done", "failed", "cancelled", "lost"
_SESSION_KEY = "clsviz.jobs"
WATCH_SECONDS = 2.0
"""How often the scheduler looks for jobs of closed sessions."""
_QUERY_KEY = "jobs"
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


@dataclass(eq=False)
class Job:
    """One background computation. Read its fields from any thread; only the scheduler writes."""

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
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)
    _payload: bytes | None = field(default=None, repr=False)

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
        return (self.finished or time.monotonic()) - self.started

    @property
    def ahead(self) -> int | None:
        """Jobs ahead of this one in the queue (None unless queued)."""
        return scheduler().ahead(self) if self.status == QUEUED else None

    def report(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """The progress callback handed to ``fn``: ``(done, total)`` or ``(done, total, message)``."""
        self.done = float(done)
        if total is not None:
            self.total = float(total)
        if message is not None:
            self.message = str(message)

    def cancel(self) -> None:
        """Ask the job to stop: a queued job leaves the queue at once, a running one stops at its
        next check."""
        self.cancel_event.set()
        if self.status == QUEUED and scheduler().withdraw(self):
            self.end(CANCELLED, "Cancelled before it started.")

    def begin(self) -> Job:
        """Put the job in the process-wide queue (once)."""
        scheduler().submit(self)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests, scripts); True when it has ended."""
        self._ended.wait(timeout)
        return not self.active

    def end(self, status: str, message: str) -> None:
        """Record the final status (the scheduler calls this once)."""
        self.finished = time.monotonic()
        self.message = message
        self.status = status
        _journal_write(self)
        self._ended.set()


# --- the scheduler -------------------------------------------------------------------------------


class _Scheduler:
    """One queue, ``slots`` worker threads; each runs a job in a thread or hands it to the
    worker process pool and relays its progress and cancellation."""

    def __init__(self, slots: int):
        self.slots = slots
        self._queue: deque[Job] = deque()
        self._running: set[Job] = set()
        self._by_id: weakref.WeakValueDictionary[str, Job] = weakref.WeakValueDictionary()
        self._dead_since: dict[str, float] = {}
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._loop, name=f"clsviz-jobs-{i}", daemon=True) for i in range(slots)]
        self._threads.append(threading.Thread(target=self._watch, name="clsviz-jobs-watch", daemon=True))
        for thread in self._threads:
            thread.start()
        self._pool = None
        self._manager = None
        self._pool_lock = threading.Lock()

    def submit(self, job: Job) -> None:
        with self._cond:
            if job in self._queue or job in self._running or job.finished is not None:
                return
        job._payload = _payload(job) if use_processes() else None
        _journal_write(job)
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

    def _loop(self) -> None:
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
                self._execute(job)
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
        now = time.monotonic()
        for job in [*self._queue, *self._running]:
            if _session_alive(job.session):
                self._dead_since.pop(job.session, None)
            elif now - self._dead_since.setdefault(job.session, now) > grace_seconds():
                job.cancel()

    def _execute(self, job: Job) -> None:
        job.status, job.started, job.message = RUNNING, time.monotonic(), "Starting…"
        _journal_write(job)
        try:
            payload, job._payload = job._payload, None
            job.mode = "process" if payload is not None else "thread"
            if payload is None:
                result = job.fn(*job.args, progress=job.report, cancel=job.cancel_event, **job.kwargs)
            else:
                result = self._in_process(job, payload)
            job.result = result
            job.end(DONE, "Finished.")
        except Exception as exc:  # the scheduler must record every failure, never die silently
            job.exception = exc
            if job.cancel_event.is_set():
                job.end(CANCELLED, "Cancelled.")
            elif isinstance(exc, ValueError):
                job.error = str(exc)
                job.end(FAILED, "Failed.")
            else:
                _log.exception("background job %s failed", job.name)
                job.error = f"{type(exc).__name__}: {exc}"
                job.end(FAILED, "Failed.")

    def _workers(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from . import worker

        with self._pool_lock:
            if self._pool is None:
                context = mp.get_context("spawn")
                self._manager = context.Manager()
                self._pool = ProcessPoolExecutor(self.slots, mp_context=context, initializer=worker.initialize)
            return self._pool, self._manager

    def _in_process(self, job: Job, payload: bytes):
        from concurrent.futures.process import BrokenProcessPool

        from . import worker

        pool, manager = self._workers()
        state, cancel = manager.dict(done=0.0, total=0.0, message="Loading the model in the worker…"), manager.Event()
        future = pool.submit(worker.run, payload, state, cancel)
        try:
            while not future.done():
                time.sleep(0.2)
                snapshot = dict(state)
                job.report(snapshot.get("done", 0.0), snapshot.get("total") or None, snapshot.get("message"))
                if job.cancel_event.is_set():
                    cancel.set()
            return future.result()
        except BrokenProcessPool:
            with self._pool_lock:
                self._pool = None  # the next job starts a fresh worker
            raise RuntimeError(
                "the worker process stopped (it may have run out of memory); try a smaller job"
            ) from None


def _payload(job: Job) -> bytes | None:
    """The job pickled for the worker process, or None when it can only run in a thread."""
    from . import worker

    try:
        return worker.dumps((job.fn, job.args, job.kwargs))
    except Exception:  # a lambda, a local function, a lock: run it in a thread instead
        return None


def _session_alive(session: str) -> bool:
    """False only when the Streamlit runtime is up and no longer knows the session."""
    if session == "local":
        return True
    try:
        from streamlit import runtime

        return not runtime.exists() or runtime.get_instance().is_active_session(session)
    except Exception:
        return True


_scheduler: _Scheduler | None = None
_scheduler_lock = threading.Lock()


def scheduler() -> _Scheduler:
    """The process-wide scheduler (started on first use with :func:`max_jobs` slots)."""
    global _scheduler
    with _scheduler_lock:
        if _scheduler is None:
            _scheduler = _Scheduler(max_jobs())
        return _scheduler


# --- the journal: what a restarted server can say about jobs it never saw -------------------------


MAX_JOURNAL_BYTES = 50_000_000
"""A job whose arguments pickle to more than this is not kept for a restart."""


def _state_dir() -> Path:
    root = os.environ.get("CLSVIZ_STATE_DIR", "").strip() or os.path.join(Path.home(), ".cache", "clsviz", "state")
    return Path(root) / "jobs"


def _journal_write(job: Job) -> None:
    record = {"id": job.id, "key": job.name, "label": job.label, "status": job.status, "time": time.time()}
    try:
        folder = _state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{job.id}.json.tmp"
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(folder / f"{job.id}.json")
        payload = folder / f"{job.id}.job"
        if job.status == QUEUED and job._payload is not None and len(job._payload) <= MAX_JOURNAL_BYTES:
            payload.write_bytes(job._payload)  # what a restart after a crash needs to run it again
        elif job.status in (DONE, FAILED, CANCELLED):
            payload.unlink(missing_ok=True)
    except OSError:  # a read-only disk must not stop the job itself
        _log.warning("could not write the job journal in %s", _state_dir(), exc_info=True)


def _journal_read(job_id: str) -> dict | None:
    if not job_id.isalnum():
        return None
    try:
        return json.loads((_state_dir() / f"{job_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --- per session -----------------------------------------------------------------------------------


def _jobs() -> dict[str, Job]:
    return st.session_state.setdefault(_SESSION_KEY, {})


def _session_id() -> str:
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "local"


def _remember_in_url(key: str, job_id: str) -> None:
    try:
        pairs = dict(p.split(":", 1) for p in st.query_params.get(_QUERY_KEY, "").split(",") if ":" in p)
        pairs[key] = job_id
        st.query_params[_QUERY_KEY] = ",".join(f"{k}:{v}" for k, v in pairs.items())
    except Exception:  # the URL is a convenience; the job runs without it
        pass


def start(key: str, fn: Callable, *args, label: str = "", **kwargs) -> Job:
    """Queue ``fn`` under ``key`` for this session; an active job under that key is returned as
    is. Raises :class:`JobLimitError` when the session already has :func:`session_limit` active
    jobs. ``fn`` is called as ``fn(*args, progress=report, cancel=event, **kwargs)``."""
    jobs = _jobs()
    current = jobs.get(key)
    if current is not None and current.active:
        return current
    active = [j for j in jobs.values() if j.active]
    if len(active) >= session_limit():
        names = ", ".join(j.label or j.name for j in active)
        raise JobLimitError(
            f"You already have {len(active)} background jobs ({names}); a session may run {session_limit()} at once. "
            "Wait for one to finish or cancel it."
        )
    job = Job(fn=fn, args=args, kwargs=kwargs, name=key, session=_session_id(), label=label or key)
    jobs[key] = job
    _remember_in_url(key, job.id)
    return job.begin()


def get(key: str) -> Job | None:
    """This session's job under ``key`` (active or finished). When the page's URL names a job
    this session does not hold: the job itself if this process still has it (a reloaded tab);
    after a server restart, a stand-in job with status :data:`LOST`."""
    job = _jobs().get(key)
    if job is not None:
        return job
    try:
        pairs = dict(p.split(":", 1) for p in st.query_params.get(_QUERY_KEY, "").split(",") if ":" in p)
    except Exception:
        return None
    job_id = pairs.get(key, "")
    live = scheduler().find(job_id) if job_id else None
    if live is not None and (live.session in (_session_id(), "local") or not _session_alive(live.session)):
        live.session = _session_id()  # the same person reloaded the page: give them their job back
        _jobs()[key] = live
        return live
    record = _journal_read(job_id)
    if record is None or live is not None:
        return None
    interrupted = record["status"] in (QUEUED, RUNNING)
    lost = Job(fn=lambda **_: None, name=key, label=record.get("label", key), id=record["id"], status=LOST)
    lost.message = (
        "This job was interrupted when the server restarted; nothing it computed was kept."
        if interrupted else "This job's result was lost when the server restarted."
    )
    lost.error = "restartable" if (_state_dir() / f"{record['id']}.job").exists() else None
    _jobs()[key] = lost
    return lost


def restart(key: str) -> Job | None:
    """Start a :data:`LOST` job again from its journal entry; None when it cannot be restarted."""
    job = _jobs().get(key)
    if job is None or job.status != LOST:
        return None
    from . import worker

    try:
        fn, args, kwargs = worker.loads((_state_dir() / f"{job.id}.job").read_bytes())
    except Exception:
        return None
    _jobs().pop(key, None)
    return start(key, fn, *args, label=job.label, **kwargs)


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


def compute(what: str, fn: Callable, *args, **kwargs):
    """Run ``fn`` through the process-wide queue while this page waits for it, with its place in
    the queue and its progress in a bar; returns its result or raises its error (and
    :class:`clsviz.progress.Cancelled` when it was cancelled). When the page run stops before
    the job ends (the person moved on), the job is cancelled. Not counted in the session limit:
    the person is waiting for it."""
    from clsviz.progress import Cancelled

    job = Job(fn=fn, args=args, kwargs=kwargs, name=f"page:{what}", session=_session_id(), label=what).begin()
    bar = st.progress(0.0, text=plain(f"{what}…"))
    try:
        while not job.wait(0.25):
            bar.progress(job.fraction, text=plain(f"{what}: {_status_line(job)}"))
        bar.progress(job.fraction, text=plain(f"{what}: {job.message}"))
    except BaseException:
        job.cancel()
        raise
    finally:
        bar.empty()
    if job.status == DONE:
        return job.result
    if job.status == CANCELLED:
        raise Cancelled(f"{what} was cancelled.")
    raise job.exception if job.exception is not None else RuntimeError(job.error or f"{what} failed")


# --- the job's place on the page ---------------------------------------------------------------------


def _status_line(job: Job) -> str:
    ahead = job.ahead
    if job.status == QUEUED:
        if ahead:
            return f"Queued: {ahead} job{'s' if ahead != 1 else ''} ahead of you (this server runs {max_jobs()} at a time)."
        return "Starting…"
    return f"{job.message} ({job.elapsed:.0f} s)"


def launch(key: str, fn: Callable, *args, label: str = "", **kwargs) -> Job | None:
    """:func:`start` for a page: when the session already holds as many jobs as it may, the
    person is told so (and what to do) on the page, and None is returned."""

    try:
        return start(key, fn, *args, label=label, **kwargs)
    except JobLimitError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return None


def panel(key: str, what: str) -> Job | None:
    """This session's job under ``key`` on the page: its place in the queue or its progress with
    a Cancel button (redrawn every second while it runs), and a message when it failed, was
    cancelled or was lost with a server restart (with a button to start it again). Returns the
    job once it has finished with a result, else None. ``what`` names it ("Fine-tuning")."""

    job = get(key)
    if job is None:
        return None
    if job.status == LOST:
        st.warning(plain(f"{what}: {job.message}"), icon=":material/restart_alt:")
        if job.error == "restartable" and st.button(f"Start the {what.lower()} again", key=f"{key}.restart"):
            try:
                restart(key)
            except JobLimitError as exc:
                st.error(plain(str(exc)), icon=":material/error:")
            st.rerun()
        return None
    if job.active:
        _poll(key, what)
        return None
    if job.status == CANCELLED:
        st.warning(f"{what} was cancelled.", icon=":material/cancel:")
    elif job.status == FAILED:
        st.error(plain(f"{what} failed: {job.error}"), icon=":material/error:")
    elif job.status == DONE:
        return job
    return None


def _poll(key: str, what: str) -> None:
    @st.fragment(run_every=1.0)
    def poll() -> None:
        job = get(key)
        if job is None or not job.active:
            st.rerun()  # finished while polling: redraw the whole page to show the result
            return

        st.progress(job.fraction, text=plain(f"{what}: {_status_line(job)}"))
        if st.button("Cancel", key=f"{key}.cancel", help="Stops the job at its next step; a queued job never starts."):
            job.cancel()

    poll()
