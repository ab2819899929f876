"""Figures for "What flows into [CLS]?": context mixing, attributions, the faithfulness scoreboard.

Mixing figures take :class:`~clsviz.mixing.ContextMixing` results and draw one measure beside
raw attention, so the difference shows at a glance; attribution figures colour the tokens
themselves (as plotly text, HTML-escaped - never markup); scoreboard figures take a
:class:`~clsviz.faithfulness.Scoreboard`. Values are rounded to 4 significant decimals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..faithfulness import MEASURE_NAMES, Scoreboard
from ..layers import block_names, block_row
from ..mixing import BARELY_MIXES, METHOD_NAMES, ContextMixing
from ._common import DIVERGING, SEQUENTIAL, safe_text
from .registry import register

__all__ = [
    "attribution_tokens_figure",
    "faithfulness_curves_figure",
    "faithfulness_ranking_figure",
    "mixing_block_figure",
    "mixing_cls_figure",
    "mixing_compare_figure",
    "mixing_raw_figure",
    "mixing_rollout_figure",
]

_FLOAT32_RESOLUTION = float(np.finfo(np.float32).eps)


def _labels(tokens: Sequence[str]) -> list[str]:
    return [safe_text(f"{i} {tok}") for i, tok in enumerate(tokens)]


def _titled(fig: go.Figure, title: str, subtitle: str, top: int = 110) -> go.Figure:
    fig.update_layout(title=dict(text=title, subtitle=dict(text=safe_text(subtitle))), margin=dict(l=60, r=20, t=top, b=60))
    return fig


def _pair(panels, x, y, y_title: str, what: str) -> go.Figure:
    """Heatmaps side by side, one colour scale each: ``panels`` = [(name, z [rows, cols])]."""
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.12,
                        subplot_titles=[safe_text(name) for name, _ in panels])  # fmt: skip
    for col, (name, values) in enumerate(panels, start=1):
        z = np.round(np.asarray(values, dtype=np.float64), 4)
        axis = "coloraxis" if col == 1 else f"coloraxis{col}"
        hover = f"{safe_text(name)}<br>{y_title} %{{y}}<br>token %{{x}}<br>{what}: %{{z}}<extra></extra>"
        fig.add_trace(go.Heatmap(z=z, x=x, y=y, coloraxis=axis, hovertemplate=hover), row=1, col=col)
        cmax = float(z.max()) if z.size and z.max() > 0 else 1.0
        right = col / len(panels) - (0.06 if col < len(panels) else 0.0)
        fig.update_layout({axis: dict(colorscale=SEQUENTIAL, cmin=0.0, cmax=cmax,
                                      colorbar=dict(title=what, x=right, len=0.9))})  # fmt: skip
    fig.update_xaxes(type="category", title_text="contributing token")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    fig.update_annotations(yshift=6)
    return fig


def _check_pair(mix: ContextMixing, attention: ContextMixing) -> None:
    if attention.method != "attention" or attention.tokens != mix.tokens:
        raise ValueError("Pass the raw-attention ContextMixing of the same trace as the second argument.")


def mixing_cls_figure(mix: ContextMixing, attention: ContextMixing) -> go.Figure:
    """Blocks x tokens: what [CLS] takes in at each block, raw attention (left) beside ``mix``."""
    _check_pair(mix, attention)
    panels = [("raw attention", attention.row()), (METHOD_NAMES[mix.method], mix.row())]
    fig = _pair(panels, _labels(mix.tokens), block_names(mix.num_layers), "block", "share")
    return _titled(fig, "What [CLS] takes in, block by block",
                   f"{METHOD_NAMES[mix.method]} beside raw attention; each row sums to 1")  # fmt: skip


def mixing_rollout_figure(mix: ContextMixing, attention: ContextMixing) -> go.Figure:
    """Blocks x input tokens: the [CLS] row of the rollout after each block, raw attention's
    (0.5 A + 0.5 I) beside ``mix``'s."""
    _check_pair(mix, attention)
    panels = [("attention rollout", attention.rollout()[:, mix.position()]),
              (f"{METHOD_NAMES[mix.method]} rollout", mix.rollout()[:, mix.position()])]  # fmt: skip
    fig = _pair(panels, _labels(mix.tokens), block_names(mix.num_layers), "after block", "share")
    return _titled(fig, "What has reached [CLS] through the blocks", "each block's matrix chained with those below it")


def mixing_block_figure(mix: ContextMixing, attention: ContextMixing, block: int) -> go.Figure:
    """Token x token map of one block (row = receiving token): raw attention beside ``mix``."""
    _check_pair(mix, attention)
    b = int(block)
    if not 1 <= b <= mix.num_layers:
        raise ValueError(f"block {block} is outside 1..{mix.num_layers}")
    labels = _labels(mix.tokens)
    panels = [("raw attention", attention.matrix[block_row(b)]), (METHOD_NAMES[mix.method], mix.matrix[block_row(b)])]
    fig = _pair(panels, labels, labels, "receiving token", "share")
    return _titled(fig, f"Block {b}, token by token", "row = the token whose output is written; column = the token read")


def mixing_raw_figure(mix: ContextMixing) -> go.Figure:
    """Per block, the largest raw score of another token in the [CLS] row (log scale): how
    strongly anything mixes into [CLS] before rows are normalised."""
    magnitude = np.asarray(mix.raw_magnitude(), dtype=np.float64)
    blocks = block_names(mix.num_layers)
    barely = mix.barely_mixes()
    colors = ["#d62728" if b else "#1f77b4" for b in barely]
    shown = np.where(magnitude > 0, magnitude, np.nan)
    fig = go.Figure(go.Bar(x=blocks, y=shown, marker_color=colors,
                           hovertemplate="block %{x}<br>largest raw score: %{y:.3e}<extra></extra>"))  # fmt: skip
    # One labelled tick per power of ten: plotly's default labels the minor ticks too ("2, 10, 5, 2, 1, ...").
    fig.update_yaxes(type="log", dtick=1, exponentformat="power", showexponent="all", title_text=safe_text(mix.raw_units))
    fig.update_xaxes(type="category", title_text="block")
    if mix.method == "value_zeroing":
        fig.add_hline(y=BARELY_MIXES, line_dash="dash", line_color="#d62728",
                      annotation_text="barely mixes (1 − cos < 1e-5)")  # fmt: skip
        fig.add_hline(y=_FLOAT32_RESOLUTION, line_dash="dot", line_color="#7f7f7f",
                      annotation_text="float32 resolution", annotation_position="bottom right")  # fmt: skip
    return _titled(fig, "How strongly other tokens mix into [CLS]",
                   f"{METHOD_NAMES[mix.method]}: largest raw score from another token, before normalising", top=90)  # fmt: skip


def mixing_compare_figure(mixes: Sequence[ContextMixing]) -> go.Figure:
    """Measures x tokens: the [CLS] row of each measure's rollout after the last block."""
    if not mixes:
        raise ValueError("mixing_compare_figure needs at least one ContextMixing")
    tokens = mixes[0].tokens
    rows = np.stack([m.rollout()[-1, m.position()] for m in mixes])
    names = [safe_text(METHOD_NAMES[m.method]) for m in mixes]
    hover = "%{y}<br>token %{x}<br>share: %{z}<extra></extra>"
    fig = go.Figure(go.Heatmap(z=np.round(rows, 4), x=_labels(tokens), y=names, colorscale=SEQUENTIAL, zmin=0.0,
                               hovertemplate=hover, colorbar=dict(title="share")))  # fmt: skip
    fig.update_xaxes(type="category", title_text="input token")
    fig.update_yaxes(type="category", autorange="reversed", title_text="measure")
    return _titled(fig, "What reached [CLS] by the last block, measure by measure",
                   "the [CLS] row of each measure's rollout", top=90)  # fmt: skip


def attribution_tokens_figure(attributions: Sequence) -> go.Figure:
    """The tokens themselves, one row per attribution (e.g. [CLS] vs mean pooling), coloured by
    score scaled to the row's largest |score| (red = raises the target, blue = lowers it).
    Tokens are plotly text, escaped: a token such as ``<b>`` shows literally."""
    if not attributions:
        raise ValueError("attribution_tokens_figure needs at least one Attribution")
    tokens = attributions[0].tokens
    scores = np.stack([np.asarray(a.scores, dtype=np.float64) for a in attributions])
    peak = np.abs(scores).max(axis=1, keepdims=True)
    scaled = np.divide(scores, peak, out=np.zeros_like(scores), where=peak > 0)
    names = [safe_text(f"{a.pooling} pooling") for a in attributions]
    text = [[safe_text(tok) for tok in a.tokens] for a in attributions]
    custom = np.round(scores, 5)
    fig = go.Figure(
        go.Heatmap(z=np.round(scaled, 4), x=list(range(len(tokens))), y=names, text=text, texttemplate="%{text}",
                   customdata=custom, colorscale=DIVERGING, zmin=-1.0, zmax=1.0, xgap=2, ygap=6,
                   colorbar=dict(title="score / max |score|"),
                   hovertemplate="%{y}<br>%{text}<br>score: %{customdata}<extra></extra>")
    )  # fmt: skip
    fig.update_xaxes(title_text="position", type="category", showgrid=False)
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False)
    fig.update_layout(height=170 + 60 * len(attributions))
    first = attributions[0]
    return _titled(fig, "Which words the target depends on", f"{first.method.replace('_', ' ')}; target: {first.target}", top=90)


def faithfulness_curves_figure(board: Scoreboard) -> go.Figure:
    """Deletion curves: the target's drop ``f(x) - D(k)`` against the share of tokens removed,
    averaged over the texts (each text interpolated onto 10 steps), one line per measure, with
    each measure's perturbation in its hover text and legend (occlusion scores tokens with the
    curve's own perturbation; random is the mean of many shuffles)."""
    grid = np.linspace(0.1, 1.0, 10)
    fig = go.Figure()
    perturbations = getattr(board, "perturbations", {}) or {}
    for measure, part in board.curves.groupby("measure", sort=False):
        drops = [np.interp(grid, g["fraction"], g["full"] - g["deleted"]) for _, g in part.groupby("text_index")]
        dash = "dot" if measure == "random" else "solid"
        said = safe_text(perturbations.get(measure, ""))
        tag = {"occlusion": " · scored by the curve's own [MASK]", "integrated_gradients": " · path from [PAD]",
               "random": " · mean of shuffles"}.get(measure, "")  # fmt: skip
        fig.add_trace(go.Scatter(x=grid, y=np.round(np.mean(drops, axis=0), 5), mode="lines+markers",
                                 name=safe_text(MEASURE_NAMES[measure]) + tag, line=dict(dash=dash),
                                 hovertemplate=f"{safe_text(MEASURE_NAMES[measure])}<br>%{{x:.0%}} removed: "
                                               f"%{{y:.4f}}<br>{said}<extra></extra>"))  # fmt: skip
    fig.update_xaxes(title_text="share of content tokens removed (highest-ranked first)", tickformat=".0%")
    fig.update_yaxes(title_text="drop of the target f(x) − D(k)")
    return _titled(fig, "Deletion curves: remove the top-ranked tokens first",
                   f"target: {board.target}; every curve removes tokens by the mask token; a steeper early rise = a "
                   "more faithful ranking", top=90)  # fmt: skip


def faithfulness_ranking_figure(board: Scoreboard) -> go.Figure:
    """AOPC (with its 95% interval over the texts), comprehensiveness and sufficiency per measure
    (means over the texts), best AOPC on top; measures left out (no signal) are not drawn."""
    ranking = board.ranking()
    names = [safe_text(n) for n in ranking["name"]]
    fig = go.Figure()
    for column, color in (("aopc", "#1f77b4"), ("comprehensiveness", "#2ca02c"), ("sufficiency", "#ff7f0e")):
        errors = None
        if column == "aopc" and "aopc_low" in ranking and ranking["aopc_low"].notna().any():
            value = ranking["aopc"].to_numpy(dtype=float)
            errors = dict(type="data", array=np.round(np.nan_to_num(ranking["aopc_high"].to_numpy(float) - value), 5),
                          arrayminus=np.round(np.nan_to_num(value - ranking["aopc_low"].to_numpy(float)), 5))
        fig.add_trace(go.Bar(y=names, x=np.round(ranking[column], 5), name=column, orientation="h",
                             marker_color=color, error_x=errors))  # fmt: skip
    fig.update_layout(barmode="group", height=220 + 55 * len(ranking))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text="higher AOPC and comprehensiveness, lower sufficiency = more faithful")
    n = int(board.table["text_index"].nunique()) if not board.table.empty else 0
    return _titled(fig, "Faithfulness scoreboard",
                   f"target: {board.target}; {n} sentence(s); AOPC with its 95% interval over the sentences", top=90)


register("mixing.cls_row", mixing_cls_figure)
register("mixing.rollout", mixing_rollout_figure)
register("mixing.block", mixing_block_figure)
register("mixing.raw", mixing_raw_figure)
register("mixing.compare", mixing_compare_figure)
register("attribution.tokens", attribution_tokens_figure)
register("faithfulness.curves", faithfulness_curves_figure)
register("faithfulness.ranking", faithfulness_ranking_figure)
