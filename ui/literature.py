"""The Findings page's pieces: the check of every published finding (the ``findings`` analysis,
a background job through :mod:`ui.runner`), a fine-tuned copy of the model to compare with, the
results other pages of this session hold (described beside a row, never used for a verdict),
and links to the pages where each finding is explored."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clsviz import Corpus, Encoder, demo_corpus
from clsviz.literature import load_claims, with_elsewhere

from . import jobs, runner
from .models import copies_of
from .state import PAGES, ROOT, hold_second_model
from .text import plain

__all__ = ["JOB", "claims_preview", "finetuned_picker", "findings", "interval_column", "is_demo", "page_links",
           "session_results", "with_session"]

JOB = "analysis.findings"
"""The job slot of the check (the runner's, for the ``findings`` analysis)."""
NONE = "(none)"

# Where other pages keep their last result in the session: key of clsviz.literature.SESSION_RESULTS
# -> a function reading it (None when there is none). One line per page that has one.
_SOURCES = {
    "probe": lambda: _stored("any_token.result", 1),
    "finetune": lambda: _job_result("how_it_learns.finetune") or _job_result("any_token.finetune"),
    "comparison": lambda: _stored("compare.cka.result", 1),
    "scoreboard": lambda: _job_result("analysis.mixing.scoreboard"),  # 'What flows into [CLS]?'
    "massive": lambda: _job_result("causal.massive"),  # 'Causal tests', the massive-dimension sweep
}


def _stored(key: str, index: int):
    value = st.session_state.get(key)
    return value[index] if isinstance(value, tuple) and len(value) > index else None


def _job_result(key: str):
    job = jobs.get(key)
    result = job.result if job is not None and job.status == jobs.DONE else None
    return getattr(result, "data", result)  # an analysis result carries the experiment's own object


def session_results() -> dict:
    """This session's last results on other pages, under the keys of
    :data:`clsviz.literature.SESSION_RESULTS` (only those that exist): described beside the rows."""
    found = {}
    for key, read in _SOURCES.items():
        try:
            value = read()
        except Exception:  # a page's state of another shape must not break this page
            value = None
        if value is not None:
            found[key] = value
    return found


def is_demo(corpus: Corpus) -> bool:
    """True when ``corpus`` is the shipped demo corpus."""
    return corpus.content_hash == demo_corpus().content_hash


def claims_preview() -> None:
    """The findings that a check measures, one line each."""
    for claim in load_claims():
        st.markdown(plain(f"**{claim.source}** ({claim.model}): {claim.claim}"))


def finetuned_picker(encoder: Encoder, key: str) -> Encoder | None:
    """A choice of a fine-tuned copy of ``encoder`` saved here (on 'How does [CLS] learn?', or the
    demo classifier; :func:`ui.models.copies_of`) for the fine-tuning finding, loaded as this
    session's second model; None for none."""
    copies = copies_of(encoder.name)
    if not copies:
        st.caption("No fine-tuned copy of this model is saved yet: fine-tune one and save it on 'How does [CLS] "
                   "learn?' to check where fine-tuning writes.")  # fmt: skip
        hold_second_model(None)
        return None
    picked = st.selectbox("A fine-tuned copy of this model (for 'fine-tuning changes the top layers')",
                          [NONE, *copies], key=key)  # fmt: skip
    if picked == NONE:
        hold_second_model(None)
        return None
    try:
        return hold_second_model(picked)[0]
    except Exception as exc:  # a folder that no longer loads: said, and the check runs without it
        st.error(plain(f"The fine-tuned copy could not be loaded: {exc}"), icon=":material/error:")
        return None


def findings(encoder: Encoder, corpus: Corpus | None, pairs: pd.DataFrame | None, second: Encoder | None):
    """The ``findings`` analysis for these inputs when someone computed it, else a button that
    starts it as a background job (its place in the queue, progress and Cancel are shown)."""
    return runner.background(
        "findings", encoder, corpus, pairs, second, button="Check the findings on this model",
        what="Checking the published findings",
        hint="Each finding is measured on this model on fixed, stated samples: a few minutes on a CPU for the "
             "bundled model. It runs in the background; other pages stay usable.",
    )  # fmt: skip


def with_session(result, session: dict, encoder: Encoder) -> pd.DataFrame:
    """The result's table with its ``elsewhere`` column rewritten from this session's results now."""
    return with_elsewhere(result.table(), session, encoder.name)


def interval_column(table: pd.DataFrame) -> list[str]:
    """Each row's 95% interval as text (``"0.41–0.52"``), "–" where nothing was measured."""
    low, high = pd.to_numeric(table["low"], errors="coerce"), pd.to_numeric(table["high"], errors="coerce")
    return [f"{a:.3g}–{b:.3g}" if pd.notna(a) and pd.notna(b) else "–" for a, b in zip(low, high)]


def page_links(paths: str) -> None:
    """Links to the pages (space-separated paths) that exist in this app, with their titles."""
    labels = {path: (label, icon) for path, label, icon in PAGES}
    shown = [p for p in paths.split() if p in labels and (ROOT / p).is_file()]
    for column, path in zip(st.columns(max(1, len(shown))), shown):
        label, icon = labels[path]
        column.page_link(path, label=f"Explore on '{label}'", icon=icon)
