"""Streamlit helpers of the "How does [CLS] learn?" page: the cached gradient flow of a typed
sentence, and saving the fine-tuned classifier into the models folder."""

from __future__ import annotations

import streamlit as st

from clsviz import Encoder
from clsviz.catalog import models_dir
from clsviz.experiments.dynamics import gradient_flows
from clsviz.experiments.learners import check_folder_name

from .cache import cached
from .text import plain

__all__ = ["cached_flows", "save_classifier"]


def cached_flows(encoder: Encoder, text: str, max_tokens: int) -> dict | None:
    """[CLS] and mean gradient flow of ``text`` (cached per model, text and length), or None
    after an error message (a family whose blocks clsviz cannot run, a text with no tokens)."""
    key = (encoder.name, text, int(max_tokens))
    try:
        return cached("gradient_flow", key, lambda: gradient_flows(encoder, text, max_length=int(max_tokens)))
    except ValueError as exc:
        st.error(plain(f"The gradient flow cannot be computed here: {exc}"), icon=":material/error:")
        return None


def save_classifier(result, name: str) -> None:
    """Save ``result``'s fine-tuned classifier as ``models_dir() / name``, saying where or why not."""
    try:
        root = models_dir()
        root.mkdir(parents=True, exist_ok=True)
        folder = result.save_classifier(check_folder_name(name, root))
    except (ValueError, OSError) as exc:
        st.error(plain(f"Not saved: {exc}"), icon=":material/error:")
        return
    st.success(
        plain(f"Saved to {folder}. Load it as a model by that folder (it keeps its classification head)."),
        icon=":material/save:",
    )
