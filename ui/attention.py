"""Cached derived arrays for the Attention page (keyed on strings, so sliders never re-run the model)."""

from __future__ import annotations

import numpy as np

from clsviz import Trace, figures
from clsviz.attention import AttentionSummary, summarize
from clsviz.mixing import attention_weights

from .cache import cached
from .state import cached_encoder, cached_trace


def _weights(model_name: str, text: str, max_tokens: int, kind: str) -> np.ndarray:
    def compute():
        encoder = cached_encoder(model_name)
        return attention_weights(encoder, cached_trace(encoder, text, max_tokens), kind)

    return cached("attention.weights", (model_name, text, max_tokens, kind), compute)


def _summary(model_name: str, text: str, max_tokens: int, kind: str, include_self: bool) -> AttentionSummary:
    def compute():
        t = cached_trace(cached_encoder(model_name), text, max_tokens)
        return summarize(t, _weights(model_name, text, max_tokens, kind), include_self=include_self, kind=kind)

    return cached("attention.summary", (model_name, text, max_tokens, kind, include_self), compute)


def attention_arrays(trace: Trace, max_tokens: int, kind: str, include_self: bool) -> tuple[np.ndarray, AttentionSummary]:
    """([L, H, T, T] weights of ``kind``, their AttentionSummary) for a cached trace; both cached
    per (model, text, max tokens, options) and shared read-only between sessions."""
    args = (trace.model_name, trace.text, int(max_tokens), kind)
    return _weights(*args), _summary(*args, bool(include_self))


# Figures that do not depend on the block slider are cached too, so a slider move rebuilds
# only the token x token map (plotly figure construction dominates a rerun otherwise).
_SUMMARY_FIGURES = {
    "to_cls": lambda s, head: figures.cls_attention_heatmap(s),
    "entropy": lambda s, head: figures.cls_entropy_heatmap(s),
    "breakdown": figures.attention_breakdown_bars,
    "cls_row": figures.cls_row_heatmap,
    "rollout": lambda s, head: figures.rollout_comparison(s),
}


def summary_figure(
    name: str, trace: Trace, max_tokens: int, kind: str, include_self: bool, head: int | None = None
):
    """A cached Attention-page figure built from the AttentionSummary (never mutate it)."""
    key = (name, trace.model_name, trace.text, int(max_tokens), kind, bool(include_self), head)

    def compute():
        summary = _summary(trace.model_name, trace.text, int(max_tokens), kind, bool(include_self))
        return _SUMMARY_FIGURES[name](summary, head)

    return cached("attention.figure", key, compute)
