"""Figures for the pretraining lab: the variants' loss curves and checkpoint curves side by side.

Each function takes the tidy table of :func:`clsviz.lab.compare_runs` (or ``PretrainRun.table()``):
columns ``variant``, ``step``, ``metric``, ``value``, ``layer``, ``low``, ``high``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ._common import safe_text
from .registry import register

__all__ = ["lab_curves_figure", "lab_figures", "lab_probe_figure", "lab_sentence_figure", "lab_sink_figure"]

_CLS, _MEAN = "#d62728", "#1f77b4"


def _variants(table: pd.DataFrame) -> list[str]:
    if table.empty:
        raise ValueError("The lab table is empty: run clsviz.lab.pretrain first.")
    return list(dict.fromkeys(table["variant"]))


def _colour(i: int) -> str:
    return qualitative.D3[i % len(qualitative.D3)]


def _band(fig, x, low, high, colour: str, row=None, col=None) -> None:
    """A shaded 95% interval under a line."""
    if np.all(np.isnan(low)):
        return
    fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(high) + list(low)[::-1], fill="toself", fillcolor=colour,
                             opacity=0.15, line=dict(width=0), hoverinfo="skip", showlegend=False), row=row, col=col)  # fmt: skip


def lab_curves_figure(table: pd.DataFrame) -> go.Figure:
    """Training curves per variant: the masked-LM loss (left) and the sentence objective's accuracy
    (right, for the variants that have one), against the optimiser step."""
    variants = _variants(table)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["masked-LM loss", "sentence objective accuracy (training)"])
    for i, v in enumerate(variants):
        rows = table[table["variant"] == v]
        mlm = rows[rows["metric"] == "mlm_loss"].sort_values("step")
        fig.add_trace(go.Scatter(x=mlm["step"], y=mlm["value"].round(4), name=safe_text(v), legendgroup=v,
                                 line=dict(color=_colour(i))), row=1, col=1)  # fmt: skip
        acc = rows[rows["metric"].isin(["nsp_accuracy", "sop_accuracy"])].sort_values("step")
        if len(acc):
            fig.add_trace(go.Scatter(x=acc["step"], y=acc["value"].round(4), name=safe_text(v), legendgroup=v,
                                     showlegend=False, line=dict(color=_colour(i))), row=1, col=2)  # fmt: skip
    fig.add_hline(y=0.5, line=dict(dash="dot", color="#7f7f7f"), row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss (nats)", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1], row=1, col=2)
    fig.update_layout(margin=dict(l=60, r=20, t=50, b=50), legend_title_text="variant")
    return fig


def lab_probe_figure(table: pd.DataFrame, layer: int | None = None) -> go.Figure:
    """Probe accuracy of the summary token (red) and of the mean (blue) per checkpoint, one panel
    per variant, with 95% intervals; at ``layer`` (default: the last)."""
    variants = _variants(table)
    probes = table[table["metric"].isin(["probe_cls", "probe_mean"])]
    if probes.empty:
        raise ValueError("No probe rows: the runs recorded no checkpoints.")
    layer = int(probes["layer"].max()) if layer is None else int(layer)
    fig = make_subplots(rows=1, cols=len(variants), subplot_titles=[safe_text(v) for v in variants], shared_yaxes=True)
    for col, v in enumerate(variants, start=1):
        for metric, colour, name in (("probe_cls", _CLS, "summary token ([CLS])"), ("probe_mean", _MEAN, "mean of the tokens")):
            rows = probes[(probes["variant"] == v) & (probes["metric"] == metric) & (probes["layer"] == layer)].sort_values("step")
            if rows.empty:
                continue
            _band(fig, rows["step"], rows["low"].to_numpy(float), rows["high"].to_numpy(float), colour, 1, col)
            fig.add_trace(go.Scatter(x=rows["step"], y=rows["value"].round(4), name=name, legendgroup=metric,
                                     showlegend=col == 1, mode="lines+markers", line=dict(color=colour)), row=1, col=col)  # fmt: skip
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=f"probe accuracy at layer {layer}", range=[0, 1], row=1, col=1)
    fig.update_layout(margin=dict(l=60, r=20, t=50, b=50))
    return fig


def lab_sink_figure(table: pd.DataFrame) -> go.Figure:
    """Share of attention the other tokens park on the summary token, per block (rows) and
    checkpoint (columns), one heatmap per variant; a variant without a summary token shows the
    closing [SEP] instead (said in its panel title)."""
    variants = _variants(table)
    titles, grids = [], []
    for v in variants:
        rows = table[table["variant"] == v]
        metric = "attention_to_cls" if (rows["metric"] == "attention_to_cls").any() else "attention_to_sep"
        sub = rows[rows["metric"] == metric]
        grid = sub.pivot_table(index="layer", columns="step", values="value") if len(sub) else pd.DataFrame()
        titles.append(safe_text(v) + "<br>" + ("[CLS]" if metric == "attention_to_cls" else "[SEP] (no summary token)"))
        grids.append(grid)
    if all(g.empty for g in grids):
        raise ValueError("No attention rows: the runs recorded no checkpoints.")
    # One colour scale for every panel, up to the largest share shown (the shares are small next to 1).
    top = max(float(np.nanmax(g.to_numpy(float))) for g in grids if not g.empty)
    fig = make_subplots(rows=1, cols=len(variants), subplot_titles=titles, shared_yaxes=True)
    for col, grid in enumerate(grids, start=1):
        if grid.empty:
            continue
        fig.add_trace(go.Heatmap(z=np.round(grid.to_numpy(float), 4), x=[str(s) for s in grid.columns],
                                 y=[str(int(b)) for b in grid.index], coloraxis="coloraxis", texttemplate="%{z:.0%}",
                                 hovertemplate="block %{y}<br>step %{x}<br>share %{z}<extra></extra>"), row=1, col=col)  # fmt: skip
    fig.update_xaxes(title_text="step", type="category")
    fig.update_yaxes(title_text="block", type="category", autorange="reversed", row=1, col=1)
    fig.update_layout(coloraxis=dict(colorscale="Viridis", cmin=0, cmax=max(top, 1e-6), colorbar=dict(title="share")),
                      margin=dict(l=60, r=20, t=50, b=50))  # fmt: skip
    return fig


def lab_sentence_figure(table: pd.DataFrame) -> go.Figure:
    """Held-out accuracy of the sentence objective (NSP or SOP) per checkpoint and variant, with
    95% intervals; chance is 50%."""
    variants = _variants(table)
    fig = go.Figure()
    for i, v in enumerate(variants):
        rows = table[(table["variant"] == v) & table["metric"].isin(["heldout_nsp_accuracy", "heldout_sop_accuracy"])]
        rows = rows.sort_values("step")
        if rows.empty:
            continue
        fig.add_trace(go.Scatter(
            x=rows["step"], y=rows["value"].round(4), name=safe_text(v), mode="lines+markers", line=dict(color=_colour(i)),
            error_y=dict(type="data", symmetric=False, array=(rows["high"] - rows["value"]).round(4),
                         arrayminus=(rows["value"] - rows["low"]).round(4)),
        ))  # fmt: skip
    fig.add_hline(y=0.5, line=dict(dash="dot", color="#7f7f7f"), annotation_text="chance")
    fig.update_layout(xaxis_title="step", yaxis=dict(title="held-out accuracy", range=[0, 1]),
                      margin=dict(l=60, r=20, t=30, b=50), legend_title_text="variant")  # fmt: skip
    return fig


def lab_figures(table: pd.DataFrame) -> dict[str, go.Figure]:
    """Every lab figure that ``table`` has the rows for, by registry key."""
    out = {"lab.curves": lab_curves_figure(table)}
    metrics = set(table["metric"])
    if metrics & {"probe_cls", "probe_mean"}:
        out["lab.probe"] = lab_probe_figure(table)
    if metrics & {"attention_to_cls", "attention_to_sep"}:
        out["lab.sink"] = lab_sink_figure(table)
    if metrics & {"heldout_nsp_accuracy", "heldout_sop_accuracy"}:
        out["lab.sentence"] = lab_sentence_figure(table)
    return out


register("lab.curves", lab_curves_figure)
register("lab.probe", lab_probe_figure)
register("lab.sink", lab_sink_figure)
register("lab.sentence", lab_sentence_figure)
