"""Figures for the Attention page: attention to and from [CLS], breakdown, rollout.

Every function takes an :class:`~clsviz.attention.AttentionSummary` (small [L, H] / [L, T]
arrays) or one [T, T] map, never the full [L, H, T, T] stack, so a 512-token input stays
well under a few MB of figure JSON. Values are rounded to 4 decimals; token strings are
HTML-escaped because plotly renders a subset of HTML in labels (``<s>`` would vanish).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..attention import TOKEN_CATEGORIES, AttentionSummary
from ..layers import block_names
from ._common import SEQUENTIAL, heatmap, merged, safe_text
from .registry import register

__all__ = [
    "attention_token_labels",
    "cls_attention_heatmap",
    "cls_entropy_heatmap",
    "token_attention_heatmap",
    "attention_breakdown_bars",
    "cls_row_heatmap",
    "rollout_comparison",
]

_DECIMALS = 4
_CATEGORY_COLORS = dict(zip(TOKEN_CATEGORIES, ("#d62728", "#ff7f0e", "#2ca02c", "#1f77b4"), strict=True))
_METHOD_WORDS = {"attention": "attention weights", "value_norm": "value-norm weighted: share of ‖αf(x)‖"}


def attention_token_labels(tokens: Sequence[str]) -> list[str]:
    """Unique, HTML-safe axis labels for tokens: ``"3 cat"`` (as ``token_labels`` for a Trace)."""
    return [safe_text(f"{i} {tok}") for i, tok in enumerate(tokens)]


def _head_labels(num_heads: int) -> list[str]:
    return [str(h) for h in range(1, num_heads + 1)]


def _what(summary: AttentionSummary) -> str:
    return _METHOD_WORDS.get(summary.method, summary.method)


def _head_name(head: int | None) -> str:
    return "mean over heads" if head is None else f"head {head + 1}"


def _titled(title: str, subtitle: str, top: int = 90) -> dict:
    """Layout: a short title with the details (which weights, which head) in a subtitle under it."""
    return dict(title=dict(text=title, subtitle=dict(text=subtitle)), margin=dict(t=top))


def _block_head_map(summary: AttentionSummary, values, title: str, colorbar: str, customdata, hover: str,
                    subtitle: str, **style) -> go.Figure:
    """Blocks x heads heatmap of ``values`` [L, H], hover showing ``hover`` with ``customdata``."""
    labels = dict(x=_head_labels(summary.num_heads), y=block_names(summary.num_layers))
    trace = dict(customdata=np.round(customdata, _DECIMALS), hovertemplate=hover + "<extra></extra>")
    return heatmap(values, **labels, title=title, x_title="head", y_title="block", colorbar_title=colorbar,
                   zmin=0.0, decimals=_DECIMALS, layout=_titled(title, subtitle), trace=trace, **style)


def cls_attention_heatmap(summary: AttentionSummary) -> go.Figure:
    """Blocks x heads heatmap of the mean weight every query puts on [CLS].

    Hover also shows [CLS]'s weight on itself, which ``include_self=False`` leaves out.
    """
    who = "all queries" if summary.include_self else "queries other than [CLS]"
    hover = "block %{y}, head %{x}<br>mean weight on [CLS]: %{z}<br>[CLS] on itself: %{customdata}"
    return _block_head_map(summary, summary.to_cls, "Attention to [CLS]", "to [CLS]", summary.cls_self, hover,
                           f"{_what(summary)}; mean over {who}")


def cls_entropy_heatmap(summary: AttentionSummary) -> go.Figure:
    """Blocks x heads heatmap of the entropy of the [CLS] row (0 = focused, log T = uniform)."""
    relative = summary.entropy / summary.max_entropy if summary.max_entropy > 0 else summary.entropy * 0
    hover = "block %{y}, head %{x}<br>entropy: %{z} nats<br>of the maximum: %{customdata:.0%}"
    subtitle = f"{_what(summary)}; nats, uniform over {summary.seq_len} tokens = {summary.max_entropy:.2f}"
    return _block_head_map(summary, summary.entropy, "Entropy of what [CLS] reads", "entropy", relative, hover,
                           subtitle, zmax=summary.max_entropy, colorscale="Cividis")


def token_attention_heatmap(
    matrix: np.ndarray,
    tokens: Sequence[str],
    block: int,
    head: int | None = None,
    method: str = "attention",
) -> go.Figure:
    """Token x token heatmap of one [T, T] map (row = query, column = key).

    ``block`` is the block number (1..L, as shown); ``head`` 0-based or None for the mean over heads.
    """
    m = np.asarray(matrix)
    n = len(tokens)
    if m.shape != (n, n):
        raise ValueError(f"matrix: expected [{n}, {n}], got {list(m.shape)}")
    labels = attention_token_labels(tokens)
    title = f"Block {block}, {_head_name(head)}"
    layout = dict(height=min(900, 280 + 14 * n), **_titled(title, f"{_METHOD_WORDS.get(method, method)}; row reads column"))
    return heatmap(m, x=labels, y=labels, title=title, x_title="key (attended to)", y_title="query (attending)",
                   colorbar_title="weight", zmin=0.0, decimals=_DECIMALS, layout=layout)


def attention_breakdown_bars(summary: AttentionSummary, head: int | None = None) -> go.Figure:
    """Stacked bars per block: the share of attention going to [CLS], [SEP], punctuation, other.

    Mean over query tokens, and over heads unless ``head`` (0-based) is given.
    """
    shares = summary.breakdown.mean(axis=1) if head is None else summary.breakdown[:, head]
    counts = np.bincount(summary.categories, minlength=len(TOKEN_CATEGORIES))
    layers = block_names(summary.num_layers)
    bars = [
        dict(
            type="bar",
            x=layers,
            y=np.round(shares[:, c], _DECIMALS),
            name=f"{name} ({counts[c]} token{'s' if counts[c] != 1 else ''})",
            marker=dict(color=_CATEGORY_COLORS[name]),
            hovertemplate=f"block %{{x}}<br>{name}: %{{y:.1%}}<extra></extra>",
        )
        for c, name in enumerate(TOKEN_CATEGORIES)
    ]
    layout = dict(
        barmode="stack",
        xaxis=dict(title=dict(text="block"), type="category"),
        yaxis=dict(title=dict(text="share"), range=[0, 1], tickformat=".0%"),
        margin=dict(l=60, r=20, t=80, b=60),
    )
    titled = _titled("Where attention goes, per block", f"{_what(summary)}; {_head_name(head)}, mean over queries")
    return go.Figure(data=bars, layout=merged(layout, titled))


def cls_row_heatmap(summary: AttentionSummary, head: int | None = None) -> go.Figure:
    """Blocks x tokens heatmap of the [CLS] row: what [CLS] reads in each block."""
    return heatmap(summary.cls_row(head), x=attention_token_labels(summary.tokens),
                   y=block_names(summary.num_layers), title="What [CLS] reads", x_title="token", y_title="block",
                   colorbar_title="weight", zmin=0.0, decimals=_DECIMALS,
                   layout=_titled("What [CLS] reads", f"{_what(summary)}; {_head_name(head)}"))  # fmt: skip


_ROLLOUT_TITLES = ("raw: this block only", "rollout: through all blocks so far")


@functools.cache
def _side_by_side_layout() -> dict:
    """The layout ``make_subplots`` gives two side-by-side panels sharing the y axis (domains,
    subplot titles), worked out once: building it costs more than the rest of the figure."""
    layout = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.1,
                           subplot_titles=_ROLLOUT_TITLES).to_dict()["layout"]  # fmt: skip
    layout.pop("template", None)  # the current default template applies, as to any new figure
    return layout


def rollout_comparison(summary: AttentionSummary) -> go.Figure:
    """Two blocks x tokens heatmaps side by side: the raw [CLS] row (mean over heads) and the
    [CLS] row of the cumulative attention rollout up to each block."""
    labels = attention_token_labels(summary.tokens)
    layers = block_names(summary.num_layers)
    panels = (
        (summary.cls_row(None), "coloraxis", 0.44, "raw"),
        (summary.rollout_cls, "coloraxis2", 1.0, "rollout"),
    )
    skeleton = copy.deepcopy(_side_by_side_layout())
    data, layout = [], {}
    for col, (values, axis, bar_x, name) in enumerate(panels, start=1):
        z = np.round(np.asarray(values, dtype=np.float32), _DECIMALS)
        hover = f"{name}<br>block %{{y}}<br>token %{{x}}<br>weight: %{{z}}<extra></extra>"
        suffix = "" if col == 1 else str(col)
        data.append(dict(type="heatmap", z=z, x=labels, y=layers, coloraxis=axis, name=name, hovertemplate=hover,
                         xaxis=f"x{suffix}", yaxis=f"y{suffix}"))  # fmt: skip
        cmax = float(z.max()) if z.size and z.max() > 0 else 1.0
        layout[axis] = dict(colorscale=SEQUENTIAL, cmin=0.0, cmax=cmax,
                            colorbar=dict(title=dict(text=name), x=bar_x, len=0.9))  # fmt: skip
        layout[f"xaxis{suffix}"] = dict(type="category", title=dict(text="token"))
        layout[f"yaxis{suffix}"] = dict(type="category", autorange="reversed")
    layout["yaxis"]["title"] = dict(text="block")
    for note in skeleton.get("annotations", []):
        note["yshift"] = 6  # subplot titles clear of the subtitle
    layout["margin"] = dict(l=60, r=20, t=80, b=60)
    subtitle = f"{_what(summary)}, mean over heads; rollout after Abnar & Zuidema (2020)"
    layout = merged(layout, _titled("[CLS] row: one block vs rollout through the blocks", subtitle, top=120))
    return go.Figure(data=data, layout=merged(skeleton, layout))


register("attention.to_cls", cls_attention_heatmap)
register("attention.entropy", cls_entropy_heatmap)
register("attention.matrix", token_attention_heatmap)
register("attention.breakdown", attention_breakdown_bars)
register("attention.breakdown_value_norm", attention_breakdown_bars)
register("attention.cls_row", cls_row_heatmap)
register("attention.rollout", rollout_comparison)
