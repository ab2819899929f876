"""Linear probes: can a linear classifier read a label from [CLS], from a mean, or from any token?

For every layer and every pooling, a logistic-regression probe is trained with
stratified k-fold cross-validation; :func:`run_probe` returns a tidy table of accuracies
(mean and standard deviation over folds) and the chance and majority-class baselines.

Besides the poolings of :mod:`clsviz.pooling`, the probe can read ``"random"``: one content
token per text, picked at random with a seed derived from the text itself
(:func:`clsviz.experiments.random_token.random_token_vectors`), which answers "could *any*
token do?".
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..corpus import is_missing
from ..pooling import check_pooling
from ..progress import Cancelled, single_blas_thread
from ..shards import ShardedVectors
from ..vectors import PooledVectors
from .probe_fit import (
    DEFAULT_C,
    DEFAULT_MAX_ITER,
    ProbeError,
    ProbeResult,
    capped_message,
    check_labels,
    cv_scores,
    make_probe,
)
from .streaming_probe import run_sharded_probe

__all__ = [
    "Cancelled",
    "PROBE_POOLINGS",
    "ProbeError",
    "ProbeResult",
    "RANDOM_TOKEN",
    "capped_message",
    "check_labels",
    "default_poolings",
    "make_probe",
    "run_probe",
]

RANDOM_TOKEN = "random"
"""Name of the pooling that reads one randomly chosen content token per text."""

PROBE_POOLINGS = ("cls", "mean", "mean_content", "max", "sep", "first", "last", "pooler", RANDOM_TOKEN, "token:3")
"""The default grid: the named poolings, a random content token, and token 3."""


def default_poolings(has_pooler: bool, token_k: int = 3) -> tuple[str, ...]:
    """The default grid for a model: ``pooler`` only where the model has one, ``token:K``."""
    names = [s for s in PROBE_POOLINGS if not s.startswith("token:") and (has_pooler or s != "pooler")]
    return (*names, f"token:{int(token_k)}")


def _features(vectors, random_token) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    if isinstance(vectors, PooledVectors):
        feats = {s: vectors.vectors[:, :, i] for i, s in enumerate(vectors.poolings)}
        texts = vectors.texts
    elif isinstance(vectors, Mapping):
        feats = {str(k): np.asarray(v) for k, v in vectors.items()}
        texts = None
    else:
        raise TypeError("vectors must be PooledVectors or a mapping pooling -> array [N, L + 1, D]")
    if random_token is not None:
        feats[RANDOM_TOKEN] = np.asarray(random_token)
    for name, arr in feats.items():
        if arr.ndim != 3:
            raise ValueError(f"{name}: expected an array [N, L + 1, D], got shape {list(arr.shape)}")
    return feats, texts


def run_probe(
    vectors: PooledVectors | Mapping[str, np.ndarray],
    labels: str | Sequence,
    *,
    poolings: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    random_token: np.ndarray | None = None,
    folds: int = 5,
    C: float = DEFAULT_C,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    n_jobs: int | None = None,
    label_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
    memory_budget: int | None = None,
) -> ProbeResult:
    """Cross-validated linear-probe accuracy for every layer x pooling.

    vectors : PooledVectors, or a mapping pooling -> float array [N, L + 1, D]
    labels : N label values, or the name of a label column of ``vectors.labels``
    random_token : optional float array [N, L + 1, D] from :func:`random_token_vectors`,
        probed as pooling ``"random"``
    poolings / layers : subsets to probe (default: all available)

    Each cell is ``make_probe(C, max_iter)`` scored with the same ``StratifiedKFold(folds,
    shuffle=True, random_state=seed)`` splits. Rows whose label is missing are left out (and
    said so in ``messages``). Cells run in ``n_jobs`` worker processes (default: the CPU count, at
    most 4; 1 runs them here), each with one BLAS thread. ``progress(done, total)`` after each
    cell; setting the ``cancel`` event (``threading.Event``) raises :class:`Cancelled`.

    A shard folder (:class:`clsviz.shards.ShardedVectors`, ``labels`` a column name) is probed
    by :func:`clsviz.experiments.streaming_probe.run_sharded_probe`: in memory, as here, when a
    column fits ``memory_budget`` bytes, else streamed shard by shard.
    """
    from sklearn.model_selection import StratifiedKFold

    if isinstance(vectors, ShardedVectors):
        if not isinstance(labels, str) or random_token is not None:
            raise ProbeError("A shard folder is probed on one of its label columns, named; 'random' is not saved.")
        return run_sharded_probe(vectors, labels, poolings=poolings, layers=layers, folds=folds, C=C,
                                 max_iter=max_iter, seed=seed, memory_budget=memory_budget, progress=progress,
                                 cancel=cancel)

    start = time.perf_counter()
    feats, texts = _features(vectors, random_token)
    if isinstance(labels, str):
        if not isinstance(vectors, PooledVectors) or labels not in vectors.labels:
            available = ", ".join(vectors.labels) if isinstance(vectors, PooledVectors) else ""
            raise ProbeError(f"No label column '{labels}'. Available: {available or 'none'}.")
        label_name = label_name or labels
        labels = vectors.labels[labels]
    label_name = label_name or "label"
    rows, y, classes, messages = _probe_rows(feats, texts, list(labels), folds, label_name)
    poolings, layers = _probe_grid(feats, rows, poolings, layers)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    cells = [(layer, s) for layer in layers for s in poolings]

    def features(cell):
        layer, s = cell
        return np.ascontiguousarray(feats[s][rows, layer], dtype=np.float32)

    scored = _run_cells(cells, features, (y, splits, C, max_iter, seed), n_jobs, progress, cancel)
    results = {cell: scores for cell, (scores, _) in scored.items()}
    fits = len(cells) * len(splits)
    capped = sum(c for _, c in scored.values())
    note = capped_message(capped, fits, max_iter)
    if note:
        messages.append(note)
    table = pd.DataFrame(
        [
            {
                "layer": layer,
                "pooling": s,
                "accuracy_mean": float(results[(layer, s)].mean()),
                "accuracy_sd": float(results[(layer, s)].std(ddof=1)),
                "n": len(y),
                "folds": folds,
            }
            for layer, s in cells
        ]
    )
    counts = np.bincount(y, minlength=len(classes))
    model_name = vectors.model_name if isinstance(vectors, PooledVectors) else ""
    return ProbeResult(
        table=table,
        label=label_name,
        classes=classes,
        class_counts=tuple(int(c) for c in counts),
        chance=1.0 / len(classes),
        majority=float(counts.max() / counts.sum()),
        n=len(y),
        folds=folds,
        model_name=model_name,
        seconds=time.perf_counter() - start,
        messages=tuple(messages),
        fits=fits,
        capped_fits=capped,
    )


def _probe_rows(feats: dict, texts, labels: list, folds: int, label_name: str):
    """(rows with a label, their int codes, the classes, notes): the labels checked for probing."""
    n_total = next(iter(feats.values())).shape[0] if feats else 0
    if not feats:
        raise ProbeError("Nothing to probe: no poolings were given.")
    if len(labels) != n_total:
        raise ProbeError(f"{len(labels)} labels for {n_total} texts: give one label per text.")
    for name, arr in feats.items():
        if arr.shape[0] != n_total:
            raise ProbeError(f"{name}: {arr.shape[0]} rows, expected {n_total}.")
    keep = np.array([not is_missing(v) for v in labels], dtype=bool)
    messages = []
    if not keep.all():
        messages.append(f"{int((~keep).sum())} of {n_total} texts have no '{label_name}' label and were left out.")
    y, classes = check_labels([v for v, k in zip(labels, keep) if k], folds, label_name)
    if texts is not None and len({t for t, k in zip(texts, keep) if k}) == 1:
        raise ProbeError(
            f"All {int(keep.sum())} texts are the same sentence, so every vector is identical and "
            "a probe can only guess. Use a corpus with different sentences."
        )
    return np.flatnonzero(keep), y, classes, messages


def _probe_grid(feats: dict, rows: np.ndarray, poolings, layers) -> tuple[list[str], list[int]]:
    """The poolings and layers to probe, checked against what was extracted."""
    if poolings is None:
        poolings = list(feats)
    else:
        poolings = [s if s == RANDOM_TOKEN else check_pooling(s) for s in poolings]
        missing = [s for s in poolings if s not in feats]
        if missing:
            raise ProbeError(f"Not extracted: {', '.join(missing)}. Available: {', '.join(feats)}.")
    num_rows = next(iter(feats.values())).shape[1]
    layers = list(range(num_rows)) if layers is None else [int(layer) for layer in layers]
    bad_layers = [layer for layer in layers if not 0 <= layer < num_rows]
    if bad_layers:
        raise ProbeError(f"Layers {bad_layers} are outside 0..{num_rows - 1}.")
    if all(np.ptp(feats[s][rows][:, layers], axis=0).max() == 0 for s in poolings):
        raise ProbeError("Every text has the same vector, so a probe can only guess. Use different sentences.")
    return poolings, layers


def _quiet_cv_scores(X, y, splits, C, max_iter, seed) -> tuple[np.ndarray, int]:
    """:func:`~clsviz.experiments.probe_fit.cv_scores` with one BLAS thread and sklearn's ConvergenceWarning silenced (the capped
    fits are counted instead); what each worker process runs for one cell."""
    from sklearn.exceptions import ConvergenceWarning

    with single_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cv_scores(X, y, splits, C, max_iter, seed)


def _run_cells(cells: list, features, fit_args: tuple, n_jobs, progress, cancel) -> dict:
    """``cv_scores(features(cell), *fit_args)`` for every cell: {cell: (scores, capped fits)}.

    Cells run in ``n_jobs`` worker processes (joblib's loky pool, kept warm between calls; default:
    the CPU count, at most 4), one BLAS thread each. Not threads: scipy's L-BFGS-B step and
    sklearn's bookkeeping hold the GIL for about half of every iteration, so threads on two cores
    ran at 0.8 cores (py-spy). Each fit is the same computation either way, so the accuracies do
    not depend on ``n_jobs``. ``max_iter`` is a budget: a probe that has not fully converged is
    still a fair probe (the scores count the capped fits, and the result says how many there were).
    """
    from joblib import Parallel, delayed

    workers = max(1, int(n_jobs or min(4, os.cpu_count() or 1)))
    results = {}
    if cancel is not None and cancel.is_set():
        raise Cancelled("The probe was cancelled.")
    if workers == 1 or len(cells) == 1:
        for cell in cells:
            results[cell] = _quiet_cv_scores(features(cell), *fit_args)
            if cancel is not None and cancel.is_set():
                raise Cancelled("The probe was cancelled.")
            if progress is not None:
                progress(len(results), len(cells))
        return results
    tasks = (delayed(_cell_scores)(cell, features(cell), *fit_args) for cell in cells)
    stream = Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")(tasks)
    try:
        for cell, scores in stream:
            results[cell] = scores
            if cancel is not None and cancel.is_set():
                raise Cancelled("The probe was cancelled.")
            if progress is not None:
                progress(len(results), len(cells))
    finally:
        stream.close()  # a cancelled or failed run drops the cells not started yet
    return results


def _cell_scores(cell, X, *fit_args):
    return cell, _quiet_cv_scores(X, *fit_args)
