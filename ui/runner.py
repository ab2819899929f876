"""The one runner between a page and the analysis layer: cache, background jobs, drawing.

A page says which analysis to run on which inputs with which widget values; the runner

* computes a short analysis once per (analysis, inputs, parameters) in the shared byte-budgeted
  cache (``ui.cache``), so a slider that only changes the view never reruns the model, and every
  visitor with the same input shares the result;
* sends a long one (``long=True`` in its declaration) through the job queue (``ui.jobs``: queue
  position, progress, cancel, restart recovery) and keeps its result in the same cache;
* draws a result's figure with its registered caption and a CSV download of the numbers behind
  it, caching figures per view so a rerun rebuilds only what changed;
* lets the job worker compute a short analysis ahead (:func:`prefetch`) while the page computes
  another one, and keys a result made of other results (:func:`combine`: panels side by side) by
  theirs, so its figures are cached like any other.

Pages import this module (and the other ``ui`` modules), not ``clsviz``: results carry their own
figures, tables and sentences.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from functools import partial

import streamlit as st

from clsviz.analyses import NotApplicable, ParamError, Result, get
from clsviz.analyses import run as run_analysis

from . import engine, jobs
from .cache import cached, shared_cache
from .text import plain
from .widgets import download_csv, show

__all__ = ["NotApplicable", "ParamError", "background", "choices", "clear", "collect", "combine", "download",
           "download_table", "draw", "figure", "panel", "prefetch", "result_key", "run", "running", "sentences", "start",
           "stored"]

_NAMESPACE = "analysis"
FIRST_LOOK_S = 2.0
"""After a button starts a job, the page waits this long for it before it redraws: a short job
(value zeroing of a sentence, about a second) is then drawn by that one run, instead of by a
progress panel polling it (up to a second later) and another whole run of the page."""
_KEYS: weakref.WeakKeyDictionary[Result, tuple] = weakref.WeakKeyDictionary()
_JOB_KEYS = "runner.job_keys"  # session state: job key -> the cache key its result belongs under


def _remember(result: Result, key: tuple) -> Result:
    _KEYS[result] = key
    return result


def result_key(result: Result) -> tuple | None:
    """The cache key a result was computed under (None for a result the runner did not make)."""
    return _KEYS.get(result)


def run(name: str, *inputs, wait: str | None = None, **params) -> Result:
    """The analysis ``name`` on ``inputs`` with ``params``, computed once and shared.

    ``wait`` names the computation for a person who waits for it on the page (seconds, not
    minutes): it then runs through the job queue with its place in the queue and a progress bar
    (``ui.jobs.compute``) instead of inside the page's own run. Raises what the analysis raises:
    :class:`NotApplicable` (the evidence does not apply here: show its message),
    :class:`ParamError` or ``ValueError`` (bad input: show the message)."""
    analysis = get(name)
    key = analysis.key(inputs, params)

    def compute() -> Result:
        with _ahead_lock:
            job = _ahead.pop(key, None)
        # Asked of the worker ahead: its result when it ran; still queued behind someone's job, done here instead.
        if job is not None and not job.withdraw() and job.wait() and job.status == engine.DONE:
            return job.result
        if wait is not None:
            return jobs.compute(wait, partial(run_analysis, name, *inputs, **params))
        return analysis(*inputs, **params)

    return _remember(cached(_NAMESPACE, key, compute), key)


_ahead: dict[tuple, engine.Job] = {}
_ahead_lock = threading.Lock()


def prefetch(name: str, *inputs, send: Sequence | None = None, **params) -> engine.Job | None:
    """Have the job worker compute the short analysis ``name`` now, while this page computes
    something else (a seeded UMAP fit uses one core: two panels fit at once on two); the next
    :func:`run` with the same inputs and parameters takes its result (or computes it itself when
    the worker has not started it). ``send``: smaller inputs that give the same result, sent to
    the worker instead (one column of the corpus vectors). Does nothing when jobs run in threads
    or someone already has the result; returns the job started."""
    if not engine.use_processes():
        return None
    key = get(name).key(inputs, params)
    with _ahead_lock:
        if key in _ahead or (_NAMESPACE, *key) in shared_cache():
            return None
        job = engine.Job(fn=run_analysis, args=(name, *(inputs if send is None else send)), kwargs=params, name=name,
                         label=f"{get(name).title} (ahead)", counted=False)  # fmt: skip
        _ahead[key] = job
    return job.begin()


def choices(name: str, param: str) -> tuple:
    """The values parameter ``param`` of analysis ``name`` accepts (its ``Literal``), for a widget."""
    found = get(name).param(param).choices
    if found is None:
        raise ValueError(f"parameter {param!r} of {name!r} is not a choice")
    return found


def stored(name: str, *inputs, **params) -> Result | None:
    """The result of ``name`` on these inputs if someone already computed it (a finished job),
    else None; computes nothing."""
    key = get(name).key(inputs, params)
    hit = shared_cache().get((_NAMESPACE, *key))
    return None if hit is None else _remember(hit, key)


def _job_key(name: str, slot: str | None) -> str:
    return f"analysis.{slot or name}"


def start(name: str, *inputs, slot: str | None = None, what: str = "", **params) -> jobs.Job | None:
    """Start the long analysis ``name`` as this session's background job (one per ``slot``,
    default the analysis name; ``what`` names it in the queue, default its title); None when the
    session is at its job limit or the declaration's ``precheck`` refuses the inputs (the page
    says so, and nothing is queued)."""
    analysis = get(name)
    key = analysis.key(inputs, params)  # checks the parameters before anything is queued
    try:
        analysis.validate(*inputs, **params)
    except (ValueError, NotApplicable) as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return None
    job_key = _job_key(name, slot)
    current = jobs.get(job_key)
    if current is not None and current.active:
        return current  # still computing what it was started for: its result keeps that key
    st.session_state.setdefault(_JOB_KEYS, {})[job_key] = key
    # clsviz.analyses.run is module-level in a Streamlit-free module: the job pickles by reference and the
    # worker process imports no Streamlit to run it. Bound in a partial, the analysis's own parameters never
    # meet the queue's keywords (an analysis may well have a 'label').
    return jobs.launch(job_key, partial(run_analysis, name, *inputs, **params), label=what or analysis.title)


def _first_look(job: jobs.Job | None) -> bool:
    """True when ``job`` was started (the page then redraws), after waiting up to
    :data:`FIRST_LOOK_S` for it to end."""
    if job is None:
        return False
    job.wait(FIRST_LOOK_S)
    return True


def clear(name: str, slot: str | None = None) -> None:
    """Forget this session's job of ``name`` (in ``slot``), cancelling it when it still runs."""
    jobs.clear(_job_key(name, slot))


def background(
    name: str,
    *inputs,
    button: str,
    what: str | None = None,
    slot: str | None = None,
    hint: str | None = None,
    disabled: bool = False,
    release: bool = False,
    **params,
) -> Result | None:
    """A long analysis on a page: its result when it exists (computed by anyone, or by this
    session's finished job); otherwise a ``button`` that starts it and, while it runs, its place in
    the queue or its progress with Cancel. ``hint`` is shown while nothing has run yet.

    ``release``: the job is forgotten as soon as it has ended (its result kept in the shared
    cache, its outcome in the session), so the models it holds - a second model on Compare - can
    leave memory; a failure or a cancel is still said on the page."""
    what = what or get(name).title
    if release:
        return _released(name, inputs, params, get(name).key(inputs, params), _job_key(name, slot), button=button,
                         what=what, hint=hint, disabled=disabled)  # fmt: skip
    found = collect(name, *inputs, slot=slot, what=what, **params)
    if found is not None:
        return found
    busy = running(name, slot=slot)
    if st.button(button, key=f"{_job_key(name, slot)}.start", type="primary", disabled=busy or disabled):
        if _first_look(start(name, *inputs, slot=slot, what=what, **params)):
            st.rerun()
    elif not busy and hint:
        st.info(plain(hint), icon=":material/play_arrow:")
    return None


def collect(name: str, *inputs, slot: str | None = None, what: str | None = None, **params) -> Result | None:
    """The result of the long analysis ``name`` on these inputs when it exists (computed by
    anyone, or by this session's finished job, which is then kept for everyone); else None, with
    this session's job on the page while it runs (its place in the queue or its progress, with
    Cancel) or why it ended without a result."""
    found = stored(name, *inputs, **params)
    if found is not None:
        return found
    job_key = _job_key(name, slot)
    job = jobs.panel(job_key, what or get(name).title)
    key = get(name).key(inputs, params)
    if job is not None and job.result is not None and st.session_state.get(_JOB_KEYS, {}).get(job_key) == key:
        shared_cache().put((_NAMESPACE, *key), job.result)
        return _remember(job.result, key)
    return None


def panel(name: str, *, slot: str | None = None, what: str | None = None) -> None:
    """This session's job for ``name`` (see :func:`start`) on the page, while it runs or when it
    failed, without taking its result (the page's inputs changed since it started)."""
    jobs.panel(_job_key(name, slot), what or get(name).title)


def running(name: str, *, slot: str | None = None) -> bool:
    """True while this session's job for ``name`` is queued or computing."""
    job = jobs.get(_job_key(name, slot))
    return job is not None and job.active


def combine(parts: Sequence[Result], make: Callable[[], Result], *extra: Hashable) -> Result:
    """``make()``: a result made from the runner's results ``parts`` without computing anything
    heavy (panels side by side, typed sentences placed), kept under their keys and ``extra`` (a
    digest of whatever else it reads), so its figures are cached per view like any other."""
    keys = tuple(result_key(p) for p in parts)
    if any(k is None for k in keys):
        return make()
    key = ("combined", keys, extra)
    return _remember(cached(_NAMESPACE, key, make), key)


def _released(name, inputs, params, key, job_key, *, button, what, hint, disabled) -> Result | None:
    """:func:`background` for a job that is let go once it has ended: its outcome is kept in the
    session under ``<job key>.result`` as (cache key, result or None, problem: None, "" for
    cancelled, or the message) and the job itself is cleared."""
    outcome_key = f"{job_key}.result"
    job = jobs.get(job_key)
    if job is not None and not job.active:
        asked = st.session_state.get(_JOB_KEYS, {}).get(job_key)
        if job.status == jobs.DONE:
            outcome = (asked, job.result, None)
            if asked is not None:
                shared_cache().put((_NAMESPACE, *asked), job.result)
        elif job.status == jobs.FAILED:
            outcome = (asked, None, f"The computation failed: {job.error}")
        elif job.status == jobs.LOST:
            outcome = (asked, None, f"{job.message} Press the button to compute it again.")
        else:
            outcome = (asked, None, "")  # cancelled
        st.session_state[outcome_key] = outcome
        jobs.clear(job_key)  # the job holds its inputs (models): let them go
        job = None
    found = stored(name, *inputs, **params)
    if found is not None and job is None:
        return found
    if job is not None:
        jobs.panel(job_key, what)
        return None
    if st.button(button, key=f"{job_key}.start", type="primary", disabled=disabled):
        if _first_look(start(name, *inputs, slot=job_key.removeprefix("analysis."), what=what, **params)):
            st.rerun()
    saved = st.session_state.get(outcome_key)
    if saved is None or saved[0] != key:
        if hint:
            st.info(plain(hint), icon=":material/play_arrow:")
        return None
    if saved[2] == "":
        st.warning(f"{what} was cancelled.", icon=":material/cancel:")
    elif saved[2] is not None:
        st.error(plain(saved[2]), icon=":material/error:")
    return None if saved[1] is None else _remember(saved[1], key)


def figure(result: Result, key: str, **view):
    """The figure ``key`` of ``result`` for ``view``, built once per (result, view) and shared."""
    made_under = result_key(result)
    if made_under is None:
        return result.figure(key, **view)
    return cached("figure", (made_under, key, tuple(sorted(view.items()))), lambda: result.figure(key, **view))


def draw(
    result: Result,
    key: str,
    *,
    csv: str | None = None,
    csv_key: str | None = None,
    chart_key: str | None = None,
    note: str | None = None,
    caption: bool = True,
    download_label: str = "Download the numbers (CSV)",
    **view,
) -> None:
    """Draw figure ``key`` of ``result`` (with its registered caption and ``note``; figures drawn
    side by side pass ``caption=False`` and call ``ui.widgets.figure_caption`` once) and, when
    ``csv`` names a file, a download of the numbers behind it (see :func:`download`)."""
    show(key, figure(result, key, **view), key=chart_key, note=note, caption=caption)
    if csv is not None:
        download(result, key, csv, csv_key=csv_key or f"{chart_key or key}.csv", label=download_label, **view)


def download(result: Result, key: str, filename: str, *, csv_key: str | None = None,
             label: str = "Download the numbers (CSV)", **view) -> None:  # fmt: skip
    """A download of the numbers behind figure ``key`` (``result.figure_table``), built only
    when clicked."""
    download_csv(lambda: result.figure_table(key, **view), filename, key=csv_key or f"{key}.csv", label=label)


def download_table(result: Result, filename: str, *, csv_key: str, label: str = "Download the numbers (CSV)") -> None:
    """A download of the result's whole table (``result.table()``), built only when clicked."""
    download_csv(result.table, filename, key=csv_key, label=label)


def sentences(result: Result, where: Callable[[str], object] | None = None) -> None:
    """The result's summary sentences, as plain text (never markdown or HTML)."""
    for sentence in result.summary():
        (where or st.caption)(plain(sentence))
