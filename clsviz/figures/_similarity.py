"""Figures for the Similarity page: [CLS] against its tokens, the anisotropy baseline,
sentence comparison, the pair benchmark, and norms / massive activations.

Each function takes numbers computed by :mod:`clsviz.similarity` and returns a ``go.Figure``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..baseline import REFERENCE_HELP, Baseline
from ..layers import layer_names
from ..tracing import Trace
from ._common import DIVERGING, SEQUENTIAL, heatmap, safe_text, token_labels
from .registry import register

__all__ = [
    "anisotropy_figure",
    "benchmark_figure",
    "benchmark_scatter_figure",
    "cls_summary_figure",
    "cls_token_cosine_figure",
    "comparison_figure",
    "dimension_figure",
    "token_norms_figure",
    "top_dimensions_figure",
]

_COLORS = qualitative.Plotly
_AXIS_TITLES = {"raw": "cosine", "minus baseline": "cosine − baseline", "centred": "cosine (centred)"}


def _short(text: str, limit: int = 40) -> str:
    text = str(text)
    return safe_text(text if len(text) <= limit else text[: limit - 1] + "…")


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _line(x, y, name: str, color: str, hover: str, dash: str = "solid", **extra) -> go.Scatter:
    """A lines+markers trace of a per-layer value (rounded to keep the payload small)."""
    return go.Scatter(
        x=list(x),
        y=np.round(np.asarray(y, dtype=float), 4),
        mode="lines+markers",
        name=name,
        line=dict(color=color, dash=dash),
        hovertemplate=f"{hover}<br>layer %{{x}}: %{{y}}<extra></extra>",
        **extra,
    )


def _finish(fig: go.Figure, title: str, y_title: str, height: int = 440, y_range=None, top: int = 50) -> go.Figure:
    """Shared layout: layers on x, legend below the plot."""
    fig.update_xaxes(title_text="layer (0 = embeddings)", dtick=1)
    fig.layout.yaxis.title.text = y_title  # the first (left-most) panel's axis
    if y_range is not None:
        fig.update_yaxes(range=y_range)
    fig.update_layout(
        title=title,
        legend=dict(orientation="h", y=-0.25),
        margin=dict(l=60, r=20, t=top, b=40),
        height=height,
    )
    return fig


def _shade(fig, x, lower, upper, color, name: str, **kwargs) -> None:
    """A shaded area between ``lower`` and ``upper`` along ``x`` (no legend entry, no hover)."""
    x = list(x)
    fig.add_trace(
        go.Scatter(x=x + x[::-1], y=list(np.round(upper, 4)) + list(np.round(lower, 4))[::-1], fill="toself",
                   mode="lines", fillcolor=_rgba(color, 0.12), line=dict(width=0), hoverinfo="skip", name=name,
                   showlegend=False, legendgroup=name),
        **kwargs,
    )


def _band(fig, x, mean, std, color, name, showlegend=True, row=None, col=None):
    """A dashed reference line with a shaded ±1 std band (the spread of unrelated pairs)."""
    kwargs = {} if row is None else dict(row=row, col=col)
    x = list(x)
    _shade(fig, x, mean - std, mean + std, color, name, **kwargs)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=list(np.round(mean, 4)),
            mode="lines",
            line=dict(color=color, dash="dash"),
            name=name,
            legendgroup=name,
            showlegend=showlegend,
            hovertemplate=f"{name}<br>layer %{{x}}: %{{y}}<extra></extra>",
        ),
        **kwargs,
    )


def _layer_token_heatmap(trace: Trace, values: np.ndarray, name: str, title: str, **style) -> go.Figure:
    """Heatmap of a [L + 1, T] per-layer, per-token array, rows labelled by layer."""
    values = np.asarray(values)
    expected = (trace.num_layers + 1, trace.seq_len)
    if values.shape != expected:
        raise ValueError(f"{name}: expected {list(expected)}, got {list(values.shape)}")
    return heatmap(
        values, x=token_labels(trace), y=layer_names(trace.num_layers), title=title,
        x_title="token", y_title="layer", layout=dict(height=max(320, 60 + 40 * (trace.num_layers + 1))), **style,
    )


def cls_token_cosine_figure(trace: Trace, cosines: np.ndarray, view: str = "raw") -> go.Figure:
    """Heatmap layers × tokens of cosine([CLS], token) from :func:`clsviz.similarity.cls_token_cosines`."""
    axis = _AXIS_TITLES.get(view, "cosine")
    return _layer_token_heatmap(
        trace, cosines, "cosines", f"{axis} between [CLS] and each token, per layer",
        colorbar_title=axis, zmin=-1.0, zmax=1.0, colorscale=DIVERGING, decimals=3,
    )


_SUMMARY_LINES = (
    ("cls_vs_mean_content", "[CLS] vs mean of text tokens", "cls_mean_content"),
    ("cls_vs_mean_all", "[CLS] vs mean of all tokens", "cls_mean"),
    ("cls_vs_pooler", "[CLS] vs pooler output", "cls_pooler"),
)


def cls_summary_figure(summary: pd.DataFrame, baseline: Baseline | None = None, view: str = "raw") -> go.Figure:
    """Lines per layer from :func:`clsviz.similarity.cls_summary`; each with its unrelated-
    sentence reference (dashed, ±1 std band) when a baseline is given."""
    fig = go.Figure()
    layers = summary["layer"].to_numpy()
    for k, (column, label, ref) in enumerate(_SUMMARY_LINES):
        values = summary[column].to_numpy(dtype=float)
        if np.isnan(values).all():
            continue
        color = _COLORS[k % len(_COLORS)]
        fig.add_trace(_line(layers, values, label, color, label, legendgroup=label))
        if baseline is not None and ref in baseline.references:
            mean, std = baseline.reference(ref, view)
            _band(fig, layers, mean, std, color, f"{label}, unrelated sentence")
    return _finish(
        fig,
        "[CLS] against the sentence's averages (dashed: the same for unrelated sentences)",
        _AXIS_TITLES.get(view, "cosine"),
        height=460,
    )


def anisotropy_figure(baseline: Baseline, view: str = "raw") -> go.Figure:
    """The anisotropy baseline: mean cosine of unrelated pairs per layer, ±1 std bands."""
    if view == "minus baseline":
        view = "raw"  # the baseline minus itself is zero everywhere; show what is subtracted
    stored = "centred" if view == "centred" else "raw"
    fig = go.Figure()
    for k, ref in enumerate(baseline.references):
        rows = baseline.table[(baseline.table["reference"] == ref) & (baseline.table["view"] == stored)]
        rows = rows.sort_values("layer")
        color = _COLORS[k % len(_COLORS)]
        std = np.round(rows["std"].to_numpy(dtype=float), 4)
        fig.add_trace(
            _line(
                rows["layer"], rows["mean"], ref, color, f"{ref}: {REFERENCE_HELP[ref]}",
                error_y=dict(type="data", array=std, visible=True, thickness=1, width=3),
            )
        )
    return _finish(
        fig,
        f"Mean {'centred ' if stored == 'centred' else ''}cosine of unrelated pairs "
        f"({len(baseline.texts)} texts, {baseline.num_tokens} tokens, {baseline.source})",
        "mean cosine (bars: ±1 std)",
        height=460,
        y_range=[-1.05, 1.05],
    )


def comparison_figure(comparison: pd.DataFrame, view: str = "raw") -> go.Figure:
    """One panel per pooling: cosine between each pair of sentences across layers, from
    :func:`clsviz.similarity.compare_sentences`; dashed grey: unrelated sentences (±1 std)."""
    poolings = list(dict.fromkeys(comparison["pooling"]))
    fig = make_subplots(
        rows=1, cols=len(poolings), shared_yaxes=True, subplot_titles=[f"pooling: {s}" for s in poolings]
    )
    pairs = list(dict.fromkeys(zip(comparison["a"], comparison["b"])))
    for col, pooling in enumerate(poolings, start=1):
        sub = comparison[comparison["pooling"] == pooling]
        for k, (a, b) in enumerate(pairs):
            rows = sub[(sub["a"] == a) & (sub["b"] == b)].sort_values("layer")
            first = rows.iloc[0]
            label = f"{a}–{b}"
            hover = f"{_short(first['sentence_a'])}<br>{_short(first['sentence_b'])}"
            trace = _line(
                rows["layer"], rows["cosine"], f"sentences {label}", _COLORS[k % len(_COLORS)], hover,
                legendgroup=label, showlegend=col == 1,
            )
            fig.add_trace(trace, row=1, col=col)
        if "reference" in sub.columns:
            ref = sub[(sub["a"] == pairs[0][0]) & (sub["b"] == pairs[0][1])].sort_values("layer")
            mean = ref["reference"].to_numpy(dtype=float)
            if not np.isnan(mean).all():
                _band(
                    fig, ref["layer"], mean, ref["reference_std"].to_numpy(dtype=float), "#7f7f7f",
                    "unrelated sentences", showlegend=col == 1, row=1, col=col,
                )
    return _finish(
        fig, "Cosine between your sentences, per layer and pooling", _AXIS_TITLES.get(view, "cosine"), top=70
    )


def benchmark_figure(table: pd.DataFrame, title: str = "Spearman correlation with the human scores") -> go.Figure:
    """Spearman ρ per layer for each pooling (solid: raw cosine, shaded: its 95% bootstrap
    interval when the table has one; dotted: centred vectors)."""
    fig = go.Figure()
    for k, pooling in enumerate(dict.fromkeys(table["pooling"])):
        rows = table[table["pooling"] == pooling].sort_values("layer")
        color = _COLORS[k % len(_COLORS)]
        if {"spearman_low", "spearman_high"} <= set(rows.columns):
            _shade(fig, rows["layer"], rows["spearman_low"], rows["spearman_high"], color, pooling)
        for column, dash, suffix in (("spearman", "solid", ""), ("spearman_centred", "dot", " (centred)")):
            if column not in rows.columns:
                continue
            name = f"{pooling}{suffix}"
            fig.add_trace(_line(rows["layer"], rows[column], name, color, f"{name} (Spearman ρ)", dash=dash))
    values = table[[c for c in ("spearman", "spearman_centred") if c in table.columns]].to_numpy(dtype=float)
    low = float(np.nanmin(values)) if np.isfinite(values).any() else 0.0
    return _finish(fig, title, "Spearman ρ (cosine vs score)", y_range=[max(-1.02, min(0.0, low - 0.05)), 1.02])


def benchmark_scatter_figure(pair_table: pd.DataFrame, poolings: list[str] | tuple[str, ...]) -> go.Figure:
    """Cosine against score for every pair, one panel per pooling (from
    :meth:`clsviz.similarity.BenchmarkResult.pair_table`)."""
    fig = make_subplots(
        rows=1, cols=len(poolings), shared_yaxes=True, subplot_titles=[f"pooling: {s}" for s in poolings]
    )
    hover = [f"{_short(a)}<br>{_short(b)}" for a, b in zip(pair_table["sentence1"], pair_table["sentence2"])]
    kinds = pair_table["kind"].astype(str).tolist() if "kind" in pair_table.columns else None
    for col, pooling in enumerate(poolings, start=1):
        column = f"cos_{pooling}"
        if kinds:
            for k, kind in enumerate(dict.fromkeys(kinds)):
                pick = [i for i, v in enumerate(kinds) if v == kind]
                fig.add_trace(
                    go.Scatter(
                        x=pair_table["score"].to_numpy()[pick],
                        y=np.round(pair_table[column].to_numpy(dtype=float)[pick], 4),
                        mode="markers",
                        name=safe_text(kind),
                        legendgroup=kind,
                        showlegend=col == 1,
                        marker=dict(color=_COLORS[k % len(_COLORS)], size=6, opacity=0.7),
                        text=[hover[i] for i in pick],
                        hovertemplate="%{text}<br>score %{x}, cosine %{y}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
        else:
            fig.add_trace(
                go.Scatter(
                    x=pair_table["score"],
                    y=np.round(pair_table[column].to_numpy(dtype=float), 4),
                    mode="markers",
                    name="pairs",
                    showlegend=False,
                    marker=dict(color=_COLORS[0], size=6, opacity=0.7),
                    text=hover,
                    hovertemplate="%{text}<br>score %{x}, cosine %{y}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="human score")
    fig.update_yaxes(title_text="cosine", row=1, col=1)
    fig.update_layout(
        title="Each pair: cosine against its score",
        legend=dict(orientation="h", y=-0.25),
        margin=dict(l=60, r=20, t=70, b=40),
        height=420,
    )
    return fig


def token_norms_figure(trace: Trace, norms: np.ndarray) -> go.Figure:
    """Heatmap layers × tokens of hidden-vector norms (from :func:`clsviz.similarity.token_norms`)."""
    return _layer_token_heatmap(
        trace, norms, "norms", "Length (L2 norm) of each token's vector, per layer",
        colorbar_title="norm", zmin=0.0, colorscale=SEQUENTIAL, decimals=2,
    )


def dimension_figure(trace: Trace, values: np.ndarray, dimension: int) -> go.Figure:
    """Heatmap layers × tokens of one hidden dimension (from :func:`clsviz.similarity.dimension_values`)."""
    bound = float(np.abs(values).max()) or 1.0
    return _layer_token_heatmap(
        trace, values, "values", f"Hidden dimension {int(dimension)} at every token and layer",
        colorbar_title="value", zmin=-bound, zmax=bound, colorscale=DIVERGING, decimals=3,
    )


def top_dimensions_figure(top: pd.DataFrame, layer: int) -> go.Figure:
    """Bars of the largest hidden dimensions on [CLS] and [SEP] at one layer (from
    :func:`clsviz.similarity.top_dimensions`); hover shows how many times the median."""
    rows = top[top["layer"] == layer]
    if rows.empty:
        raise ValueError(f"No rows for layer {layer} in the table (layers: {sorted(set(top['layer']))}).")
    fig = go.Figure()
    for k, role in enumerate(dict.fromkeys(rows["role"])):
        sub = rows[rows["role"] == role].sort_values("rank")
        token = safe_text(sub["token"].iloc[0])
        fig.add_trace(
            go.Bar(
                x=[f"{token} · dim {d}" for d in sub["dimension"]],
                y=np.round(sub["value"].to_numpy(dtype=float), 4),
                name=f"{token} (position {sub['position'].iloc[0]})",
                marker_color=_COLORS[k % len(_COLORS)],
                customdata=np.round(sub["times_median"].to_numpy(dtype=float), 1),
                text=[f"{m:.0f}×" for m in sub["times_median"]],
                textposition="outside",
                hovertemplate="%{x}: %{y}<br>%{customdata}× the layer's median |value|<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"Largest hidden dimensions on [CLS] and [SEP], layer {layer} (labels: × the layer's median |value|)",
        xaxis=dict(title="hidden dimension", type="category"),
        yaxis=dict(title="value"),
        legend=dict(orientation="h", y=-0.25),
        margin=dict(l=60, r=20, t=50, b=40),
        height=400,
    )
    return fig


register("similarity.cls_tokens", cls_token_cosine_figure)
register("similarity.summary", cls_summary_figure)
register("similarity.baseline", anisotropy_figure)
register("similarity.compare", comparison_figure)
register("similarity.benchmark", benchmark_figure)
register("similarity.benchmark_scatter", benchmark_scatter_figure)
register("similarity.norms", token_norms_figure)
register("similarity.massive", top_dimensions_figure)
register("similarity.dimension", dimension_figure)
