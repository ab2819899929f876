"""Poolings: how one vector is read out of a sequence of hidden states.

A *pooling* is a name from :data:`POOLINGS` or ``"token:K"`` (the token at position K; one
parser, :func:`token_position`, reads K). One dispatcher, :func:`pool_hidden`, serves both a
single Trace (:func:`pool`) and padded batches (corpus extraction), so both paths agree by
construction.
"""

from __future__ import annotations

import numpy as np

from .layers import check_layer
from .tracing import Trace, summary_index

__all__ = ["POOLINGS", "POOLING_HELP", "check_pooling", "pool", "pool_hidden", "token_position"]

POOLINGS = ("cls", "mean", "mean_content", "max", "sep", "pooler", "first", "last")
"""Named poolings; ``"token:K"`` (K >= 0) is accepted as well."""

POOLING_HELP = {
    "cls": "the [CLS]-like token's vector",
    "mean": "mean over every token the attention mask covers, specials included "
    "(as sentence-transformers does)",
    "mean_content": "mean over the text's own tokens, special tokens excluded",
    "max": "element-wise max over every token the attention mask covers",
    "sep": "the closing special token ([SEP], </s>)",
    "pooler": "the model's pooler head (dense + tanh) applied to the [CLS] vector",
    "first": "the first token of the text (after [CLS])",
    "last": "the last token of the text (before [SEP])",
    "token:K": "the token at position K (the last real token when the text is shorter)",
}


def token_position(pooling: str) -> int | None:
    """K for ``"token:K"`` (K a non-negative integer), else None."""
    if isinstance(pooling, str) and pooling.startswith("token:"):
        k = pooling.split(":", 1)[1]
        if k.isdigit():
            return int(k)
    return None


def check_pooling(pooling: str) -> str:
    """Return ``pooling`` if valid, else raise ``ValueError`` listing the valid names."""
    if pooling in POOLINGS or token_position(pooling) is not None:
        return pooling
    raise ValueError(
        f"Unknown pooling {pooling!r}. Valid: {', '.join(POOLINGS)}, "
        "or 'token:K' with K a position (e.g. 'token:3')."
    )


def _xp(a):
    """numpy or torch namespace for ``a`` (the same code pools numpy and torch arrays)."""
    if isinstance(a, np.ndarray):
        return None
    import torch

    return torch


def pool_hidden(hidden, mask, special, pooling: str, cls_index=0, pooler_states=None):
    """Pool hidden states of a batch.

    hidden : array [B, L, T, D]  (B texts, L layers, T padded tokens, D dims)
    mask : bool array [B, T]      True for real (non-padding) tokens
    special : bool array [B, T]   True for tokenizer-added special tokens
    cls_index : int or int array [B]
    pooler_states : array [B, L, D] or None
    Returns array [B, L, D] (numpy or torch, like ``hidden``).
    """
    check_pooling(pooling)
    th = _xp(hidden)
    batch = hidden.shape[0]
    rows = np.arange(batch) if th is None else th.arange(batch, device=hidden.device)

    def take(index):  # index: [B] positions -> [B, L, D]
        return hidden[rows, :, index, :]

    def as_index(values):
        if th is None:
            return np.asarray(values, dtype=np.int64)
        return th.as_tensor(values, dtype=th.long, device=hidden.device)

    def masked_mean(m):  # m: [B, T] bool
        if th is None:
            w = m[:, None, :, None].astype(hidden.dtype)
            return (hidden * w).sum(axis=2) / np.maximum(w.sum(axis=2), 1e-9)
        # A batched matrix product [B, 1, 1, T] @ [B, L, T, D]: no [B, L, T, D] temporary.
        w = m.to(hidden.dtype)
        total = th.matmul(w[:, None, None, :], hidden)[:, :, 0, :]
        return total / w.sum(dim=1).clamp(min=1e-9)[:, None, None]

    content = mask & ~special
    lengths = mask.sum(axis=1) if th is None else mask.sum(dim=1)

    def first_true(m):
        return m.argmax(axis=1) if th is None else m.int().argmax(dim=1)

    def last_true(m):
        t = m.shape[1]
        if th is None:
            return t - 1 - m[:, ::-1].argmax(axis=1)
        return t - 1 - m.flip(1).int().argmax(dim=1)

    if pooling == "cls":
        if cls_index is None:
            raise ValueError("The 'cls' pooling needs the position of a summary token; this model has none (use 'mean').")
        idx = cls_index if not np.isscalar(cls_index) else [cls_index] * batch
        return take(as_index(idx))
    if pooling == "mean":
        return masked_mean(mask)
    if pooling == "mean_content":
        return masked_mean(content)
    if pooling == "max":
        if th is None:
            filled = np.where(mask[:, None, :, None], hidden, -np.inf)
            return filled.max(axis=2)
        if bool(mask.all()):  # no padding in this batch (texts are batched by length): no masked copy
            return hidden.amax(dim=2)
        counts = mask.sum(dim=1)
        right_padded = bool((mask == (th.arange(mask.shape[1], device=mask.device)[None, :] < counts[:, None])).all())
        if right_padded and int(counts.min()) > 0:  # each row's own tokens, read in place: no masked copy
            return th.stack([hidden[b, :, :n].amax(dim=1) for b, n in enumerate(counts.tolist())])
        filled = hidden.masked_fill(~mask[:, None, :, None], float("-inf"))
        return filled.amax(dim=2)
    if pooling == "sep":
        return take(last_true(mask & special))
    if pooling == "pooler":
        if pooler_states is None:
            raise ValueError(
                "This model has no pooler head, so the 'pooler' pooling is not available. "
                "Use 'cls' for the raw [CLS] vector."
            )
        return pooler_states
    if pooling == "first":
        return take(first_true(content))
    if pooling == "last":
        return take(last_true(content))
    k = token_position(pooling)
    if th is None:
        return take(np.minimum(k, lengths - 1))
    return take(th.clamp(lengths - 1, max=k))


def pool(trace: Trace, pooling: str, layer: int = -1) -> np.ndarray:
    """float32 [D]: the vector ``pooling`` reads from ``trace`` at ``layer``.

    ``layer`` counts like ``Trace.hidden`` (0 = embeddings, -1 = last). ``"token:K"``
    with K beyond the sequence reads the last token, exactly as corpus extraction does.
    """
    check_pooling(pooling)
    if pooling == "cls":
        summary_index(trace, "The 'cls' pooling")
    idx = check_layer(layer, trace.num_layers)
    hidden = trace.hidden_states[None, idx : idx + 1]  # [1, 1, T, D]
    mask = np.ones((1, trace.seq_len), dtype=bool)
    pooler = None if trace.pooler_states is None else trace.pooler_states[None, idx : idx + 1]
    out = pool_hidden(hidden, mask, trace.special_mask[None], pooling, trace.cls_index, pooler)
    return np.asarray(out[0, 0], dtype=np.float32)
