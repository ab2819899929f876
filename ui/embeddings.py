"""The Embeddings page's Streamlit side: the corpus source picker (demo, upload or saved vectors),
the third-panel picker, the background UMAP warm-up, and the page's analyses run per pooling
through :mod:`ui.runner` (``projection``, ``separation``, ``trajectory`` in
:mod:`clsviz.analyses.embeddings`) and joined into one result per figure.

Each pooling is its own cached result, so changing the third panel refits one panel only, and
the other panels' UMAP fits can run in the job worker (:func:`prefetch`) while the page fits the
first: a seeded UMAP fit uses one core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import streamlit as st

from clsviz import Corpus, Encoder, PooledVectors, Trace
from clsviz.analyses import NotApplicable, Result, digest
from clsviz.analyses.embeddings import (
    MIN_TEXTS,
    ProjectionResult,
    SeparationResult,
    TrajectoryResult,
    VectorColumn,
)
from clsviz.figures import pooling_title
from clsviz.projection import warm_up
from clsviz.separation import score_text
from clsviz.vectors_io import as_corpus

from . import runner
from .cache import cached
from .corpus import DEMO, UPLOAD, corpus_picker, corpus_vectors
from .vectors import saved_vectors_picker
from .widgets import number_input, radio, selectbox

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
MAX_SCORED_CLASSES = 50
"""A label column with more values than this is drawn but not scored."""

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


# -- inputs ----------------------------------------------------------------------------------


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


def big_enough(corpus: Corpus) -> bool:
    """True when the corpus has enough texts to project; else a warning that says what to do."""
    if len(corpus) >= MIN_TEXTS:
        return True
    st.warning(
        f"The corpus has {len(corpus)} text(s); a projection needs at least {MIN_TEXTS}. "
        "Upload more sentences or pick the demo corpus.",
        icon=":material/warning:",
    )
    return False


def third_panel(encoder: Encoder, saved) -> str:
    """The pooling of the third panel: a named one, or ``token:K`` with K picked here. Saved
    vectors offer only the poolings they hold besides [CLS] and the mean."""
    info = encoder.info
    if saved is not None:
        offered = [s for s in saved.poolings if s not in ("cls", "mean")] or ["mean"]
    else:
        offered = [s for s in NAMED_EXTRA if s != "pooler" or info.has_pooler] + [TOKEN_K]
    third = selectbox(st,
        "Third panel",
        offered,
        format_func=lambda s: "token K (pick K)" if s == TOKEN_K else pooling_title(s),
        key="embeddings.third" if saved is None else "embeddings.third_saved",
        help="How the third panel reads one vector out of the sentence. 'pooler' appears only for models "
        "with a pooler head." if saved is None else "The poolings saved in the vectors file besides [CLS] and "
        "the mean (embed with more --poolings to see others).",
    )
    if third != TOKEN_K:
        return third
    k = number_input(st,
        "K (token position; 0 is [CLS])", min_value=0, max_value=info.max_tokens - 1, value=1,
        key="embeddings.k", help="Texts shorter than K+1 tokens use their last token. Re-embeds the corpus.",
    )
    return f"token:{int(k)}"


def _extracted(encoder: Encoder, corpus: Corpus, third: str) -> tuple[str, ...]:
    """The poolings to extract: every named one when that fits in memory, else the three shown."""
    named = ("cls", "mean", *(s for s in NAMED_EXTRA if s != "pooler" or encoder.info.has_pooler))
    info = encoder.info
    size = len(corpus) * (info.num_layers + 1) * len(named) * info.hidden_size * 4
    if size <= MAX_ALL_POOLING_BYTES and not third.startswith("token:"):
        return named
    return tuple(dict.fromkeys(("cls", "mean", third)))


def pooled_sources(encoder: Encoder, corpus: Corpus, saved, poolings: Sequence[str]) -> dict | None:
    """pooling -> the vectors holding it (saved vectors as they are; else the corpus embedded once
    per model and poolings, with a progress bar). None, after a message, when embedding failed."""
    vectors = saved if saved is not None else corpus_vectors(encoder, corpus, _extracted(encoder, corpus, poolings[-1]))
    if vectors is None:
        return None
    sources = {}
    for p in poolings:
        if p not in vectors.poolings:
            extra = corpus_vectors(encoder, corpus, (p,))
            if extra is None:
                return None
            sources[p] = extra
        else:
            sources[p] = vectors
    return sources


# -- the page's analyses, one pooling at a time ------------------------------------------------


def _params(layer: int, method: str, seed: int | None) -> dict:
    return {"layer": int(layer), "method": method, "seed": seed}


def projections(corpus: Corpus, sources: dict, layer: int, method: str, seed: int | None) -> dict[str, Result]:
    """pooling -> the corpus projected at ``layer`` (one cached fit per pooling)."""
    return {p: runner.run("projection", corpus, v, poolings=p, **_params(layer, method, seed)) for p, v in sources.items()}


def fitted(corpus: Corpus, sources: dict, layer: int, method: str, seed: int | None) -> bool:
    """True when every panel's projection is already fitted (then no preview is needed)."""
    return all(runner.stored("projection", corpus, v, poolings=p, **_params(layer, method, seed)) is not None
               for p, v in sources.items())  # fmt: skip


def prefetch(corpus: Corpus, sources: dict, layer: int, method: str, seed: int | None) -> list:
    """Have the job worker fit every panel but the first (which the page fits itself), sending it
    just the column each reads; returns the jobs started."""
    started = []
    for p, v in list(sources.items())[1:]:
        job = runner.prefetch("projection", corpus, v, send=(corpus, VectorColumn.of(v, p, layer)), poolings=p,
                              **_params(layer, method, seed))  # fmt: skip
        if job is not None:
            started.append(job)
    return started


def panels(parts: dict[str, Result], traces: Sequence[Trace], scores: Result | None = None) -> Result:
    """The panels side by side, the typed sentences placed into each and the label scores under
    each title: one result, cached with its figures."""
    joined = [*parts.values(), *([scores] if scores is not None else [])]
    return runner.combine(joined, lambda: ProjectionResult.join(list(parts.values()), traces, scores), digest(list(traces)))


def label_scores(corpus: Corpus, sources: dict, label: str) -> tuple[Result | None, str | None]:
    """(kNN accuracy and silhouette of ``label`` per pooling at every layer, None), or (None, a
    message) when the label cannot be scored."""
    try:
        parts = [runner.run("separation", corpus, v, label_column=label, poolings=p, max_classes=MAX_SCORED_CLASSES)
                 for p, v in sources.items()]  # fmt: skip
    except (NotApplicable, ValueError) as exc:
        return None, str(exc)
    return runner.combine(parts, lambda: SeparationResult.join(parts)), None


def score_metrics(scores, poolings: Sequence[str], layer: int) -> None:
    """kNN accuracy and silhouette of each pooling at ``layer``, as metrics side by side."""
    for col, s in zip(st.columns(3), poolings):
        sc = scores.at(s, layer)
        col.metric(f"{pooling_title(s)} · kNN accuracy", score_text(sc["knn_accuracy"]), border=True,
                   help="5-fold cross-validated accuracy of a 5-nearest-neighbour classifier (cosine). Undefined "
                   "when every sentence has the same vector here (e.g. [CLS] at the embedding layer).")
        col.metric(f"{pooling_title(s)} · silhouette", score_text(sc["silhouette"]), border=True,
                   help="-1..1: how much closer a sentence is to its own label group than to the nearest other "
                   "group (cosine). Near 0: groups overlap. Undefined when every sentence has the same vector here.")


def trajectory(corpus: Corpus, sources: dict, trace: Trace, method: str, seed: int | None) -> Result:
    """``trace``'s path through the layers in each pooling's joint projection (fit once per
    corpus, pooling, method and seed)."""
    parts = [runner.run("trajectory", corpus, v, poolings=p, method=method, seed=seed) for p, v in sources.items()]
    return runner.combine(parts, lambda: TrajectoryResult.join(parts, trace), digest(trace))
