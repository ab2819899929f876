"""Pooling strategies: how one vector is read out of a sequence of hidden states.

A strategy is a name from :data:`POOLING_STRATEGIES` or ``"token:K"`` (the token at
position K). One dispatcher, :func:`pool_hidden`, serves both a single Trace (:func:`pool`)
and padded batches (corpus extraction), so both paths agree by construction.
"""

from __future__ import annotations

import numpy as np

from .tracing import Trace

__all__ = ["POOLING_STRATEGIES", "STRATEGY_HELP", "check_strategy", "pool", "pool_hidden"]

POOLING_STRATEGIES = ("cls", "mean", "mean_content", "max", "sep", "pooler", "first", "last")
"""Named strategies; ``"token:K"`` (K >= 0) is accepted as well."""

STRATEGY_HELP = {
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


def check_strategy(strategy: str) -> str:
    """Return ``strategy`` if valid, else raise ``ValueError`` listing the valid names."""
    if strategy in POOLING_STRATEGIES:
        return strategy
    if isinstance(strategy, str) and strategy.startswith("token:"):
        k = strategy.split(":", 1)[1]
        if k.isdigit():
            return strategy
    raise ValueError(
        f"Unknown pooling strategy {strategy!r}. Valid: {', '.join(POOLING_STRATEGIES)}, "
        "or 'token:K' with K a position (e.g. 'token:3')."
    )


def _xp(a):
    """numpy or torch namespace for ``a`` (the same code pools numpy and torch arrays)."""
    if isinstance(a, np.ndarray):
        return None
    import torch

    return torch


def pool_hidden(hidden, mask, special, strategy: str, cls_index=0, pooler_states=None):
    """Pool hidden states of a batch.

    hidden : array [B, L, T, D]  (B texts, L layers, T padded tokens, D dims)
    mask : bool array [B, T]      True for real (non-padding) tokens
    special : bool array [B, T]   True for tokenizer-added special tokens
    cls_index : int or int array [B]
    pooler_states : array [B, L, D] or None
    Returns array [B, L, D] (numpy or torch, like ``hidden``).
    """
    check_strategy(strategy)
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
        w = m[:, None, :, None].astype(hidden.dtype) if th is None else m[:, None, :, None].to(hidden.dtype)
        count = w.sum(axis=2) if th is None else w.sum(dim=2)
        total = (hidden * w).sum(axis=2) if th is None else (hidden * w).sum(dim=2)
        return total / (np.maximum(count, 1e-9) if th is None else count.clamp(min=1e-9))

    content = mask & ~special
    lengths = mask.sum(axis=1) if th is None else mask.sum(dim=1)

    def first_true(m):
        return m.argmax(axis=1) if th is None else m.int().argmax(dim=1)

    def last_true(m):
        t = m.shape[1]
        if th is None:
            return t - 1 - m[:, ::-1].argmax(axis=1)
        return t - 1 - m.flip(1).int().argmax(dim=1)

    if strategy == "cls":
        idx = cls_index if not np.isscalar(cls_index) else [cls_index] * batch
        return take(as_index(idx))
    if strategy == "mean":
        return masked_mean(mask)
    if strategy == "mean_content":
        return masked_mean(content)
    if strategy == "max":
        if th is None:
            filled = np.where(mask[:, None, :, None], hidden, -np.inf)
            return filled.max(axis=2)
        filled = hidden.masked_fill(~mask[:, None, :, None], float("-inf"))
        return filled.max(dim=2).values
    if strategy == "sep":
        return take(last_true(mask & special))
    if strategy == "pooler":
        if pooler_states is None:
            raise ValueError(
                "This model has no pooler head, so the 'pooler' strategy is not available. "
                "Use 'cls' for the raw [CLS] vector."
            )
        return pooler_states
    if strategy == "first":
        return take(first_true(content))
    if strategy == "last":
        return take(last_true(content))
    k = int(strategy.split(":", 1)[1])
    if th is None:
        return take(np.minimum(k, lengths - 1))
    return take(th.clamp(lengths - 1, max=k))


def pool(trace: Trace, strategy: str, layer: int = -1) -> np.ndarray:
    """float32 [D]: the vector ``strategy`` reads from ``trace`` after ``layer``.

    ``layer`` counts like ``Trace.hidden`` (0 = embeddings, -1 = last). ``"token:K"``
    with K beyond the sequence reads the last token, exactly as corpus extraction does.
    """
    check_strategy(strategy)
    n = trace.num_layers + 1
    idx = layer + n if layer < 0 else layer
    if not 0 <= idx < n:
        raise IndexError(f"layer {layer} is outside 0..{n - 1} (or -{n}..-1)")
    hidden = trace.hidden_states[None, idx : idx + 1]  # [1, 1, T, D]
    mask = np.ones((1, trace.seq_len), dtype=bool)
    pooler = None if trace.pooler_states is None else trace.pooler_states[None, idx : idx + 1]
    out = pool_hidden(hidden, mask, trace.special_mask[None], strategy, trace.cls_index, pooler)
    return np.asarray(out[0, 0], dtype=np.float32)
