"""Linear probes on shard folders (:class:`clsviz.shards.ShardedVectors`), in memory or out of core.

When one (layer, pooling) column fits the memory budget, it is read (only that column) and probed
exactly as :func:`clsviz.experiments.probe.run_probe` probes in-memory vectors: same estimator,
same stratified folds, so the numbers are the same. When it does not fit, the column is streamed
shard by shard: the folds are fixed by a hash of the row number, every fold's standardiser is
accumulated in one pass, a logistic-regression SGD per fold learns from ``epochs`` passes
(``SGDClassifier.partial_fit``, averaged weights, the same L2 penalty as the in-memory probe), and
a last pass scores the held-out rows. Memory is one shard's column, whatever the corpus size.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ..corpus import is_missing
from ..pooling import check_pooling
from ..progress import check_cancel, single_blas_thread
from ..shards import ShardedVectors
from .probe_fit import (
    DEFAULT_C,
    DEFAULT_MAX_ITER,
    ProbeError,
    ProbeResult,
    capped_message,
    check_labels,
    cv_scores,
)

__all__ = ["STREAM_EPOCHS", "column_fits", "hash_folds", "run_sharded_probe", "stream_cell"]

STREAM_EPOCHS = 8
"""Passes of SGD over the training rows of each fold when a column is streamed."""


def hash_folds(rows: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """int64 [len(rows)]: each row's fold, 0..folds-1, from a hash (splitmix64) of its row number
    and the seed: fixed whatever the shard layout or the order rows are read in."""
    with np.errstate(over="ignore"):
        z = np.asarray(rows, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(folds)).astype(np.int64)


def column_fits(vectors: ShardedVectors, memory_budget: int | None, copies: int = 2) -> bool:
    """True when ``copies`` float32 columns [N, D] fit ``memory_budget`` bytes (None: always)."""
    return memory_budget is None or copies * vectors.rows * vectors.hidden_size * 4 <= memory_budget


def _shard_rows(vectors: ShardedVectors, rows: np.ndarray) -> list[np.ndarray]:
    """The labelled ``rows`` split by shard (each piece read with one shard access)."""
    edges = [s["start"] for s in sorted(vectors.manifest["shards"], key=lambda s: s["start"])] + [vectors.rows]
    cut = np.searchsorted(rows, edges)
    return [rows[a:b] for a, b in zip(cut[:-1], cut[1:]) if b > a]


def stream_cell(
    vectors: ShardedVectors,
    pooling: str,
    layer: int,
    rows: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    folds: int = 5,
    C: float = DEFAULT_C,
    epochs: int = STREAM_EPOCHS,
    seed: int = 0,
    cancel=None,
) -> np.ndarray:
    """float [folds]: held-out accuracy per fold of a streamed logistic-regression probe of one
    (layer, pooling) column. ``rows`` (sorted) are the labelled rows, ``y`` their class codes."""
    from sklearn.linear_model import SGDClassifier

    fold = hash_folds(rows, folds, seed)
    pieces = _shard_rows(vectors, rows)
    offsets = np.cumsum([0] + [len(p) for p in pieces])
    d = vectors.hidden_size
    counts = np.bincount(fold, minlength=folds).astype(np.float64)
    sums, squares = np.zeros((folds, d)), np.zeros((folds, d))
    for piece in pieces:
        X = vectors.get(pooling, layer, piece).astype(np.float64)
        f = fold[np.searchsorted(rows, piece)]
        np.add.at(sums, f, X)
        np.add.at(squares, f, X * X)
    n_train = counts.sum() - counts
    means = (sums.sum(0) - sums) / n_train[:, None]
    scales = np.sqrt(np.maximum((squares.sum(0) - squares) / n_train[:, None] - means**2, 0.0))
    scales[scales == 0] = 1.0
    classes = np.arange(n_classes)
    # Averaged SGD with a 1/sqrt(t) step: on standardised features it lands within noise of the
    # lbfgs fit of the in-memory probe in a few passes (measured on the tests' data).
    models = [SGDClassifier(loss="log_loss", alpha=1.0 / (C * n_train[k]), learning_rate="invscaling", eta0=0.01,
                            power_t=0.5, average=True, random_state=seed + k) for k in range(folds)]
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for i in rng.permutation(len(pieces)):
            check_cancel(cancel, "The probe")
            piece = pieces[i]
            X = vectors.get(pooling, layer, piece)
            yy, f = y[offsets[i] : offsets[i + 1]], fold[offsets[i] : offsets[i + 1]]
            order = rng.permutation(len(piece))
            X, yy, f = X[order], yy[order], f[order]
            for k, model in enumerate(models):
                train = f != k
                if train.any():
                    model.partial_fit((X[train] - means[k]) / scales[k], yy[train], classes=classes)
    correct = np.zeros(folds)
    for i, piece in enumerate(pieces):
        X = vectors.get(pooling, layer, piece)
        yy, f = y[offsets[i] : offsets[i + 1]], fold[offsets[i] : offsets[i + 1]]
        for k, model in enumerate(models):
            test = f == k
            if test.any():
                correct[k] += float(np.sum(model.predict((X[test] - means[k]) / scales[k]) == yy[test]))
    return correct / np.maximum(counts, 1)


def run_sharded_probe(
    vectors: ShardedVectors,
    label: str,
    *,
    poolings: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    folds: int = 5,
    C: float = DEFAULT_C,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    memory_budget: int | None = None,
    epochs: int = STREAM_EPOCHS,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> ProbeResult:
    """Cross-validated linear-probe accuracy for every saved layer x pooling of a shard folder.

    Each cell is read in memory and probed as :func:`~clsviz.experiments.probe.run_probe` does
    when two float32 copies of a column fit ``memory_budget`` bytes (None: no limit); otherwise it
    is streamed (:func:`stream_cell`) and its fold accuracies come from row-hash folds. The
    result's ``messages`` say which. Raises :class:`ProbeError` for unusable labels or cells."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    start = time.perf_counter()
    if label not in vectors.labels:
        raise ProbeError(f"No label column '{label}'. Available: {', '.join(vectors.labels) or 'none'}.")
    values = vectors.labels[label]
    keep = np.array([not is_missing(v) for v in values], dtype=bool)
    rows = np.flatnonzero(keep)
    y, classes = check_labels([values[i] for i in rows], folds, label)
    poolings = list(vectors.poolings) if poolings is None else [check_pooling(p) for p in poolings]
    layers = list(vectors.layers) if layers is None else [int(x) for x in layers]
    missing = [p for p in poolings if p not in vectors.poolings] + [f"layer {x}" for x in layers if x not in vectors.layers]
    if missing:
        raise ProbeError(f"Not saved in this folder: {', '.join(missing)}. Saved: {', '.join(vectors.poolings)}; "
                         f"layers {', '.join(map(str, vectors.layers))}.")
    streamed = not column_fits(vectors, memory_budget)
    splits = None if streamed else list(
        StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    cells = [(layer, p) for layer in layers for p in poolings]
    records, fits, capped = [], 0, 0
    with single_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is a budget, as in run_probe
        for i, (layer, p) in enumerate(cells):
            check_cancel(cancel, "The probe")
            if streamed:
                scores = stream_cell(vectors, p, layer, rows, y, len(classes), folds, C, epochs, seed, cancel)
            else:
                X = vectors.get(p, layer)[rows]
                scores, stopped = cv_scores(X, y, splits, C, max_iter, seed)
                fits, capped = fits + len(splits), capped + stopped
            records.append({"layer": layer, "pooling": p, "accuracy_mean": float(scores.mean()),
                            "accuracy_sd": float(scores.std(ddof=1)), "n": len(y), "folds": folds})
            if progress is not None:
                progress(i + 1, len(cells))
    messages = []
    if not keep.all():
        messages.append(f"{int((~keep).sum())} of {len(values)} texts have no '{label}' label and were left out.")
    if streamed:
        messages.append(
            f"The vectors exceed the memory budget, so each column was streamed shard by shard: an SGD logistic "
            f"regression ({epochs} passes), folds fixed by a hash of the row number."
        )
    if capped_message(capped, fits, max_iter):
        messages.append(capped_message(capped, fits, max_iter))
    counts = np.bincount(y, minlength=len(classes))
    return ProbeResult(
        table=pd.DataFrame(records), label=label, classes=classes, class_counts=tuple(int(c) for c in counts),
        chance=1.0 / len(classes), majority=float(counts.max() / counts.sum()), n=len(y), folds=folds,
        model_name=vectors.model_name, seconds=time.perf_counter() - start, messages=tuple(messages),
        fits=fits, capped_fits=capped,
    )
