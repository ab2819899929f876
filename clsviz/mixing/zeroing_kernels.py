"""Compiled inner loops of value zeroing for every receiving token at once (CPU, exact GELU).

Value zeroing (:mod:`.zeroing`) follows, for each pair (zeroed token j, receiving token i), the
*change* a block's output makes when j's values are zeroed, instead of running the block twice
and subtracting: the change itself is carried through the feed-forward network and the
LayerNorms, so a change of relative size 1e-8 keeps its own significant digits even where the
products with the weight matrices run in float32. Two steps run per pair and per element, which
torch would do in a dozen passes over [pairs, F] tensors; here each is one compiled loop
(numba, the JIT compiler umap-learn already brings; compiled once, cached on disk):

* :func:`gelu_changes` - the first feed-forward layer's change ``da`` (from per-head parts, H + 1
  products per element) and the exact GELU's change ``gelu(a + da) - gelu(a)``. Small changes
  (``|da| < TAYLOR_RADIUS``) use the Taylor series of GELU around ``a``; written with Hermite
  polynomials it never subtracts two nearly equal numbers. Larger ones subtract in float64.
* :func:`output_scores` - given the second feed-forward layer's change (float32 [pairs, D]),
  adds the first LayerNorm's change, carries it through the second LayerNorm and returns
  ``1 - cos(out_i, out_i + change)`` in float64 as ``|change ⊥ out_i|^2 / (|out'|^2 (1 + cos))``,
  which has no cancellation either.

Shapes: J = zeroed tokens in a chunk, T = receiving tokens, H = heads, D = hidden size, F = the
feed-forward size, N = :data:`TAYLOR_TERMS`.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["TAYLOR_RADIUS", "TAYLOR_TERMS", "gelu_changes", "gelu_series", "is_exact_gelu", "output_scores"]

TAYLOR_RADIUS = 0.25
"""Changes of the GELU's input below this use the series; larger ones subtract in float64."""

TAYLOR_TERMS = 14
"""Terms of the series: its truncation error is below 3e-9 of ``|da| * (Phi(a) + |a| phi(a))``
for every ``a`` and ``|da| < TAYLOR_RADIUS`` (checked in the tests), far below float32 rounding."""

_INVERSE_FACTORIALS = np.array([1.0 / math.factorial(n + 1) for n in range(TAYLOR_TERMS)])

_TILE = 8

_FLAT_TAILS = 8.0
"""Beyond ``|a| > 8`` the density phi(a) < 5e-15: the series part is left out (GELU is flat or
linear there) and the Hermite values cannot overflow."""


def is_exact_gelu(act) -> bool:
    """Whether ``act`` (a block's activation) is the exact erf GELU, ``x * Phi(x)``."""
    x = torch.linspace(-6.0, 6.0, 241, dtype=torch.float64)
    try:
        with torch.inference_mode():
            got = act(x)
    except Exception:  # an activation that does not take a float64 tensor: not the fast path
        return False
    want = x * 0.5 * torch.erfc(-x / math.sqrt(2.0))
    return bool(got.dtype == torch.float64 and torch.allclose(got, want, rtol=0.0, atol=1e-12))


def gelu_series(a: np.ndarray) -> dict[str, np.ndarray]:
    """Per-element coefficients of ``gelu(a + d) - gelu(a)`` for a float64 [T, F] array ``a``.

    ``gelu(a + d) - gelu(a) = d Phi(a) + phi(a) (a + d) d P(d)`` with
    ``P(d) = sum_n (-1)^n He_n(a) d^n / (n + 1)!`` (He = probabilists' Hermite polynomials), from
    ``Phi(a + d) - Phi(a) = phi(a) * integral_0^d exp(-a s - s^2 / 2) ds``. Returns ``series``
    float32 [T, N, F] (the coefficients of P), ``cdf`` and ``density`` float32 [T, F] (Phi(a),
    phi(a); phi is 0 beyond :data:`_FLAT_TAILS`), and ``a`` / ``cdf64`` float64 for the exact branch.
    """
    a = torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64))
    tail = a.abs() > _FLAT_TAILS
    x = a.masked_fill(tail, 0.0)
    cdf64 = 0.5 * torch.special.erfc(-a / math.sqrt(2.0))
    series = np.empty((a.shape[0], TAYLOR_TERMS, a.shape[1]), dtype=np.float32)
    _compiled()[2](x.numpy(), _INVERSE_FACTORIALS, series)
    return {
        "series": series,
        "cdf": cdf64.masked_fill(cdf64 < 1e-30, 0.0).float().numpy(),  # no float32 subnormals
        "density": (torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)).masked_fill(tail, 0.0).float().numpy(),
        "a": a.numpy(),
        "cdf64": cdf64.numpy(),
    }


# --- the loops (plain Python here; compiled by numba on first use) ---------------------------


def _gelu_changes_loop(first, stop, j0, coef, shift, U, V, series, cdf, density, a32, a64, cdf64, radius,
                       out):  # pragma: no cover  # fmt: skip
    num_t, num_h = coef.shape[1], coef.shape[2]
    num_f = series.shape[2]
    da = np.empty(num_f, dtype=np.float32)
    inv_sqrt2 = 1.0 / math.sqrt(2.0)
    # Tiles of _TILE zeroed tokens: their per-head rows of V and one receiving token's series stay
    # in the core's cache while the tile is worked through.
    for tile in range(first, stop, _TILE):
        for i in range(num_t):
            for jj in range(tile, min(stop, tile + _TILE)):
                s = shift[jj, i]
                for k in range(num_f):
                    da[k] = s * U[i, k]
                for h in range(num_h):
                    c = coef[jj, i, h]
                    for k in range(num_f):
                        da[k] += c * V[h, j0 + jj, k]
                large = 0
                for k in range(num_f):  # one vectorised pass; the series' length is a constant
                    d = da[k]
                    p = series[i, TAYLOR_TERMS - 1, k]
                    for n in range(TAYLOR_TERMS - 2, -1, -1):  # Horner's rule
                        p = p * d + series[i, n, k]
                    out[jj, i, k] = d * cdf[i, k] + density[i, k] * (a32[i, k] + d) * d * p
                    large += abs(d) >= radius
                if large == 0:
                    continue
                for k in range(num_f):
                    if abs(da[k]) >= radius:  # a large change: subtract in float64, nothing to cancel
                        x = a64[i, k] + np.float64(da[k])
                        out[jj, i, k] = x * 0.5 * math.erfc(-x * inv_sqrt2) - a64[i, k] * cdf64[i, k]


def _series_loop(x, inverse_factorials, series):  # pragma: no cover
    num_t, num_n, num_f = series.shape
    prev = np.empty(num_f, dtype=np.float64)
    cur = np.empty(num_f, dtype=np.float64)
    for i in range(num_t):
        for k in range(num_f):
            prev[k] = 1.0  # He_0
            cur[k] = x[i, k]  # He_1
            series[i, 0, k] = 1.0
        sign = -1.0
        for n in range(1, num_n):
            scale = sign * inverse_factorials[n]
            for k in range(num_f):
                series[i, n, k] = scale * cur[k]
                following = x[i, k] * cur[k] - n * prev[k]
                prev[k] = cur[k]
                cur[k] = following
            sign = -sign


def _output_scores_loop(first, stop, j0, dq, coef, shift, gcp, gcf, cq, s2, o, n2, g2, out):  # pragma: no cover
    num_t, num_h = coef.shape[1], coef.shape[2]
    num_d = dq.shape[2]
    v = np.empty(num_d, dtype=np.float64)
    for jj in range(first, stop):
        for i in range(num_t):
            s = shift[jj, i]
            for d in range(num_d):
                v[d] = dq[jj, i, d] + s * gcp[i, d]
            for h in range(num_h):
                c = coef[jj, i, h]
                for d in range(num_d):
                    v[d] -= c * gcf[j0 + jj, h, d]
            mean = 0.0
            for d in range(num_d):
                mean += v[d]
            mean /= num_d
            cross = 0.0
            square = 0.0
            for d in range(num_d):
                v[d] -= mean
                cross += cq[i, d] * v[d]
                square += v[d] * v[d]
            dvar = (2.0 * cross + square) / num_d
            base = s2[i]
            new = math.sqrt(base * base + dvar)
            shift2 = -dvar / (base * new * (base + new))
            od = 0.0
            dd = 0.0
            for d in range(num_d):
                v[d] = g2[d] * (shift2 * cq[i, d] + v[d] / new)
                od += o[i, d] * v[d]
                dd += v[d] * v[d]
            rho = od / n2[i]
            perp = 0.0
            for d in range(num_d):
                r = v[d] - rho * o[i, d]
                perp += r * r
            after = n2[i] + 2.0 * od + dd
            cos = (n2[i] + od) / math.sqrt(n2[i] * after)
            out[jj, i] = perp / (after * (1.0 + cos))


@functools.cache
def _compiled():
    import numba  # heavy (about 0.4 s): imported only when value zeroing first runs

    jit = numba.njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
    return jit(_gelu_changes_loop), jit(_output_scores_loop), jit(_series_loop)


def _split(loop, num_j: int, *args) -> None:
    """Run ``loop(first, stop, *args)`` over ranges of the J zeroed tokens in as many threads as
    torch uses (the loops release the GIL; each writes its own rows of the output)."""
    parts = max(1, min(torch.get_num_threads(), num_j))
    if parts == 1:
        loop(0, num_j, *args)
        return
    bounds = [num_j * p // parts for p in range(parts + 1)]
    with ThreadPoolExecutor(parts) as pool:
        for future in [pool.submit(loop, lo, hi, *args) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]:
            future.result()


def gelu_changes(j0: int, coef, shift, U, V, series: dict, out: np.ndarray) -> np.ndarray:
    """float32 [J, T, F] ``gelu(a_i + da_ji) - gelu(a_i)`` into ``out``, for the J zeroed tokens
    ``j0, j0 + 1, ...``.

    ``da_ji = shift[j, i] * U[i] + sum_h coef[j, i, h] * V[h, j0 + j]``: ``coef`` float32
    [J, T, H], ``shift`` float32 [J, T], ``U`` float32 [T, F], ``V`` float32 [H, T, F];
    ``series`` from :func:`gelu_series`.
    """
    _split(_compiled()[0], coef.shape[0], j0, coef, shift, U, V, series["series"], series["cdf"], series["density"],
           series["a"].astype(np.float32), series["a"], series["cdf64"], np.float32(TAYLOR_RADIUS), out)  # fmt: skip
    return out


def output_scores(j0: int, dq, coef, shift, gcp, gcf, cq, s2, o, g2) -> np.ndarray:
    """float64 [J, T]: ``1 - cos(o_i, o_i + change)`` for each pair (zeroed tokens from ``j0``).

    ``dq`` float32 [J, T, D]: the second feed-forward layer's change; the first LayerNorm's change
    ``shift[j, i] * gcp[i] - sum_h coef[j, i, h] * gcf[j0 + j, h]`` (float64: ``coef`` [J, T, H],
    ``shift`` [J, T], ``gcp`` [T, D], ``gcf`` [T, H, D]) is added to it; ``cq`` [T, D] and ``s2``
    [T] are the second LayerNorm's centred input and scale, ``o`` [T, D] the block output, ``g2``
    [D] the LayerNorm weight.
    """
    out = np.empty(coef.shape[:2], dtype=np.float64)
    _split(_compiled()[1], coef.shape[0], j0, dq, coef, shift, gcp, gcf, cq, s2, o, np.einsum("td,td->t", o, o), g2,
           out)  # fmt: skip
    return out
