"""How well labels separate in the *original* space, not the 2-D picture: the numbers that keep
the projections honest.

* :func:`knn_accuracy` - cross-validated k-nearest-neighbour label accuracy
* :func:`silhouette` - how far apart the label groups sit (-1..1)
* :func:`separation_by_layer` - both, at every layer, for each pooling
* :func:`label_baselines` - chance and majority-class accuracy of a label column
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .metrics import check_matrix, distance_matrix
from .projection import PROJECTION_METRICS
from .vectors import PooledVectors

__all__ = [
    "SEPARATION_METRICS",
    "knn_accuracy",
    "label_baselines",
    "label_separation",
    "score_text",
    "scores_at",
    "separation_by_layer",
    "silhouette",
    "usable_labels",
]

SEPARATION_METRICS = ("knn_accuracy", "silhouette")
"""The names :func:`label_separation` and :func:`separation_by_layer` report."""


def usable_labels(labels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(rows, values): the rows whose label is present (not None / NaN / ""), as strings.

    Raises ValueError when fewer than two label values remain (nothing to separate).
    """
    rows, values = [], []
    for i, value in enumerate(labels):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        text = str(value).strip()
        if text:
            rows.append(i)
            values.append(text)
    distinct = set(values)
    if len(distinct) < 2:
        raise ValueError(
            f"The labels need at least two different values on labelled rows; found {len(distinct)} "
            f"({len(values)} labelled rows). Pick another label column."
        )
    return np.asarray(rows, dtype=np.int64), np.asarray(values, dtype=object)


def _subsample(n: int, max_samples: int | None, random_state) -> np.ndarray:
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(random_state).choice(n, max_samples, replace=False))


def _labelled(X, labels: Sequence, metric: str, max_samples: int | None, random_state) -> tuple[np.ndarray, np.ndarray]:
    """(distances [n, n] among the labelled rows kept, label codes [n])."""
    if metric not in PROJECTION_METRICS:
        raise ValueError(f"Unknown metric {metric!r}. Valid: {', '.join(PROJECTION_METRICS)}.")
    X = check_matrix(X)
    if len(labels) != len(X):
        raise ValueError(f"labels: expected {len(X)} values, got {len(labels)}")
    rows, y = usable_labels(labels)
    keep = rows[_subsample(len(rows), max_samples, random_state)]
    _, codes = np.unique(y[np.searchsorted(rows, keep)], return_inverse=True)
    Xk = X[keep]
    # float64: near-ties between neighbours (common in early layers) then break the same way
    # in every implementation.
    D = distance_matrix(Xk, Xk, metric, dtype=np.float64)
    np.fill_diagonal(D, 0.0)
    return D, codes


def _degenerate(D: np.ndarray) -> bool:
    """True when every vector is the same (all distances zero): neither score is defined then -
    a silhouette of 0 or a kNN 'accuracy' decided by tie-breaking would look like a result."""
    return float(D.max(initial=0.0)) <= 1e-12


def _knn_from_distances(D: np.ndarray, codes: np.ndarray, k: int, folds: int, random_state) -> float:
    from sklearn.model_selection import KFold, StratifiedKFold

    if _degenerate(D):
        return float("nan")
    n = len(codes)
    counts = np.bincount(codes)
    if counts.min() >= 2:
        cv = StratifiedKFold(n_splits=min(folds, int(counts.min())), shuffle=True, random_state=random_state)
    else:
        cv = KFold(n_splits=min(folds, n), shuffle=True, random_state=random_state)
    scores = []
    for train, test in cv.split(np.zeros(n), codes):
        kk = max(1, min(k, len(train)))
        d = D[np.ix_(test, train)]
        nearest = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        votes = np.zeros((len(test), len(counts)))
        np.add.at(votes, (np.repeat(np.arange(len(test)), kk), codes[train][nearest].ravel()), 1.0)
        # Ties go to the first class in sorted order, as scikit-learn's KNeighborsClassifier does.
        scores.append(float((votes.argmax(axis=1) == codes[test]).mean()))
    return float(np.mean(scores))


def _silhouette_from_distances(D: np.ndarray, codes: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    if _degenerate(D):
        return float("nan")
    if len(np.unique(codes)) >= len(codes):
        raise ValueError("The silhouette needs fewer label values than labelled rows (every row has its own label).")
    return float(silhouette_score(D, codes, metric="precomputed"))


def knn_accuracy(X, labels: Sequence, k: int = 5, folds: int = 5, metric: str = "cosine", random_state: int = 0,
                 max_samples: int | None = 3000) -> float:
    """Cross-validated k-nearest-neighbour label accuracy of X : (n_samples, n_features).

    The mean over folds of the share of held-out rows whose k nearest training rows (by
    ``metric``) vote for their own label; the same number as scikit-learn's
    ``cross_val_score(KNeighborsClassifier(k, metric=metric), X, y, cv=StratifiedKFold(...))``,
    from one distance matrix. Rows without a label are left out. Folds are stratified (as many
    as the smallest class allows); above ``max_samples`` labelled rows a seeded random subset
    is scored. NaN ("undefined") when every vector is the same.
    """
    D, codes = _labelled(X, labels, metric, max_samples, random_state)
    return _knn_from_distances(D, codes, k, folds, random_state)


def silhouette(
    X, labels: Sequence, metric: str = "cosine", random_state: int = 0, max_samples: int | None = 3000
) -> float:
    """Mean silhouette score (-1..1) of the label groups in X : (n_samples, n_features); NaN
    ("undefined") when every vector is the same.

    Rows without a label are left out; above ``max_samples`` labelled rows a seeded random
    subset is scored (the score needs all pairwise distances).
    """
    D, codes = _labelled(X, labels, metric, max_samples, random_state)
    return _silhouette_from_distances(D, codes)


def label_separation(X, labels: Sequence, k: int = 5, folds: int = 5, metric: str = "cosine", random_state: int = 0,
                     max_samples: int | None = 3000) -> dict[str, float]:
    """``{"knn_accuracy": ..., "silhouette": ...}`` for vectors X and their labels (one
    distance matrix serves both); both NaN ("undefined") when every vector is the same."""
    D, codes = _labelled(X, labels, metric, max_samples, random_state)
    return {
        "knn_accuracy": _knn_from_distances(D, codes, k, folds, random_state),
        "silhouette": _silhouette_from_distances(D, codes),
    }


def separation_by_layer(
    vectors: PooledVectors,
    labels: Sequence,
    poolings: Sequence[str] = ("cls", "mean"),
    k: int = 5,
    folds: int = 5,
    metric: str = "cosine",
    layers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """kNN accuracy and silhouette at every layer (or at ``layers``) for each pooling.

    Returns a tidy DataFrame with columns ``layer`` (0 = embeddings), ``pooling``,
    ``metric`` (one of :data:`SEPARATION_METRICS`) and ``value``.
    """
    usable_labels(labels)  # fail once, up front, with the reason
    records = []
    for pooling in poolings:
        for layer in range(vectors.num_layers + 1) if layers is None else layers:
            scores = label_separation(vectors.get(pooling, layer), labels, k=k, folds=folds, metric=metric)
            records += [{"layer": layer, "pooling": pooling, "metric": m, "value": scores[m]} for m in SEPARATION_METRICS]
    return pd.DataFrame.from_records(records, columns=["layer", "pooling", "metric", "value"])


def label_baselines(labels: Sequence) -> tuple[float, float, int]:
    """(chance, majority, classes) of the present labels: 1 / classes, the share of the most
    frequent class, and the number of classes (NaN, NaN, 0 when no row has a label)."""
    values = [str(v).strip() for v in labels if v is not None and str(v).strip() and str(v) != "nan"]
    if not values:
        return float("nan"), float("nan"), 0
    _, counts = np.unique(np.asarray(values, dtype=object), return_counts=True)
    return 1.0 / len(counts), float(counts.max() / counts.sum()), int(len(counts))


def scores_at(table: pd.DataFrame, pooling: str, layer: int) -> dict[str, float]:
    """``{metric: value}`` of one pooling at one layer of a :func:`separation_by_layer` table."""
    rows = table[(table["pooling"] == pooling) & (table["layer"] == int(layer))]
    return dict(zip(rows["metric"], rows["value"].astype(float)))


def score_text(value: float, fmt: str = ".3f") -> str:
    """A separation score for people: the number, or "undefined" when it is NaN (every vector the
    same, so no score means anything)."""
    return "undefined" if not np.isfinite(value) else format(value, fmt)
