"""Driving an encoder block by block from its own weight tensors, with per-call interventions.

Every causal measure in clsviz (value zeroing, ALTI, knockouts of [CLS]'s reads, patching,
head ablation, gradients) runs the model through this module instead of the model's forward:
the shared cached model is only *read* (its parameters are viewed, never copied into it,
never edited, no hooks), so another thread may trace the same model at the same moment.

Shapes: B = batch, T = tokens, D = hidden size, H = heads, dh = D / H, L = blocks.
Hidden-state index 0 is the embedding output; index l is the output of block l (1..L).

* :func:`block_weights` – one :class:`BlockWeights` per block (views, cached per model;
  defined in :mod:`clsviz.architectures` with the family adapters, re-exported here)
* :func:`embed` – [B, T, D] the model's ``hidden_states[0]``
* :func:`run_block` – one post-LN block with knobs (``blocked``, ``value_scale``,
  ``head_scale``, ``head_bias``); ``return_parts=True`` adds its :class:`BlockParts`
* :func:`run_stack` – [L+1, B, T, D] every hidden state, with interventions and replacements

Families: ``SUPPORTED_FAMILIES`` - BERT (and BERT-architecture models such as bge), RoBERTa,
XLM-RoBERTa, CamemBERT, ELECTRA, DistilBERT and ALBERT with one layer per group
(``inner_group_num=1``). Any other architecture raises :class:`BlockStructureError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .architectures import (
    SUPPORTED_FAMILIES,
    BlockStructureError,
    BlockWeights,
    block_weights,
    embedding_weights,
)
from .layers import block_row

__all__ = [
    "SUPPORTED_FAMILIES",
    "BlockStructureError",
    "InterventionError",
    "BlockWeights",
    "BlockParts",
    "block_weights",
    "embed",
    "run_block",
    "run_stack",
]

_KNOBS = ("blocked", "value_scale", "head_scale", "head_bias")


class InterventionError(ValueError):
    """An intervention or input has the wrong shape or refers to a block that is not run."""


@dataclass(eq=False)
class BlockParts:
    """Intermediate tensors of one :func:`run_block` call.

    ``attn_probs`` [B, H, T, T] softmax weights after the masks (row = query, column = key);
    ``values`` [B, H, T, dh] value vectors after ``value_scale``; ``context`` [B, H, T, dh]
    each head's output before W_O, after ``head_scale`` and ``head_bias``; ``attn_out``
    [B, T, D] after W_O and its bias; ``pre_ln1`` = attn_out + block input; ``mid`` after
    LN1; ``ffn_out`` after the second feed-forward layer; ``pre_ln2`` = ffn_out + mid;
    ``out`` the block output (after LN2); ``ffn_pre`` [B, T, F] the first feed-forward layer's
    output, before the activation. All [B, T, D] unless stated.
    """

    attn_probs: torch.Tensor
    values: torch.Tensor
    context: torch.Tensor
    attn_out: torch.Tensor
    pre_ln1: torch.Tensor
    mid: torch.Tensor
    ffn_out: torch.Tensor
    pre_ln2: torch.Tensor
    out: torch.Tensor
    ffn_pre: torch.Tensor


# --- embeddings ---------------------------------------------------------------------------


def _cast(t: torch.Tensor | None, dtype) -> torch.Tensor | None:
    return t if t is None or t.dtype == dtype else t.to(dtype)


def embed(encoder, input_ids=None, *, attention_mask=None, position_ids=None, token_type_ids=None,
          inputs_embeds=None, dtype=None) -> torch.Tensor:  # fmt: skip
    """[B, T, D] the model's ``hidden_states[0]`` (after ELECTRA's / ALBERT's projection).

    Give ``input_ids`` (int [B, T]) or ``inputs_embeds`` ([B, T, E] word embeddings, e.g. for
    integrated gradients); position and token-type embeddings are added as the model does
    (RoBERTa-style positions count from the padding index and skip padding ids; from
    ``inputs_embeds`` they run sequentially). ``attention_mask`` is accepted for symmetry and
    does not change the embeddings. ``dtype`` (default: the model's) is the compute dtype.
    """
    ew = embedding_weights(encoder)
    if (input_ids is None) == (inputs_embeds is None):
        raise InterventionError("Give exactly one of input_ids ([B, T] token ids) or inputs_embeds ([B, T, E]).")
    dtype = dtype or ew.word.dtype
    dev = ew.word.device
    if input_ids is not None:
        input_ids = torch.as_tensor(input_ids, device=dev)
        if input_ids.dim() != 2:
            raise InterventionError(f"input_ids must be [B, T]; got shape {list(input_ids.shape)} (use ids[None] for one text).")
        words = ew.word[input_ids].to(dtype)
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != ew.word.shape[1]:
            raise InterventionError(
                f"inputs_embeds must be [B, T, {ew.word.shape[1]}] (the word-embedding size); "
                f"got {list(inputs_embeds.shape)}."
            )
        words = inputs_embeds.to(device=dev, dtype=dtype)
    batch, seq_len = words.shape[:2]
    if seq_len + (0 if ew.pad_offset is None else ew.pad_offset + 1) > ew.position.shape[0]:
        raise InterventionError(
            f"{seq_len} tokens is more than this model's {ew.position.shape[0]} positions allow; truncate the text."
        )
    if position_ids is None:
        if ew.pad_offset is None:
            position_ids = torch.arange(seq_len, device=dev)[None]
        elif input_ids is not None:
            real = input_ids.ne(ew.pad_offset).long()
            position_ids = torch.cumsum(real, dim=1) * real + ew.pad_offset
        else:
            position_ids = torch.arange(ew.pad_offset + 1, seq_len + ew.pad_offset + 1, device=dev)[None]
    x = words
    if ew.token_type is not None:
        types = torch.zeros(batch, seq_len, dtype=torch.long, device=dev) if token_type_ids is None else token_type_ids
        x = x + ew.token_type[torch.as_tensor(types, device=dev)].to(dtype)
    elif token_type_ids is not None:
        raise InterventionError("This model has no token-type embeddings; leave token_type_ids out.")
    x = x + ew.position[torch.as_tensor(position_ids, device=dev)].to(dtype)
    x = F.layer_norm(x, x.shape[-1:], _cast(ew.ln_w, dtype), _cast(ew.ln_b, dtype), ew.ln_eps)
    if ew.proj_w is not None:
        x = F.linear(x, _cast(ew.proj_w, dtype), _cast(ew.proj_b, dtype))
    return x


# --- one block ----------------------------------------------------------------------------


def _fit(x, name: str, target: tuple[int, ...], forms: dict[int, Callable], allowed: str, like):
    """Reshape knob ``x`` to broadcast against ``target`` using the form for its ndim."""
    x = torch.as_tensor(x, device=like.device)
    x = x if x.dtype == torch.bool else x.to(like.dtype)
    form = forms.get(x.dim())
    y = None if form is None else form(x)
    try:
        ok = y is not None and torch.broadcast_shapes(y.shape, target) == torch.Size(target)
    except RuntimeError:
        ok = False
    if not ok:
        raise InterventionError(f"{name}: got shape {list(x.shape)}; allowed: {allowed} (B, H, T, dh = {list(target)}).")
    return y


def _head_bias(x, batch, heads, seq_len, hd, like):
    x = torch.as_tensor(x, device=like.device)
    if x.dim() == 3 and x.shape[0] in (batch, 1) and x.shape[1:] == (heads, hd) and x.shape == (heads, seq_len, hd):
        raise InterventionError(
            f"head_bias of shape {list(x.shape)} reads both as [B, H, dh] and [H, T, dh]; give it as "
            "[B, H, T, dh] (e.g. bias[:, :, None, :] or bias[None]) to say which."
        )
    per_batch = x.dim() == 3 and x.shape[0] in (batch, 1) and x.shape[1:] == (heads, hd)
    forms = {
        2: lambda b: b[None, :, None, :],
        3: (lambda b: b[:, :, None, :]) if per_batch else (lambda b: b[None]),
        4: lambda b: b,
    }
    allowed = "[H, dh], [B, H, dh], [H, T, dh] or [B, H, T, dh]"
    return _fit(x, "head_bias", (batch, heads, seq_len, hd), forms, allowed, like)


def _deny(attention_mask, blocked, batch, heads, seq_len, like):
    """bool [B or 1, H or 1, T, T]: True where query i may not read key j, or None.

    A query row with every key denied reads only itself, so no row is all-masked (NaN).
    """
    deny = None
    if attention_mask is not None:
        am = torch.as_tensor(attention_mask, device=like.device)
        if tuple(am.shape) != (batch, seq_len):
            raise InterventionError(f"attention_mask must be [B, T] = {[batch, seq_len]}; got {list(am.shape)}.")
        deny = (am == 0)[:, None, None, :]
    if blocked is not None:
        forms = {3: lambda b: b[:, None], 4: lambda b: b}
        b = _fit(torch.as_tensor(blocked).bool(), "blocked", (batch, heads, seq_len, seq_len), forms,
                 "bool [B, T, T] or [B, H, T, T]", like)  # fmt: skip
        deny = b if deny is None else deny | b
    if deny is None:
        return None
    starved = deny.all(dim=-1, keepdim=True)  # applied unconditionally: no device sync
    return deny & ~(starved & torch.eye(seq_len, dtype=torch.bool, device=like.device))


def run_block(w: BlockWeights, h, *, attention_mask=None, blocked=None, value_scale=None, head_scale=None,
              head_bias=None, return_parts=False):  # fmt: skip
    """Run one post-LN block on ``h`` [B, T, D] -> [B, T, D] (with its BlockParts if asked).

    * ``attention_mask`` [B, T]: 1/True = real token; keys that are padding are never read.
    * ``blocked`` bool [B, T, T] or [B, H, T, T]: True where query i may NOT read key j.
      Rule: a query whose every key is denied (blocked and/or padding) reads only itself -
      e.g. ``blocked[:, 0, 1:] = True`` leaves [CLS] reading [CLS] alone.
    * ``value_scale`` [B, T] or [B, H, T]: multiplies each key's value vector (0 = zeroed).
    * ``head_scale`` [H] or [B, H]: multiplies each head's context (0 = ablated).
    * ``head_bias`` [H, dh], [B, H, dh], [H, T, dh] or [B, H, T, dh]: added to each head's
      context after scaling (mean ablation = scale 0 + the mean context as bias).

    Differentiable in ``h`` and the knobs; also runs under ``torch.inference_mode``.
    """
    if h.dim() != 3 or h.shape[-1] != w.q_w.shape[1]:
        raise InterventionError(f"h must be [B, T, {w.q_w.shape[1]}]; got {list(h.shape)}.")
    batch, seq_len, dim = h.shape
    heads, hd = w.num_heads, w.head_dim

    def split(t):  # [B, T, D] -> [B, H, T, dh]
        return t.view(batch, seq_len, heads, hd).transpose(1, 2)

    q = split(F.linear(h, w.q_w, w.q_b))
    k = split(F.linear(h, w.k_w, w.k_b))
    v = split(F.linear(h, w.v_w, w.v_b))
    if value_scale is not None:
        forms = {2: lambda s: s[:, None, :, None], 3: lambda s: s[..., None]}
        v = v * _fit(value_scale, "value_scale", (batch, heads, seq_len, 1), forms, "[B, T] or [B, H, T]", h)
    scores = torch.matmul(q, k.transpose(-1, -2)) * hd**-0.5  # same order of operations as the model
    deny = _deny(attention_mask, blocked, batch, heads, seq_len, h)
    if deny is not None:
        scores = scores.masked_fill(deny, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1)
    ctx = torch.matmul(probs, v)
    if head_scale is not None:
        forms = {1: lambda s: s[None, :, None, None], 2: lambda s: s[:, :, None, None]}
        ctx = ctx * _fit(head_scale, "head_scale", (batch, heads, 1, 1), forms, "[H] or [B, H]", h)
    if head_bias is not None:
        ctx = ctx + _head_bias(head_bias, batch, heads, seq_len, hd, h)
    attn_out = F.linear(ctx.transpose(1, 2).reshape(batch, seq_len, dim), w.o_w, w.o_b)
    pre_ln1 = attn_out + h
    mid = F.layer_norm(pre_ln1, (dim,), w.ln1_w, w.ln1_b, w.ln1_eps)
    ffn_pre = F.linear(mid, w.ff1_w, w.ff1_b)
    ffn_out = F.linear(w.act(ffn_pre), w.ff2_w, w.ff2_b)
    pre_ln2 = ffn_out + mid
    out = F.layer_norm(pre_ln2, (dim,), w.ln2_w, w.ln2_b, w.ln2_eps)
    if not return_parts:
        return out
    return out, BlockParts(probs, v, ctx, attn_out, pre_ln1, mid, ffn_out, pre_ln2, out, ffn_pre)


# --- the whole stack ----------------------------------------------------------------------


def _check_plan(interventions, replace, start: int, num_layers: int) -> tuple[dict, dict]:
    interventions = dict(interventions or {})
    replace = dict(replace or {})
    for block, knobs in interventions.items():
        if not isinstance(block, int) or not start < block <= num_layers:
            raise InterventionError(
                f"interventions: block {block!r} is not run; blocks are numbered {start + 1}..{num_layers} "
                f"here (1-based, starting after hidden-state index start={start})."
            )
        unknown = set(knobs) - set(_KNOBS)
        if unknown:
            raise InterventionError(
                f"interventions[{block}]: unknown {sorted(unknown)}; allowed: {', '.join(_KNOBS)} "
                "(the padding mask comes from run_stack's attention_mask)."
            )
    for index, fn in replace.items():
        if not isinstance(index, int) or not start <= index <= num_layers or not callable(fn):
            raise InterventionError(
                f"replace: {index!r} must map a hidden-state index in {start}..{num_layers} to a callable h -> h'."
            )
    return interventions, replace


def _replaced(fn, h: torch.Tensor, index: int) -> torch.Tensor:
    new = fn(h)
    if not isinstance(new, torch.Tensor) or new.shape != h.shape:
        got = list(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
        raise InterventionError(f"replace[{index}] must return a tensor of shape {list(h.shape)}; got {got}.")
    return new.to(h.dtype)


def run_stack(encoder, input_ids=None, *, attention_mask=None, position_ids=None, token_type_ids=None,
              inputs_embeds=None, dtype=None, start: int = 0, hidden=None,
              interventions: dict[int, dict[str, Any]] | None = None,
              replace: dict[int, Callable] | None = None) -> torch.Tensor:  # fmt: skip
    """Every hidden state, [L+1, B, T, D], computed block by block from the model's weights.

    * inputs as for :func:`embed`; ``attention_mask`` [B, T] (1 = real token) masks padding keys.
    * ``dtype`` (e.g. ``torch.float64``): compute dtype; the weights are cast per call
      (copies, only when it differs from the model's dtype).
    * ``start``, ``hidden`` [B, T, D]: resume from hidden-state index ``start`` with ``hidden``
      (required when ``start > 0``; with ``start == 0`` it replaces the embedding output).
      Rows before ``start`` are not computed and are filled with NaN, so row l is always
      hidden-state index l and a stray use of a missing row shows up as NaN.
    * ``interventions``: {block number (1..L): {knob: value}} with the knobs of
      :func:`run_block` (``blocked``, ``value_scale``, ``head_scale``, ``head_bias``).
    * ``replace``: {hidden-state index: callable(h) -> h'}, applied right after that state
      is computed (index ``start`` to the given/embedded state); e.g. patching [CLS].

    Differentiable in ``inputs_embeds`` / ``hidden``; works under ``torch.inference_mode``.
    """
    weights = block_weights(encoder)
    num_layers = len(weights)
    if not isinstance(start, int) or not 0 <= start <= num_layers:
        raise InterventionError(f"start must be a hidden-state index in 0..{num_layers}; got {start!r}.")
    interventions, replace = _check_plan(interventions, replace, start, num_layers)
    device, dtype = weights[0].q_w.device, dtype or weights[0].q_w.dtype
    if hidden is None:
        if start:
            raise InterventionError(f"start={start} needs hidden=[B, T, D], the hidden state to resume from.")
        h = embed(encoder, input_ids, position_ids=position_ids, token_type_ids=token_type_ids,
                  inputs_embeds=inputs_embeds, dtype=dtype)  # fmt: skip
    else:
        h = torch.as_tensor(hidden).to(device=device, dtype=dtype)
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask, device=h.device)
    if weights[0].q_w.dtype != dtype:
        cast = {id(w): w.to(dtype=dtype) for w in weights}  # ALBERT shares one layer: cast it once
        weights = [cast[id(w)] for w in weights]
    if start in replace:
        h = _replaced(replace[start], h, start)
    rows = [torch.full_like(h, float("nan")).detach() for _ in range(start)] + [h]
    for block in range(start + 1, num_layers + 1):
        h = run_block(weights[block_row(block)], h, attention_mask=attention_mask, **interventions.get(block, {}))
        if block in replace:
            h = _replaced(replace[block], h, block)
        rows.append(h)
    return torch.stack(rows)
