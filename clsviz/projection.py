"""Projections of sentence vectors to 2-D, and how well labels separate in the original space.

:class:`Projector` follows the scikit-learn estimator convention (``fit`` returns ``self``,
learned state ends in ``_``, randomness through ``random_state``), so
``Projector(method="umap").fit(X).transform(Y)`` places new sentences among a fitted corpus.

UMAP runs on exact cosine (or Euclidean) distances computed here with one matrix product, so
no approximate neighbour index is built: that index costs minutes of numba compilation on a
small machine, and exact neighbours are cheap at corpus sizes (a few thousand texts).

The numbers that keep the pictures honest are computed in the *original* space, not the 2-D
one: :func:`knn_accuracy` (cross-validated k-nearest-neighbour label accuracy) and
:func:`silhouette` (how far apart the label groups sit), for one layer or every layer
(:func:`separation_by_layer`).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .corpus import PooledVectors

__all__ = [
    "PROJECTION_METHODS",
    "PROJECTION_METRICS",
    "SEPARATION_METRICS",
    "Projector",
    "knn_accuracy",
    "label_separation",
    "separation_by_layer",
    "silhouette",
    "usable_labels",
    "warm_up",
]

PROJECTION_METHODS = ("umap", "pca")
"""Valid ``method`` values of :class:`Projector`."""

PROJECTION_METRICS = ("cosine", "euclidean")
"""Valid ``metric`` values: the distance between vectors in the original space."""

SEPARATION_METRICS = ("knn_accuracy", "silhouette")
"""The names :func:`label_separation` and :func:`separation_by_layer` report."""

MIN_UMAP_SAMPLES = 5
"""UMAP needs a neighbourhood graph; below this many points use PCA."""

# umap-learn's compiled code runs numba parallel loops; numba's fallback threading layer
# ("workqueue") aborts the process when two threads enter them at once (two app sessions).
_UMAP_LOCK = threading.Lock()

MAX_UMAP_FIT = 4095
"""Larger inputs are fit on a random subset of this many points; the rest are placed with
``transform`` (umap-learn only keeps exact distances, and its ``transform`` on precomputed
distances, below 4096 points)."""


def _check_matrix(X, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.shape[1] == 0:
        raise ValueError(f"{name}: has no features (shape {X.shape})")
    if not np.isfinite(X).all():
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise ValueError(f"{name}: rows {', '.join(map(str, bad[:10]))} hold NaN or infinite values")
    return X


def _unit_rows(X: np.ndarray) -> np.ndarray:
    # A zero vector stays zero: its cosine distance to everything is then 1.
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def _distances(A: np.ndarray, B: np.ndarray, metric: str, dtype=np.float32) -> np.ndarray:
    """[len(A), len(B)] distances (``dtype``), exact, non-negative."""
    A, B = A.astype(dtype, copy=False), B.astype(dtype, copy=False)
    if metric == "cosine":
        D = 1.0 - _unit_rows(A) @ _unit_rows(B).T
    else:
        sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        D = np.sqrt(np.maximum(sq, 0.0))
    return np.maximum(D, 0.0).astype(dtype, copy=False)


class Projector(BaseEstimator):
    """Project vectors to ``n_components`` dimensions with UMAP or PCA.

    Parameters
    ----------
    method : "umap" or "pca"
    n_components : int, the output dimensions (2 for the pictures)
    metric : "cosine" or "euclidean", the distance in the original space. For PCA, "cosine"
        means rows are scaled to unit length first (so the picture ignores vector length).
    n_neighbors : int, UMAP's neighbourhood size; clamped to ``n_samples - 1`` (see
        ``n_neighbors_``) so small corpora still work
    min_dist : float, UMAP's minimum distance between points in the picture
    random_state : int or None. With an int UMAP is reproducible (and single-threaded);
        PCA is deterministic either way.

    Attributes (after ``fit``)
    --------------------------
    embedding_ : float32 array, shape (n_samples, n_components), the fitted points
    n_samples_fit_, n_features_in_ : int
    n_neighbors_ : int, the neighbourhood size UMAP used (UMAP only)
    umap_ : the fitted ``umap.UMAP`` (UMAP only)
    fit_rows_ : int array, the rows UMAP was fit on (all rows unless more than 4,095)
    mean_, components_ (n_components, n_features), explained_variance_ratio_ : PCA only
    """

    def __init__(
        self,
        method: str = "umap",
        n_components: int = 2,
        metric: str = "cosine",
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        random_state: int | None = None,
    ):
        self.method = method
        self.n_components = n_components
        self.metric = metric
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.random_state = random_state

    def _check_params(self) -> None:
        if self.method not in PROJECTION_METHODS:
            raise ValueError(f"Unknown projection method {self.method!r}. Valid: {', '.join(PROJECTION_METHODS)}.")
        if self.metric not in PROJECTION_METRICS:
            raise ValueError(f"Unknown metric {self.metric!r}. Valid: {', '.join(PROJECTION_METRICS)}.")
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer, got {self.n_components!r}")
        if self.method == "umap":
            if not isinstance(self.n_neighbors, (int, np.integer)) or self.n_neighbors < 2:
                raise ValueError(f"n_neighbors must be an integer of at least 2, got {self.n_neighbors!r}")
            if not 0.0 <= float(self.min_dist) <= 1.0:
                raise ValueError(f"min_dist must lie in 0..1, got {self.min_dist!r}")

    def fit(self, X, y=None) -> Projector:
        """Fit on X : array, shape (n_samples, n_features). ``y`` is ignored. Returns self."""
        self._check_params()
        X = _check_matrix(X)
        n, d = X.shape
        self.n_samples_fit_ = n
        self.n_features_in_ = d
        if self.method == "pca":
            self._fit_pca(X)
        else:
            self._fit_umap(X)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """``fit(X)`` and return ``embedding_``: float32, shape (n_samples, n_components)."""
        return self.fit(X, y).embedding_

    def transform(self, Y) -> np.ndarray:
        """Place Y : array, shape (m, n_features) into the fitted picture -> (m, n_components)."""
        if not hasattr(self, "embedding_"):
            raise NotFittedError("This Projector is not fitted yet; call fit(X) first.")
        Y = _check_matrix(Y, "Y")
        if Y.shape[1] != self.n_features_in_:
            raise ValueError(f"Y has {Y.shape[1]} features, but the projection was fit on {self.n_features_in_}")
        if len(Y) == 0:
            return np.zeros((0, self.n_components), dtype=np.float32)
        if self.method == "pca":
            return self._transform_pca(Y)
        return self._transform_umap(Y, self._fit_data)

    # -- PCA ---------------------------------------------------------------------------------

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        return _unit_rows(X) if self.metric == "cosine" else X

    def _fit_pca(self, X: np.ndarray) -> None:
        n, d = X.shape
        if n < 2:
            raise ValueError(f"PCA needs at least 2 points, got {n}.")
        if self.n_components > min(n, d):
            raise ValueError(
                f"PCA can give at most min(n_samples, n_features) = {min(n, d)} components; "
                f"n_components is {self.n_components}."
            )
        Z = self._prepare(X).astype(np.float64)
        self.mean_ = Z.mean(axis=0)
        centred = Z - self.mean_
        if n >= d:
            # The d x d scatter matrix's eigenvectors are the principal axes; for corpora
            # (n >> d) this is several times faster than an SVD of the n x d matrix.
            values, vectors = np.linalg.eigh(centred.T @ centred)
            order = np.argsort(values)[::-1]
            variance = np.maximum(values[order], 0.0)
            components = vectors[:, order[: self.n_components]].T
        else:
            _, s, vt = np.linalg.svd(centred, full_matrices=False)
            variance = s**2
            components = vt[: self.n_components]
        # Eigenvector signs are arbitrary; fix them so each component's largest loading is positive.
        signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
        self.components_ = components * signs[:, None]
        total = variance.sum()
        ratio = variance[: self.n_components] / total if total > 0 else np.zeros(self.n_components)
        self.explained_variance_ratio_ = ratio
        self.embedding_ = self._transform_pca(X)

    def _transform_pca(self, Y: np.ndarray) -> np.ndarray:
        Z = self._prepare(Y).astype(np.float64)
        return ((Z - self.mean_) @ self.components_.T).astype(np.float32)

    # -- UMAP --------------------------------------------------------------------------------

    def _fit_umap(self, X: np.ndarray) -> None:
        import umap

        n = X.shape[0]
        if n < MIN_UMAP_SAMPLES:
            raise ValueError(
                f"UMAP needs at least {MIN_UMAP_SAMPLES} points to build a neighbourhood graph; got {n}. "
                "Use method='pca' for so few points."
            )
        if self.n_components >= n - 1:
            raise ValueError(f"UMAP to {self.n_components} dimensions needs more than {self.n_components + 1} points; got {n}.")
        rng = np.random.default_rng(self.random_state)
        rows = np.arange(n) if n <= MAX_UMAP_FIT else np.sort(rng.choice(n, MAX_UMAP_FIT, replace=False))
        fit_data = X[rows]
        self.fit_rows_ = rows
        self.n_neighbors_ = int(min(self.n_neighbors, len(rows) - 1))
        seeded = self.random_state is not None
        model = umap.UMAP(
            n_components=int(self.n_components),
            n_neighbors=self.n_neighbors_,
            min_dist=float(self.min_dist),
            metric="precomputed",
            random_state=self.random_state if seeded else None,
            # A seed makes umap-learn single-threaded; say so rather than have it warn.
            n_jobs=1 if seeded else -1,
        )
        with _UMAP_LOCK, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*precomputed metric.*")
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")
            warnings.filterwarnings("ignore", message=".*disconnected.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            model.fit(_distances(fit_data, fit_data, self.metric))
        self.umap_ = model
        self._fit_data = fit_data
        embedding = np.empty((n, self.n_components), dtype=np.float32)
        embedding[rows] = model.embedding_
        rest = np.setdiff1d(np.arange(n), rows)
        if len(rest):
            embedding[rest] = self._transform_umap(X[rest], fit_data)
        self.embedding_ = embedding

    def _transform_umap(self, Y: np.ndarray, fit_data: np.ndarray) -> np.ndarray:
        with _UMAP_LOCK, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*precomputed metric.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            out = self.umap_.transform(_distances(Y, fit_data, self.metric))
        return np.asarray(out, dtype=np.float32)


# -- warm-up ---------------------------------------------------------------------------------

_WARM_LOCK = threading.Lock()
_WARM_DONE = False


def warm_up(n_samples: int = 2000, n_features: int = 32) -> bool:
    """Compile umap-learn's numba code once per process (the first fit pays ~30 s).

    Fits seeded and unseeded UMAP (their layout code differs) on random clustered points and
    transforms a few. Returns True if this call did the work, False if it was already done.
    Safe to call from several threads: later callers wait for the first one.
    """
    global _WARM_DONE
    with _WARM_LOCK:
        if _WARM_DONE:
            return False
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(8, n_features))
        X = (centres[rng.integers(0, 8, n_samples)] + 0.3 * rng.normal(size=(n_samples, n_features))).astype(np.float32)
        seeded = Projector("umap", random_state=0).fit(X)
        seeded.transform(X[:3])
        small = max(MIN_UMAP_SAMPLES + 2, min(n_samples, 300))
        unseeded = Projector("umap", random_state=None).fit(X[:small])
        unseeded.transform(X[:3])
        _WARM_DONE = True
        return True


# -- label separation in the original space --------------------------------------------------


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
    X = _check_matrix(X)
    if len(labels) != len(X):
        raise ValueError(f"labels: expected {len(X)} values, got {len(labels)}")
    rows, y = usable_labels(labels)
    keep = rows[_subsample(len(rows), max_samples, random_state)]
    _, codes = np.unique(y[np.searchsorted(rows, keep)], return_inverse=True)
    Xk = X[keep]
    # float64: near-ties between neighbours (common in early layers) then break the same way
    # in every implementation.
    D = _distances(Xk, Xk, metric, dtype=np.float64)
    np.fill_diagonal(D, 0.0)
    return D, codes


def _knn_from_distances(D: np.ndarray, codes: np.ndarray, k: int, folds: int, random_state) -> float:
    from sklearn.model_selection import KFold, StratifiedKFold

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

    if len(np.unique(codes)) >= len(codes):
        raise ValueError("The silhouette needs fewer label values than labelled rows (every row has its own label).")
    return float(silhouette_score(D, codes, metric="precomputed"))


def knn_accuracy(
    X,
    labels: Sequence,
    k: int = 5,
    folds: int = 5,
    metric: str = "cosine",
    random_state: int = 0,
    max_samples: int | None = 3000,
) -> float:
    """Cross-validated k-nearest-neighbour label accuracy of X : (n_samples, n_features).

    The mean over folds of the share of held-out rows whose k nearest training rows (by
    ``metric``) vote for their own label; the same number as scikit-learn's
    ``cross_val_score(KNeighborsClassifier(k, metric=metric), X, y, cv=StratifiedKFold(...))``,
    from one distance matrix. Rows without a label are left out. Folds are stratified (as many
    as the smallest class allows); above ``max_samples`` labelled rows a seeded random subset
    is scored.
    """
    D, codes = _labelled(X, labels, metric, max_samples, random_state)
    return _knn_from_distances(D, codes, k, folds, random_state)


def silhouette(
    X, labels: Sequence, metric: str = "cosine", random_state: int = 0, max_samples: int | None = 3000
) -> float:
    """Mean silhouette score (-1..1) of the label groups in X : (n_samples, n_features).

    Rows without a label are left out; above ``max_samples`` labelled rows a seeded random
    subset is scored (the score needs all pairwise distances).
    """
    D, codes = _labelled(X, labels, metric, max_samples, random_state)
    return _silhouette_from_distances(D, codes)


def label_separation(
    X,
    labels: Sequence,
    k: int = 5,
    folds: int = 5,
    metric: str = "cosine",
    random_state: int = 0,
    max_samples: int | None = 3000,
) -> dict[str, float]:
    """``{"knn_accuracy": ..., "silhouette": ...}`` for vectors X and their labels (one
    distance matrix serves both)."""
    D, codes = _labelled(X, labels, metric, max_samples, random_state)
    return {
        "knn_accuracy": _knn_from_distances(D, codes, k, folds, random_state),
        "silhouette": _silhouette_from_distances(D, codes),
    }


def separation_by_layer(
    vectors: PooledVectors,
    labels: Sequence,
    strategies: Sequence[str] = ("cls", "mean"),
    k: int = 5,
    folds: int = 5,
    metric: str = "cosine",
) -> pd.DataFrame:
    """kNN accuracy and silhouette at every layer for each strategy.

    Returns a tidy DataFrame with columns ``layer`` (0 = embeddings), ``strategy``,
    ``metric`` (one of :data:`SEPARATION_METRICS`) and ``value``.
    """
    usable_labels(labels)  # fail once, up front, with the reason
    records = []
    for strategy in strategies:
        for layer in range(vectors.num_layers + 1):
            scores = label_separation(vectors.get(strategy, layer), labels, k=k, folds=folds, metric=metric)
            records += [{"layer": layer, "strategy": strategy, "metric": m, "value": scores[m]} for m in SEPARATION_METRICS]
    return pd.DataFrame.from_records(records, columns=["layer", "strategy", "metric", "value"])
