"""The classifier pieces of the app: the message for a model without a head, and what such a model
is offered instead - the classifiers saved here (fine-tuned or pretrained in the lab with a
sentence head) and a one-click demo classifier (the sidebar's prediction lives with the sidebar, in
:mod:`ui.state`)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clsviz import Encoder
from clsviz.heads import SUPPORTED_HEADS

from . import runner
from .models import classifier_choices, describe_saved
from .state import use_model
from .text import plain
from .widgets import selectbox

__all__ = ["classifier_offer", "no_head_message"]

DEMO = "demo_classifier"
DEMO_SLOT = "classifier.demo"


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


def classifier_offer(encoder: Encoder, key: str) -> None:
    """For a model without a head: open a classifier saved here, or make the demo classifier of
    ``encoder`` (fine-tuned on the demo corpus's 'sentiment' labels in the background, saved into
    the models folder, then offered in every model list)."""
    saved = classifier_choices()
    if saved:
        st.subheader("Open a classifier saved here")
        left, right = st.columns([4, 1])
        folder = selectbox(left, "Saved classifiers", saved, key=f"{key}.saved", format_func=lambda f: Path(f).name,
                           help="Fine-tuned classifiers in the models folder and lab models with a sentence head.")  # fmt: skip
        if folder is not None:
            st.caption(plain(describe_saved(folder) or folder))
        if right.button("Open it", key=f"{key}.open") and folder is not None:
            use_model(folder)
    st.subheader("Make a demo classifier")
    st.caption(plain(
        f"One click fine-tunes a copy of {encoder.name} on the demo corpus's 'sentiment' labels through [CLS] and "
        "its own classification head (a few minutes on a CPU for the bundled model, in the background; the model in use is never "
        "changed) and saves it in the models folder, where every model list then offers it."
    ))  # fmt: skip
    made = runner.background(DEMO, encoder, button="Make a demo classifier", what="Making the demo classifier",
                             slot=DEMO_SLOT)  # fmt: skip
    if made is None:
        return
    runner.sentences(made)
    if st.button("Open the demo classifier", key=f"{key}.open_demo", type="primary"):
        use_model(str(made.data.folder))
