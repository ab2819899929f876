"""Streamlit helpers of the Embeddings page: the background UMAP warm-up, cached projections
(per model, corpus, layer, pooling and parameters), cached label separation and the tables
behind the downloads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from clsviz import Corpus, Encoder, PooledVectors, Trace, pool
from clsviz.projection import Projector, trace_path, trajectory_stack, warm_up
from clsviz.separation import label_baselines, separation_by_layer
from clsviz.shards import ShardedVectors
from clsviz.vectors_io import as_corpus
from ui.cache import cached, shared_cache
from ui.corpus import DEMO, UPLOAD, corpus_picker
from ui.vectors import saved_vectors_picker

from . import engine, worker
from .widgets import radio

WARMUP_ENV = "CLSVIZ_UMAP_WARMUP"
"""Environment variable: "0" turns the background UMAP warm-up off (tests, scripts)."""

NAMED_EXTRA = ("max", "mean_content", "first", "last", "pooler")
"""Third-panel poolings offered by name ("token:K" is offered too)."""

TOKEN_K = "token:K"
SAVED = "Saved vectors (clsviz embed)"
"""The third corpus source: vectors written by ``clsviz embed``, used without re-embedding."""
MAX_ALL_POOLING_BYTES = 600_000_000
"""Extract every named pooling at once (so switching the third panel is instant) only while
the vectors stay below this size; larger corpora/models extract just the three shown."""

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


def corpus_poolings(encoder: Encoder, corpus: Corpus, third: str) -> tuple[str, ...]:
    """The poolings to extract: every named one when that fits in memory, else the three shown."""
    named = ("cls", "mean", *(s for s in NAMED_EXTRA if s != "pooler" or encoder.info.has_pooler))
    info = encoder.info
    size = len(corpus) * (info.num_layers + 1) * len(named) * info.hidden_size * 4
    if size <= MAX_ALL_POOLING_BYTES and not third.startswith("token:"):
        return named
    return tuple(dict.fromkeys(("cls", "mean", third)))


def corpus_source(key: str) -> tuple[Corpus, PooledVectors | None] | None:
    """The demo corpus, an uploaded CSV / TXT, or saved vectors: (corpus, saved vectors or None).

    Returns None, after a message, when nothing usable was picked."""
    source = radio(st,
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
    saved = saved_vectors_picker(f"{key}.vectors")
    if saved is None:
        st.info(
            "Upload a .npz or .parquet file written by `clsviz embed corpus.csv --out vectors.npz`, or the files "
            "of a shard folder written by `clsviz embed corpus.csv --out FOLDER`.",
            icon=":material/upload_file:",
        )
        return None
    return saved_corpus(saved), saved


def saved_corpus(saved) -> Corpus:
    """The texts and labels of saved vectors as a Corpus, made once per vectors."""
    key = getattr(saved, "content_key", None)
    return as_corpus(saved) if key is None else cached("vectors.corpus", (key,), lambda: as_corpus(saved))


def projection_key(
    vectors: PooledVectors, corpus: Corpus, layer: int, pooling: str, method: str, seed, n_neighbors, min_dist
) -> tuple:
    return (vectors.model_name, corpus.content_hash, int(layer), pooling, method, seed, int(n_neighbors), float(min_dist))


def fitted_projection(
    vectors: PooledVectors,
    corpus: Corpus,
    layer: int,
    pooling: str,
    method: str,
    seed: int | None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
) -> Projector:
    """The projection of one pooling's vectors at one layer, fit once per parameters (here, or
    taken from the job worker that :func:`prefetch_projections` asked to fit it). The Projector
    is never changed after fit, so every session may share it (transform only reads)."""
    key = projection_key(vectors, corpus, layer, pooling, method, seed, n_neighbors, min_dist)
    X = vectors.get(pooling, layer)

    def compute() -> Projector:
        with _fitting_lock:
            job = _fitting.pop(key, None)
        # A fit still waiting in the queue (the worker busy with someone's job) is done here instead.
        if job is not None and not job.withdraw() and job.wait() and job.status == engine.DONE:
            return job.result
        return Projector(method, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed).fit(X)

    return cached("projection", key, compute)


_fitting: dict[tuple, engine.Job] = {}
_fitting_lock = threading.Lock()


def prefetch_projections(
    vectors_of: Callable[[str], PooledVectors], corpus: Corpus, layer: int, poolings: Sequence[str], method: str,
    seed: int | None, n_neighbors: int = 15, min_dist: float = 0.1,
) -> list[engine.Job]:
    """Have the job worker fit the projections of ``poolings[1:]`` that nobody has fit yet, while
    this page fits the first and computes the rest of the page: a UMAP fit runs on one core, so
    the panels' fits then share the machine's two. :func:`fitted_projection` collects them (or
    fits one itself when the worker has not started it). ``vectors_of(pooling)``: the vectors
    holding that pooling. Does nothing when jobs run in threads; returns the jobs started."""
    if not engine.use_processes():
        return []
    started = []
    for pooling in poolings[1:]:
        vectors = vectors_of(pooling)
        key = projection_key(vectors, corpus, layer, pooling, method, seed, n_neighbors, min_dist)
        with _fitting_lock:
            if key in _fitting or ("projection", *key) in shared_cache():
                continue
            fit = Projector(method, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed).fit
            job = engine.Job(fn=worker.call, args=(fit, vectors.get(pooling, layer)), name="projection",
                             label=f"{method.upper()} of the {pooling} panel", counted=False)
            _fitting[key] = job
        started.append(job.begin())
    return started


def seen_before(keys: Sequence[tuple]) -> bool:
    """True if every projection key is in the cache now (then no preview is needed)."""
    cache = shared_cache()
    return all(("projection", *k) in cache for k in keys)


def layer_separation(
    vectors: PooledVectors, corpus: Corpus, label_name: str, poolings: Sequence[str],
    layers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """kNN accuracy and silhouette at every layer (cached per model, corpus, label, poolings).

    Raises ValueError (with a message to show) when the label column cannot be scored."""
    layers = None if layers is None else tuple(layers)
    key = (vectors.model_name, corpus.content_hash, label_name, tuple(poolings), layers)
    return cached("separation", key, lambda: separation_by_layer(vectors, corpus.labels[label_name], poolings=poolings,
                                                                 layers=layers))


SCORE_ROWS = 3000


def _scored(vectors, corpus: Corpus):
    """(vectors, corpus, layers) to score: a cached sample of a large shard folder and its saved
    layers, else the same vectors and corpus at every layer."""
    if isinstance(vectors, ShardedVectors):
        if len(vectors) > SCORE_ROWS:
            sample = cached("vectors.sample", (vectors.content_key, SCORE_ROWS), lambda: vectors.sample(SCORE_ROWS))
            return sample, as_corpus(sample), vectors.layers
        return vectors, corpus, vectors.layers
    return vectors, corpus, None


def label_scores(
    sources: dict[str, PooledVectors], corpus: Corpus, label_name: str, max_classes: int
) -> tuple[pd.DataFrame | None, str | None]:
    """(separation table of every pooling, None), or (None, a message) when the label cannot be
    scored. ``sources``: pooling -> the vectors that hold it. A large shard folder is scored on a
    seeded sample of :data:`SCORE_ROWS` rows (the scores subsample that many anyway)."""
    _, _, n_classes = label_baselines(corpus.labels[label_name])
    if n_classes > max_classes:
        return None, (
            f"'{label_name}' has {n_classes:,} different values; the scores need a label with a few classes "
            f"(at most {max_classes}). The colours still show it."
        )
    try:
        tables = []
        for p, v in sources.items():
            scored, scored_corpus, layers = _scored(v, corpus)
            tables.append(layer_separation(scored, scored_corpus, label_name, (p,), layers))
    except ValueError as exc:
        return None, str(exc)
    return pd.concat(tables, ignore_index=True), None


def typed_vectors(traces: Sequence[Trace], pooling: str, layer: int) -> np.ndarray:
    """float32 [M, D]: the typed sentences read with ``pooling`` after ``layer``."""
    return np.stack([pool(t, pooling, layer) for t in traces]).astype(np.float32)


def trajectory(
    vectors: PooledVectors, corpus: Corpus, trace: Trace, pooling: str, method: str, seed: int | None
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], list[str]]:
    """(path [L+1, 2], (corpus coords [M, 2], their layers [M]), their M texts) in one projection
    fit on every layer at once (:func:`clsviz.projection.trajectory_stack`), cached per corpus."""
    stack, rows, layers = trajectory_stack(vectors, pooling)
    key = (vectors.model_name, corpus.content_hash, pooling, method, seed)
    projector = cached("trajectory", key, lambda: Projector(method, random_state=seed).fit(stack))
    return projector.transform(trace_path(trace, pooling)), (projector.embedding_, layers), [vectors.texts[r] for r in rows]
