"""Shared figure helpers: token labels, heatmaps, consistent styling."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from ..tracing import Trace
from .registry import register

__all__ = ["token_labels", "heatmap", "tokens_figure", "safe_text"]

# Sequential scale for weights (0..1) and a diverging one for signed values (cosines).
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"


def safe_text(text: str) -> str:
    """Text for plotly labels and hovers, which render a subset of HTML: escape it so user
    text (and tokens such as ``<b>``) shows literally."""
    return html.escape(str(text), quote=False)


def token_labels(trace: Trace) -> list[str]:
    """Axis labels for a Trace's tokens, made unique by position and escaped: ``"3 cat"``."""
    return [safe_text(f"{i} {tok}") for i, tok in enumerate(trace.tokens)]


def merged(base: dict, extra: dict | None) -> dict:
    """``base`` with ``extra`` merged in, nested dicts key by key (as ``update_layout`` merges)."""
    out = dict(base)
    for key, value in (extra or {}).items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def heatmap(
    z: np.ndarray,
    x: list,
    y: list,
    title: str,
    x_title: str = "",
    y_title: str = "",
    colorbar_title: str = "",
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = SEQUENTIAL,
    decimals: int = 4,
    layout: dict | None = None,
    trace: dict | None = None,
) -> go.Figure:
    """A labelled heatmap; values rounded to ``decimals`` to keep the payload small.

    ``layout`` / ``trace``: more layout and heatmap properties, merged in before the figure is
    built. The figure is made in one construction: each later ``update_layout`` call costs
    plotly about as much as building the whole figure (5-10 ms), which a page rerun pays per figure.
    """
    z = np.round(np.asarray(z, dtype=np.float32), decimals)
    hover = f"{y_title or 'y'}: %{{y}}<br>{x_title or 'x'}: %{{x}}<br>value: %{{z}}<extra></extra>"
    data = dict(type="heatmap", z=z, x=x, y=y, hovertemplate=hover, zmin=zmin, zmax=zmax, colorscale=colorscale,
                colorbar=dict(title=colorbar_title))  # fmt: skip
    base = dict(
        title=title,
        xaxis=dict(title=x_title, type="category"),
        yaxis=dict(title=y_title, type="category", autorange="reversed"),
        margin=dict(l=60, r=20, t=50, b=60),
    )
    return go.Figure(data=[merged(data, trace)], layout=merged(_text_titles(base), _text_titles(layout or {})))


def _text_titles(layout: dict) -> dict:
    """Titles given as plain strings written as ``{"text": ...}`` (what plotly stores), so that a
    later subtitle merges into them."""
    out = dict(layout)
    if isinstance(out.get("title"), str):
        out["title"] = dict(text=out["title"])
    for axis in [k for k in out if k.startswith(("xaxis", "yaxis")) and isinstance(out[k], dict)]:
        if isinstance(out[axis].get("title"), str):
            out[axis] = {**out[axis], "title": dict(text=out[axis]["title"])}
    return out


def tokens_figure(trace: Trace) -> go.Figure:
    """The tokens of a Trace as the model sees them; special tokens highlighted."""
    n = trace.seq_len
    colors = ["#d62728" if s else "#1f77b4" for s in trace.special_mask]
    fig = go.Figure(
        go.Bar(
            x=list(range(n)),
            y=[1] * n,
            marker_color=colors,
            text=[safe_text(t) for t in trace.tokens],
            textposition="inside",
            hovertext=[
                safe_text(f"{i}: {t} ({'special' if s else 'text'})")
                for i, (t, s) in enumerate(zip(trace.tokens, trace.special_mask))
            ],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title=f"{n} tokens (red: added by the tokenizer)",
        yaxis=dict(visible=False),
        xaxis=dict(title="position"),
        height=180,
        margin=dict(l=20, r=20, t=40, b=40),
    )
    return fig


register("overview.tokens", tokens_figure)
