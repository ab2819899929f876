"""Small shared widgets: sentence picker, a registered figure with its caption, CSV download."""

from __future__ import annotations

import math
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
    choice = selectbox(st, "Sentence", labels, key=key)
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

    The CSV is written only when the button is clicked (Streamlit's deferred download): encoding
    every table of a page on every rerun was a quarter of a slider move's time. Pass a function
    that returns the table instead of the table to build the table on click too (worth it for
    large tables, e.g. a 512 x 512 attention map).
    """
    make_table = df if callable(df) else (lambda: df)

    def data() -> bytes:
        return make_table().to_csv(index=False).encode("utf-8")

    st.download_button(
        label,
        data,
        file_name=filename,
        mime="text/csv",
        key=key,
        icon=":material/download:",
    )


# --- widgets whose remembered value is checked first ---------------------------------------------
# A value in the session state that the widget would not produce itself (a crafted request, or a
# value left from another corpus or model: a layer past this model's last, an option that is gone)
# makes Streamlit refuse to draw the widget. These wrappers drop such a value first, so the widget
# falls back to its default and the page keeps serving. ``where`` is ``st`` or a column/container.

def _drop_unless(key: str, valid, default=None) -> bool:
    """Drop (or, with ``default``, replace) a remembered value that ``valid`` rejects; True if it did.

    Replacing matters for choice widgets: a dropped value leaves the browser showing the old
    choice (the widget keeps its identity by key), while a value set here is sent to the browser.
    """
    if key in st.session_state:
        try:
            ok = bool(valid(st.session_state[key]))
        except Exception:  # a value of a type the check cannot even compare
            ok = False
        if not ok:
            if default is None:
                del st.session_state[key]
            else:
                st.session_state[key] = default
            return True
    return False


def _choice(key: str, options: list, kwargs: dict) -> None:
    """Check a remembered choice of ``options``; a stale one becomes the widget's default choice."""
    index = kwargs.get("index", 0)
    default = options[index] if options and isinstance(index, int) and 0 <= index < len(options) else None
    if _drop_unless(key, lambda v: v in options, default) and default is not None:
        kwargs.pop("index", None)  # the value now comes from the session state alone


def _number(value, low, high) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def slider(where, label: str, min_value=None, max_value=None, value=None, *, key: str, **kwargs):
    """``where.slider`` (one number) after dropping a remembered value outside [min, max]."""
    _drop_unless(key, lambda v: _number(v, min_value, max_value))
    return where.slider(label, min_value, max_value, value, key=key, **kwargs)


def number_input(where, label: str, min_value=None, max_value=None, value="min", *, key: str, **kwargs):
    """``where.number_input`` after dropping a remembered value outside [min, max]."""
    _drop_unless(key, lambda v: _number(v, min_value, max_value))
    return where.number_input(label, min_value, max_value, value, key=key, **kwargs)


def selectbox(where, label: str, options, *, key: str, **kwargs):
    """``where.selectbox`` after dropping a remembered value that is not one of ``options``."""
    options = list(options)
    _choice(key, options, kwargs)
    return where.selectbox(label, options, key=key, **kwargs)


def radio(where, label: str, options, *, key: str, **kwargs):
    """``where.radio`` after dropping a remembered value that is not one of ``options``."""
    options = list(options)
    _choice(key, options, kwargs)
    return where.radio(label, options, key=key, **kwargs)


def multiselect(where, label: str, options, *, key: str, **kwargs):
    """``where.multiselect`` after dropping a remembered value holding anything not in ``options``."""
    options = list(options)
    _drop_unless(key, lambda v: isinstance(v, (list, tuple)) and all(x in options for x in v))
    return where.multiselect(label, options, key=key, **kwargs)


def toggle(where, label: str, *, key: str, **kwargs):
    """``where.toggle`` after dropping a remembered value that is not True or False."""
    _drop_unless(key, lambda v: isinstance(v, bool))
    return where.toggle(label, key=key, **kwargs)


def checkbox(where, label: str, *, key: str, **kwargs):
    """``where.checkbox`` after dropping a remembered value that is not True or False."""
    _drop_unless(key, lambda v: isinstance(v, bool))
    return where.checkbox(label, key=key, **kwargs)


def text_input(where, label: str, *, key: str, max_chars: int | None = None, **kwargs):
    """``where.text_input`` after dropping a remembered value that is not text (or too long)."""
    _drop_unless(key, lambda v: isinstance(v, str) and (max_chars is None or len(v) <= max_chars))
    return where.text_input(label, key=key, max_chars=max_chars, **kwargs)
