"""Streamlit helpers of the Embeddings page: the background UMAP warm-up, cached projections
(per model, corpus, layer, strategy and parameters), cached label separation and the tables
behind the downloads."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from clsviz import Encoder, PooledVectors, Trace, pool
from clsviz.corpus import Corpus
from clsviz.projection import Projector, separation_by_layer, warm_up
from clsviz.vectors_io import as_corpus
from ui.corpus import DEMO, UPLOAD, corpus_picker
from ui.vectors import vectors_uploader

WARMUP_ENV = "CLSVIZ_UMAP_WARMUP"
"""Environment variable: "0" turns the background UMAP warm-up off (tests, scripts)."""

NAMED_EXTRA = ("max", "mean_content", "first", "last", "pooler")
"""Third-panel strategies offered by name ("token:K" is offered too)."""

TOKEN_K = "token:K"
SAVED = "Saved vectors (clsviz embed)"
"""The third corpus source: vectors written by ``clsviz embed``, used without re-embedding."""
MAX_ALL_STRATEGY_BYTES = 600_000_000
"""Extract every named strategy at once (so switching the third panel is instant) only while
the vectors stay below this size; larger corpora/models extract just the three shown."""

TRAJECTORY_POINTS = 2100
"""Corpus points (over all layers together) behind the joint trajectory projection."""

_warm_thread: threading.Thread | None = None
_warm_lock = threading.Lock()
_warm_error: list[str] = []


def _warm() -> None:
    try:
        warm_up()
    except Exception as exc:  # a failed warm-up only means the first real fit compiles instead
        _warm_error.append(f"{type(exc).__name__}: {exc}")


def start_umap_warmup() -> bool:
    """Start compiling UMAP in a background thread, once per process; True if started now.

    Does nothing when ``CLSVIZ_UMAP_WARMUP=0``. Call it from the app's entry file (and the page)."""
    global _warm_thread
    if os.environ.get(WARMUP_ENV, "1").strip() == "0":
        return False
    with _warm_lock:
        if _warm_thread is not None:
            return False
        _warm_thread = threading.Thread(target=_warm, name="clsviz-umap-warmup", daemon=True)
        _warm_thread.start()
        return True


def warmup_running() -> bool:
    """True while the background warm-up is still compiling."""
    return _warm_thread is not None and _warm_thread.is_alive()


def corpus_strategies(encoder: Encoder, corpus: Corpus, third: str) -> tuple[str, ...]:
    """The strategies to extract: every named one when that fits in memory, else the three shown."""
    named = ("cls", "mean", *(s for s in NAMED_EXTRA if s != "pooler" or encoder.info.has_pooler))
    info = encoder.info
    size = len(corpus) * (info.num_layers + 1) * len(named) * info.hidden_size * 4
    if size <= MAX_ALL_STRATEGY_BYTES and not third.startswith("token:"):
        return named
    return tuple(dict.fromkeys(("cls", "mean", third)))


def corpus_source(key: str) -> tuple[Corpus, PooledVectors | None] | None:
    """The demo corpus, an uploaded CSV / TXT, or saved vectors: (corpus, saved vectors or None).

    Returns None, after a message, when nothing usable was picked."""
    source = st.radio(
        "Corpus",
        (DEMO, UPLOAD, SAVED),
        key=f"{key}.source",
        horizontal=True,
        help="The demo corpus: sentences written for clsviz, labelled by topic, sentiment, form and word "
        "order. Or upload your own CSV / TXT, or vectors saved by 'clsviz embed corpus.csv --out vectors.npz' "
        "(shown as they are, without running the model again).",
    )
    if source != SAVED:
        corpus = corpus_picker(key, source=source)
        return None if corpus is None else (corpus, None)
    saved = vectors_uploader(f"{key}.vectors")
    if saved is None:
        st.info(
            "Upload a .npz or .parquet file written by `clsviz embed corpus.csv --out vectors.npz`.",
            icon=":material/upload_file:",
        )
        return None
    return as_corpus(saved), saved


@st.cache_resource(show_spinner=False, max_entries=48)
def _fitted(
    model_name: str,
    corpus_hash: str,
    layer: int,
    strategy: str,
    method: str,
    seed: int | None,
    n_neighbors: int,
    min_dist: float,
    _X: np.ndarray,
) -> Projector:
    # Keyed on strings and numbers; the Projector is never changed after fit, so every session
    # may share it (transform only reads it).
    return Projector(method, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed).fit(_X)


_fitted_keys: set[tuple] = set()


def projection_key(
    vectors: PooledVectors, corpus: Corpus, layer: int, strategy: str, method: str, seed, n_neighbors, min_dist
) -> tuple:
    return (vectors.model_name, corpus.content_hash, int(layer), strategy, method, seed, int(n_neighbors), float(min_dist))


def fitted_projection(
    vectors: PooledVectors,
    corpus: Corpus,
    layer: int,
    strategy: str,
    method: str,
    seed: int | None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
) -> Projector:
    """The projection of one strategy's vectors at one layer, fit once per parameters."""
    key = projection_key(vectors, corpus, layer, strategy, method, seed, n_neighbors, min_dist)
    projector = _fitted(*key, _X=vectors.get(strategy, layer))
    _fitted_keys.add(key)
    return projector


def seen_before(keys: Sequence[tuple]) -> bool:
    """True if every key was fit earlier in this process (then no preview is needed)."""
    return all(k in _fitted_keys for k in keys)


@st.cache_data(show_spinner=False, max_entries=32)
def _separation(
    model_name: str, corpus_hash: str, label_name: str, strategies: tuple[str, ...], _vectors, _labels
) -> pd.DataFrame:
    return separation_by_layer(_vectors, _labels, strategies=strategies)


def layer_separation(
    vectors: PooledVectors, corpus: Corpus, label_name: str, strategies: Sequence[str]
) -> pd.DataFrame:
    """kNN accuracy and silhouette at every layer (cached per model, corpus, label, strategies).

    Raises ValueError (with a message to show) when the label column cannot be scored."""
    return _separation(
        vectors.model_name, corpus.content_hash, label_name, tuple(strategies), vectors, corpus.labels[label_name]
    )


def typed_vectors(traces: Sequence[Trace], strategy: str, layer: int) -> np.ndarray:
    """float32 [M, D]: the typed sentences read with ``strategy`` after ``layer``."""
    return np.stack([pool(t, strategy, layer) for t in traces]).astype(np.float32)


@st.cache_resource(show_spinner=False, max_entries=12)
def _trajectory_projection(
    model_name: str, corpus_hash: str, strategy: str, method: str, seed: int | None, _stack: np.ndarray
) -> Projector:
    return Projector(method, random_state=seed).fit(_stack)


def trajectory_sample(vectors: PooledVectors, max_points: int = TRAJECTORY_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(rows, layers): the corpus rows (a fixed sample) repeated at every layer."""
    n, levels = len(vectors.texts), vectors.num_layers + 1
    per_layer = max(1, min(n, max_points // levels))
    rows = np.sort(np.random.default_rng(0).choice(n, per_layer, replace=False))
    return np.tile(rows, levels), np.repeat(np.arange(levels), per_layer)


def trajectory(
    vectors: PooledVectors, corpus: Corpus, trace: Trace, strategy: str, method: str, seed: int | None
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], list[str]]:
    """(path [L+1, 2], (corpus coords [M, 2], their layers [M]), their M texts) in one
    projection fit on every layer at once, so positions at different layers are comparable."""
    rows, layers = trajectory_sample(vectors)
    s = vectors.strategies.index(strategy)
    stack = vectors.vectors[rows, layers, s]
    projector = _trajectory_projection(vectors.model_name, corpus.content_hash, strategy, method, seed, stack)
    own = np.stack([pool(trace, strategy, k) for k in range(vectors.num_layers + 1)])
    return projector.transform(own), (projector.embedding_, layers), [vectors.texts[r] for r in rows]


def coordinates_table(
    texts: Sequence[str],
    labels: Sequence | None,
    label_name: str,
    coords: dict[str, np.ndarray],
    typed_texts: Sequence[str],
    typed: dict[str, np.ndarray],
    layer: int,
    method: str,
) -> pd.DataFrame:
    """Long table of every 2-D position shown: source, text, label, strategy, layer, method, x, y."""
    frames = []
    for strategy, xy in coords.items():
        frames.append(
            pd.DataFrame(
                {
                    "source": "corpus",
                    "text": list(texts),
                    label_name or "label": list(labels) if labels is not None else "",
                    "strategy": strategy,
                    "layer": layer,
                    "method": method,
                    "x": xy[:, 0],
                    "y": xy[:, 1],
                }
            )
        )
        if strategy in typed and len(typed_texts):
            frames.append(
                pd.DataFrame(
                    {
                        "source": "typed",
                        "text": list(typed_texts),
                        label_name or "label": "",
                        "strategy": strategy,
                        "layer": layer,
                        "method": method,
                        "x": typed[strategy][:, 0],
                        "y": typed[strategy][:, 1],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)
