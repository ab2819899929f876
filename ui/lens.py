"""The tuned-lens block the Overview and Classifier pages show below their own content: when is
the sentence vector (or a classifier's prediction) decided? Fitted on the demo corpus as a
background job, once per model, through :mod:`ui.runner`."""

from __future__ import annotations

import streamlit as st

from clsviz import Encoder, demo_corpus

from . import runner

__all__ = ["lens_block"]

_CAPTIONS = {
    "final": "Each layer's [CLS] and mean vector, read as it is and through an affine map fitted on the demo "
    "corpus to predict the last layer (a tuned lens), scored on held-out sentences.",
    "logits": "Each layer's [CLS] and mean vector mapped to the last layer's [CLS] by a map fitted on the demo "
    "corpus, then read by this classifier's own head: how often it already agrees with the model's prediction "
    "on held-out sentences.",
}


def lens_block(encoder: Encoder, target: str, key: str) -> None:
    """A separated block: the ``lens.tuned`` analysis on the demo corpus (``target`` "final" or
    "logits"), started with a button and drawn with its sentences once it has run."""
    st.divider()
    st.subheader("When is the sentence vector decided?")
    st.caption(_CAPTIONS[target])
    texts = list(demo_corpus().texts)
    result = runner.background("lens.tuned", encoder, texts, button="Fit the tuned lens", slot=key,
                               what="The tuned lens", target=target)  # fmt: skip
    if result is not None:
        runner.draw(result, "lens.tuned", chart_key=key, csv="tuned_lens.csv", csv_key=f"{key}.csv")
        runner.sentences(result)
