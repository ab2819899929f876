"""Linear CKA (Kornblith et al., 2019, "Similarity of Neural Network Representations Revisited"):
how alike two sets of representations of the same N items are, whatever their widths.

* :func:`cka` – two matrices [N, D1], [N, D2] whose rows are the same N items
* :func:`layer_cka` – float64 [L_A+1, L_B+1]: CKA between every layer of A and every layer of B,
  through Gram matrices [N, N] when N is small beside the widths, the feature form otherwise

When every row of a matrix is the same vector (after centring it is all zeros) CKA is undefined
and is returned as NaN. :mod:`clsviz.compare` runs two encoders on a sample and measures them
with these; both names import from there too.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cka", "layer_cka"]

# A centred matrix whose norm is this small relative to its entries is all-constant rows.
_DEGENERATE = 1e-12
# Gram matrices kept in memory at once by layer_cka (beyond that it uses the feature form).
_GRAM_BUDGET_BYTES = 256 * 2**20


def _centred(x, name: str) -> np.ndarray | None:
    """float64 [N, D] with centred columns and unit Frobenius norm, or None when degenerate."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a matrix [N, D] (one row per item), got shape {list(a.shape)}")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"{name}: CKA needs at least 2 rows and 1 column, got {list(a.shape)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values; CKA needs finite numbers.")
    c = a - a.mean(axis=0, keepdims=True)
    norm = float(np.linalg.norm(c))
    scale = float(np.abs(a).max())
    if norm == 0.0 or norm <= _DEGENERATE * scale * np.sqrt(a.size):
        return None
    return c / norm


def _self_norm(c: np.ndarray) -> float:
    """||C^T C||_F (= ||C C^T||_F), via the smaller of the two products."""
    n, d = c.shape
    return float(np.linalg.norm(c.T @ c if d <= n else c @ c.T))


def _use_gram(n: int, dims_a: int, dims_b: int, pairs: int = 1) -> bool:
    """True when N x N Gram matrices are cheaper than D_A x D_B cross products."""
    return n * (dims_a + dims_b) + n * pairs < dims_a * dims_b * pairs


def cka(X, Y) -> float:
    """Linear CKA of X [N, D1] and Y [N, D2] (row i of both is the same item): a float in [0, 1].

    CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred Xc, Yc, computed in
    float64; it is invariant to orthogonal transforms and isotropic scaling of either side.
    Returns NaN when X or Y has identical rows (nothing varies, CKA is undefined).
    """
    xc, yc = _centred(X, "X"), _centred(Y, "Y")
    rows_x, rows_y = np.shape(X)[0], np.shape(Y)[0]
    if rows_x != rows_y:
        raise ValueError(f"X and Y must have the same rows (items): X has {rows_x}, Y has {rows_y}.")
    if xc is None or yc is None:
        return float("nan")
    n = xc.shape[0]
    if _use_gram(n, xc.shape[1], yc.shape[1]):
        cross = float(np.sum((xc @ xc.T) * (yc @ yc.T)))
    else:
        cross = float(np.sum((xc.T @ yc) ** 2))
    return float(np.clip(cross / (_self_norm(xc) * _self_norm(yc)), 0.0, 1.0))


def _layers(vectors, name: str) -> list[np.ndarray]:
    layers = [np.asarray(m) for m in vectors]
    if not layers:
        raise ValueError(f"{name}: expected a stack [L+1, N, D] of per-layer matrices, got nothing")
    return layers


def layer_cka(vectors_a, vectors_b) -> np.ndarray:
    """float64 [L_A+1, L_B+1]: linear CKA between every layer of A and every layer of B.

    vectors_a : [L_A+1, N, D_A] (or a sequence of [N, D_A] matrices), vectors_b : [L_B+1, N, D_B];
    row i of every matrix is the same item (text or token). Layers whose rows are all the same
    vector give NaN rows / columns (see :func:`cka`).
    """
    layers_a, layers_b = _layers(vectors_a, "vectors_a"), _layers(vectors_b, "vectors_b")
    a = [_centred(m, f"vectors_a[{i}]") for i, m in enumerate(layers_a)]
    b = [_centred(m, f"vectors_b[{i}]") for i, m in enumerate(layers_b)]
    sizes = {m.shape[0] for m in (*layers_a, *layers_b)}
    if len(sizes) != 1:
        raise ValueError(f"Every layer of both stacks must have the same rows (items); got row counts {sorted(sizes)}.")
    n = sizes.pop()
    dims_a = max(m.shape[1] for m in layers_a)
    dims_b = max(m.shape[1] for m in layers_b)
    out = np.full((len(a), len(b)), np.nan)
    gram = _use_gram(n, dims_a, dims_b, len(a) * len(b)) and len(b) * n * n * 8 <= _GRAM_BUDGET_BYTES
    if gram:
        # Normalised Gram matrices: CKA is then their Frobenius inner product.
        grams_b = np.zeros((len(b), n * n))
        for j, yc in enumerate(b):
            if yc is not None:
                g = yc @ yc.T
                grams_b[j] = (g / np.linalg.norm(g)).ravel()
        for i, xc in enumerate(a):
            if xc is None:
                continue
            g = xc @ xc.T
            out[i] = grams_b @ (g / np.linalg.norm(g)).ravel()
    else:
        norms_b = [None if yc is None else _self_norm(yc) for yc in b]
        for i, xc in enumerate(a):
            if xc is None:
                continue
            norm_a = _self_norm(xc)
            for j, yc in enumerate(b):
                if yc is not None:
                    out[i, j] = np.sum((xc.T @ yc) ** 2) / (norm_a * norms_b[j])
    for j, yc in enumerate(b):
        if yc is None:
            out[:, j] = np.nan
    return np.clip(out, 0.0, 1.0)
