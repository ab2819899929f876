"""Numeric primitives every other module shares: cosines, centring, rank correlation, entropy.

They compute in float64 and keep results inside the range the maths allows: a float32 cosine
of a vector with itself can come out as 1.0000001, and on another CPU or BLAS as 0.9999999, so
every cosine and correlation is clipped to [-1, 1] and every entropy to [0, log T]. Callers
never re-implement these (one definition of "cosine" for the whole package).

* :func:`cosine` - along the last axis, broadcasting; 0 for a zero vector
* :func:`cosine_matrix` - every row of A against every row of B
* :func:`unit_rows` - rows scaled to length 1 (zero rows stay zero)
* :func:`centre` - ``x - mean``, with residues below rounding treated as exactly zero
* :func:`spearman` / :func:`average_ranks` - rank correlation with tied ranks averaged
* :func:`entropy` - Shannon entropy (nats) of weight rows, renormalised first
* :func:`normalize_rows` - rows divided by their sums
* :func:`distance_matrix` / :func:`check_matrix` - exact pairwise distances of a checked matrix
* :func:`bootstrap_interval` - a percentile bootstrap interval for any statistic of paired samples
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "average_ranks",
    "bootstrap_interval",
    "centre",
    "check_matrix",
    "cosine",
    "cosine_matrix",
    "distance_matrix",
    "entropy",
    "normalize_rows",
    "resample_rows",
    "spearman",
    "spearman_interval",
    "unit_rows",
]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float64 array like ``x`` with every vector (last axis) scaled to length 1; zero vectors stay 0."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 cosine similarity along the last axis, broadcasting the others.

    0 where either vector is zero; clipped to [-1, 1] (rounding can push |cos| past 1).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    dots = (a * b).sum(axis=-1)
    out = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.clip(out, -1.0, 1.0)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 [N, M]: cosine between every row of ``a`` [N, D] and every row of ``b`` [M, D], in [-1, 1]."""
    return np.clip(unit_rows(a) @ unit_rows(b).T, -1.0, 1.0)


def centre(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """float64 ``x - mean``; a residual below 1e-5 of the vector's own norm counts as zero.

    Some vectors (e.g. [CLS] at the embedding layer) are the same for every text; centred,
    they must give cosine 0, not the cosine of leftover rounding noise.
    """
    x = np.asarray(x, dtype=np.float64)
    out = x - np.asarray(mean, dtype=np.float64)
    tiny = np.linalg.norm(out, axis=-1, keepdims=True) <= 1e-5 * np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(tiny, 0.0, out)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """float64 1-based ranks of a 1-D array; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(np.asarray(x).ravel(), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    starts = ends - counts
    return ((starts + 1 + ends) / 2.0)[inverse]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation in [-1, 1] (ties get average ranks); NaN when either side is
    constant, has fewer than 2 values or holds a NaN."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2 or np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    rx = average_ranks(x) - (x.size + 1) / 2.0
    ry = average_ranks(y) - (y.size + 1) / 2.0
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    if denom == 0:
        return float("nan")
    return float(np.clip((rx * ry).sum() / denom, -1.0, 1.0))


def normalize_rows(weights: np.ndarray, inplace: bool = False) -> np.ndarray:
    """float32 [..., T]: each row divided by its sum (rows summing to 0 become 0).

    ``inplace=True`` writes into ``weights`` (a float32 array the caller owns) instead of a new
    array: [L, H, T, T] maps at 512 tokens on a bert-base-sized model take 150 MB a copy.
    """
    w = np.asarray(weights, dtype=np.float32)
    total = w.sum(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
    if not inplace:
        return np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    if w is not weights:
        raise ValueError("normalize_rows(inplace=True) needs a float32 numpy array to write into.")
    np.multiply(w, total > 0, out=w)
    return np.divide(w, total, out=w, where=total > 0)


def entropy(rows: np.ndarray) -> np.ndarray:
    """float64 [...]: Shannon entropy (nats) of each row of non-negative weights [..., T].

    Rows are renormalised to sum to 1 first; an all-zero row has entropy 0. The result lies in
    [0, log T] (clipped: rounding must not report a row as broader than uniform).
    """
    row = np.asarray(rows, dtype=np.float64)
    total = row.sum(axis=-1, keepdims=True)
    p = np.divide(row, total, out=np.zeros_like(row), where=total > 0)
    logp = np.log(p, out=np.zeros_like(p), where=p > 0)
    return np.clip(-(p * logp).sum(axis=-1), 0.0, np.log(max(row.shape[-1], 1)))


def check_matrix(X, name: str = "X") -> np.ndarray:
    """float32 [N, F] from ``X``; ValueError for a non-2-D, empty or non-finite input."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.shape[1] == 0:
        raise ValueError(f"{name}: has no features (shape {X.shape})")
    if not np.isfinite(X).all():
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise ValueError(f"{name}: rows {', '.join(map(str, bad[:10]))} hold NaN or infinite values")
    return X


def distance_matrix(A: np.ndarray, B: np.ndarray, metric: str, dtype=np.float32) -> np.ndarray:
    """[len(A), len(B)] exact, non-negative distances in ``dtype``: ``"cosine"`` (1 - cosine; a zero
    vector is at distance 1 from everything) or ``"euclidean"``."""
    A, B = A.astype(dtype, copy=False), B.astype(dtype, copy=False)
    if metric == "cosine":
        unit_a = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
        unit_b = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
        D = 1.0 - unit_a @ unit_b.T
    else:
        sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        D = np.sqrt(np.maximum(sq, 0.0))
    return np.maximum(D, 0.0).astype(dtype, copy=False)


def bootstrap_interval(statistic, *samples, n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high): ``statistic(*samples)`` and its percentile bootstrap interval.

    Rows are resampled with replacement, the same rows in every sample (paired), ``n_boot``
    times with ``np.random.default_rng(seed)``; resamples whose statistic is NaN (e.g. a
    constant resample for a correlation) are left out. ``level`` is the interval's coverage.
    """
    arrays = [np.asarray(s) for s in samples]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"every sample needs the same number of rows, got {[len(a) for a in arrays]}")
    if n < 2:
        raise ValueError(f"a bootstrap needs at least 2 rows, got {n}")
    estimate = float(statistic(*arrays))
    rows = resample_rows(n, n_boot, seed)
    values = np.array([statistic(*(a[r] for a in arrays)) for r in rows], dtype=np.float64)
    return (estimate, *_percentiles(values, level))


def resample_rows(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """int [n_boot, n]: the bootstrap's row indices (drawn with replacement, one row per resample)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def spearman_interval(x: Sequence[float], y: Sequence[float], n_boot: int = 1000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """(ρ, low, high): :func:`spearman` with its percentile bootstrap interval - the same numbers as
    ``bootstrap_interval(spearman, x, y, ...)``, computed for every resample at once."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    estimate = spearman(x, y)
    rows = resample_rows(len(x), n_boot, seed)
    rx = rankdata(x[rows], axis=1) - (len(x) + 1) / 2.0
    ry = rankdata(y[rows], axis=1) - (len(x) + 1) / 2.0
    denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.clip(np.where(denom > 0, (rx * ry).sum(axis=1) / denom, np.nan), -1.0, 1.0)
    return (estimate, *_percentiles(values, level))
