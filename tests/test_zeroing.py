"""Value zeroing's batched computation (clsviz.mixing.zeroing and its compiled loops) against
blocks rerun here one zeroed token at a time, by hand, and against GELU differences worked
out independently."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from clsviz import mixing, trace
from clsviz.blocks import block_weights, run_block
from clsviz.mixing import zeroing_kernels
from tests.test_blocks import (
    _bert_layer_by_hand,
    encoders,  # noqa: F401 (fixture: one encoder per family and the bundled one)
)

SENTENCE = "Zeroing one token's values shows how much the others read it, block by block."


def _stable_one_minus_cos(clean: torch.Tensor, altered: torch.Tensor) -> np.ndarray:
    """``1 - cos`` as ``|u - u'|^2 / 2`` of the unit vectors: the difference of two nearly equal
    outputs is taken once, so a score of 1e-9 keeps about 7 more digits than ``1 - cos`` does."""
    u = clean / clean.norm(dim=-1, keepdim=True)
    w = altered / altered.norm(dim=-1, keepdim=True)
    return (0.5 * (u - w).pow(2).sum(-1)).numpy()


def _all_pairs_by_hand(enc, t) -> np.ndarray:
    """float64 [L, T, T] from float64 copies of each BertLayer, one batch element per zeroed token."""
    heads, seq_len = t.num_heads, t.seq_len
    keep = torch.ones(seq_len, heads, seq_len, dtype=torch.float64)
    keep[torch.arange(seq_len), :, torch.arange(seq_len)] = 0.0  # batch element j zeroes token j
    out = np.zeros((t.num_layers, seq_len, seq_len))
    with torch.no_grad():
        for block in range(t.num_layers):
            layer = copy.deepcopy(enc.model.encoder.layer[block]).double()
            h = torch.as_tensor(t.hidden_states[block], dtype=torch.float64)[None]
            clean = _bert_layer_by_hand(layer, h, heads)[0]
            altered = _bert_layer_by_hand(layer, h.expand(seq_len, -1, -1), heads, value_keep=keep)
            out[block] = _stable_one_minus_cos(clean[None], altered).T  # rows: receiving, columns: zeroed
    return out


def test_every_pair_matches_zeroing_one_token_at_a_time_by_hand(encoder):
    t = trace(encoder, SENTENCE)
    assert t.seq_len >= 16
    got = mixing.measure(encoder, t, "value_zeroing").raw
    want = _all_pairs_by_hand(encoder, t)
    assert want.min() < 1e-7  # the bundled model's tiny scores are part of what is checked
    # The [CLS] row goes through float64 all the way: it agrees to far more digits than float32 has.
    np.testing.assert_allclose(got[:, t.cls_index], want[:, t.cls_index], rtol=1e-9, atol=0)
    # Every other row: products with the feed-forward weights in float32, on the changes themselves.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_the_result_does_not_depend_on_how_the_zeroed_tokens_are_chunked(encoder):
    t = trace(encoder, "Chunks of zeroed tokens give the same numbers.")
    whole = mixing.measure(encoder, t, "value_zeroing").raw
    small = next(b for b in range(1, 2**30, 4096) if mixing.reruns_per_chunk(t.seq_len, 384, 12, 1536, b) == 3)
    steps = []
    chunked = mixing.measure(encoder, t, "value_zeroing", budget=small, progress=lambda d, n, m: steps.append(n))
    assert steps[-1] == t.num_layers * -(-t.seq_len // 3)  # three zeroed tokens per chunk
    np.testing.assert_allclose(chunked.raw, whole, rtol=1e-9, atol=0)


@pytest.mark.parametrize("kind", ["albert", "distilbert", "roberta"])
def test_each_family_matches_the_block_rerun_with_values_scaled(encoders, kind):  # noqa: F811
    """ALBERT's activation is the tanh GELU, so it takes the all-float64 route; the others the
    compiled one. Reference: clsviz.blocks.run_block with ``value_scale`` (a whole block rerun)."""
    enc = encoders[kind]
    t = trace(enc, "the cat chased a dog across the yard")
    got = mixing.measure(enc, t, "value_zeroing").raw
    assert zeroing_kernels.is_exact_gelu(block_weights(enc)[0].act) == (kind != "albert")
    with torch.inference_mode():
        for block, w in enumerate(block_weights(enc)):
            w64 = w.to(dtype=torch.float64)
            x = torch.as_tensor(t.hidden_states[block], dtype=torch.float64)[None]
            scale = 1.0 - torch.eye(t.seq_len, dtype=torch.float64)
            altered = run_block(w64, x.expand(t.seq_len, -1, -1), value_scale=scale)
            want = _stable_one_minus_cos(run_block(w64, x), altered).T
            np.testing.assert_allclose(got[block], want, rtol=1e-6, atol=1e-15, err_msg=f"{kind} block {block + 1}")


def _gelu_change_reference(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``gelu(a + d) - gelu(a) = d Phi(a) + (a + d) (Phi(a + d) - Phi(a))``, the difference of the
    normal CDF as an integral of its density by 40-point Gauss-Legendre (exact to float64 here)."""
    nodes, weights = np.polynomial.legendre.leggauss(40)
    s = a[..., None] + (nodes + 1.0) / 2.0 * d[..., None]
    area = (weights * np.exp(-0.5 * s * s)).sum(-1) * d / 2.0 / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * np.vectorize(math.erfc)(-a / math.sqrt(2.0))
    return d * cdf + (a + d) * area


def test_gelu_changes_keep_their_digits_for_small_and_large_changes():
    a = np.linspace(-9.0, 9.0, 181)[:, None] * np.ones((1, 64))  # [T, F]: the activation's input
    d = np.geomspace(1e-8, 2.0, 64) * np.where(np.arange(64) % 2, 1.0, -1.0)  # small to large, both signs
    d = np.broadcast_to(d, a.shape)
    series = zeroing_kernels.gelu_series(a)
    out = np.empty((1,) + a.shape, dtype=np.float32)
    # da = shift * U + sum_h coef * V: here shift 1, U = d, no per-head part.
    zeroing_kernels.gelu_changes(0, np.zeros((1, a.shape[0], 1), np.float32), np.ones((1, a.shape[0]), np.float32),
                                 d.astype(np.float32), np.zeros((1, 1, a.shape[1]), np.float32), series, out)  # fmt: skip
    want = _gelu_change_reference(a, d.astype(np.float32).astype(np.float64))
    cdf = 0.5 * np.vectorize(math.erfc)(-a / math.sqrt(2.0))
    slope = cdf + np.abs(a) * np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)
    # Relative to the change itself (or to |d| times GELU's slope scale, whichever is larger), float32
    # rounding at most: a plain float32 gelu(a + d) - gelu(a) is off by 1e-7 * |gelu(a)|, i.e. by 100%
    # at d = 1e-7. Beyond |a| = 8 the density part (below 5e-14 |d|, where GELU is flat or linear) is
    # left out by design: there the scale is floored at 1e-7 |d|.
    scale = np.maximum(np.abs(want), np.abs(d) * np.maximum(slope, 1e-7))
    err = np.abs(out[0] - want) / scale
    assert err.max() < 2e-6, err.max()
    assert (np.abs(d) >= zeroing_kernels.TAYLOR_RADIUS).any() and (np.abs(d) < 1e-6).any()


def test_the_series_is_truncated_far_below_float32_rounding():
    a = np.linspace(-8.0, 8.0, 321)[:, None]
    d = np.linspace(-zeroing_kernels.TAYLOR_RADIUS, zeroing_kernels.TAYLOR_RADIUS, 101)[None, :]
    a, d = np.broadcast_arrays(a, np.where(d == 0, 1e-9, d))
    hermite = [np.ones_like(a), a]  # probabilists' Hermite polynomials He_n(a)
    while len(hermite) < zeroing_kernels.TAYLOR_TERMS:
        n = len(hermite) - 1
        hermite.append(a * hermite[n] - n * hermite[n - 1])
    # sum_n (-1)^n He_n(a) d^n / (n + 1)!, in float64, as many terms as the compiled loop uses
    total = sum((-d) ** n * he / math.factorial(n + 1) for n, he in enumerate(hermite))
    cdf = 0.5 * np.vectorize(math.erfc)(-a / math.sqrt(2.0))
    density = np.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
    series = d * cdf + density * (a + d) * d * total
    err = np.abs(series - _gelu_change_reference(a, d)) / (np.abs(d) * (cdf + np.abs(a) * density))
    assert err.max() < 3e-9, err.max()


def test_only_the_exact_gelu_takes_the_series():
    assert zeroing_kernels.is_exact_gelu(torch.nn.GELU())
    assert not zeroing_kernels.is_exact_gelu(torch.nn.GELU(approximate="tanh"))
    assert not zeroing_kernels.is_exact_gelu(torch.nn.ReLU())
