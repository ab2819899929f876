"""Figures for the causal tests on [CLS]: knockouts, patching, head ablation, the massive
dimensions and registers.

Each function takes a table of :mod:`clsviz.experiments.interventions` (a sweep's ``table``
and, where it has one, its ``attention`` table) and returns a ``go.Figure``. The same figure
draws one sentence (no labels: the accuracy panels are left out) and a corpus.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import safe_text
from .registry import register

__all__ = [
    "head_ablation_figure",
    "knockout_figure",
    "massive_figure",
    "patch_profile_figure",
    "patching_figure",
    "registers_figure",
]

_KNOCKOUT_LINES = (
    ("cls", "from", "[CLS]: reads of the words cut from block b upward", "#d62728", "solid"),
    ("cls", "only", "[CLS]: reads cut at block b only", "#d62728", "dot"),
    ("mean", "from", "mean pooling: every token's reads cut from block b upward", "#1f77b4", "solid"),
    ("mean", "only", "mean pooling: every token's reads cut at block b only", "#1f77b4", "dot"),
)
_ROLE_COLORS = {"cls": "#d62728", "registers": "#9467bd", "special": "#ff7f0e", "content": "#1f77b4"}
_ROLE_NAMES = {"cls": "[CLS]", "registers": "registers", "special": "other special tokens", "content": "the words"}


def _has(table: pd.DataFrame, column: str) -> bool:
    return column in table.columns and table[column].notna().any()


def _values(series) -> list:
    return np.round(series.to_numpy(dtype=float), 4).tolist()


def _error_bars(table: pd.DataFrame, column: str, low: str, high: str) -> dict | None:
    """Plotly error bars from interval columns (None when the table has none)."""
    if not (_has(table, low) and _has(table, high)):
        return None
    value = table[column].to_numpy(dtype=float)
    up = np.nan_to_num(table[high].to_numpy(dtype=float) - value)
    down = np.nan_to_num(value - table[low].to_numpy(dtype=float))
    return dict(type="data", array=np.round(up, 5).tolist(), arrayminus=np.round(down, 5).tolist(), visible=True)


_MODE_NAMES = {"zero": "zeroed", "mean": "set to mean", "random_zero": "random dims zeroed",
               "random_mean": "random dims set to mean"}  # fmt: skip


def knockout_figure(table: pd.DataFrame) -> go.Figure:
    """Cosine of the final vector to its clean self (and probe accuracy, with labels) against
    the block where the reads are cut; ``table``: :func:`knockout_sweep`'s."""
    accuracy = _has(table, "accuracy")
    cols = 2 if accuracy else 1
    titles = ("final vector: cosine to its clean self", "probe accuracy (fitted on clean vectors)")[:cols]
    fig = make_subplots(rows=1, cols=cols, subplot_titles=titles, horizontal_spacing=0.1)
    for reading, scope, name, color, dash in _KNOCKOUT_LINES:
        rows = table[(table["reading"] == reading) & (table["scope"] == scope)].sort_values("block")
        if rows.empty:
            continue
        for col, column in enumerate(("cosine", "accuracy")[:cols], start=1):
            errors = _error_bars(rows, "cosine", "cosine_low", "cosine_high") if column == "cosine" else None
            fig.add_trace(go.Scatter(
                x=rows["block"].tolist(), y=_values(rows[column]), mode="lines+markers", name=name, error_y=errors,
                legendgroup=f"{reading}.{scope}", showlegend=col == 1, line=dict(color=color, dash=dash),
                hovertemplate=f"{name}<br>block %{{x}}: %{{y:.4f}}<extra></extra>",
            ), row=1, col=col)  # fmt: skip
    if accuracy:
        for reading, color in (("cls", "#d62728"), ("mean", "#1f77b4")):
            clean = table.loc[table["reading"] == reading, "clean_accuracy"]
            if len(clean):
                fig.add_hline(y=float(clean.iloc[0]), line=dict(color=color, dash="dash", width=1), row=1, col=2)
        fig.add_hline(y=float(table["chance"].iloc[0]), line=dict(color="#7f7f7f", dash="dot", width=1), row=1, col=2)
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title_text="block b (1-based)", dtick=1)
    fig.update_layout(height=440, legend=dict(orientation="h", y=-0.25), margin=dict(l=60, r=20, t=60, b=40))
    return fig


def patch_profile_figure(table: pd.DataFrame, source: str | None = None) -> go.Figure:
    """One pair of sentences: the target's final [CLS] after [CLS] is patched from the source
    at each layer, against the source's and the target's clean final [CLS] (:func:`patch_profile`).
    ``source``: the source sentence, named (escaped) in the title when given."""
    fig = go.Figure()
    for column, name, color in (("cos_to_source", "cosine to the source's final [CLS]", "#d62728"),
                                ("cos_to_target", "cosine to the target's own final [CLS]", "#1f77b4")):  # fmt: skip
        fig.add_trace(go.Scatter(
            x=table["layer"].tolist(), y=_values(table[column]), mode="lines+markers", name=name, line=dict(color=color),
            hovertemplate=f"{name}<br>patched at layer %{{x}}: %{{y:.4f}}<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(
        xaxis=dict(title="layer where [CLS] is patched (0 = embeddings)", dtick=1),
        yaxis=dict(title="cosine"), height=380, margin=dict(l=60, r=20, t=40 if source is None else 60, b=50),
        legend=dict(orientation="h", y=-0.3),
    )  # fmt: skip
    if source is not None:
        fig.update_layout(title=dict(text=f"Source: {safe_text(_short(source))}", font=dict(size=13)))
    return fig


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def patching_figure(table: pd.DataFrame) -> go.Figure:
    """Share of sentence pairs whose patched [CLS] is read as the source's label (flip) or
    still as the target's, per layer where [CLS] is patched (:func:`patching_sweep`)."""
    fig = go.Figure()
    lines = (("flip_rate", "read as the source's label (flip)", "#d62728", "solid"),
             ("kept_rate", "still read as the target's label", "#1f77b4", "solid"),
             ("cos_to_source", "cosine to the source's final [CLS]", "#7f7f7f", "dash"))  # fmt: skip
    for column, name, color, dash in lines:
        fig.add_trace(go.Scatter(
            x=table["layer"].tolist(), y=_values(table[column]), mode="lines+markers", name=name,
            line=dict(color=color, dash=dash), hovertemplate=f"{name}<br>layer %{{x}}: %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(
        xaxis=dict(title="layer where [CLS] is patched (0 = embeddings)", dtick=1),
        yaxis=dict(title="share of pairs / cosine", range=[-0.02, 1.02]), height=400,
        margin=dict(l=60, r=20, t=40, b=50), legend=dict(orientation="h", y=-0.3),
    )  # fmt: skip
    return fig


def _grid(table: pd.DataFrame, column: str) -> np.ndarray:
    return table.pivot(index="block", columns="head", values=column).sort_index().to_numpy(dtype=float)


def head_ablation_figure(table: pd.DataFrame) -> go.Figure:
    """Blocks x heads: how far ablating each head alone moves the final [CLS] (1 - cosine),
    beside the attention the other tokens pay to [CLS] in that head; each cell is marked
    with its role (A aggregator, S sink, I important). ``table``: :func:`head_sweep`'s."""
    blocks = sorted(table["block"].unique())
    heads = [int(h) + 1 for h in sorted(table["head"].unique())]
    y = [f"block {b}" for b in blocks]
    effect, parked = _grid(table, "effect"), _grid(table, "attention_to_cls")
    marks = table.pivot(index="block", columns="head", values="role").sort_index().to_numpy()
    letters = np.vectorize({"aggregator": "A", "sink": "S", "important": "I"}.get)(marks, "")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "ablating the head: final [CLS] moves (1 - cosine)", "clean run: other tokens' attention on [CLS]"))  # fmt: skip
    fig.add_trace(go.Heatmap(
        z=np.round(effect, 6), x=heads, y=y, text=letters, texttemplate="%{text}", colorscale="Reds",
        colorbar=dict(title="1 - cos", x=0.42, thickness=12), hovertemplate="%{y}, head %{x}<br>1 - cos %{z:.2e}<br>%{text}<extra></extra>",
    ), row=1, col=1)  # fmt: skip
    fig.add_trace(go.Heatmap(
        z=np.round(parked, 4), x=heads, y=y, text=letters, texttemplate="%{text}", colorscale="Viridis", zmin=0, zmax=1,
        colorbar=dict(title="share", thickness=12), hovertemplate="%{y}, head %{x}<br>attention on [CLS] %{z:.1%}<extra></extra>",
    ), row=1, col=2)  # fmt: skip
    fig.update_xaxes(title_text="head", type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_yaxes(showticklabels=False, row=1, col=2)  # the same blocks as on the left
    fig.update_layout(height=120 + 40 * len(blocks), margin=dict(l=80, r=20, t=60, b=50))
    return fig


def _share_lines(fig, attention: pd.DataFrame, group: str, roles, col: int, dashes) -> None:
    for i, (key, rows) in enumerate(attention.groupby(group, sort=False)):
        for role in roles:
            r = rows[rows["role"] == role].sort_values("block")
            if role == "registers" and key == 0:
                continue  # no registers: nothing to draw
            name = f"{_ROLE_NAMES[role]}, {group} = {key}" if group == "k" else f"{_ROLE_NAMES[role]}, {key}"
            fig.add_trace(go.Scatter(
                x=r["block"].tolist(), y=_values(r["share"]), mode="lines+markers", name=name,
                line=dict(color=_ROLE_COLORS[role], dash=dashes[i % len(dashes)], width=1.5 + (role == "cls")),
                hovertemplate=f"{name}<br>block %{{x}}: %{{y:.1%}}<extra></extra>",
            ), row=1, col=col)  # fmt: skip


def massive_figure(table: pd.DataFrame, attention: pd.DataFrame) -> go.Figure:
    """Left: the final [CLS] (cosine with its 95% interval, and the probe) after zeroing the
    massive dimensions vs setting them to their mean, and the same for as many random dimensions
    (the control); right: the words' attention on [CLS] and on the words, block by block, clean /
    zeroed / mean (:func:`massive_sweep`)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65], horizontal_spacing=0.12, subplot_titles=(
        "final [CLS]", "where the words' attention goes after the change"))  # fmt: skip
    measures = [("cosine", "cosine to its clean self", "#7f7f7f")]
    if _has(table, "accuracy"):
        measures.append(("accuracy", "probe accuracy", "#2ca02c"))
    modes = [_MODE_NAMES.get(m, m) for m in table["mode"]]
    for column, name, color in measures:
        errors = _error_bars(table, "cosine", "cosine_low", "cosine_high") if column == "cosine" else None
        fig.add_trace(go.Bar(
            x=modes, y=_values(table[column]), name=name, marker_color=color, error_y=errors,
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
        ), row=1, col=1)  # fmt: skip
    _share_lines(fig, attention, "mode", ("cls", "content"), 2, ("solid", "dash", "dot"))
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="share of attention", tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title_text="block", dtick=1, row=1, col=2)
    dims, layer = table["dims"].iloc[0], int(table["layer"].iloc[0])
    fig.update_xaxes(tickangle=-30, row=1, col=1)
    fig.update_layout(title=f"Dimensions {dims} of the special tokens set at layer {layer}", barmode="group",
                      height=440, margin=dict(l=60, r=20, t=80, b=40), legend=dict(orientation="h", y=-0.25))  # fmt: skip
    return fig


def registers_figure(table: pd.DataFrame, attention: pd.DataFrame) -> go.Figure:
    """Left: per block, the words' attention on [CLS] and on the registers for each number of
    registers k; right: the [CLS] probe's accuracy (with labels) or the final [CLS]'s cosine to
    the run without registers, per k (:func:`register_sweep`)."""
    right = ("accuracy", "[CLS] probe accuracy") if _has(table, "accuracy") else ("cos_to_no_registers", "final [CLS]: cosine to no registers")
    fig = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35], horizontal_spacing=0.1, subplot_titles=(
        "where the words' attention goes", right[1]))  # fmt: skip
    _share_lines(fig, attention[attention["k"].isin([table["k"].min(), table["k"].max()])], "k",
                 ("cls", "registers"), 1, ("solid", "dash"))  # fmt: skip
    fig.add_trace(go.Bar(
        x=[str(k) for k in table["k"]], y=_values(table[right[0]]), name=f"registers: {right[1]}", marker_color="#2ca02c",
        error_y=_error_bars(table, right[0], "cos_low", "cos_high") if right[0] == "cos_to_no_registers" else None,
        hovertemplate="k = %{x}: %{y:.3f}<extra></extra>",
    ), row=1, col=2)  # fmt: skip
    shift = f"shift_{right[0]}"
    if _has(table, shift):  # the control: no registers, the words moved k positions right
        fig.add_trace(go.Bar(
            x=[str(k) for k in table["k"]], y=_values(table[shift]), name="shift-only control (no registers)",
            marker_color="#bcbd22", hovertemplate="words shifted by %{x}: %{y:.3f}<extra></extra>",
        ), row=1, col=2)  # fmt: skip
    fig.update_xaxes(title_text="block", dtick=1, row=1, col=1)
    fig.update_xaxes(title_text="registers k", row=1, col=2)
    fig.update_yaxes(title_text="share of attention", tickformat=".0%", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(barmode="group", height=440, margin=dict(l=60, r=20, t=60, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


register("interventions.knockout", knockout_figure)
register("interventions.patch_profile", patch_profile_figure)
register("interventions.patching", patching_figure)
register("interventions.heads", head_ablation_figure)
register("interventions.massive", massive_figure)
register("interventions.registers", registers_figure)
