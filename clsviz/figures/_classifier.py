"""Figures for a fine-tuned classifier: its own head read through every layer (the lens)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from ._common import safe_text
from .registry import register

__all__ = ["lens_figure", "mean_lens_figure"]

_COLORS = qualitative.D3 + qualitative.Set2 + qualitative.Pastel1
_READING_NAMES = {"cls": "[CLS]", "mean": "the mean of all tokens"}


def _shown_labels(rows: pd.DataFrame, value: str, max_labels: int) -> list[str]:
    """Labels in id order; with more than ``max_labels``, those reaching the highest values."""
    labels = list(dict.fromkeys(rows["label"]))
    if len(labels) <= max_labels:
        return labels
    peak = rows.groupby("label", sort=False)[value].max()
    keep = set(peak.sort_values(ascending=False).index[:max_labels])
    return [label for label in labels if label in keep]


def lens_figure(
    table: pd.DataFrame,
    reading: str = "cls",
    settled: int | None = None,
    cls_token: str = "[CLS]",
    max_labels: int = 10,
) -> go.Figure:
    """The head's probability for each label (its logit for a regression head) against the layer
    it reads, from a :func:`clsviz.heads.lens_table`; filled markers where a label is the head's top
    pick. ``settled`` (a :func:`clsviz.heads.settled_layer`) draws a line where the answer stops
    changing. At most ``max_labels`` labels are drawn (the most probable ones)."""
    rows = table[table["reading"] == reading]
    if rows.empty:
        raise ValueError(f"The lens table has no '{reading}' rows (readings: {', '.join(sorted(set(table['reading'])))}).")
    value = "logit" if rows["probability"].isna().all() else "probability"
    labels = _shown_labels(rows, value, max_labels)
    layers = sorted(int(x) for x in rows["layer"].unique())
    fig = go.Figure()
    for i, label in enumerate(labels):
        line = rows[rows["label"] == label].sort_values("layer")
        name = safe_text(label)
        top = line["top"].to_numpy(dtype=bool)
        fig.add_trace(
            go.Scatter(
                x=line["layer"].tolist(),
                y=np.round(line[value].to_numpy(dtype=np.float64), 4).tolist(),
                mode="lines+markers",
                name=name,
                line=dict(color=_COLORS[i % len(_COLORS)], width=2.5),
                marker=dict(
                    size=np.where(top, 11, 6).tolist(),
                    symbol=["circle" if t else "circle-open" for t in top],
                ),
                hovertemplate=f"{name}<br>layer %{{x}}<br>{value} %{{y:.3f}}<extra></extra>",
            )
        )
    if settled is not None:
        fig.add_vline(x=settled, line=dict(color="#7f7f7f", dash="dash", width=1.5))
    who = _READING_NAMES.get(reading, reading).replace("[CLS]", safe_text(cls_token))
    hidden = len(set(rows["label"])) - len(labels)
    fig.update_layout(
        title=f"The classifier's head reading {who} at every layer"
        + (f" ({hidden} less likely labels not drawn)" if hidden else ""),
        xaxis=dict(title="layer the head reads (0 = embeddings)", tickmode="array", tickvals=layers),
        yaxis=dict(title=value, **({"range": [0, 1.02], "tickformat": ".0%"} if value == "probability" else {})),
        legend=dict(title="label"),
        margin=dict(l=60, r=20, t=50, b=50),
        height=420,
    )
    return fig


def mean_lens_figure(table: pd.DataFrame, cls_token: str = "[CLS]", max_labels: int = 10) -> go.Figure:
    """:func:`lens_figure` of the ``"mean"`` rows: the head reading the mean of all tokens."""
    return lens_figure(table, "mean", None, cls_token, max_labels)


register("classifier.lens", lens_figure)
register("classifier.mean_lens", mean_lens_figure)
