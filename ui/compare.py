"""The Compare page's pieces: picking and holding the second model, the corpus sample, and
long comparisons run as background jobs whose results go through the shared cache."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pandas as pd
import streamlit as st

from clsviz import Encoder, ModelLoadError
from clsviz.catalog import local_models
from clsviz.encoder import allowed_models

from . import jobs
from .cache import cached, shared_cache
from .state import OTHER, _bind, _model_choices, _store, hold_second_model
from .text import plain
from .widgets import selectbox, text_input

__all__ = [
    "CKA_JOB",
    "CURVES_JOB",
    "NONE",
    "background_result",
    "pairs_hash",
    "second_encoder",
    "second_model_choices",
    "second_model_picker",
]

NONE = "None (no second model)"
CKA_JOB, CURVES_JOB = "compare.cka", "compare.curves"
SECOND = "compare.second_model"  # the choice, kept across page switches (not a widget key)
SECOND_CUSTOM = "compare.second_custom"
FAILED_SECOND = "compare.failed"  # model name -> why it could not be loaded, for this session


def second_model_choices() -> list[str]:
    """The sidebar's model choices (the allow-list where one is set), with the installed extra
    models, after a first choice meaning "no second model"."""
    choices = list(_model_choices())
    if allowed_models() is None:
        extras = [name for name in local_models() if name not in choices]
        at = choices.index(OTHER) if OTHER in choices else len(choices)
        choices[at:at] = extras
    return [NONE, *choices]


def second_model_picker() -> str | None:
    """The second model ("B") a person picks: a listed model or a typed hub id / folder; None
    for no second model. The choice survives page switches."""
    choices = second_model_choices()
    st.session_state.setdefault(SECOND, NONE)
    st.session_state.setdefault(SECOND_CUSTOM, "")
    if st.session_state[SECOND] not in choices:
        st.session_state[SECOND] = NONE
    _bind("compare.model_b", SECOND)
    selectbox(st,
        "Second model (B)",
        choices,
        key="compare.model_b",
        on_change=_store,
        args=("compare.model_b", SECOND),
        help="Compared with the sidebar's model (A). Loaded once and shared like the sidebar's models; "
        "picking another one (or none) frees it when no one else uses it.",
    )
    choice = st.session_state[SECOND]
    if choice == OTHER:
        _bind("compare.custom_b", SECOND_CUSTOM)
        text_input(st,
            "Hugging Face id or local folder (B)",
            key="compare.custom_b",
            on_change=_store,
            args=("compare.custom_b", SECOND_CUSTOM),
            placeholder="e.g. /models/my-finetuned-bert",
        )
        return str(st.session_state[SECOND_CUSTOM]).strip() or None
    return None if choice == NONE else choice


def second_encoder(name: str | None) -> Encoder | None:
    """Hold ``name`` as this session's second model and return it; None (after a message saying
    why) when there is none or it cannot be loaded. The sidebar's model is never affected."""
    failed: dict = st.session_state.setdefault(FAILED_SECOND, {})
    if name is not None and name in failed:
        name_failed = name
        _, changed = hold_second_model(None)
    else:
        name_failed = None
        try:
            with st.spinner(f"Loading {name}…"):
                encoder, changed = hold_second_model(name)
        except ModelLoadError as exc:
            failed[name] = str(exc)
            name_failed, changed, encoder = name, None, None
        except Exception as exc:  # any other failure must not reach the page as a traceback
            failed[name] = f"'{name}' could not be loaded ({type(exc).__name__}: {exc})."
            name_failed, changed, encoder = name, None, None
    if changed is not None:
        # The jobs hold both encoders; forget them so the old model can leave memory.
        jobs.clear(CKA_JOB)
        jobs.clear(CURVES_JOB)
    if name_failed is not None:
        st.error(
            plain(f"The second model could not be loaded: {failed[name_failed]}")
            + "  \nThe sidebar's model keeps working; pick another second model.",
            icon=":material/error:",
        )
        return None
    return encoder


def pairs_hash(pairs: pd.DataFrame | None) -> str | None:
    """A content hash of a scored-pairs table (None for none), for cache keys."""
    if pairs is None:
        return None
    return hashlib.sha256(pairs.to_csv(index=False).encode("utf-8")).hexdigest()


def _cached_call(namespace: str, params: tuple, compute: Callable, *args, progress, cancel, **kwargs):
    return cached(namespace, params, lambda: compute(*args, progress=progress, cancel=cancel, **kwargs))


def _job_progress(job_key: str) -> None:
    job = jobs.get(job_key)
    if job is None:
        return
    if job.active:
        st.progress(job.fraction, text=plain(f"{job.message} ({job.elapsed:.0f} s)"))
    else:
        st.rerun()  # finished while polling: redraw the page with the result


def background_result(job_key: str, params: tuple, label: str, compute: Callable, *args, disabled: bool = False, **kwargs):
    """The result of ``compute(*args, progress=, cancel=, **kwargs)`` for ``params``: from the
    shared cache (namespace ``job_key``) when it is there, else after a person presses the
    ``label`` button, computed as a background job with a progress bar and a Cancel button.
    Returns None while there is no result for these params."""
    store, wanted = f"{job_key}.result", f"{job_key}.params"
    job = jobs.get(job_key)
    if job is not None and not job.active:
        asked = st.session_state.get(wanted)
        if job.status == jobs.DONE:
            st.session_state[store] = (asked, job.result, None)
        elif job.status == jobs.FAILED:
            st.session_state[store] = (asked, None, f"The computation failed: {job.error}")
        elif job.status == jobs.LOST:
            st.session_state[store] = (asked, None, f"{job.message} Press the button to compute it again.")
        else:
            st.session_state[store] = (asked, None, "")  # cancelled
        jobs.clear(job_key)  # the job holds both encoders: let them go
        job = None
    hit = shared_cache().get((job_key, *params))
    if hit is not None and job is None:
        return hit
    if job is not None:
        if st.button("Cancel", key=f"{job_key}.cancel"):
            jobs.cancel(job_key)
        st.fragment(_job_progress, run_every=1.0)(job_key)
        return None
    if st.button(label, type="primary", key=f"{job_key}.start", disabled=disabled):
        st.session_state[wanted] = params
        if jobs.launch(job_key, _cached_call, job_key, params, compute, *args, **kwargs) is not None:
            st.rerun()
    saved = st.session_state.get(store)
    if saved is None or saved[0] != params:
        return None
    if saved[2] == "":
        st.warning("The computation was cancelled.", icon=":material/cancel:")
    elif saved[2] is not None:
        st.error(plain(saved[2]), icon=":material/error:")
    return saved[1]
