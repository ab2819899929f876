"""The Findings page's pieces: the results other pages of this session hold, and the check of
every published finding run as a background job whose table goes through the shared cache."""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from clsviz import Corpus, Encoder, demo_corpus
from clsviz.literature import check_claims

from . import jobs
from .cache import cached, shared_cache
from .text import plain

__all__ = ["JOB", "NAMESPACE", "findings_params", "findings_table", "page_links", "session_results"]

JOB = "findings.check"
NAMESPACE = "findings"
ASKED = "findings.asked"  # the params of the last check this session started
RESULT = "findings.result"  # (params, table) of this session's last finished check

# Where other pages keep their last result in the session: key of clsviz.literature.SESSION_RESULTS
# -> a function reading it (None when there is none). One line per page that has one.
_SOURCES = {
    "probe": lambda: _stored("any_token.result", 1),
    "finetune": lambda: _job_result("how_it_learns.finetune") or _job_result("any_token.finetune"),
    "comparison": lambda: _stored("compare.cka.result", 1),
    "scoreboard": lambda: _job_result("mixing.scoreboard"),  # 'What flows into [CLS]?'
    "massive": lambda: _job_result("causal.massive"),  # 'Causal tests', the massive-dimension sweep
}
# The session results that change a measurement (the others only add a sentence beside a row).
_MEASURED_FROM = ("finetune", "finetuned", "comparison", "scoreboard", "massive")


def _stored(key: str, index: int):
    value = st.session_state.get(key)
    return value[index] if isinstance(value, tuple) and len(value) > index else None


def _job_result(key: str):
    job = jobs.get(key)
    return job.result if job is not None and job.status == jobs.DONE else None


def session_results() -> dict:
    """This session's last results on other pages, under the keys of
    :data:`clsviz.literature.SESSION_RESULTS` (only those that exist)."""
    found = {}
    for key, read in _SOURCES.items():
        try:
            value = read()
        except Exception:  # a page's state of another shape must not break this page
            value = None
        if value is not None:
            found[key] = value
    return found


def _session_id() -> str:
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "local"


def findings_params(encoder: Encoder, corpus: Corpus | None, pairs: pd.DataFrame | None, session: dict) -> tuple:
    """The cache key of a check: the model, the corpus and pairs content, and the session results
    that feed a measurement (named by this session and object, since they are this session's own)."""
    pairs_key = None if pairs is None else hashlib.sha256(pairs.to_csv(index=False).encode("utf-8")).hexdigest()
    used = tuple(sorted((k, type(v).__name__, id(v)) for k, v in session.items() if k in _MEASURED_FROM))
    return (encoder.name, None if corpus is None else corpus.content_hash, pairs_key,
            (_session_id(), used) if used else ())  # fmt: skip


def is_demo(corpus: Corpus) -> bool:
    """True when ``corpus`` is the shipped demo corpus."""
    return corpus.content_hash == demo_corpus().content_hash


def findings_table(encoder: Encoder, corpus: Corpus | None, pairs: pd.DataFrame | None, session: dict):
    """The table of :func:`clsviz.literature.check_claims` for these inputs: from the shared cache
    (or this session's last check) when it is there, else after a person presses the button,
    computed as a background job whose place in the queue, progress and Cancel button are shown.
    Returns None while there is no table for these inputs."""
    params = findings_params(encoder, corpus, pairs, session)
    finished = jobs.panel(JOB, "Checking the published findings")
    if finished is not None:
        asked = st.session_state.get(ASKED)
        table = finished.result
        jobs.clear(JOB)
        if asked is not None:
            cached(NAMESPACE, asked, lambda: table)
            st.session_state[RESULT] = (asked, table)
    table = shared_cache().get((NAMESPACE, *params))
    saved = st.session_state.get(RESULT)
    if table is None and saved is not None and saved[0] == params:
        table = saved[1]
    running = (job := jobs.get(JOB)) is not None and job.active
    if table is None and not running:
        st.info("Each finding is measured on this model: a minute or two on a CPU for the bundled model. "
                "It runs in the background; other pages stay usable.", icon=":material/play_arrow:")  # fmt: skip
        if st.button("Check the findings on this model", type="primary", key="findings.start"):
            st.session_state[ASKED] = params
            try:
                jobs.start(JOB, check_claims, encoder, corpus=corpus, pairs=pairs, session_results=session,
                           label="Published findings")  # fmt: skip
            except jobs.JobLimitError as exc:
                st.error(plain(str(exc)), icon=":material/error:")
                return None
            st.rerun()
    return table


def page_links(paths: str) -> None:
    """Links to the pages (space-separated paths) that exist in this app, with their titles."""
    from .state import PAGES, ROOT

    labels = {path: (label, icon) for path, label, icon in PAGES}
    shown = [p for p in paths.split() if p in labels and (ROOT / p).is_file()]
    for column, path in zip(st.columns(max(1, len(shown))), shown):
        label, icon = labels[path]
        column.page_link(path, label=f"Explore on '{label}'", icon=icon)
