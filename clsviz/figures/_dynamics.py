"""Figures for "How does [CLS] learn?": gradient flow, the fine-tuning checkpoints, the moved
summary token, and the probing controls (selectivity, MDL).

Each function takes arrays or a result of :mod:`clsviz.experiments` and returns a ``go.Figure``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ._common import safe_text
from .registry import register

__all__ = [
    "CHECKPOINT_PANELS",
    "checkpoint_figure",
    "checkpoint_flow_figure",
    "gradient_flow_figure",
    "mdl_figure",
    "moved_token_figure",
    "selectivity_figure",
    "steps_figure",
]

# [CLS] and the mean keep the colours of the probe page; the moved tokens get their own.
_FIXED = {"cls": "#d62728", "mean": "#1f77b4", "cls_head": "#9467bd", "cls_last": "#ff7f0e", "fresh_middle": "#2ca02c"}
_OTHERS = [c for c in qualitative.D3 + qualitative.Set2 if c.lower() not in _FIXED.values() and c.lower() != "#7f7f7f"]

CHECKPOINT_PANELS = {
    "probe_cls": ("probe accuracy of [CLS]", "layer"),
    "probe_mean": ("probe accuracy of the mean", "layer"),
    "cos_cls_mean": ("cos([CLS], mean of the tokens)", "layer"),
    "cka_to_start": ("CKA of the token vectors to step 0", "layer"),
    "cls_entropy": ("entropy of [CLS]'s attention (nats)", "block"),
    "attention_to_cls": ("attention [CLS] receives", "block"),
}
"""The per-layer / per-block metrics a checkpoint records: title and x axis."""


def _colors(names) -> dict[str, str]:
    out, k = {}, 0
    for name in names:
        if name in _FIXED:
            out[name] = _FIXED[name]
        else:
            out[name] = _OTHERS[k % len(_OTHERS)]
            k += 1
    return out


def gradient_flow_figure(flows: Mapping[str, np.ndarray], tokens, title: str | None = None) -> go.Figure:
    """Heatmaps of ||d loss / d h|| side by side, one per readout: rows are hidden-state indexes
    (0 = embeddings, top), columns tokens. Colour is log10 of the norm on one scale for every
    panel; exact zeros stay blank. ``flows``: name -> float [L+1, T]; ``tokens``: the T token
    strings, or name -> tokens when the panels' inputs differ."""
    names = list(flows)
    if not names:
        raise ValueError("gradient_flow_figure needs at least one array")
    logs = {n: np.where(np.asarray(flows[n]) > 0, np.log10(np.maximum(np.asarray(flows[n], float), 1e-30)), np.nan)
            for n in names}  # fmt: skip
    finite = np.concatenate([v[np.isfinite(v)] for v in logs.values()] or [np.zeros(1)])
    zmin, zmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[safe_text(n) for n in names], horizontal_spacing=0.08)
    for col, name in enumerate(names, start=1):
        values = np.asarray(flows[name], dtype=np.float64)
        toks = tokens[name] if isinstance(tokens, Mapping) else tokens
        x = [safe_text(f"{i} {t}") for i, t in enumerate(toks)]
        z = np.round(logs[name], 4)
        fig.add_trace(
            go.Heatmap(
                z=[[None if np.isnan(v) else float(v) for v in row] for row in z],
                x=x,
                y=list(range(values.shape[0])),
                customdata=np.round(values, 6),
                zmin=zmin,
                zmax=zmax,
                colorscale="Viridis",
                showscale=col == len(names),
                colorbar=dict(title="log10 ‖∂loss/∂h‖"),
                hovertemplate="layer %{y}<br>token %{x}<br>‖∂loss/∂h‖ = %{customdata}<extra>" + safe_text(name) + "</extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(type="category", tickangle=-45, row=1, col=col)
        fig.update_yaxes(autorange="reversed", title_text="layer (0 = embeddings)" if col == 1 else None, row=1, col=col)
    fig.update_layout(title=title or "Where the training signal enters: ‖∂loss/∂h‖ per layer and token",
                      height=420, margin=dict(l=60, r=20, t=70, b=90))  # fmt: skip
    return fig


def _flow_arrays(table: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    t = table.sort_values(["layer", "position"])
    layers, positions = int(t["layer"].max()) + 1, int(t["position"].max()) + 1
    tokens = t[t["layer"] == 0].sort_values("position")["token"].tolist()
    return t["value"].to_numpy(dtype=np.float64).reshape(layers, positions), tokens


def checkpoint_flow_figure(result, step: int) -> go.Figure:
    """The gradient flow of ``result.flow_text`` at checkpoint ``step``, one panel per pooling
    (``result``: a ``FinetuneResult``)."""
    at = result.gradient_flow[result.gradient_flow["step"] == int(step)]
    flows, tokens = {}, {}
    for pooling, rows in at.groupby("pooling", sort=False):
        flows[pooling], tokens[pooling] = _flow_arrays(rows)
    if not flows:
        raise ValueError(f"No gradient flow was recorded at step {step}.")
    return gradient_flow_figure(flows, tokens, title=f"Gradient flow at step {int(step)}: ‖∂loss/∂h‖ (random head, class 0)")


def checkpoint_figure(result, step: int) -> go.Figure:
    """Every per-layer and per-block metric at checkpoint ``step``, one panel per metric, one line
    per pooling (``result``: a ``FinetuneResult``)."""
    fig = make_subplots(rows=2, cols=3, subplot_titles=[v[0] for v in CHECKPOINT_PANELS.values()],
                        horizontal_spacing=0.07, vertical_spacing=0.16)  # fmt: skip
    layer = result.layer_metrics[result.layer_metrics["step"] == int(step)]
    block = result.block_metrics[result.block_metrics["step"] == int(step)]
    poolings = list(dict.fromkeys(result.table["pooling"]))
    colors = _colors(poolings)
    for i, (metric, (label, axis)) in enumerate(CHECKPOINT_PANELS.items()):
        source = layer if axis == "layer" else block
        row, col = i // 3 + 1, i % 3 + 1
        for pooling in poolings:
            rows = source[(source["pooling"] == pooling) & (source["metric"] == metric)].sort_values(axis)
            if rows.empty:
                continue
            fig.add_trace(
                go.Scatter(x=rows[axis].tolist(), y=np.round(rows["value"].to_numpy(float), 4).tolist(),
                           mode="lines+markers", name=pooling, legendgroup=pooling, showlegend=i == 0,
                           line=dict(color=colors[pooling]),
                           hovertemplate=f"{pooling}<br>{axis} %{{x}}<br>{label}: %{{y}}<extra></extra>"),
                row=row, col=col,
            )  # fmt: skip
        fig.update_xaxes(title_text=axis, row=row, col=col)
    fig.update_layout(title=f"What the model state shows at step {int(step)} (held-out texts)", height=620,
                      legend=dict(title="pooling"), margin=dict(l=50, r=20, t=80, b=50))  # fmt: skip
    return fig


def steps_figure(result, layer: int | None = None, block: int | None = None) -> go.Figure:
    """Every measure across the checkpoints, one panel per measure and one line per pooling:
    held-out accuracy, then each metric of :data:`CHECKPOINT_PANELS` at hidden-state index
    ``layer`` / block ``block`` (default: the last)."""
    layers, blocks = result.layer_metrics, result.block_metrics
    layer = int(layers["layer"].max()) if layer is None and len(layers) else layer
    block = int(blocks["block"].max()) if block is None and len(blocks) else block
    panels = [("heldout_accuracy", "held-out accuracy", result.checkpoints.rename(columns={"heldout_accuracy": "value"}))]
    for metric, (label, axis) in CHECKPOINT_PANELS.items():
        source, at = (layers, layer) if axis == "layer" else (blocks, block)
        panels.append((metric, f"{label}, {axis} {at}", source[(source["metric"] == metric) & (source[axis] == at)]))
    # Two panels a row: four long titles side by side ran into each other.
    cols = 2
    rows_n = -(-len(panels) // cols)
    fig = make_subplots(rows=rows_n, cols=cols, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.12,
                        vertical_spacing=0.3 / rows_n)  # fmt: skip
    poolings = list(dict.fromkeys(result.table["pooling"]))
    colors = _colors(poolings)
    for i, (_, label, table) in enumerate(panels):
        row, col = i // cols + 1, i % cols + 1
        for pooling in poolings:
            rows = table[table["pooling"] == pooling].sort_values("step")
            fig.add_trace(go.Scatter(x=rows["step"].tolist(), y=np.round(rows["value"].to_numpy(float), 4).tolist(),
                                     mode="lines+markers", name=pooling, legendgroup=pooling, showlegend=i == 0,
                                     line=dict(color=colors[pooling]),
                                     hovertemplate=f"{pooling}<br>step %{{x}}<br>{label}: %{{y}}<extra></extra>"),
                          row=row, col=col)  # fmt: skip
        fig.update_xaxes(title_text="step", row=row, col=col)
    fig.add_hline(y=result.majority, line=dict(color="#7f7f7f", dash="dash", width=1), row=1, col=1)
    fig.update_layout(title="Every measure, checkpoint by checkpoint (dashed: the majority class)", height=260 * rows_n,
                      legend=dict(title="pooling"), margin=dict(l=50, r=20, t=80, b=50))  # fmt: skip
    return fig


def moved_token_figure(result) -> go.Figure:
    """Held-out accuracy per pooling before (frozen probe) and after fine-tuning, the moved
    summary tokens beside [CLS] and the mean; dashed: the majority class."""
    table = result.table
    names = table["pooling"].tolist()
    colors = _colors(names)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=np.round(table["frozen_accuracy"].to_numpy(float), 4).tolist(), name="frozen probe",
                         marker=dict(color="#c7c7c7"), hovertemplate="%{x}<br>frozen: %{y:.1%}<extra></extra>"))  # fmt: skip
    fig.add_trace(go.Bar(x=names, y=np.round(table["heldout_accuracy"].to_numpy(float), 4).tolist(), name="fine-tuned",
                         marker=dict(color=[colors[n] for n in names]),
                         hovertemplate="%{x}<br>fine-tuned: %{y:.1%}<extra></extra>"))  # fmt: skip
    fig.add_hline(y=result.majority, line=dict(color="#7f7f7f", dash="dash", width=1))
    fig.update_layout(barmode="group", title=f"Held-out accuracy per pooling on '{html.escape(str(result.label))}' "
                      "(same seed, split and budget)", yaxis=dict(title="held-out accuracy", tickformat=".0%",
                      range=[0, 1.02]), height=400, margin=dict(l=60, r=20, t=60, b=50))  # fmt: skip
    return fig


def _per_pooling_lines(fig, table: pd.DataFrame, column: str, col: int, dash: str | None, show: bool, suffix: str):
    poolings = list(dict.fromkeys(table["pooling"]))
    colors = _colors(poolings)
    for pooling in poolings:
        rows = table[table["pooling"] == pooling].sort_values("layer")
        fig.add_trace(go.Scatter(x=rows["layer"].tolist(), y=np.round(rows[column].to_numpy(float), 4).tolist(),
                                 mode="lines+markers", name=f"{pooling}{suffix}", legendgroup=pooling, showlegend=show,
                                 line=dict(color=colors[pooling], dash=dash),
                                 hovertemplate=f"{pooling}{suffix}<br>layer %{{x}}: %{{y:.3f}}<extra></extra>"),
                      row=1, col=col)  # fmt: skip


def selectivity_figure(table: pd.DataFrame) -> go.Figure:
    """Left: probe accuracy (solid) and control-task accuracy (dotted) per layer; right:
    selectivity (accuracy - control), one colour per pooling. ``table``: ``run_selectivity``'s."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy (solid) and control task (dotted)",
                                                        "selectivity = accuracy − control"))  # fmt: skip
    _per_pooling_lines(fig, table, "accuracy", 1, None, True, "")
    _per_pooling_lines(fig, table, "control_accuracy", 1, "dot", False, " (control)")
    _per_pooling_lines(fig, table, "selectivity", 2, None, False, "")
    fig.update_xaxes(title_text="layer (0 = embeddings)")
    fig.update_yaxes(tickformat=".0%")
    fig.update_layout(title="Does the probe read the representation, or memorise?", height=420,
                      legend=dict(title="pooling"), margin=dict(l=60, r=20, t=70, b=50))  # fmt: skip
    return fig


def mdl_figure(table: pd.DataFrame) -> go.Figure:
    """Online codelength (bits; lower = the label is easier to extract) per layer, one line per
    pooling; dashed: the uniform code. ``table``: ``run_mdl``'s."""
    fig = make_subplots(rows=1, cols=1)
    _per_pooling_lines(fig, table, "codelength_bits", 1, None, True, "")
    uniform = float(table["uniform_bits"].iloc[0]) if len(table) else 0.0
    fig.add_hline(y=uniform, line=dict(color="#7f7f7f", dash="dash", width=1))
    fig.update_layout(title=f"Minimum description length of the labels (uniform code: {uniform:.0f} bits)",
                      xaxis_title="layer (0 = embeddings)", yaxis_title="online codelength (bits)", height=400,
                      legend=dict(title="pooling"), margin=dict(l=60, r=20, t=60, b=50))  # fmt: skip
    return fig


register("dynamics.gradient_flow", gradient_flow_figure)
register("dynamics.checkpoint_flow", checkpoint_flow_figure)
register("dynamics.checkpoint", checkpoint_figure)
register("dynamics.steps", steps_figure)
register("dynamics.moved", moved_token_figure)
register("probe.selectivity", selectivity_figure)
register("probe.mdl", mdl_figure)
