"""Small shared widgets: sentence picker, figure display, CSV download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clsviz import Trace


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sentence_picker(traces: list[Trace], key: str) -> Trace:
    """Pick one of the traced sentences (shown as plain text); returns its Trace."""
    if len(traces) == 1:
        return traces[0]
    index = st.selectbox(
        "Sentence",
        range(len(traces)),
        format_func=lambda i: f"{i + 1}. {_short(traces[i].text)}",
        key=key,
    )
    return traces[index or 0]


def show_figure(fig, key: str, caption: str | None = None) -> None:
    """Draw a plotly figure full width, with an optional one-line caption under it."""
    st.plotly_chart(fig, width="stretch", key=key)
    if caption:
        st.caption(caption)


def download_csv(df: pd.DataFrame, filename: str, key: str, label: str = "Download the numbers (CSV)") -> None:
    """A download button for the table behind a figure."""
    st.download_button(
        label,
        df.to_csv(index=False).encode("utf-8"),
        file_name=filename,
        mime="text/csv",
        key=key,
        icon=":material/download:",
    )
