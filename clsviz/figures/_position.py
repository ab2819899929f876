"""Figures for the "Why first?" page: the position variants across layers, and the probe on
vectors read from a moved [CLS].

Each function takes a table from :mod:`clsviz.experiments.position` and returns a ``go.Figure``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ._common import safe_text
from .registry import register

__all__ = ["position_figure", "position_probe_figure", "variant_tokens_figure"]

_COLORS = qualitative.Plotly
_PANELS = (
    ("cos_to_standard_cls", "cosine to the standard [CLS]"),
    ("attention_received", "attention received (mean over heads, queries)"),
    ("cos_to_mean", "cosine to the mean of the text tokens"),
)


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def position_figure(table: pd.DataFrame, title: str = "Where [CLS] sits, and what changes") -> go.Figure:
    """Three panels over layers, one line per variant: cosine of the slot vector to the standard
    [CLS], attention the slot receives, cosine to the mean of the text tokens.

    ``table``: :attr:`PositionResult.table`. The first panel also draws the standard [CLS]'s
    mean cosine to a single text token (dashed): the level of "similar" in this space.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in _PANELS], horizontal_spacing=0.07)
    for i, (variant, rows) in enumerate(table.groupby("variant", sort=False)):
        rows = rows.sort_values("layer")
        label = safe_text(rows["label"].iloc[0])
        slot = safe_text(rows["slot_token"].iloc[0])
        for col, (column, _) in enumerate(_PANELS, start=1):
            keep = rows[column].notna()
            fig.add_trace(
                go.Scatter(
                    x=rows.loc[keep, "layer"].tolist(),
                    y=np.round(rows.loc[keep, column].to_numpy(dtype=float), 4),
                    mode="lines+markers",
                    name=label,
                    legendgroup=variant,
                    showlegend=col == 1,
                    line=dict(color=_color(i), dash="solid" if variant == "standard" else None),
                    hovertemplate=f"{label}<br>slot token: {slot}<br>layer %{{x}}: %{{y}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    if "standard_cls_to_tokens" in table.columns:
        ref = table.drop_duplicates("layer").sort_values("layer")
        fig.add_trace(
            go.Scatter(
                x=ref["layer"].tolist(),
                y=np.round(ref["standard_cls_to_tokens"].to_numpy(dtype=float), 4),
                mode="lines",
                name="standard [CLS] vs a text token (yardstick)",
                line=dict(color="#7f7f7f", dash="dash"),
                hovertemplate="mean cosine of the standard [CLS] to a text token<br>layer %{x}: %{y}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.update_xaxes(title_text="layer (0 = embeddings)", dtick=1)
    fig.update_yaxes(range=[-0.2, 1.05], row=1, col=1)
    fig.update_yaxes(range=[-0.2, 1.05], row=1, col=3)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_layout(
        title=title,
        height=440,
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
        margin=dict(l=50, r=20, t=80, b=120),
    )
    return fig


def variant_tokens_figure(variants, max_tokens: int = 40) -> go.Figure:
    """The token sequence of each variant as a grid; the slot read as [CLS] is highlighted.

    ``variants``: :class:`PositionVariant` objects. Long inputs show their first ``max_tokens``.
    """
    names = [v.label for v in variants]
    width = min(max(len(v.tokens) for v in variants), max_tokens)
    z = np.full((len(variants), width), np.nan)
    text = [["" for _ in range(width)] for _ in variants]
    hover = [["" for _ in range(width)] for _ in variants]
    for r, v in enumerate(variants):
        for c in range(min(len(v.tokens), width)):
            z[r, c] = 2 if c == v.slot else (0 if v.content_mask[c] else 1)
            text[r][c] = safe_text(v.tokens[c])
            hover[r][c] = f"{safe_text(v.label)}<br>index {c}, position id {int(v.position_ids[c])}<br>{text[r][c]}"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(width)),
            y=[safe_text(n) for n in names],
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hoverinfo="text",
            zmin=0,
            zmax=2,
            colorscale=[[0, "#dbe9f6"], [0.5, "#f2f2f2"], [1, "#f4a582"]],
            showscale=False,
            xgap=2,
            ygap=2,
        )
    )
    fig.update_layout(
        title="The inputs (orange: the slot read as [CLS]; blue: text tokens; grey: other specials)",
        xaxis=dict(title="index in the input", dtick=1),
        yaxis=dict(autorange="reversed"),
        height=110 + 34 * len(variants),
        margin=dict(l=20, r=20, t=50, b=40),
    )
    return fig


def position_probe_figure(table: pd.DataFrame, label_name: str = "label") -> go.Figure:
    """Probe accuracy (± sd over folds) per layer, one line per variant, with the chance and
    majority-class baselines. ``table``: the first value of :func:`position_probe`."""
    fig = go.Figure()
    for i, (_variant, rows) in enumerate(table.groupby("variant", sort=False)):
        rows = rows.sort_values("layer")
        label = safe_text(rows["label"].iloc[0])
        fig.add_trace(
            go.Scatter(
                x=rows["layer"].tolist(),
                y=np.round(rows["accuracy"].to_numpy(dtype=float), 4),
                error_y=dict(type="data", array=np.round(rows["accuracy_sd"].to_numpy(dtype=float), 4), thickness=1),
                mode="lines+markers",
                name=label,
                line=dict(color=_color(i)),
                hovertemplate=f"{label}<br>layer %{{x}}: accuracy %{{y}}<extra></extra>",
            )
        )
    if not table.empty:
        layers = sorted(table["layer"].unique().tolist())
        for column, name, dash in (("majority", "majority class", "dash"), ("chance", "chance (1 / classes)", "dot")):
            value = float(table[column].iloc[0])
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=[round(value, 4)] * len(layers),
                    mode="lines",
                    name=name,
                    line=dict(color="#7f7f7f", dash=dash),
                    hovertemplate=f"{name}: {value:.3f}<extra></extra>",
                )
            )
    fig.update_layout(
        title=f"Probe accuracy for '{safe_text(label_name)}' with [CLS] read where it sits",
        xaxis=dict(title="layer (0 = embeddings)", dtick=1),
        yaxis=dict(title="cross-validated accuracy", range=[0, 1.02]),
        height=440,
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0),
        margin=dict(l=50, r=20, t=50, b=110),
    )
    return fig


register("position.tokens", variant_tokens_figure)
register("position.lines", position_figure)
register("position.probe", position_probe_figure)
