"""Figures of the tuned lens: the score of each layer's sentence vector read as it is and through
a fitted affine map, per pooling, with intervals (table from :mod:`clsviz.experiments.lens`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from ._common import safe_text
from .registry import register

__all__ = ["tuned_lens_figure"]

_COLORS = {"cls": "#d62728", "mean": "#1f77b4", "max": "#2ca02c"}
_DASH = {"identity": "dot", "tuned": "solid"}


def tuned_lens_figure(table: pd.DataFrame, target: str = "final") -> go.Figure:
    """Score per layer, one line per (pooling, method), error bars the 95% interval.

    ``table``: :attr:`clsviz.experiments.lens.LensResult.table`.
    """
    fig = go.Figure()
    y_title = "agreement with the model's prediction" if target == "logits" else "cosine to the last layer"
    for i, ((pooling, method), rows) in enumerate(table.groupby(["pooling", "method"], sort=False)):
        rows = rows.sort_values("layer")
        score = rows["score"].to_numpy(dtype=float)
        color = _COLORS.get(pooling, qualitative.Plotly[i % len(qualitative.Plotly)])
        name = safe_text(f"{pooling} · {method}")
        fig.add_trace(
            go.Scatter(
                x=rows["layer"].tolist(),
                y=np.round(score, 4),
                mode="lines+markers",
                name=name,
                line=dict(color=color, dash=_DASH.get(method, "solid")),
                error_y=dict(type="data", symmetric=False, thickness=1, width=3,
                             array=np.round(rows["high"].to_numpy(dtype=float) - score, 4),
                             arrayminus=np.round(score - rows["low"].to_numpy(dtype=float), 4)),
                hovertemplate=f"{name}<br>layer %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    for i, (pooling, rows) in enumerate(table.groupby("pooling", sort=False)):
        if "floor" in rows and np.isfinite(rows["floor"].iloc[0]):
            color = _COLORS.get(pooling, qualitative.Plotly[i % len(qualitative.Plotly)])
            floor = round(float(rows["floor"].iloc[0]), 4)
            layers = sorted(rows["layer"].unique().tolist())
            fig.add_trace(go.Scatter(x=layers, y=[floor] * len(layers), mode="lines", opacity=0.5,
                                     name=safe_text(f"{pooling} · guess without the vector"),
                                     line=dict(color=color, dash="dash", width=1),
                                     hovertemplate=f"ignoring the vector: {floor:.3f}<extra></extra>"))
    low = float(np.nanmin(table["low"])) if len(table) else 0.0
    fig.update_layout(
        title="When is the sentence vector decided? (tuned lens, held-out texts)",
        xaxis=dict(title="layer (0 = embeddings)", dtick=1),
        yaxis=dict(title=y_title, range=[min(0.0, low - 0.02), 1.02]),
        height=420,
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
        margin=dict(l=50, r=20, t=50, b=100),
    )
    return fig


register("lens.tuned", tuned_lens_figure)
