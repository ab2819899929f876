"""Figures for two models side by side: layer × layer CKA, its diagonal, the change in attention
around [CLS], and probe / sentence-similarity curves of both models overlaid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..layers import block_of_row
from ._common import DIVERGING, SEQUENTIAL, safe_text
from .registry import register

__all__ = ["attention_change_figure", "cka_diagonal_figure", "cka_heatmap", "side_by_side_probe_figure", "side_by_side_sts_figure"]

READING_NAMES = {"tokens": "token vectors", "cls": "[CLS] vectors", "mean": "mean vectors"}
_READING_COLORS = {"cls": "#d62728", "mean": "#1f77b4", "tokens": "#2ca02c"}
_MEASURE_NAMES = {
    "to_cls": "attention paid to [CLS]",
    "cls_to_content": "[CLS]'s attention to the text's tokens",
    "cls_entropy": "entropy of [CLS]'s attention (nats)",
}
_POOLING_COLORS = {"cls": "#d62728", "mean": "#1f77b4", "max": "#2ca02c"}


def cka_heatmap(comparison, reading: str) -> go.Figure:
    """Linear CKA between every layer of model A (rows) and of model B (columns) for one reading
    of a :class:`clsviz.compare.ModelComparison`; undefined cells (a layer whose vectors are all
    the same) are left blank. Narrow enough to draw three side by side: the models' names go in
    the hover text and the page, not on the axes."""
    if reading not in comparison.cka:
        why = comparison.skipped.get(reading, "it was not computed")
        raise ValueError(f"No CKA for '{reading}': {why}")
    m = np.asarray(comparison.cka[reading], dtype=np.float64)
    text = [["undefined" if np.isnan(v) else f"{v:.3f}" for v in row] for row in m]
    fig = go.Figure(
        go.Heatmap(
            z=np.round(m, 4),
            x=list(range(m.shape[1])),
            y=list(range(m.shape[0])),
            text=text,
            zmin=0.0,
            zmax=1.0,
            colorscale=SEQUENTIAL,
            colorbar=dict(title="CKA"),
            hovertemplate=f"layer %{{y}} of A ({safe_text(comparison.model_a)})<br>layer %{{x}} of B "
            f"({safe_text(comparison.model_b)})<br>CKA %{{text}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=READING_NAMES.get(reading, safe_text(reading)),
        xaxis=dict(title="layer of B", type="category"),
        yaxis=dict(title="layer of A", type="category", autorange="reversed"),
        margin=dict(l=60, r=20, t=50, b=60),
        height=380,
    )
    return fig


def cka_diagonal_figure(diagonal: pd.DataFrame, model_a: str = "A", model_b: str = "B") -> go.Figure:
    """CKA of each layer of A with its counterpart in B, one line per reading, from
    :func:`clsviz.experiments.diagonal_table`. 1 means the layer's geometry is unchanged."""
    fig = go.Figure()
    for reading in dict.fromkeys(diagonal["reading"]):
        rows = diagonal[diagonal["reading"] == reading].sort_values("layer_a")
        name = READING_NAMES.get(reading, safe_text(reading))
        fig.add_trace(
            go.Scatter(
                x=rows["layer_a"].tolist(),
                y=[None if np.isnan(v) else round(float(v), 4) for v in rows["cka"]],
                customdata=rows["layer_b"].tolist(),
                mode="lines+markers",
                name=name,
                line=dict(color=_READING_COLORS.get(reading, "#7f7f7f"), width=3 if reading == "cls" else 2),
                hovertemplate=f"{name}<br>layer %{{x}} of A vs layer %{{customdata}} of B<br>CKA %{{y:.3f}}<extra></extra>",
            )
        )
    layers = sorted(int(x) for x in diagonal["layer_a"].unique()) if len(diagonal) else []
    fig.update_layout(
        title=f"Layer by layer: {safe_text(model_a)} (A) against {safe_text(model_b)} (B)",
        xaxis=dict(title="layer of A (0 = embeddings)", tickmode="array", tickvals=layers),
        yaxis=dict(title="CKA with the same layer of B", range=[0, 1.02]),
        legend=dict(title="reading"),
        margin=dict(l=60, r=20, t=50, b=50),
        height=400,
    )
    return fig


def attention_change_figure(change, measure: str = "to_cls") -> go.Figure:
    """B − A per block × head for one measure of a :class:`clsviz.compare.AttentionChange`, on a
    diverging scale centred on zero (red: B attends more)."""
    delta = change.change(measure)  # float64 [L, H]
    limit = float(np.nanmax(np.abs(delta))) if delta.size and np.isfinite(delta).any() else 0.0
    limit = limit if limit > 0 else 1e-6
    num_layers, num_heads = delta.shape
    what = _MEASURE_NAMES.get(measure, safe_text(measure))
    fig = go.Figure(
        go.Heatmap(
            z=np.round(delta, 5),
            x=[f"head {h + 1}" for h in range(num_heads)],
            y=[f"block {block_of_row(b)}" for b in range(num_layers)],
            zmin=-limit,
            zmax=limit,
            zmid=0.0,
            colorscale=DIVERGING,
            colorbar=dict(title="B − A"),
            customdata=np.stack([change.a[measure], change.b[measure]], axis=-1).round(4),
            hovertemplate="%{y}, %{x}<br>A %{customdata[0]:.3f} → B %{customdata[1]:.3f}<br>B − A %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Change in {what}: {safe_text(change.model_b)} − {safe_text(change.model_a)}",
        xaxis=dict(type="category"),
        yaxis=dict(type="category", autorange="reversed"),
        margin=dict(l=70, r=20, t=50, b=50),
        height=max(300, 60 + 28 * num_layers),
    )
    return fig


def _overlay(table: pd.DataFrame, value: str, names: dict[str, str], title: str, y_title: str, spread=None,
             **yaxis) -> go.Figure:  # fmt: skip
    """``spread(rows)``: the half-width of each point's 95% interval (error bars), or None."""
    fig = go.Figure()
    for side, dash in (("A", "solid"), ("B", "dash")):
        rows = table[table["side"] == side]
        for pooling in dict.fromkeys(rows["pooling"]):
            line = rows[rows["pooling"] == pooling].sort_values("layer")
            name = f"{side}: {pooling}"
            fig.add_trace(
                go.Scatter(
                    x=line["layer"].tolist(),
                    y=[None if np.isnan(v) else round(float(v), 4) for v in line[value]],
                    mode="lines+markers",
                    name=name,
                    line=dict(color=_POOLING_COLORS.get(pooling, "#7f7f7f"), dash=dash, width=2.5),
                    error_y=None if spread is None else dict(type="data", array=np.round(spread(line), 4).tolist()),
                    hovertemplate=f"{safe_text(names[side])}<br>{pooling}, layer %{{x}}<br>%{{y:.3f}}<extra></extra>",
                )
            )
    fig.update_layout(
        title=title,
        xaxis=dict(title="layer (0 = embeddings)"),
        yaxis=dict(title=y_title, **yaxis),
        legend=dict(title="model: reading"),
        margin=dict(l=60, r=20, t=50, b=50),
        height=420,
    )
    return fig


def side_by_side_probe_figure(result) -> go.Figure:
    """Probe accuracy per layer for both models (A solid, B dashed) from a
    :class:`clsviz.experiments.SideBySide`, with the majority-class baseline; error bars are the
    95% interval of each mean over the folds (1.96 × SD / √folds)."""
    names = {"A": result.model_a, "B": result.model_b}
    folds = max(int(result.folds), 1)
    fig = _overlay(
        result.probe, "accuracy_mean", names,
        f"Linear probe for '{safe_text(result.label)}' ({result.folds}-fold CV, {result.n} texts)",
        "held-out accuracy", range=[0, 1.02], tickformat=".0%",
        spread=lambda rows: 1.96 * rows["accuracy_sd"].fillna(0).to_numpy(dtype=float) / np.sqrt(folds),
    )
    fig.add_hline(y=result.majority, line=dict(color="#7f7f7f", dash="dot", width=1.5))
    return fig


def side_by_side_sts_figure(result) -> go.Figure:
    """Spearman ρ between cosine and the pairs' scores per layer, both models overlaid."""
    if result.sts is None:
        raise ValueError("This run had no scored pairs, so there is no similarity curve to draw.")
    names = {"A": result.model_a, "B": result.model_b}
    return _overlay(
        result.sts, "spearman", names, f"Sentence similarity on {result.pairs} scored pairs",
        "Spearman ρ (cosine vs score)", range=[-1.02, 1.02],
    )


register("compare.cka", cka_heatmap)
register("compare.diagonal", cka_diagonal_figure)
register("compare.attention", attention_change_figure)
register("compare.probe", side_by_side_probe_figure)
register("compare.sts", side_by_side_sts_figure)
