"""Figures for "could any token do?": probe accuracy per layer, fine-tuning curves."""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .registry import register

__all__ = ["probe_figure", "finetune_figure"]

_COLORS = qualitative.D3 + qualitative.Set2
# [CLS] and the mean are the two readings the page compares: give them fixed, strong colours.
_FIXED = {"cls": "#d62728", "mean": "#1f77b4"}


def _colors(names) -> dict[str, str]:
    # Grey is kept for the baselines.
    out, free = {}, [c for c in _COLORS if c.lower() not in (*_FIXED.values(), "#7f7f7f", "#b3b3b3")]
    for name in names:
        out[name] = _FIXED.get(name) or free[len([n for n in out if n not in _FIXED]) % len(free)]
    return out


def probe_figure(result, title: str | None = None) -> go.Figure:
    """Accuracy vs layer, one line per pooling (error bars: sd over folds); chance and
    majority-class baselines as dashed lines. ``result``: a ``ProbeResult``."""
    table = result.table
    layers = sorted(table["layer"].unique())
    poolings = list(dict.fromkeys(table["pooling"]))
    colors = _colors(poolings)
    fig = go.Figure()
    for s in poolings:
        rows = table[table["pooling"] == s].sort_values("layer")
        fig.add_trace(
            go.Scatter(
                x=rows["layer"].tolist(),
                y=rows["accuracy_mean"].round(4).tolist(),
                error_y=dict(type="data", array=rows["accuracy_sd"].round(4).tolist(), thickness=1, width=3),
                mode="lines+markers",
                name=s,
                line=dict(color=colors[s], width=3 if s in _FIXED else 1.8),
                hovertemplate=f"{s}<br>layer %{{x}}<br>accuracy %{{y:.1%}}<extra></extra>",
            )
        )
    for name, value, dash in (("chance", result.chance, "dot"), ("majority class", result.majority, "dash")):
        fig.add_trace(
            go.Scatter(
                x=[layers[0], layers[-1]],
                y=[round(value, 4)] * 2,
                mode="lines",
                name=f"{name} ({value:.0%})",
                line=dict(color="#7f7f7f", dash=dash, width=1.5),
                hovertemplate=f"{name}: {value:.1%}<extra></extra>",
            )
        )
    label = html.escape(str(result.label))
    fig.update_layout(
        title=title or f"Linear-probe accuracy for '{label}' ({result.folds}-fold CV, {result.n} texts)",
        xaxis=dict(title="layer (0 = embeddings)", tickmode="array", tickvals=layers),
        yaxis=dict(title="held-out accuracy", tickformat=".0%", range=[0, 1.02]),
        legend=dict(title="reading"),
        margin=dict(l=60, r=20, t=50, b=50),
        height=460,
    )
    return fig


def finetune_figure(result) -> go.Figure:
    """Training loss and held-out accuracy vs epoch, one colour per pooling.
    ``result``: a ``FinetuneResult``."""
    curves = result.curves
    poolings = list(dict.fromkeys(curves["pooling"]))
    colors = _colors(poolings)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss (per batch)", "held-out accuracy"))
    for p in poolings:
        for col, metric in ((1, "train_loss"), (2, "heldout_accuracy")):
            rows = curves[(curves["pooling"] == p) & (curves["metric"] == metric)]
            fig.add_trace(
                go.Scatter(
                    x=rows["epoch"].round(3).tolist(),
                    y=rows["value"].round(4).tolist(),
                    # A short run's few loss points would vanish as a bare line.
                    mode="lines" if metric == "train_loss" and len(rows) > 20 else "lines+markers",
                    name=p,
                    legendgroup=p,
                    showlegend=col == 1,
                    line=dict(color=colors[p], width=1.2 if metric == "train_loss" else 2.5),
                    hovertemplate=f"{p}<br>epoch %{{x:.2f}}<br>{metric.replace('_', ' ')} %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.add_hline(y=result.majority, line=dict(color="#7f7f7f", dash="dash", width=1), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="cross-entropy", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", tickformat=".0%", range=[0, 1.02], row=1, col=2)
    fig.update_layout(
        title=f"Fine-tuning a copy of the encoder on '{html.escape(str(result.label))}' (dashed: majority class)",
        legend=dict(title="pooling"),
        margin=dict(l=60, r=20, t=70, b=50),
        height=420,
    )
    return fig


register("probe.accuracy", probe_figure)
register("finetune.curves", finetune_figure)
