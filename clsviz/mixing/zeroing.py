"""Value zeroing (Mohebbi et al. 2023): rerun a whole block with one token's values zeroed.

For block ``l`` and contributing token ``j``, the block - attention, residual, LayerNorm,
feed-forward, LayerNorm - runs again on its own input with ``j``'s value vector zeroed in every
head, so no token can read ``j`` (``j`` itself still keeps its residual). The raw score of
receiving token ``i`` is ``1 - cos(out_i, out_i without j's values)``.

How it is computed, for all ``T x T`` pairs (j, i) of a block at once:

* Zeroing a value vector leaves the attention weights alone, so the block's attention sublayer
  is not rerun: the change it makes to token i's pre-LayerNorm state is exactly
  ``-sum_h alpha^h_ij f_h(x_j)`` (what head h wrote from j), and the block's own (clean) run,
  in float64 from float64 copies of the weights, gives every other quantity.
* The *change* is then carried through LN1, the feed-forward network, LN2 and the cosine
  (instead of running the block twice and subtracting outputs that agree to 8 digits): on the
  bundled model these changes are tiny (1 - cos of about 1e-8 to 1e-5 for the [CLS] output of
  blocks 1-5), and a change computed as a change keeps its significant digits.
* The receiving [CLS] row - what the app, the report and the literature checks read - is
  carried through entirely in float64. For the other rows the two products with the
  feed-forward weights (``T x T`` rows of ``[F] x [F, D]``: the cost of the measure) run in
  float32 on the changes, and the element-wise steps in compiled loops
  (:mod:`.zeroing_kernels`), with a relative error near 1e-7 of each score. Models whose
  activation is not the exact GELU, and non-CPU devices, carry every row in float64.

Zeroed tokens are processed in chunks so that a 512-token input stays inside a memory budget;
the result does not depend on the chunking (each zeroed token's products are the same calls).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..blocks import block_weights, run_block
from ..layers import block_of_row
from ..progress import check_cancel
from .decomposition import DEFAULT_BUDGET
from .zeroing_kernels import gelu_changes, gelu_series, is_exact_gelu, output_scores

__all__ = ["BARELY_MIXES", "reruns_per_chunk", "value_zeroing_scores"]

BARELY_MIXES = 1e-5
"""A block whose largest value-zeroing score for a receiving token is below this
(``1 - cos < 1e-5``) barely mixes other tokens into it."""


def reruns_per_chunk(seq_len: int, hidden_size: int, num_heads: int, ffn_size: int,
                     budget: int = DEFAULT_BUDGET) -> int:  # fmt: skip
    """How many zeroed tokens (block reruns) are handled at once within ``budget`` bytes: per
    zeroed token, the changes of all ``seq_len`` receiving tokens in float64 (three [T, F] and
    five [T, D] arrays, the float64 route's largest) and their per-head weights."""
    per_rerun = 8 * seq_len * (3 * ffn_size + 5 * hidden_size + 2 * num_heads)
    return int(max(1, min(seq_len, budget // per_rerun)))


@dataclass(frozen=True, eq=False)
class _Clean:
    """One block's clean run on one text, float64 (T tokens, H heads, D hidden, F feed-forward).

    ``alpha`` [T, T, H] attention weights as (read token j, receiving token i, head);
    ``cf`` [T, H, D] what each head writes from each token (token j, head h), centred; ``cp``, ``s1``: LN1's
    centred input [T, D] and scale [T]; ``a`` [T, F] the feed-forward input to the activation;
    ``cq``, ``s2``, ``o``: LN2's centred input, its scale and the block output; ``values``
    [H, T, dh] the value vectors (bias included); ``reads``
    [T, T, H] = <cp_i, cf_hj> as (j, i, h) and ``gram`` [T, H, H] = <cf_hj, cf_h'j>: what
    LN1's change of scale needs, per pair, without forming the [T, T, D] changes.
    """

    alpha: torch.Tensor
    cf: torch.Tensor
    cp: torch.Tensor
    s1: torch.Tensor
    a: torch.Tensor
    cq: torch.Tensor
    s2: torch.Tensor
    o: torch.Tensor
    values: torch.Tensor
    reads: torch.Tensor
    gram: torch.Tensor


def _centre(t: torch.Tensor) -> torch.Tensor:
    return t - t.mean(dim=-1, keepdim=True)


def _clean_run(w, x: torch.Tensor) -> _Clean:
    """The clean block ``w`` (float64 weights) on ``x`` [T, D] float64."""
    out, parts = run_block(w, x[None], return_parts=True)
    seq_len, dim = x.shape
    o_w = w.o_w.view(dim, w.num_heads, w.head_dim).permute(1, 2, 0).contiguous()  # [H, dh, D]
    cf = _centre(torch.bmm(parts.values[0].contiguous(), o_w)).transpose(0, 1).contiguous()  # [T, H, D]
    cp = _centre(parts.pre_ln1[0])
    cq = _centre(parts.pre_ln2[0])
    return _Clean(
        alpha=parts.attn_probs[0].permute(2, 1, 0).contiguous(),
        cf=cf,
        cp=cp,
        s1=torch.sqrt(cp.pow(2).mean(dim=-1) + w.ln1_eps),
        a=parts.ffn_pre[0],
        cq=cq,
        s2=torch.sqrt(cq.pow(2).mean(dim=-1) + w.ln2_eps),
        o=out[0],
        values=parts.values[0],
        reads=torch.matmul(cf, cp.T).transpose(1, 2).contiguous(),  # [T(j), T(i), H]
        gram=torch.bmm(cf, cf.transpose(1, 2)),  # [T, H, H]
    )


def _ln1_changes(clean: _Clean, zeroed: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights [J, T, H] = alpha_hij / sigma1'_ij, shift [J, T] = 1/sigma1'_ij - 1/sigma1_i)
    for zeroed tokens j in ``zeroed`` and every receiving token i: LN1's output changes by
    ``gamma1 * (shift * cp_i - sum_h weights_h * cf_hj)``."""
    dim = clean.cp.shape[-1]
    alpha = clean.alpha[zeroed]  # [J, T(i), H]
    cross = -(alpha * clean.reads[zeroed]).sum(-1)  # <cp_i, centred change>
    square = (torch.bmm(alpha, clean.gram[zeroed]) * alpha).sum(-1)  # |centred change|^2
    dvar = (2.0 * cross + square) / dim
    s1 = clean.s1[None]
    new = torch.sqrt(s1 * s1 + dvar)
    shift = -dvar / (s1 * new * (s1 + new))
    return alpha / new[..., None], shift


def _exact_rows(clean: _Clean, w, changes, zeroed: slice, rows: torch.Tensor) -> torch.Tensor:
    """float64 [J, R]: scores of receiving tokens ``rows`` [R], every step in float64 (``w``: the
    float64 weights; ``changes``: :func:`_ln1_changes` of ``zeroed``)."""
    weights, shift = changes[0][:, rows], changes[1][:, rows]
    gamma1, cp = w.ln1_w, clean.cp[rows]
    writes = torch.bmm(weights.contiguous(), clean.cf[zeroed])  # [J, R, D]
    dmid = gamma1 * (shift[..., None] * cp[None] - writes)
    a = clean.a[rows][None]
    dg = w.act(a + F.linear(dmid, w.ff1_w)) - w.act(a)
    return _scores_of(F.linear(dg, w.ff2_w) + dmid, clean, rows, w.ln2_w)


def _scores_of(dq: torch.Tensor, clean: _Clean, rows, gamma2: torch.Tensor) -> torch.Tensor:
    """``1 - cos(o_i, o_i + change)`` from the change ``dq`` [J, R, D] of LN2's input (float64)."""
    cq, s2, o = clean.cq[rows][None], clean.s2[rows][None], clean.o[rows][None]
    cdq = _centre(dq)
    dvar = (2.0 * (cdq * cq).sum(-1) + cdq.pow(2).sum(-1)) / dq.shape[-1]
    new = torch.sqrt(s2 * s2 + dvar)
    shift = -dvar / (s2 * new * (s2 + new))
    change = gamma2 * (shift[..., None] * cq + cdq / new[..., None])
    n2 = o.pow(2).sum(-1)
    od = (change * o).sum(-1)
    perp = (change - (od / n2)[..., None] * o).pow(2).sum(-1)
    after = n2 + 2.0 * od + change.pow(2).sum(-1)
    cos = (n2 + od) / torch.sqrt(n2 * after)
    return perp / (after * (1.0 + cos))  # = 1 - cos, without subtracting nearly equal numbers


_HEADS_INTO_FFN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_HEADS_INTO_FFN_LOCK = threading.Lock()


def _heads_into_ffn(w32) -> torch.Tensor:
    """float32 [H, dh, F]: ``W1 diag(gamma1) centre(W_O^h)``, what a value vector of head h becomes
    at the feed-forward layer's input once LN1 has scaled it (so ``V = W1 (gamma1 cf_hj)`` costs
    ``dh`` instead of ``D`` products per output). Kept while the model is loaded: one [F, D]
    float32 matrix per block, the size of W1."""
    with _HEADS_INTO_FFN_LOCK:
        found = _HEADS_INTO_FFN.get(w32)
    if found is None:
        centred = w32.o_w - w32.o_w.mean(dim=0, keepdim=True)  # LN1 centres over the output dims
        full = w32.ff1_w @ (w32.ln1_w[:, None] * centred)  # [F, D]: columns head by head
        found = full.T.reshape(w32.num_heads, w32.head_dim, -1).contiguous()
        with _HEADS_INTO_FFN_LOCK:
            _HEADS_INTO_FFN[w32] = found
    return found


@dataclass(frozen=True, eq=False)
class _Float32Route:
    """What every chunk of one block needs on the compiled route: the first feed-forward layer
    applied to each per-head part, ``U = W1 (gamma1 cp_i)`` [T, F] and ``V = W1 (gamma1 cf_hj)``
    [H, T, F] (float32), GELU's series around ``a``, ``gamma1 * cp`` [T, D] and ``gamma1 * cf``
    [T, H, D] (float64)."""

    U: torch.Tensor
    V: torch.Tensor
    series: dict
    gcp: np.ndarray
    gcf: np.ndarray


def _float32_route(clean: _Clean, w32, w64) -> _Float32Route:
    gcp, gcf = w64.ln1_w * clean.cp, w64.ln1_w * clean.cf
    return _Float32Route(
        U=F.linear(gcp.float(), w32.ff1_w).contiguous(),
        V=torch.bmm(clean.values.float(), _heads_into_ffn(w32)),
        series=gelu_series(clean.a.numpy()),
        gcp=gcp.numpy(),
        gcf=gcf.numpy(),
    )


def _float32_rows(clean: _Clean, route: _Float32Route, w32, w64, changes, zeroed: slice) -> np.ndarray:
    """float64 [J, T]: every receiving token's scores, the products with W1 / W2 in float32."""
    weights, shift = changes
    num_j, seq_len = shift.shape
    dg = np.empty((num_j, seq_len, route.U.shape[1]), dtype=np.float32)
    gelu_changes(zeroed.start, (-weights).float().numpy(), shift.float().numpy(), route.U.numpy(), route.V.numpy(),
                 route.series, dg)  # fmt: skip
    dg_t = torch.from_numpy(dg)
    dq = torch.empty(num_j, seq_len, w32.ff2_w.shape[0])
    for jj in range(num_j):  # one product per zeroed token: the same call whatever the chunking
        torch.matmul(dg_t[jj], w32.ff2_w.T, out=dq[jj])
    return output_scores(zeroed.start, dq.numpy(), weights.contiguous().numpy(), shift.numpy(), route.gcp, route.gcf,
                         clean.cq.numpy(), clean.s2.numpy(), clean.o.numpy(), w64.ln2_w.numpy())  # fmt: skip


class _Float64Copies:
    """float64 copies of one block's weights at a time, written into buffers reused from block to
    block: a fresh 85 MB copy per call costs more in page faults than the copying itself."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self._source = None
        self._copy = None

    def __call__(self, w):
        if w is not self._source:  # ALBERT repeats one shared block: copied once
            new = {}
            for f in fields(w):
                t = getattr(w, f.name)
                if isinstance(t, torch.Tensor):
                    buf = self._buffers.get(f.name)
                    if buf is None or buf.shape != t.shape:
                        buf = self._buffers[f.name] = torch.empty(t.shape, dtype=torch.float64, device=t.device)
                    new[f.name] = buf.copy_(t)
            self._source, self._copy = w, replace(w, **new)
        return self._copy


def value_zeroing_scores(encoder, trace, progress=None, cancel=None, budget: int = DEFAULT_BUDGET) -> np.ndarray:
    """float64 [L, T, T]: ``1 - cos`` between each block output and the output with one
    token's values zeroed (row i = receiving token, column j = the zeroed token).

    ``progress(done, total, message)`` is called after each chunk of zeroed tokens; ``cancel`` (a
    ``threading.Event``) stops between chunks. Raises :class:`clsviz.blocks.BlockStructureError`
    for a family whose blocks clsviz cannot run.
    """
    weights = block_weights(encoder)
    num_layers, seq_len = trace.num_layers, trace.seq_len
    first = weights[0]
    step = reruns_per_chunk(seq_len, first.q_w.shape[0], first.num_heads, first.ff1_w.shape[0], budget)
    chunks = -(-seq_len // step)
    scores = np.zeros((num_layers, seq_len, seq_len))
    device = first.q_w.device
    compiled = device.type == "cpu" and all(is_exact_gelu(w.act) for w in {id(w): w for w in weights}.values())
    rows = torch.tensor([trace.cls_index] if compiled else range(seq_len), device=device)
    copies = _Float64Copies()
    with torch.inference_mode():
        for layer in range(num_layers):
            w64 = copies(weights[layer])
            clean = _clean_run(w64, torch.as_tensor(trace.hidden_states[layer], device=device).to(torch.float64))
            route = _float32_route(clean, weights[layer], w64) if compiled else None
            for c, start in enumerate(range(0, seq_len, step)):
                check_cancel(cancel, "Value zeroing")
                zeroed = slice(start, min(seq_len, start + step))
                changes = _ln1_changes(clean, zeroed)
                if route is not None:
                    scores[layer, :, zeroed] = _float32_rows(clean, route, weights[layer], w64, changes, zeroed).T
                exact = _exact_rows(clean, w64, changes, zeroed, rows).T.cpu().numpy()  # [R, J]
                scores[layer, rows.cpu().numpy(), zeroed] = exact
                if progress is not None:
                    progress(layer * chunks + c + 1, num_layers * chunks, f"Value zeroing: block {block_of_row(layer)} of {num_layers}")
    return scores
