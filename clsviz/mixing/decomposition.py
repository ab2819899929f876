"""A block's attention sublayer split token by token: value norms, GlobEnc and ALTI.

Block ``l`` reads ``x = trace.hidden_states[l - 1]`` ([T, D]) with attention probabilities
``alpha^h = trace.attentions[l - 1]`` ([H, T, T]). What head h writes for key token j is
``f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h`` (value bias included, output bias not), and the
attention sublayer with its residual and first LayerNorm gives

    mid_i = LN1( sum_j z_ij + x_i + b_O ),    z_ij = sum_h alpha^h_ij f_h(x_j).

Once LN1's scale ``sigma1_i`` (set by the whole sum) is fixed, LN1 is linear, so ``mid_i``
splits exactly into one part per contributing token plus a bias:

    mid_i = sum_j T_i(x_j) + bias_i
    T_i(x_j) = gamma1 * centre(z_ij + [i == j] x_i) / sigma1_i
    bias_i   = gamma1 * centre(b_O) / sigma1_i + beta1          (centre(v) = v - mean(v))

The measures read these parts (raw scores, before rows are normalised to sum to 1):

* ``value_norm`` (Kobayashi et al. 2020): ``||z_ij||_2``, the attention part alone, summed over
  heads (no residual, no LayerNorm)
* ``alti`` (Ferrando et al. 2022): ``max(0, ||mid_i||_1 - ||mid_i - T_i(x_j)||_1)``: how close
  each part is to the whole, in L1
* ``globenc`` (Modarressi et al. 2022): ``||gamma2 * centre(T_i(x_j)) / sigma2_i||_2``: each
  part carried through the second LayerNorm's scaling, with ``sigma2_i`` from the block's own
  pre-LN2 state ``FFN(mid_i) + mid_i``; the feed-forward network itself is left out, as in
  the paper

The decomposition - sums, LayerNorm statistics, differences and norms - runs in float64; only the
products with the weight matrices run in the model's own dtype. Receiving tokens are processed
in chunks so that a 512-token input stays inside a memory budget (:data:`DEFAULT_BUDGET`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..blocks import block_weights
from ..layers import check_block

__all__ = ["DECOMPOSED_METHODS", "DEFAULT_BUDGET", "BlockDecomposition", "block_scores", "decompose_block"]

DECOMPOSED_METHODS = ("value_norm", "globenc", "alti")
"""The measures :func:`block_scores` reads from the decomposition."""

DEFAULT_BUDGET = 512 * 2**20
"""Bytes of scratch memory one chunk of a computation may use (512 MiB)."""


@dataclass(frozen=True, eq=False)
class BlockDecomposition:
    """One block's LN1 output split by contributing token (float64 numpy; T tokens, D dims).

    * ``parts`` [T, T, D]: ``parts[i, j] = T_i(x_j)``; ``bias`` [T, D]: so that
      ``parts.sum(1) + bias`` is the block's LN1 output ``mid``
    * ``globenc_parts`` [T, T, D]: each part scaled by the second LayerNorm
      (``gamma2 * centre(parts[i, j]) / sigma2_i``), the vectors GlobEnc measures
    * ``ln2_scale`` [T]: ``1 / sigma2_i`` of the block's second LayerNorm
    """

    block: int
    parts: np.ndarray
    bias: np.ndarray
    globenc_parts: np.ndarray
    ln2_scale: np.ndarray


def _centre(v):
    return v - v.mean(dim=-1, keepdim=True)


def _f64(t):
    import torch

    return t.to(torch.float64)


def _head_writes(w, x):
    """[T, H, D] float64: f_h(x_j), what head h writes for key token j (value bias in, output bias
    out). The products with the weight matrices run in the model's dtype: their rounding (1e-7
    relative in float32) is far below what these norms resolve, and no weight copy is made."""
    import torch

    seq_len, dim = x.shape
    v = torch.nn.functional.linear(x.to(w.v_w.dtype), w.v_w, w.v_b)
    v = v.view(seq_len, w.num_heads, w.head_dim).transpose(0, 1)
    o = w.o_w.view(dim, w.num_heads, w.head_dim).permute(1, 2, 0)  # [H, dh, D]
    return _f64(torch.bmm(v.contiguous(), o.contiguous()).transpose(0, 1)).contiguous()


def _split_rows(w, x, probs, writes, rows, norms: bool = False):
    """For receiving tokens ``rows`` [I]: (||z|| [I, T] or None, parts [I, T, D], bias [I, D],
    mid [I, D]). Worked in place on one [I, T, D] array: these passes over memory are the cost."""
    import torch

    # z[i, j] = sum_h alpha[h, i, j] f_h(x_j): one [I, H] x [H, D] product per contributor j, batched
    # over j on contiguous operands (a strided einsum here is tens of times slower on CPU).
    z = torch.bmm(probs[:, rows, :].permute(2, 1, 0).contiguous(), writes).transpose(0, 1)
    z_norm = z.norm(dim=-1) if norms else None
    z[torch.arange(len(rows), device=x.device), rows] += x[rows]  # the residual: token i keeps x_i
    o_b, gamma = _f64(w.o_b), _f64(w.ln1_w)
    pre_ln1 = z.sum(dim=1) + o_b
    scale = 1.0 / torch.sqrt(pre_ln1.var(dim=-1, unbiased=False) + w.ln1_eps)  # [I]
    parts = z.sub_(z.mean(dim=-1, keepdim=True)).mul_(gamma * scale[:, None, None])
    bias = gamma * _centre(o_b)[None, :] * scale[:, None] + _f64(w.ln1_b)
    return z_norm, parts, bias, parts.sum(dim=1) + bias


def _through_ln2(w, parts, mid):
    """GlobEnc's vectors ``gamma2 * centre(parts) / sigma2_i``, written over ``parts``."""
    return parts.sub_(parts.mean(dim=-1, keepdim=True)).mul_(_f64(w.ln2_w) * _ln2_scale(w, mid)[:, None, None])


def _ln2_scale(w, mid):
    """[I]: 1 / sigma2 of the second LayerNorm, whose input is FFN(mid) + mid."""
    import torch
    import torch.nn.functional as F

    ffn = F.linear(w.act(F.linear(mid.to(w.ff1_w.dtype), w.ff1_w, w.ff1_b)), w.ff2_w, w.ff2_b)
    pre_ln2 = _f64(ffn) + mid
    return 1.0 / torch.sqrt(pre_ln2.var(dim=-1, unbiased=False) + w.ln2_eps)


def _rows_per_chunk(seq_len: int, dim: int, budget: int) -> int:
    # The parts (z, worked in place), bmm's output before its transpose, ALTI's distance and
    # reduction temporaries: about four [I, T, D] float64 arrays at the peak.
    return int(max(1, min(seq_len, budget // max(1, 4 * seq_len * dim * 8))))


def _inputs(w, hidden, attentions):
    import torch

    device = w.q_w.device
    x = torch.as_tensor(np.asarray(hidden), device=device).to(torch.float64)
    probs = torch.as_tensor(np.asarray(attentions), device=device).to(torch.float64)
    return x, probs


def block_scores(w, hidden, attentions, methods: Iterable[str] = DECOMPOSED_METHODS,
                 budget: int = DEFAULT_BUDGET) -> dict[str, np.ndarray]:  # fmt: skip
    """Raw scores of one block, float64 [T, T] (row = receiving token, column = contributor).

    ``w``: the block's :class:`clsviz.blocks.BlockWeights` (read, never copied); ``hidden`` [T, D] the
    block's input; ``attentions`` [H, T, T] its attention probabilities. ``methods``: a subset
    of :data:`DECOMPOSED_METHODS`. Scores are not normalised (see the module docstring).
    """
    import torch

    methods = tuple(methods)
    unknown = sorted(set(methods) - set(DECOMPOSED_METHODS))
    if unknown:
        raise ValueError(f"block_scores: unknown {unknown}; allowed: {', '.join(DECOMPOSED_METHODS)}.")
    x, probs = _inputs(w, hidden, attentions)
    seq_len, dim = x.shape
    out = {m: np.zeros((seq_len, seq_len)) for m in methods}
    step = _rows_per_chunk(seq_len, dim, budget)
    with torch.inference_mode():
        writes = _head_writes(w, x)
        for start in range(0, seq_len, step):
            rows = torch.arange(start, min(seq_len, start + step), device=x.device)
            z_norm, parts, _, mid = _split_rows(w, x, probs, writes, rows, norms="value_norm" in methods)
            block = slice(start, start + len(rows))
            if "value_norm" in methods:
                out["value_norm"][block] = z_norm.cpu().numpy()
            if "alti" in methods:
                whole = mid.abs().sum(dim=-1)  # ||mid_i||_1
                distance = parts.sub(mid[:, None, :]).abs_().sum(dim=-1)
                out["alti"][block] = (whole[:, None] - distance).clamp(min=0.0).cpu().numpy()
            if "globenc" in methods:  # last: it overwrites the parts
                out["globenc"][block] = _through_ln2(w, parts, mid).norm(dim=-1).cpu().numpy()
    return out


def decompose_block(encoder, trace, block: int) -> BlockDecomposition:
    """The decomposition of block ``block`` (1..L) of ``trace`` (see :class:`BlockDecomposition`).

    Holds [T, T, D] float64 arrays: meant for inspecting short inputs; :func:`block_scores`
    computes the scores of long ones in chunks. Raises
    :class:`clsviz.blocks.BlockStructureError` for a family whose blocks clsviz cannot run.
    """
    import torch


    number = check_block(block, trace.num_layers)
    w = block_weights(encoder)[number - 1]
    x, probs = _inputs(w, trace.hidden_states[number - 1], trace.attentions[number - 1])
    with torch.inference_mode():
        rows = torch.arange(x.shape[0], device=x.device)
        _, parts, bias, mid = _split_rows(w, x, probs, _head_writes(w, x), rows)
        scale = _ln2_scale(w, mid)
        scaled = _through_ln2(w, parts.clone(), mid)
    return BlockDecomposition(
        block=number,
        parts=parts.cpu().numpy(),
        bias=bias.cpu().numpy(),
        globenc_parts=scaled.cpu().numpy(),
        ln2_scale=scale.cpu().numpy(),
    )
