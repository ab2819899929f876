"""Small shared widgets: sentence picker, a registered figure with its caption, CSV download."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from clsviz import Trace
from clsviz.figures import figure_spec


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sentence_picker(traces: list[Trace], key: str) -> Trace:
    """Pick one of the traced sentences (shown as plain text); returns its Trace."""
    if len(traces) == 1:
        return traces[0]
    # The labels themselves are the options: with bare indexes the browser kept showing the
    # old label of the selected index after the sentences changed.
    labels = [f"{i + 1}. {_short(t.text)}" for i, t in enumerate(traces)]
    choice = st.selectbox("Sentence", labels, key=key)
    return traces[labels.index(choice)] if choice in labels else traces[0]


def show(figure_key: str, fig, key: str | None = None, note: str | None = None, caption: bool = True) -> None:
    """Draw a registered figure full width with its caption (from :mod:`clsviz.figures.registry`);
    ``note`` adds what is specific to this drawing. ``key`` defaults to the figure key. With
    ``caption=False`` (figures drawn side by side) call :func:`figure_caption` once after them."""
    st.plotly_chart(fig, width="stretch", key=key or figure_key)
    if caption:
        figure_caption(figure_key, note)


def figure_caption(figure_key: str, note: str | None = None) -> None:
    """The registered caption of ``figure_key`` (plus ``note``) as a caption line."""
    st.caption(figure_spec(figure_key).caption + (f" {note}" if note else ""))


def download_csv(
    df: pd.DataFrame | Callable[[], pd.DataFrame],
    filename: str,
    key: str,
    label: str = "Download the numbers (CSV)",
) -> None:
    """A download button for the table behind a figure.

    Pass a function that returns the table instead of the table to build the CSV only when
    the button is clicked (worth it for large tables, e.g. a 512 x 512 attention map).
    """
    if callable(df):
        make_table = df

        def data() -> bytes:
            return make_table().to_csv(index=False).encode("utf-8")

    else:
        data = df.to_csv(index=False).encode("utf-8")
    st.download_button(
        label,
        data,
        file_name=filename,
        mime="text/csv",
        key=key,
        icon=":material/download:",
    )
