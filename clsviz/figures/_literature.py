"""Figures for the published findings: each deciding number's 95% interval against the
threshold of its rule (:func:`clsviz.literature.check_claims`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import safe_text
from .registry import register

__all__ = ["findings_intervals_figure"]

_COLORS = {"reproduces": "#2ca02c", "differs": "#d62728", "inconclusive": "#7f7f7f",
           "not measurable on this model": "#bcbd22", "not measured yet": "#c7c7c7"}  # fmt: skip


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def findings_intervals_figure(table: pd.DataFrame) -> go.Figure:
    """One row per finding whose deciding number was measured: its 95% interval (a bar,
    coloured by the verdict) and the rule's threshold (a black tick), each on its own scale.
    Rows titled by the source sit above their own axis, far enough apart not to overlap."""
    rows = table[[np.isfinite(_number(lo)) and np.isfinite(_number(hi)) for lo, hi in zip(table["low"], table["high"])]]
    n = max(1, len(rows))
    fig = make_subplots(rows=n, cols=1, vertical_spacing=min(0.5 / n, 0.12),
                        subplot_titles=[safe_text(f"{r.source} — {r.verdict}") for r in rows.itertuples()] or [""])  # fmt: skip
    for i, r in enumerate(rows.itertuples(), start=1):
        low, high = _number(r.low), _number(r.high)
        color = _COLORS.get(r.verdict, "#7f7f7f")
        fig.add_trace(go.Scatter(x=[low, high], y=[0, 0], mode="lines+markers", line=dict(color=color, width=8),
                                 marker=dict(size=10), name=safe_text(r.verdict), showlegend=False,
                                 hovertemplate=f"{safe_text(r.source)}<br>95% interval %{{x:.4g}}<extra></extra>"),
                      row=i, col=1)  # fmt: skip
        threshold = str(r.threshold)
        for part in threshold.split("–"):
            t = _number(part)
            if np.isfinite(t):
                fig.add_trace(go.Scatter(x=[t, t], y=[-0.6, 0.6], mode="lines", line=dict(color="black", width=2),
                                         showlegend=False, hovertemplate=f"threshold {t:.4g}<extra></extra>"),
                              row=i, col=1)  # fmt: skip
        fig.update_yaxes(visible=False, range=[-1, 1], row=i, col=1)
    fig.update_layout(height=110 * n + 60, margin=dict(l=40, r=20, t=50, b=30))
    fig.update_annotations(font_size=12)
    return fig


register("findings.intervals", findings_intervals_figure)
