"""Projections of sentence vectors to 2-D (label separation in the original space is
:mod:`clsviz.separation`).

:class:`Projector` follows the scikit-learn estimator convention (``fit`` returns ``self``,
learned state ends in ``_``, randomness through ``random_state``), so
``Projector(method="umap").fit(X).transform(Y)`` places new sentences among a fitted corpus.

UMAP runs on exact cosine (or Euclidean) distances computed here with one matrix product, so
no approximate neighbour index is built: that index costs minutes of numba compilation on a
small machine, and exact neighbours are cheap at corpus sizes (a few thousand texts).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .jit_cache import umap_module
from .metrics import check_matrix, distance_matrix, unit_rows
from .pooling import pool
from .tracing import Trace
from .vectors import PooledVectors

__all__ = [
    "PROJECTION_METHODS",
    "PROJECTION_METRICS",
    "TRAJECTORY_POINTS",
    "Projector",
    "coordinates_table",
    "trace_path",
    "trajectory_sample",
    "trajectory_stack",
    "warm_up",
]

PROJECTION_METHODS = ("umap", "pca")
"""Valid ``method`` values of :class:`Projector`."""

PROJECTION_METRICS = ("cosine", "euclidean")
"""Valid ``metric`` values: the distance between vectors in the original space."""

MIN_UMAP_SAMPLES = 5
"""UMAP needs a neighbourhood graph; below this many points use PCA."""

# umap-learn's compiled code runs numba parallel loops; numba's fallback threading layer
# ("workqueue") aborts the process when two threads enter them at once (two app sessions).
_UMAP_LOCK = threading.Lock()

MAX_UMAP_FIT = 4095
"""Larger inputs are fit on a random subset of this many points; the rest are placed with
``transform`` (umap-learn only keeps exact distances, and its ``transform`` on precomputed
distances, below 4096 points)."""


MAX_PCA_FIT = 20_000
"""PCA is fit on a random subset of this many points when there are more (the axes of 20,000
points are those of the whole to within noise); every point is then placed with ``transform``."""

_TRANSFORM_CHUNK = 2048  # UMAP places points in pieces, so distances to the fit set stay small


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
    fit_rows_ : int array, the rows the projection was fit on (all rows unless more than 4,095
        for UMAP or 20,000 for PCA; the others are placed with ``transform``)
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
        X = check_matrix(X)
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
        Y = check_matrix(Y, "Y")
        if Y.shape[1] != self.n_features_in_:
            raise ValueError(f"Y has {Y.shape[1]} features, but the projection was fit on {self.n_features_in_}")
        if len(Y) == 0:
            return np.zeros((0, self.n_components), dtype=np.float32)
        if self.method == "pca":
            return self._transform_pca(Y)
        return self._transform_umap(Y, self._fit_data)

    # -- PCA ---------------------------------------------------------------------------------

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        # A zero vector stays zero: its cosine distance to everything is then 1.
        return unit_rows(X).astype(np.float32) if self.metric == "cosine" else X

    def _fit_pca(self, X: np.ndarray) -> None:
        n, d = X.shape
        if n < 2:
            raise ValueError(f"PCA needs at least 2 points, got {n}.")
        if self.n_components > min(n, d):
            raise ValueError(
                f"PCA can give at most min(n_samples, n_features) = {min(n, d)} components; "
                f"n_components is {self.n_components}."
            )
        rows = np.arange(n)
        if n > MAX_PCA_FIT:
            rows = np.sort(np.random.default_rng(self.random_state or 0).choice(n, MAX_PCA_FIT, replace=False))
        self.fit_rows_ = rows
        Z = self._prepare(X[rows]).astype(np.float64)
        n = len(rows)
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
        out = np.empty((len(Y), self.n_components), dtype=np.float32)
        for start in range(0, len(Y), 16384):  # float64 pieces, not a float64 copy of everything
            Z = self._prepare(Y[start : start + 16384]).astype(np.float64)
            out[start : start + 16384] = (Z - self.mean_) @ self.components_.T
        return out

    # -- UMAP --------------------------------------------------------------------------------

    def _fit_umap(self, X: np.ndarray) -> None:
        umap = umap_module()
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
            model.fit(distance_matrix(fit_data, fit_data, self.metric))
        self.umap_ = model
        self._fit_data = fit_data
        embedding = np.empty((n, self.n_components), dtype=np.float32)
        embedding[rows] = model.embedding_
        rest = np.setdiff1d(np.arange(n), rows)
        if len(rest):
            embedding[rest] = self._transform_umap(X[rest], fit_data)
        self.embedding_ = embedding

    def _transform_umap(self, Y: np.ndarray, fit_data: np.ndarray) -> np.ndarray:
        out = np.empty((len(Y), self.n_components), dtype=np.float32)
        with _UMAP_LOCK, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*precomputed metric.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            for start in range(0, len(Y), _TRANSFORM_CHUNK):
                piece = Y[start : start + _TRANSFORM_CHUNK]
                out[start : start + len(piece)] = self.umap_.transform(distance_matrix(piece, fit_data, self.metric))
        return out


# -- warm-up ---------------------------------------------------------------------------------

_WARM_LOCK = threading.Lock()
_WARM_DONE = False


def warm_up(n_samples: int = 300, n_features: int = 32) -> bool:
    """Compile umap-learn's numba code once per process (the first fit pays for it), or load it
    from numba's on-disk cache where an earlier process compiled it (:mod:`clsviz.jit_cache`).
    A few hundred points reach every compiled function a fit of thousands reaches (measured:
    after ``warm_up(300)`` the first 2,000-point fit takes no longer than the second), so the
    warm-up computes little beyond the compilation.

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


# -- tables and samples behind the Embeddings page ---------------------------------------------


TRAJECTORY_POINTS = 2100
"""Corpus points (over all layers together) behind the joint trajectory projection."""


def trajectory_sample(vectors: PooledVectors, max_points: int = TRAJECTORY_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(rows, layers), each int [M]: a fixed sample of corpus rows repeated at every layer, so one
    projection fit on every layer at once makes positions at different layers comparable."""
    n, levels = len(vectors.texts), vectors.num_layers + 1
    per_layer = max(1, min(n, max_points // levels))
    rows = np.sort(np.random.default_rng(0).choice(n, per_layer, replace=False))
    return np.tile(rows, levels), np.repeat(np.arange(levels), per_layer)


def trajectory_stack(vectors: PooledVectors, pooling: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stack float32 [M, D], rows [M], layers [M]): the :func:`trajectory_sample` vectors of one
    pooling, the data a trajectory projection is fit on."""
    rows, layers = trajectory_sample(vectors)
    stack = np.empty((len(rows), vectors.get(pooling, 0, rows[:1]).shape[1]), dtype=np.float32)
    for layer in np.unique(layers):  # one read per layer (shard folders read one column each)
        picked = layers == layer
        stack[picked] = vectors.get(pooling, int(layer), rows[picked])
    return stack, rows, layers


def trace_path(trace: Trace, pooling: str) -> np.ndarray:
    """float32 [L + 1, D]: one sentence's ``pooling`` vector at every layer."""
    return np.stack([pool(trace, pooling, layer) for layer in range(trace.num_layers + 1)]).astype(np.float32)


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
    """Long table of every 2-D position shown: source, text, label, pooling, layer, method, x, y.

    coords / typed : pooling -> float [N, 2] / [M, 2] for the corpus texts / the typed texts.
    """
    frames = []
    column = label_name or "label"
    for pooling, xy in coords.items():
        frames.append(pd.DataFrame({
            "source": "corpus", "text": list(texts), column: list(labels) if labels is not None else "",
            "pooling": pooling, "layer": layer, "method": method, "x": xy[:, 0], "y": xy[:, 1],
        }))
        if pooling in typed and len(typed_texts):
            frames.append(pd.DataFrame({
                "source": "typed", "text": list(typed_texts), column: "", "pooling": pooling,
                "layer": layer, "method": method, "x": typed[pooling][:, 0], "y": typed[pooling][:, 1],
            }))
    return pd.concat(frames, ignore_index=True)
