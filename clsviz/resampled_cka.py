"""Linear CKA under resampling: the 95% bootstrap interval of a CKA over texts (or the tokens of
each text, resampled with their text), cheap enough to run a thousand times.

:class:`ResampledCKA` keeps the Gram matrices of one pair of layers aggregated by group, so a
resample costs O(groups²) instead of O(rows · D1 · D2); :func:`diagonal_intervals` gives the
interval of every layer l of A against layer l of B (:class:`clsviz.compare.ModelComparison`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ResampledCKA", "diagonal_intervals", "resample_weights"]


class ResampledCKA:
    """Linear CKA of X [M, D1] and Y [M, D2] under resampling of groups of rows (texts, or the
    tokens of a text), in the Gram form, so a resample costs O(groups²) rather than O(M · D1 · D2)::

        HSIC(K, L) = wᵀ(K∘L)w − (2/n) Σᵢ wᵢ (Kw)ᵢ (Lw)ᵢ + (wᵀKw)(wᵀLw)/n²
        CKA = HSIC(K, L) / √(HSIC(K, K) HSIC(L, L))

    with K = XXᵀ, L = YYᵀ and w the multiplicity of each row's group (``owner`` int [M], groups
    0..G-1; one group per row by default). With every weight 1 it is :func:`clsviz.compare.cka` of X and Y."""

    def __init__(self, X, Y, owner=None, groups: int | None = None):
        X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
        owner = np.arange(len(X)) if owner is None else np.asarray(owner, dtype=np.int64)
        self.groups = int(owner.max()) + 1 if groups is None else int(groups)
        K, L = X @ X.T, Y @ Y.T
        onehot = np.zeros((len(owner), self.groups))
        onehot[np.arange(len(owner)), owner] = 1.0
        self.onehot = onehot
        self.by = {name: onehot.T @ m @ onehot for name, m in (("KL", K * L), ("KK", K * K), ("LL", L * L))}
        self.rows = {"K": K @ onehot, "L": L @ onehot}

    def __call__(self, weights=None) -> float:
        """CKA when group g counts ``weights[g]`` times (default: once each)."""
        w = np.ones(self.groups) if weights is None else np.asarray(weights, dtype=np.float64)
        tokens = self.onehot @ w
        n = float(tokens.sum())
        kw, lw = self.rows["K"] @ w, self.rows["L"] @ w

        def hsic(pair: str, a: np.ndarray, b: np.ndarray) -> float:
            return float(w @ self.by[pair] @ w - 2.0 / n * np.sum(tokens * a * b) + (tokens @ a) * (tokens @ b) / n**2)

        denominator = np.sqrt(max(hsic("KK", kw, kw), 0.0) * max(hsic("LL", lw, lw), 0.0))
        return float(np.clip(hsic("KL", kw, lw) / denominator, 0.0, 1.0)) if denominator > 0 else float("nan")


def resample_weights(groups: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """int [n_boot, groups]: how often each group is drawn in each bootstrap resample."""
    return np.random.default_rng(seed).multinomial(groups, np.full(groups, 1.0 / groups), size=n_boot)


def diagonal_intervals(vectors_a, vectors_b, owner=None, n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """float64 [L+1, 2]: the 95% bootstrap interval (resampling the groups of ``owner``, default
    the rows) of the CKA of layer l of A with layer l of B (stacks of the same depth)."""
    layers_a, layers_b = [np.asarray(m) for m in vectors_a], [np.asarray(m) for m in vectors_b]
    if len(layers_a) != len(layers_b):
        raise ValueError("diagonal intervals need two stacks of the same depth")
    first = ResampledCKA(layers_a[0], layers_b[0], owner)
    draws = resample_weights(first.groups, n_boot, seed)
    out = np.full((len(layers_a), 2), np.nan)
    for layer, (x, y) in enumerate(zip(layers_a, layers_b)):
        resampled = first if layer == 0 else ResampledCKA(x, y, owner, first.groups)
        values = np.array([resampled(w) for w in draws])
        values = values[np.isfinite(values)]
        if values.size:
            out[layer] = np.percentile(values, [2.5, 97.5])
    return out
