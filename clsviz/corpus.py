"""Corpora: pooled vectors for many texts at once (:func:`extract`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .encoder import Encoder, apply_pooler
from .pooling import check_strategy, pool_hidden
from .tracing import _has_content

__all__ = ["PooledVectors", "extract"]


@dataclass(frozen=True, eq=False)
class PooledVectors:
    """Pooled vectors of a corpus.

    * ``vectors``: float32 [N, L + 1, S, D] (texts, layers with 0 = embeddings, strategies, dims)
    * ``strategies``: the S strategy names, in the order of axis 2
    * ``texts``: the N texts, in input order; ``truncated``: bool [N]
    * ``labels``: optional label columns (name -> N values)
    """

    vectors: np.ndarray
    strategies: tuple[str, ...]
    texts: tuple[str, ...]
    model_name: str
    truncated: np.ndarray
    labels: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, _, s, _ = self.vectors.shape
        if s != len(self.strategies):
            raise ValueError(f"vectors: expected {len(self.strategies)} strategies on axis 2, got {s}")
        if n != len(self.texts):
            raise ValueError(f"vectors: expected {len(self.texts)} texts on axis 0, got {n}")

    @property
    def num_layers(self) -> int:
        """Transformer layers (the vectors hold num_layers + 1 rows, embeddings first)."""
        return self.vectors.shape[1] - 1

    def get(self, strategy: str, layer: int = -1) -> np.ndarray:
        """float32 [N, D]: every text's vector for one strategy after one layer."""
        if strategy not in self.strategies:
            raise KeyError(f"{strategy!r} was not extracted; available: {', '.join(self.strategies)}")
        return self.vectors[:, layer, self.strategies.index(strategy)]


def _batches(lengths: np.ndarray, batch_size: int):
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def extract(
    encoder: Encoder,
    texts: Sequence[str],
    strategies: Sequence[str] = ("cls", "mean", "max"),
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    max_length: int | None = None,
    labels: dict | None = None,
) -> PooledVectors:
    """Pool every text at every layer with every strategy.

    Texts are tokenized once, sorted by length and run in batches with the model's fast
    attention kernel (no attention weights are needed) under ``torch.inference_mode``.
    ``progress(done, total)`` is called after each batch. Returns :class:`PooledVectors`.
    """
    import torch

    texts = [t if isinstance(t, str) else str(t) for t in texts]
    if not texts:
        raise ValueError("No texts to extract: the corpus is empty.")
    bad = [i for i, t in enumerate(texts) if not _has_content(t)]
    if bad:
        shown = ", ".join(str(i + 1) for i in bad[:10])
        raise ValueError(f"{len(bad)} text(s) are empty (rows {shown}{'...' if len(bad) > 10 else ''}).")
    strategies = tuple(check_strategy(s) for s in strategies)
    if "pooler" in strategies and not encoder.info.has_pooler:
        raise ValueError(f"'{encoder.name}' has no pooler head; drop 'pooler' from the strategies.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    info = encoder.info
    limit = info.max_length if max_length is None else min(int(max_length), info.max_length)
    tok = encoder.tokenizer
    with encoder.lock:
        enc = tok(
            texts,
            truncation=True,
            max_length=limit,
            split_special_tokens=True,
            return_special_tokens_mask=True,
            verbose=False,
        )
        full_lengths = [len(x) for x in tok(texts, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]]
    all_ids = enc["input_ids"]
    all_special = enc["special_tokens_mask"]
    lengths = np.array([len(x) for x in all_ids])
    num_special = tok.num_special_tokens_to_add(pair=False)
    truncated = np.array([n + num_special > limit for n in full_lengths])

    n_texts = len(texts)
    out = np.empty((n_texts, info.num_layers + 1, len(strategies), info.hidden_size), dtype=np.float32)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    model = encoder.model
    device = encoder.device
    done = 0
    with torch.inference_mode():
        for rows in _batches(lengths, batch_size):
            width = int(lengths[rows].max())
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.bool)
            special = torch.zeros((len(rows), width), dtype=torch.bool)
            for j, r in enumerate(rows):
                n = lengths[r]
                ids[j, :n] = torch.as_tensor(all_ids[r])
                mask[j, :n] = True
                special[j, :n] = torch.as_tensor(all_special[r], dtype=torch.bool)
            ids, mask, special = ids.to(device), mask.to(device), special.to(device)
            result = model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
            hidden = torch.stack(result.hidden_states, dim=1)  # [B, L+1, T, D]
            cls_index = ((ids == info.cls_token_id) & special).int().argmax(dim=1)
            pooled_states = None
            if "pooler" in strategies:
                b, nl, _, d = hidden.shape
                cls_vecs = hidden[torch.arange(b, device=device), :, cls_index, :]  # [B, L+1, D]
                pooled_states = apply_pooler(model, cls_vecs.reshape(b * nl, d)).reshape(b, nl, d)
            stacked = torch.stack(
                [pool_hidden(hidden, mask, special, s, cls_index, pooled_states) for s in strategies],
                dim=2,
            )  # [B, L+1, S, D]
            out[rows] = stacked.float().cpu().numpy()
            done += len(rows)
            if progress is not None:
                progress(done, n_texts)
    return PooledVectors(
        vectors=out,
        strategies=strategies,
        texts=tuple(texts),
        model_name=encoder.name,
        truncated=truncated,
        labels=dict(labels or {}),
    )
