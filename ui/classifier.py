"""The classifier pieces of the app: the message for a model without a head and the cached lens
of one sentence (the sidebar's prediction lives with the sidebar, in :mod:`ui.state`)."""

from __future__ import annotations

import pandas as pd

from clsviz import Encoder, Trace
from clsviz.heads import SUPPORTED_HEADS, lens_table

from .cache import cached

__all__ = ["cached_lens_table", "no_head_message"]

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
