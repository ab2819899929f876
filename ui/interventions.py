"""Streamlit plumbing of the "Causal tests" page: one way to show any causal test's result (the
``interventions.*`` and ``causal.corpus`` analyses, run through :mod:`ui.runner`), and the
sentence whose [CLS] is patched in when the person typed only one."""

from __future__ import annotations

import streamlit as st

from clsviz.experiments.interventions import REFERENCE_SOURCES

from . import runner
from .text import plain
from .widgets import download_csv

__all__ = ["DEFAULT_SOURCE", "show_result"]

DEFAULT_SOURCE = REFERENCE_SOURCES[0]
"""The patch's source sentence offered first (the one the HTML report patches from)."""


def show_result(result, key: str) -> None:
    """A causal test's result: its notes, the plain sentence of what this model does, the figure
    (with the rule that names a head's role, for the head ablation) and its numbers as CSV, with
    where the words' attention goes beside them for the tests that look at it."""
    for note in result.messages:
        st.caption(plain(note))
    st.info(plain(result.finding), icon=":material/lightbulb:")
    (figure_key,) = result.figure_keys()
    runner.draw(result, figure_key, chart_key=f"{key}.figure", note=result.note)
    kind = result.sweep.kind
    left, right = st.columns(2)
    with left:
        runner.download_table(result, f"causal_{kind}.csv", csv_key=f"{key}.csv")
    attention = result.attention_table()
    if attention is not None:
        with right:
            download_csv(attention, f"causal_{kind}_attention.csv", key=f"{key}.attention_csv",
                         label="Download where the attention goes (CSV)")  # fmt: skip
