"""The classifier pieces of the app: the sidebar's prediction for each typed sentence, the
message for a model without a head, and the cached lens of one sentence."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clsviz import DEFAULT_MODEL, Encoder, Trace
from clsviz.heads import SUPPORTED_HEADS, lens_table, predict

from . import holds
from .cache import cached
from .text import plain

__all__ = ["cached_lens_table", "no_head_message", "sidebar_prediction"]

# The sidebar lists at most this many labels per sentence (the most probable first).
TOP_LABELS = 3


def _sidebar_encoder() -> Encoder | None:
    """The encoder the page will use, loaded through the shared loader; None when it fails (the
    page itself then says why and falls back to the bundled model, which has no head)."""
    from . import state

    name = state._selected_model_name()
    if name in st.session_state.get(state.FAILED, {}):
        name = DEFAULT_MODEL
    holds.note_main_model(name)
    try:
        with st.spinner(f"Loading {name}…"):
            return state.cached_encoder(name)
    except Exception:
        return None


def sidebar_prediction() -> None:
    """In the sidebar: the model's predicted label and probabilities for each typed sentence,
    when the model has a classification head (nothing otherwise). Never breaks the sidebar."""
    from . import state

    encoder = _sidebar_encoder()
    if encoder is None or encoder.classifier is None:
        return
    sentences = state.current_sentences()[: state.MAX_SENTENCES]
    if not sentences:
        return
    with st.expander(f"Prediction ({encoder.info.num_labels} labels)", expanded=True):
        try:
            for i, text in enumerate(sentences, start=1):
                try:
                    t = state.cached_trace(encoder, text, state.current_max_tokens())
                except ValueError:
                    continue  # the page warns about a sentence that cannot be traced
                # "1\." keeps Markdown from turning the lines into a numbered list.
                st.caption(f"{i}\\. " + plain(predict(encoder, t).summary(TOP_LABELS)))
        except Exception as exc:  # a prediction must never take the sidebar down
            st.caption(plain(f"The prediction could not be computed ({type(exc).__name__}: {exc})."))


def no_head_message(encoder: Encoder) -> str:
    """Why there is no classifier view for ``encoder`` and how to get one (plain text)."""
    notes = " ".join(encoder.info.notes)
    return (
        f"'{encoder.name}' has no classification head, so there is no prediction to read through its layers. "
        f"Load a fine-tuned classifier instead: in the sidebar pick 'Other (hub id or local folder)…' and give "
        f"the folder that save_pretrained() wrote for a *ForSequenceClassification model (safetensors weights, "
        f"tokenizer and labels), or a hub id of one where this machine can reach the hub. The fine-tuning "
        f"experiment on the 'Could any token do?' page can save its fine-tuned copy as such a folder. "
        f"clsviz reads {SUPPORTED_HEADS}." + (f" About this checkpoint: {notes}" if notes else "")
    )


def cached_lens_table(encoder: Encoder, trace: Trace) -> pd.DataFrame:
    """:func:`clsviz.heads.lens_table` of one traced sentence, once per (model, text, length)."""
    key = (encoder.name, trace.text, trace.seq_len, trace.truncated)
    return cached("classifier.lens", key, lambda: lens_table(encoder, trace))
