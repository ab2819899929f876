"""Cached derived arrays for the Attention page (keyed on strings, so sliders never re-run the model)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from clsviz import Trace, figures
from clsviz.attention import AttentionSummary, attention_weights, summarize

from .state import cached_encoder, cached_trace


@st.cache_resource(show_spinner=False, max_entries=8)
def _weights(model_name: str, text: str, max_tokens: int, kind: str) -> np.ndarray:
    encoder = cached_encoder(model_name)
    return attention_weights(encoder, cached_trace(encoder, text, max_tokens), kind)


@st.cache_resource(show_spinner=False, max_entries=64)
def _summary(model_name: str, text: str, max_tokens: int, kind: str, include_self: bool) -> AttentionSummary:
    encoder = cached_encoder(model_name)
    t = cached_trace(encoder, text, max_tokens)
    return summarize(t, _weights(model_name, text, max_tokens, kind), include_self=include_self, kind=kind)


def attention_arrays(trace: Trace, max_tokens: int, kind: str, include_self: bool) -> tuple[np.ndarray, AttentionSummary]:
    """([L, H, T, T] weights of ``kind``, their AttentionSummary) for a cached trace; both cached
    per (model, text, max tokens, options) and shared read-only between sessions."""
    args = (trace.model_name, trace.text, int(max_tokens), kind)
    return _weights(*args), _summary(*args, bool(include_self))


# Figures that do not depend on the layer slider are cached too, so a slider move rebuilds
# only the token x token map (plotly figure construction dominates a rerun otherwise).
_SUMMARY_FIGURES = {
    "to_cls": lambda s, head: figures.cls_attention_heatmap(s),
    "entropy": lambda s, head: figures.cls_entropy_heatmap(s),
    "breakdown": figures.attention_breakdown_bars,
    "cls_row": figures.cls_row_heatmap,
    "rollout": lambda s, head: figures.rollout_comparison(s),
}


@st.cache_resource(show_spinner=False, max_entries=256)
def _summary_figure(
    name: str, model_name: str, text: str, max_tokens: int, kind: str, include_self: bool, head: int | None
):
    summary = _summary(model_name, text, max_tokens, kind, include_self)
    return _SUMMARY_FIGURES[name](summary, head)


def summary_figure(
    name: str, trace: Trace, max_tokens: int, kind: str, include_self: bool, head: int | None = None
):
    """A cached Attention-page figure built from the AttentionSummary (never mutate it)."""
    return _summary_figure(name, trace.model_name, trace.text, int(max_tokens), kind, bool(include_self), head)
