"""Figures for the Embeddings page: projected corpora side by side, one sentence's path across
layers, and label separation across layers.

Sentences reach plotly only as hover text, escaped with ``safe_text`` (plotly renders a subset
of HTML there), so a sentence such as ``<b>hi</b>`` shows exactly as typed.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ._common import safe_text
from .registry import register

__all__ = [
    "drawn_positions",
    "plot_decimals",
    "WEBGL_THRESHOLD",
    "embedding_panels",
    "separation_figure",
    "pooling_title",
    "trajectory_figure",
]

WEBGL_THRESHOLD = 1000
"""Above this many points per panel, scatter traces use WebGL (``Scattergl``)."""

MAX_CLASSES = 20
"""Label values beyond the most frequent ``MAX_CLASSES - 1`` are drawn together as "other"."""

MISSING = "(no label)"
OTHER = "(other)"
_PALETTE = qualitative.Plotly + qualitative.D3[len(qualitative.Plotly) :] + qualitative.Set2
_GREY = "#b0b0b0"
_TYPED = "#111111"
_POOLING_COLORS = {"cls": "#d62728", "mean": "#1f77b4"}

_TITLES = {
    "cls": "[CLS]",
    "mean": "mean of all tokens",
    "mean_content": "mean of text tokens",
    "max": "max over tokens",
    "pooler": "pooler (dense + tanh on [CLS])",
    "first": "first text token",
    "last": "last text token",
    "sep": "[SEP]",
}


def pooling_title(pooling: str) -> str:
    """A readable panel title for a pooling name (``"token:3"`` -> ``"token 3"``)."""
    if pooling.startswith("token:"):
        return f"token {pooling.split(':', 1)[1]}"
    return _TITLES.get(pooling, pooling)


def _hover(text: str, width: int = 70, max_chars: int = 400) -> str:
    """A sentence as safe, wrapped hover text."""
    text = " ".join(str(text).split())
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return "<br>".join(safe_text(line) for line in textwrap.wrap(text, width) or [""])


def _scatter_type(n: int):
    return go.Scattergl if n > WEBGL_THRESHOLD else go.Scatter


def _label_kind(labels: Sequence) -> str:
    """"continuous" for numbers with many distinct values, else "categorical"."""
    values = [v for v in labels if v is not None and str(v).strip() != ""]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return "categorical"
    return "continuous" if len(set(numbers)) > 12 and all(np.isfinite(numbers)) else "categorical"


def _categories(labels: Sequence) -> tuple[list[str], list[str]]:
    """(value per point, classes in legend order) with rare classes folded into "(other)"."""
    names = [MISSING if v is None or str(v).strip() == "" else str(v) for v in labels]
    counts = Counter(n for n in names if n != MISSING)
    ordered = sorted(counts, key=lambda c: (-counts[c], c))
    if len(ordered) > MAX_CLASSES:
        kept = set(ordered[: MAX_CLASSES - 1])
        names = [n if n in kept or n == MISSING else OTHER for n in names]
        ordered = ordered[: MAX_CLASSES - 1] + [OTHER]
    if MISSING in names:
        ordered.append(MISSING)
    return names, ordered


def _class_colors(classes: list[str]) -> dict[str, str]:
    colors, i = {}, 0
    for c in classes:
        if c in (MISSING, OTHER):
            colors[c] = _GREY
        else:
            colors[c] = _PALETTE[i % len(_PALETTE)]
            i += 1
    return colors


def plot_decimals(points: np.ndarray) -> int:
    """Decimals that keep ``points`` [N, 2] apart when rounded for the page: five significant
    digits of the cloud's own spread, never fewer than 4 (a projection whose points span 0.002
    must not be drawn as a lattice)."""
    xy = np.asarray(points, dtype=np.float64)
    spread = float(np.ptp(xy[np.isfinite(xy).all(axis=1)], axis=0).max()) if len(xy) else 0.0
    if spread <= 0:
        return 4
    return int(min(12, max(4, 4 - np.floor(np.log10(spread)))))


def drawn_positions(points: np.ndarray, decimals: int | None = None) -> int:
    """How many distinct positions ``points`` [N, 2] occupy once rounded for the page."""
    xy = np.asarray(points, dtype=np.float64)
    if not len(xy):
        return 0
    return len(np.unique(np.round(xy, plot_decimals(xy) if decimals is None else decimals), axis=0))


def _xy(points: np.ndarray, decimals: int) -> dict:
    xy = np.asarray(points, dtype=np.float64)
    return dict(x=np.round(xy[:, 0], decimals), y=np.round(xy[:, 1], decimals))


def _typed_trace(t: np.ndarray, typed_texts: Sequence[str], decimals: int, show_legend: bool):
    """The person's sentences, as numbered stars."""
    return go.Scatter(
        **_xy(t, decimals),
        mode="markers+text",
        name="your sentences",
        legendgroup="your sentences",
        showlegend=show_legend,
        text=[str(i + 1) for i in range(len(t))],
        textposition="top center",
        textfont=dict(size=13, color=_TYPED),
        marker=dict(size=17, symbol="star", color="#ffd92f", line=dict(width=1.5, color=_TYPED)),
        hovertext=[f"<b>your sentence {i + 1}</b><br>{_hover(s)}" for i, s in enumerate(typed_texts)],
        hovertemplate="%{hovertext}<extra></extra>",
    )


def _corpus_traces(xy, texts, labels, label_name: str, n: int, show_legend: bool, decimals: int) -> list:
    """The corpus points of one panel: a trace per class (categorical labels) or one trace."""
    Scatter = _scatter_type(n)
    hover = [_hover(t) for t in texts]
    safe_label = safe_text(str(label_name))
    kind = "none" if labels is None else _label_kind(labels)
    if kind == "categorical":
        names, classes = _categories(labels)
        colors = _class_colors(classes)
        names = np.asarray(names, dtype=object)
        return [
            Scatter(
                **_xy(xy[idx], decimals), mode="markers", name=safe_text(c), legendgroup=c, showlegend=show_legend,
                marker=dict(size=6, color=colors[c], opacity=0.75),
                hovertext=[f"{hover[i]}<br><i>{safe_label}: {safe_text(c)}</i>" for i in idx],
                hovertemplate="%{hovertext}<extra></extra>",
            )
            for c in classes
            for idx in [np.flatnonzero(names == c)]
        ]
    marker = dict(size=6, opacity=0.75, color="#1f77b4")
    if kind == "continuous":
        values = [np.nan if v is None or str(v).strip() == "" else float(v) for v in labels]
        marker.update(color=values, colorscale="Viridis", showscale=show_legend,
                      colorbar=dict(title=dict(text=safe_label)))
        hover = [f"{h}<br><i>{safe_label}: {v:g}</i>" for h, v in zip(hover, values)]
    return [Scatter(**_xy(xy, decimals), mode="markers", name="corpus", showlegend=False, marker=marker,
                    hovertext=hover, hovertemplate="%{hovertext}<extra></extra>")]


def embedding_panels(
    coords: Mapping[str, np.ndarray],
    texts: Sequence[str],
    labels: Sequence | None = None,
    label_name: str = "label",
    typed: Mapping[str, np.ndarray] | None = None,
    typed_texts: Sequence[str] = (),
    subtitles: Mapping[str, str] | None = None,
    title: str = "",
) -> go.Figure:
    """Side-by-side 2-D projections of the same texts, one panel per entry of ``coords``.

    coords : panel title -> float array [N, 2] (row i is ``texts[i]`` in every panel)
    labels : N values to colour by (categories, or numbers with many values on a colour scale)
    typed : panel title -> [M, 2], the person's own sentences placed into each projection,
        drawn as numbered stars; ``typed_texts`` are their M texts
    subtitles : panel title -> a short line shown under the panel title (e.g. the scores)
    Coordinates are rounded relative to each panel's spread (:func:`plot_decimals`).
    """
    panels = list(coords)
    if not panels:
        raise ValueError("embedding_panels needs at least one panel")
    n = len(texts)
    for name in panels:
        shape = np.shape(coords[name])
        if shape != (n, 2):
            raise ValueError(f"coords[{name!r}]: expected shape ({n}, 2), got {shape}")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: expected {n} values, got {len(labels)}")
    subtitles = dict(subtitles or {})
    decimals = {p: plot_decimals(coords[p]) for p in panels}
    for p in panels:
        positions = drawn_positions(coords[p], decimals[p])
        if positions < n:  # say so: a picture of 896 points at 130 spots looks like 130 points
            note = f"{n:,} points drawn at {positions:,} positions"
            subtitles[p] = f"{subtitles[p]} · {note}" if subtitles.get(p) else note
    headings = [
        f"{safe_text(p)}<br><sup>{safe_text(subtitles[p])}</sup>" if subtitles.get(p) else safe_text(p)
        for p in panels
    ]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=headings, horizontal_spacing=0.04)
    for col, panel in enumerate(panels, start=1):
        xy = np.asarray(coords[panel], dtype=np.float64)
        decimals = plot_decimals(xy)
        for trace in _corpus_traces(xy, texts, labels, label_name, n, col == 1, decimals):
            fig.add_trace(trace, row=1, col=col)
        if typed and panel in typed and len(typed[panel]):
            fig.add_trace(_typed_trace(typed[panel], typed_texts, decimals, col == 1), row=1, col=col)
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False)
    categorical = labels is not None and _label_kind(labels) == "categorical"
    fig.update_layout(
        title=title,
        height=520,
        margin=dict(l=10, r=10, t=90 if title else 70, b=10),
        legend=dict(title=dict(text=safe_text(str(label_name)) if categorical else ""), itemsizing="constant"),
        hoverlabel=dict(align="left"),
    )
    return fig


def trajectory_figure(
    paths: Mapping[str, np.ndarray],
    backgrounds: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    text: str = "",
    background_texts: Sequence[str] | None = None,
) -> go.Figure:
    """One sentence's position at every layer, as a connected path (one panel per pooling).

    paths : panel title -> float array [L + 1, 2], row k = the sentence after layer k
        (0 = embeddings) in a projection fit jointly on every layer
    backgrounds : panel title -> (coords [M, 2], layer [M]), corpus points of that joint
        projection, drawn faintly in the colour of their layer
    background_texts : the M sentences behind the background points, for their hover text
    """
    panels = list(paths)
    if not panels:
        raise ValueError("trajectory_figure needs at least one path")
    fig = make_subplots(
        rows=1, cols=len(panels), subplot_titles=[safe_text(p) for p in panels], horizontal_spacing=0.04
    )
    num_layers = max(len(paths[p]) for p in panels) - 1
    for col, panel in enumerate(panels, start=1):
        path = np.asarray(paths[panel], dtype=np.float32)
        if path.ndim != 2 or path.shape[1] != 2:
            raise ValueError(f"paths[{panel!r}]: expected shape (layers, 2), got {path.shape}")
        if backgrounds and panel in backgrounds:
            xy, layer = backgrounds[panel]
            xy = np.asarray(xy, dtype=np.float32)
            layer = np.asarray(layer)
            fig.add_trace(
                _scatter_type(len(xy))(
                    **_xy(xy, plot_decimals(np.vstack([xy, path]))),
                    mode="markers",
                    name="corpus (colour = layer)",
                    showlegend=col == 1,
                    marker=dict(
                        size=4, opacity=0.25, color=layer, colorscale="Viridis", cmin=0, cmax=max(num_layers, 1)
                    ),
                    hovertext=[
                        f"layer {k}" if background_texts is None else f"layer {k}: {_hover(background_texts[i])}"
                        for i, k in enumerate(layer)
                    ],
                    hovertemplate="%{hovertext}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        layers = np.arange(len(path))
        fig.add_trace(
            go.Scatter(
                **_xy(path, plot_decimals(path)),
                mode="lines+markers+text",
                name="your sentence",
                showlegend=col == 1,
                text=[str(k) for k in layers],
                textposition="top center",
                line=dict(color=_TYPED, width=2),
                marker=dict(
                    size=12,
                    color=layers,
                    colorscale="Viridis",
                    cmin=0,
                    cmax=max(num_layers, 1),
                    line=dict(width=1, color=_TYPED),
                    showscale=col == len(panels),
                    colorbar=dict(title=dict(text="layer")),
                ),
                customdata=layers,
                hovertemplate="layer %{customdata}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(showticklabels=False, zeroline=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, zeroline=False, showgrid=False)
    heading = f"Across layers: {_hover(text, width=100, max_chars=120)}" if text else "Across layers"
    fig.update_layout(
        title=heading,
        height=500,
        margin=dict(l=10, r=10, t=90, b=40),
        legend=dict(orientation="h", yanchor="top", y=-0.02, x=0),
    )
    return fig


_METRIC_TITLES = {"knn_accuracy": "kNN label accuracy (original space)", "silhouette": "silhouette (cosine)"}


def separation_figure(table: pd.DataFrame, layer: int | None = None, chance: float | None = None) -> go.Figure:
    """kNN accuracy and silhouette across layers, one line per pooling.

    table : the tidy DataFrame of :func:`clsviz.projection.separation_by_layer`
        (columns layer, pooling, metric, value)
    layer : the layer the page shows, marked by a dashed line
    chance : the kNN accuracy of always guessing the most common label, drawn for reference
    """
    missing = {"layer", "pooling", "metric", "value"} - set(table.columns)
    if missing:
        raise ValueError(f"table: missing columns {sorted(missing)}")
    metrics = [m for m in _METRIC_TITLES if m in set(table["metric"])]
    fig = make_subplots(rows=1, cols=max(1, len(metrics)), subplot_titles=[_METRIC_TITLES[m] for m in metrics])
    poolings = list(dict.fromkeys(table["pooling"]))
    extra = iter(c for c in _PALETTE if c not in _POOLING_COLORS.values())
    colors = {s: _POOLING_COLORS.get(s) or next(extra) for s in poolings}
    for col, metric in enumerate(metrics, start=1):
        for s in poolings:
            rows = table[(table["metric"] == metric) & (table["pooling"] == s)].sort_values("layer")
            fig.add_trace(
                go.Scatter(
                    x=rows["layer"].tolist(),
                    y=np.round(rows["value"].to_numpy(dtype=float), 4),
                    mode="lines+markers",
                    name=safe_text(pooling_title(s)),
                    legendgroup=s,
                    showlegend=col == 1,
                    line=dict(color=colors[s], width=2.5 if s in _POOLING_COLORS else 1.5),
                    hovertemplate=f"{safe_text(pooling_title(s))}<br>layer %{{x}}: %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        if layer is not None:
            fig.add_vline(x=layer, line_dash="dash", line_color=_GREY, row=1, col=col)
        if metric == "knn_accuracy" and chance is not None:
            fig.add_hline(
                y=chance,
                line_dash="dot",
                line_color=_GREY,
                annotation_text="most common label",
                annotation_position="bottom right",
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="layer (0 = embeddings)", dtick=1)
    fig.update_layout(height=340, margin=dict(l=40, r=10, t=50, b=40), hovermode="x unified")
    return fig


register("embeddings.panels", embedding_panels)
register("embeddings.separation", separation_figure)
register("embeddings.trajectory", trajectory_figure)
