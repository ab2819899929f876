"""Background jobs on a page: a session's jobs by key, their place in the URL, and the panel that
shows them (the engine itself - queue, slots, warm workers, journal - is :mod:`ui.engine`).

A page calls :func:`launch` (or :func:`start`) with a key; the job runs in the background while
the person moves on, and :func:`panel` shows it: its place in the queue, or its step, the share
done and the time left with a Cancel button, and once it has ended its result, or why it has not
one (with a Retry button where starting it again can help). :func:`compute` is for work the page
itself waits for (embedding a corpus). Every job is named in the page's URL, so a reloaded tab
gets its job back and, after a server restart, the page says the job was lost and offers to
start it again.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from clsviz.progress import Cancelled

from . import engine, journal, worker
from .engine import (
    CANCELLED,
    DONE,
    FAILED,
    LOST,
    QUEUED,
    RUNNING,
    Job,
    JobLimitError,
    max_jobs,
    scheduler,
    session_limit,
    time_left_text,
)
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
    "launch",
    "panel",
    "restart",
    "scheduler",
    "session_alive",
    "start",
    "status_line",
]

_SESSION_KEY = "clsviz.jobs"
_QUERY_KEY = "jobs"
POLL_S = 1.0
"""How often a page redraws a running job's panel. Each redraw costs the server a fragment run:
every 0.5 s made a probe computed in the server's own threads under load half again as slow."""


def session_alive(session: str) -> bool:
    """False only when the Streamlit runtime is up and no longer knows the session."""
    if session == "local":
        return True
    try:
        from streamlit import runtime

        return not runtime.exists() or runtime.get_instance().is_active_session(session)
    except Exception:
        return True


engine.watch_sessions(session_alive)


def _jobs() -> dict[str, Job]:
    return st.session_state.setdefault(_SESSION_KEY, {})


def _session_id() -> str:
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "local"


def _url_jobs() -> dict[str, str]:
    try:
        return dict(p.split(":", 1) for p in st.query_params.get(_QUERY_KEY, "").split(",") if ":" in p)
    except Exception:  # the URL is a convenience; the jobs run without it
        return {}


def _remember_in_url(key: str, job_id: str | None) -> None:
    """Name the job under ``key`` in the page's URL (None: take it out)."""
    try:
        pairs = _url_jobs()
        if job_id is None:
            if pairs.pop(key, None) is None:
                return
        else:
            pairs[key] = job_id
        if pairs:
            st.query_params[_QUERY_KEY] = ",".join(f"{k}:{v}" for k, v in pairs.items())
        else:
            del st.query_params[_QUERY_KEY]
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
    job = Job(fn=fn, args=args, kwargs=kwargs, name=key, session=_session_id(), label=label or key)
    job.begin(limit=session_limit())
    jobs[key] = job
    _remember_in_url(key, job.id)
    return job


def _lost(key: str, job_id: str) -> Job | None:
    """A stand-in with status LOST for a job the journal knows and this process does not."""
    record = journal.read(job_id)
    if record is None:
        return None
    interrupted = record["status"] in (QUEUED, RUNNING)
    lost = Job(fn=lambda **_: None, name=key, label=record.get("label", key), id=record["id"], status=LOST)
    lost.message = (
        "This job was interrupted when the server restarted; nothing it computed was kept."
        if interrupted else "This job's result was lost when the server restarted."
    )
    lost.retry = journal.payload_path(record["id"]).exists()
    return lost


def get(key: str) -> Job | None:
    """This session's job under ``key`` (active or finished). When the page's URL names a job
    this session does not hold: the job itself if this process still has it (a reloaded tab);
    after a server restart, a stand-in job with status :data:`LOST`."""
    job = _jobs().get(key)
    if job is not None:
        return job
    job_id = _url_jobs().get(key, "")
    live = scheduler().find(job_id) if job_id else None
    if live is not None and (live.session in (_session_id(), "local") or not session_alive(live.session)):
        live.session = _session_id()  # the same person reloaded the page: give them their job back
        _jobs()[key] = live
        return live
    if live is not None or not job_id:
        return None
    lost = _lost(key, job_id)
    if lost is not None:
        _jobs()[key] = lost
    return lost


def restart(key: str) -> Job | None:
    """Start this session's job under ``key`` again as it was: a :data:`LOST` job from its
    journal entry, or one whose worker process died (:attr:`Job.retry`). None when it cannot be."""
    job = _jobs().get(key)
    if job is None or not job.retry or job.active:
        return None
    if job.status == LOST:
        try:
            fn, args, kwargs = worker.loads(journal.payload_path(job.id).read_bytes())
        except Exception:
            return None
    else:
        fn, args, kwargs = job.fn, job.args, job.kwargs
    _jobs().pop(key, None)
    return start(key, fn, *args, label=job.label, **kwargs)


def cancel(key: str) -> None:
    """Ask this session's job under ``key`` to stop."""
    job = get(key)
    if job is not None:
        job.cancel()


def clear(key: str) -> None:
    """Forget a job (cancelling it if still active), also in the page's URL."""
    job = _jobs().pop(key, None)
    _remember_in_url(key, None)
    if job is not None and job.active:
        job.cancel()


def status_line(job: Job) -> str:
    """The job in one line: its place in the queue, or its step, the share done, the time left."""
    if job.status == QUEUED:
        ahead = job.ahead
        if ahead:
            return f"Queued: {ahead} job{'s' if ahead != 1 else ''} ahead of you (this server runs {max_jobs()} at a time)."
        return "Starting…"
    parts = [job.message]
    if job.total:
        parts.append(f"{job.fraction:.0%} done")
    left = job.seconds_left()
    parts.append(time_left_text(left) if left is not None else f"{job.elapsed:.0f} s so far")
    return " · ".join(parts)


def compute(what: str, fn: Callable, *args, **kwargs):
    """Run ``fn`` through the process-wide queue while this page waits for it, with its place in
    the queue and its progress in a bar; returns its result or raises its error (and
    :class:`clsviz.progress.Cancelled` when it was cancelled). When the page run stops before
    the job ends (the person moved on), the job is cancelled. Not counted in the session limit:
    the person is waiting for it."""
    job = Job(fn=fn, args=args, kwargs=kwargs, name=f"page:{what}", session=_session_id(), label=what, counted=False)
    job.begin()
    bar = st.progress(0.0, text=plain(f"{what}…"))
    try:
        while not job.wait(0.25):
            bar.progress(job.fraction, text=plain(f"{what}: {status_line(job)}"))
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


def launch(key: str, fn: Callable, *args, label: str = "", **kwargs) -> Job | None:
    """:func:`start` for a page: when the session already holds as many jobs as it may, the
    person is told so (and what to do) on the page, and None is returned."""
    try:
        return start(key, fn, *args, label=label, **kwargs)
    except JobLimitError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return None


def _retry_button(key: str, label: str) -> None:
    if st.button(label, key=f"{key}.restart", icon=":material/restart_alt:"):
        try:
            restart(key)
        except JobLimitError as exc:
            st.error(plain(str(exc)), icon=":material/error:")
        st.rerun()


def panel(key: str, what: str) -> Job | None:
    """This session's job under ``key`` on the page: its place in the queue or its progress (the
    step, the share done, the time left) with a Cancel button, redrawn while it runs; a message
    when it failed, was cancelled or was lost with a server restart, with a button to start it
    again where that can help. Returns the job once it has finished with a result, else None.
    ``what`` names it ("Fine-tuning")."""
    job = get(key)
    if job is None:
        return None
    if job.status == LOST:
        st.warning(plain(f"{what}: {job.message}"), icon=":material/restart_alt:")
        if job.retry:
            _retry_button(key, f"Start the {what.lower()} again")
        return None
    if job.active:
        _poll(key, what)
        return None
    if job.status == CANCELLED:
        st.warning(f"{what} was cancelled.", icon=":material/cancel:")
    elif job.status == FAILED:
        st.error(plain(f"{what} failed: {job.error}"), icon=":material/error:")
        if job.retry:
            _retry_button(key, "Retry")
    elif job.status == DONE:
        return job
    return None


def _poll(key: str, what: str) -> None:
    @st.fragment(run_every=POLL_S)
    def poll() -> None:
        job = get(key)
        if job is None or not job.active:
            st.rerun()  # finished while polling: redraw the whole page to show the result
            return
        st.progress(job.fraction, text=plain(f"{what}: {status_line(job)}"))
        if st.button("Cancel", key=f"{key}.cancel", help="Stops the job at its next step; a queued job never starts."):
            job.cancel()

    poll()
