"""Figures for the "Can we get the sentence back?" page: nearest neighbours, paraphrase
recall@1, bag-of-words decoding and the MLM-head reading.

Each function takes a table from :mod:`clsviz.experiments.inversion` and returns a ``go.Figure``.
Sentences and tokens reach plotly escaped (:func:`safe_text`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ._common import safe_text
from .registry import register

__all__ = [
    "neighbours_figure",
    "recall_figure",
    "bow_f1_figure",
    "decoded_words_figure",
    "mlm_reading_figure",
    "ladder_figure",
]

_POOLING_COLORS = {"cls": "#d62728", "mean": "#1f77b4"}


def _color(pooling: str, i: int) -> str:
    return _POOLING_COLORS.get(pooling, qualitative.Plotly[i % len(qualitative.Plotly)])


def _short(text: str, limit: int = 60) -> str:
    text = str(text)
    return safe_text(text if len(text) <= limit else text[: limit - 1] + "…")


def _layer_lines(table: pd.DataFrame, column: str, hover: str) -> go.Figure:
    fig = go.Figure()
    for i, (pooling, rows) in enumerate(table.groupby("pooling", sort=False)):
        rows = rows.sort_values("layer")
        fig.add_trace(
            go.Scatter(
                x=rows["layer"].tolist(),
                y=np.round(rows[column].to_numpy(dtype=float), 4),
                mode="lines+markers",
                name=safe_text(pooling),
                line=dict(color=_color(pooling, i)),
                hovertemplate=f"{safe_text(pooling)}<br>layer %{{x}}: {hover} %{{y}}<extra></extra>",
            )
        )
    return fig


def _baseline(fig: go.Figure, layers: list, value: float, name: str) -> None:
    fig.add_trace(
        go.Scatter(
            x=layers,
            y=[round(float(value), 4)] * len(layers),
            mode="lines",
            name=name,
            line=dict(color="#7f7f7f", dash="dash"),
            hovertemplate=f"{name}: {value:.3f}<extra></extra>",
        )
    )


def _finish(fig: go.Figure, title: str, y_title: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis=dict(title="layer (0 = embeddings)", dtick=1),
        yaxis=dict(title=y_title, range=[0, 1.02]),
        height=height,
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
        margin=dict(l=50, r=20, t=50, b=100),
    )
    return fig


def neighbours_figure(table: pd.DataFrame, title: str = "Nearest corpus sentences") -> go.Figure:
    """Bars of the top-k cosines, one panel per pooling, stacked so long sentences stay readable.

    ``table``: rows of :func:`nearest_neighbours` with a ``pooling`` column added.
    """
    poolings = list(dict.fromkeys(table["pooling"]))
    k = int(table.groupby("pooling").size().max())
    fig = make_subplots(
        rows=len(poolings), cols=1, subplot_titles=[safe_text(s) for s in poolings], vertical_spacing=0.12
    )
    for row, pooling in enumerate(poolings, start=1):
        rows = table[table["pooling"] == pooling].sort_values("rank")
        labels = [f"{int(r)}. {_short(t, 70)}" for r, t in zip(rows["rank"], rows["text"])]
        fig.add_trace(
            go.Bar(
                x=np.round(rows["cosine"].to_numpy(dtype=float), 4),
                y=labels,
                orientation="h",
                marker_color=_color(pooling, row),
                hovertext=[f"{_short(t, 200)}<br>cosine {c:.3f}" for t, c in zip(rows["text"], rows["cosine"])],
                hoverinfo="text",
                showlegend=False,
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(autorange="reversed", type="category", row=row, col=1)
        fig.update_xaxes(title_text="cosine", row=row, col=1)
    fig.update_layout(
        title=title, height=120 + len(poolings) * (60 + 26 * k), margin=dict(l=20, r=20, t=70, b=40)
    )
    return fig


def recall_figure(table: pd.DataFrame) -> go.Figure:
    """recall@1 of the paraphrase partner per layer, one line per pooling, with chance."""
    fig = _layer_lines(table, "recall_at_1", "recall@1")
    if not table.empty:
        _baseline(fig, sorted(table["layer"].unique().tolist()), float(table["chance"].iloc[0]), "random pick")
    return _finish(fig, "Is the nearest other sentence its paraphrase? (recall@1)", "recall@1")


def bow_f1_figure(table: pd.DataFrame) -> go.Figure:
    """Held-out bag-of-words F1 per layer, one line per pooling, with the frequency baseline."""
    fig = _layer_lines(table, "f1", "F1")
    if not table.empty:
        _baseline(
            fig, sorted(table["layer"].unique().tolist()), float(table["baseline_f1"].iloc[0]), "frequent words, no vector"
        )
    return _finish(fig, "Which words does a linear decoder read from the vector? (held-out F1)", "micro F1")


def decoded_words_figure(table: pd.DataFrame, title: str = "Top words the decoder reads") -> go.Figure:
    """Bars of the decoder's top-k word scores; words that are in the sentence are highlighted.

    ``table``: :attr:`DecodedWords.table` (rank, word, score, in_sentence).
    """
    rows = table.sort_values("rank")
    colors = ["#2ca02c" if hit else "#c7c7c7" for hit in rows["in_sentence"]]
    fig = go.Figure(
        go.Bar(
            x=np.round(rows["score"].to_numpy(dtype=float), 4),
            y=[safe_text(w) for w in rows["word"]],
            orientation="h",
            marker_color=colors,
            hovertext=[
                f"{safe_text(w)}: score {s:.3f}<br>{'in the sentence' if hit else 'not in the sentence'}"
                for w, s, hit in zip(rows["word"], rows["score"], rows["in_sentence"])
            ],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title=title + " (green: in the sentence)",
        xaxis=dict(title="decoder score"),
        yaxis=dict(autorange="reversed", type="category"),
        height=120 + 26 * len(rows),
        margin=dict(l=20, r=20, t=50, b=40),
    )
    return fig


def mlm_reading_figure(table: pd.DataFrame) -> go.Figure:
    """The MLM head's top tokens per layer: rows = layers, columns = rank, colour = probability.

    ``table``: :func:`mlm_reading` output (layer, rank, token, probability).
    """
    layers = sorted(table["layer"].unique().tolist())
    ranks = sorted(table["rank"].unique().tolist())
    z = np.full((len(layers), len(ranks)), np.nan)
    text = [["" for _ in ranks] for _ in layers]
    for _, r in table.iterrows():
        i, j = layers.index(int(r["layer"])), ranks.index(int(r["rank"]))
        z[i, j] = float(r["probability"])
        text[i][j] = safe_text(r["token"])
    fig = go.Figure(
        go.Heatmap(
            z=np.round(z, 4),
            x=[f"#{k}" for k in ranks],
            y=[f"layer {k}" for k in layers],
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            colorbar=dict(title="probability"),
            hovertemplate="%{y}, %{x}: %{text}<br>probability %{z}<extra></extra>",
        )
    )
    fig.update_layout(
        title="What the masked-LM head reads from the [CLS] vector",
        xaxis=dict(title="rank", type="category"),
        yaxis=dict(autorange="reversed", type="category"),
        height=120 + 34 * len(layers),
        margin=dict(l=20, r=20, t=50, b=40),
    )
    return fig


_LADDER_PANELS = (("token_f1", "token F1", 1.0), ("bleu", "BLEU", 100.0), ("exact", "exact match", 1.0))
_LADDER_DASH = {"inverter": "solid", "retrieval": "dash", "bag of words": "dot"}


def ladder_figure(table: pd.DataFrame, published: pd.DataFrame | None = None) -> go.Figure:
    """Token F1, BLEU and exact match per layer (three panels), one line per (reader, pooling)
    with 95% intervals; the bag-of-words decoder's content-word F1 in the token-F1 panel;
    vec2text's published BLEU and exact match as grey lines.

    ``table``: :attr:`clsviz.experiments.ladder.LadderResult.table`; ``published``:
    :data:`clsviz.experiments.ladder.PUBLISHED`.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in _LADDER_PANELS], horizontal_spacing=0.07)
    poolings = list(dict.fromkeys(table["pooling"]))
    for col, (metric, label, top) in enumerate(_LADDER_PANELS, start=1):
        wanted = ("token_f1", "content_f1") if metric == "token_f1" else (metric,)
        for (method, pooling), rows in table[table["metric"].isin(wanted)].groupby(["method", "pooling"], sort=False):
            rows = rows.sort_values("layer")
            est = rows["estimate"].to_numpy(dtype=float)
            name = safe_text(f"{pooling} · {method}" + (" (content-word F1)" if method == "bag of words" else ""))
            fig.add_trace(
                go.Scatter(
                    x=rows["layer"].tolist(), y=np.round(est, 4), mode="lines+markers", name=name,
                    legendgroup=name, showlegend=col == 1,
                    line=dict(color=_color(pooling, poolings.index(pooling)), dash=_LADDER_DASH.get(method, "solid")),
                    error_y=dict(type="data", symmetric=False, thickness=1, width=2,
                                 array=np.round(rows["high"].to_numpy(dtype=float) - est, 4),
                                 arrayminus=np.round(est - rows["low"].to_numpy(dtype=float), 4)),
                    hovertemplate=f"{name}<br>layer %{{x}}: {label} %{{y:.3f}}<extra></extra>",
                ),
                row=1, col=col,
            )
        if published is not None and metric in published:
            for _, pub in published.dropna(subset=[metric]).iterrows():
                value = float(pub[metric])
                fig.add_hline(y=value, line=dict(color="#7f7f7f", dash="dashdot", width=1), row=1, col=col,
                              annotation_text=safe_text(f"vec2text, {int(pub['correction_steps'])} steps"),
                              annotation_font_size=10, annotation_position="bottom right")
        fig.update_yaxes(range=[0, top * 1.02], row=1, col=col)
        fig.update_xaxes(title_text="layer", dtick=1, row=1, col=col)
    fig.update_layout(
        title="How much of a held-out sentence comes back from one vector?",
        height=460, legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
        margin=dict(l=50, r=20, t=70, b=110),
    )
    return fig


register("inversion.neighbours", neighbours_figure)
register("inversion.recall", recall_figure)
register("inversion.bow", bow_f1_figure)
register("inversion.words", decoded_words_figure)
register("inversion.mlm", mlm_reading_figure)
register("inversion.ladder", ladder_figure)
