"""Attention to and from [CLS]: per-head summaries, token categories, rollout.

Shapes (L = blocks, H = heads, T = tokens including specials, D = hidden size). Blocks are
numbered 1..L (:mod:`clsviz.layers`): row ``l - 1`` of an ``[L, ...]`` array is block ``l``,
which reads ``trace.hidden_states[l - 1]`` and writes ``trace.hidden_states[l]``; tables have
a ``block`` column and figures label blocks 1..L.

Every function that takes ``attentions`` accepts any non-negative ``[L, H, T, T]`` array whose
rows are weights over keys: the raw softmax attention of a Trace, or the row-normalised
value-norm weighted attention of :func:`clsviz.mixing.attention_weights`.

* :func:`attention_to_cls` – [L, H] mean attention each head pays to [CLS]
* :func:`cls_self_attention` – [L, H] attention of [CLS] to itself
* :func:`cls_entropy` – [L, H] entropy of the [CLS] row (broad vs focused); max is ``log T``
* :func:`token_categories` / :func:`attention_breakdown` – where attention goes
  ([CLS], [SEP], punctuation, other), after Clark et al. (2019), "What Does BERT Look At?"
* :func:`cls_rows` – [L, H, T] what [CLS] reads in each layer/head
* :func:`rollout` – [L, T, T] attention rollout (Abnar & Zuidema, 2020)
* :func:`summarize` – all of the above for one Trace in one :class:`AttentionSummary`, and
  ``*_table`` functions that turn it into tidy DataFrames (one per figure).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .layers import check_block
from .metrics import entropy
from .mixing import check_attention_method
from .tracing import Trace, summary_index

__all__ = [
    "TOKEN_CATEGORIES",
    "AttentionSummary",
    "attention_to_cls",
    "cls_self_attention",
    "cls_entropy",
    "max_entropy",
    "token_categories",
    "attention_breakdown",
    "block_map",
    "cls_rows",
    "rollout",
    "rollout_row",
    "summarize",
    "to_cls_table",
    "entropy_table",
    "breakdown_table",
    "cls_row_table",
    "rollout_table",
    "token_matrix_table",
]

TOKEN_CATEGORIES = ("[CLS]", "[SEP]", "punctuation", "other")
"""Where attention can go. "[SEP]" covers every special token except [CLS] (the closing
[SEP] / ``</s>``, and padding or extra specials where a tokenizer adds them)."""

# Sub-word markers stripped before deciding whether a token is punctuation
# (WordPiece "##", byte-level BPE "Ġ"/"Ċ", SentencePiece "▁").
_SUBWORD_MARKERS = ("##", "Ġ", "Ċ", "▁")


def _check_attentions(attentions: np.ndarray) -> np.ndarray:
    a = np.asarray(attentions)
    if a.ndim != 4 or a.shape[2] != a.shape[3]:
        raise ValueError(f"attentions: expected [layers, heads, T, T], got {list(a.shape)}")
    return a


def _check_index(index: int, seq_len: int, name: str = "cls_index") -> int:
    if not 0 <= index < seq_len:
        raise ValueError(f"{name} {index} is outside 0..{seq_len - 1}")
    return int(index)


# --- per-head summaries ------------------------------------------------------------------------
def attention_to_cls(attentions: np.ndarray, cls_index: int = 0, include_self: bool = True) -> np.ndarray:
    """Mean attention paid to [CLS] by the query tokens, per layer and head.

    attentions: [L, H, T, T] (row = query, column = key). Returns float32 [L, H].
    With ``include_self=False`` the [CLS] query itself is left out of the mean (its
    self-attention is often large and would otherwise dominate short inputs); see
    :func:`cls_self_attention` for that value on its own.
    """
    a = _check_attentions(attentions)
    seq_len = a.shape[-1]
    cls_index = _check_index(cls_index, seq_len)
    column = a[:, :, :, cls_index]  # [L, H, T]: every query's weight on [CLS]
    if include_self or seq_len == 1:
        return column.mean(axis=-1, dtype=np.float64).astype(np.float32)
    keep = np.arange(seq_len) != cls_index
    return column[:, :, keep].mean(axis=-1, dtype=np.float64).astype(np.float32)


def cls_self_attention(attentions: np.ndarray, cls_index: int = 0) -> np.ndarray:
    """float32 [L, H]: the weight [CLS] puts on itself (attentions[:, :, cls, cls])."""
    a = _check_attentions(attentions)
    cls_index = _check_index(cls_index, a.shape[-1])
    return np.ascontiguousarray(a[:, :, cls_index, cls_index], dtype=np.float32)


def max_entropy(seq_len: int) -> float:
    """The largest possible entropy (nats) of a row over ``seq_len`` keys: ``log(seq_len)``."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    return float(np.log(seq_len))


def cls_entropy(attentions: np.ndarray, cls_index: int = 0) -> np.ndarray:
    """Entropy (nats) of the [CLS] attention row, per layer and head: float32 [L, H].

    0 means [CLS] reads a single token; ``max_entropy(T) = log T`` means it reads all
    tokens equally. Rows are renormalised to sum to 1 first, so value-norm weights work too.
    """
    a = _check_attentions(attentions)
    cls_index = _check_index(cls_index, a.shape[-1])
    return entropy(a[:, :, cls_index, :]).astype(np.float32)


def block_map(attentions: np.ndarray, block: int, head: int | None = None) -> np.ndarray:
    """float32 [T, T]: block ``block``'s map (1..L, -1 = last) for one head (0-based) or the
    mean over heads (None), from any [L, H, T, T] weights."""
    a = _check_attentions(attentions)
    m = a[check_block(block, a.shape[0]) - 1]
    if head is None:
        return m.mean(axis=0, dtype=np.float64).astype(np.float32)
    if not 0 <= int(head) < a.shape[1]:
        raise IndexError(f"head {head} is outside 0..{a.shape[1] - 1}")
    return np.ascontiguousarray(m[int(head)], dtype=np.float32)


def cls_rows(attentions: np.ndarray, cls_index: int = 0) -> np.ndarray:
    """float32 [L, H, T]: the [CLS] row (what [CLS] reads) in every layer and head.

    Take ``.mean(axis=1)`` for the mean over heads, ``[:, h]`` for head ``h``.
    """
    a = _check_attentions(attentions)
    cls_index = _check_index(cls_index, a.shape[-1])
    return np.ascontiguousarray(a[:, :, cls_index, :], dtype=np.float32)


# --- token categories and the per-layer breakdown ----------------------------------------------
def _is_punctuation(token: str) -> bool:
    text = token
    for marker in _SUBWORD_MARKERS:
        if text.startswith(marker):
            text = text[len(marker) :]
    text = text.strip()
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


def token_categories(tokens: Sequence[str], special_mask: Sequence[bool], cls_index: int | None = 0) -> np.ndarray:
    """int64 [T]: index into :data:`TOKEN_CATEGORIES` for every token.

    ``cls_index`` -> "[CLS]" (None: a model without a summary token, no token is "[CLS]"); any
    other special token -> "[SEP]"; a text token made only of
    punctuation characters (Unicode category P*, ignoring sub-word markers) -> "punctuation";
    everything else -> "other".
    """
    special = np.asarray(special_mask, dtype=bool)
    if len(tokens) != len(special):
        raise ValueError(f"tokens ({len(tokens)}) and special_mask ({len(special)}) differ in length")
    cls_index = None if cls_index is None else _check_index(cls_index, len(tokens))
    cats = np.full(len(tokens), TOKEN_CATEGORIES.index("other"), dtype=np.int64)
    for i, tok in enumerate(tokens):
        if special[i]:
            cats[i] = TOKEN_CATEGORIES.index("[SEP]")
        elif _is_punctuation(tok):
            cats[i] = TOKEN_CATEGORIES.index("punctuation")
    if cls_index is not None:
        cats[cls_index] = TOKEN_CATEGORIES.index("[CLS]")
    return cats


def attention_breakdown(attentions: np.ndarray, categories: np.ndarray, per_head: bool = False) -> np.ndarray:
    """Share of attention going to each token category, averaged over query tokens.

    attentions: [L, H, T, T]; categories: int [T] from :func:`token_categories`.
    Returns float32 [L, C] (mean over heads too) or, with ``per_head=True``, [L, H, C]
    where C = len(TOKEN_CATEGORIES). With softmax rows each [L] (or [L, H]) entry sums to 1.
    """
    a = _check_attentions(attentions)
    cats = np.asarray(categories, dtype=np.int64)
    if cats.shape != (a.shape[-1],):
        raise ValueError(f"categories: expected [{a.shape[-1]}], got {list(cats.shape)}")
    onehot = np.zeros((a.shape[-1], len(TOKEN_CATEGORIES)), dtype=np.float64)
    onehot[np.arange(len(cats)), cats] = 1.0
    # mean_q sum_{k in c} a[q, k] = (sum_q a[q, :]) @ onehot / T: sum over queries first, no big copy.
    shares = (a.sum(axis=2, dtype=np.float64) @ onehot) / a.shape[2]  # [L, H, C]
    if not per_head:
        shares = shares.mean(axis=1)
    return shares.astype(np.float32)


# --- rollout and value norms --------------------------------------------------------------------
def rollout(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020), cumulative up to each layer.

    attentions: [L, H, T, T]. Per layer ``A_l = (1 - residual) * mean_h(attn_l) + residual * I``
    with rows renormalised to sum to 1 (the identity stands for the residual connection);
    then ``R_1 = A_1`` and ``R_l = A_l @ R_{l-1}``. Returns float32 [L, T, T]: row i of
    ``R_l`` is how much each input token flows into token i's state after layer l.
    """
    a = _check_attentions(attentions)
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be between 0 and 1, got {residual}")
    factors = _rollout_factors(a, residual)
    out = np.empty_like(factors)
    joint = factors[0]
    out[0] = joint
    for layer in range(1, len(factors)):
        joint = factors[layer] @ joint
        out[layer] = joint
    return out


def _rollout_factors(a: np.ndarray, residual: float) -> np.ndarray:
    """float32 [L, T, T]: the per-layer matrices ``A_l`` that :func:`rollout` multiplies."""
    seq_len = a.shape[-1]
    mixed = (1.0 - residual) * a.mean(axis=1, dtype=np.float64) + residual * np.eye(seq_len)
    mixed /= mixed.sum(axis=-1, keepdims=True)
    return mixed.astype(np.float32)


def rollout_row(attentions: np.ndarray, index: int = 0, residual: float = 0.5) -> np.ndarray:
    """float32 [L, T]: row ``index`` of :func:`rollout` for every layer, without the T x T products.

    Row i of ``R_l = A_l ... A_1`` is ``e_i A_l ... A_1``: a chain of vector-matrix products,
    O(L^2 T^2) instead of O(L T^3), which keeps a 512-token input interactive.
    """
    a = _check_attentions(attentions)
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be between 0 and 1, got {residual}")
    num_layers, _, seq_len, _ = a.shape
    index = _check_index(index, seq_len, "index")
    factors = _rollout_factors(a, residual)
    out = np.empty((num_layers, seq_len), dtype=np.float32)
    for layer in range(num_layers):
        row = factors[layer, index]
        for below in range(layer - 1, -1, -1):
            row = row @ factors[below]
        out[layer] = row
    return out


# --- one summary per trace ----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AttentionSummary:
    """The small derived arrays the Attention page draws, for one Trace and one weighting method.

    * ``tokens``: T strings; ``categories``: int64 [T] into :data:`TOKEN_CATEGORIES`
    * ``to_cls``: float32 [L, H] mean weight on [CLS] over queries (``include_self`` says
      whether the [CLS] query was counted); ``cls_self``: float32 [L, H]
    * ``entropy``: float32 [L, H] entropy of the [CLS] row in nats; ``max_entropy`` = log T
    * ``breakdown``: float32 [L, H, C] share of each token category (mean over queries)
    * ``cls_rows``: float32 [L, H, T] the [CLS] row of every layer and head
    * ``rollout_cls``: float32 [L, T] the [CLS] row of the cumulative rollout
    * ``method``: one of :data:`clsviz.mixing.ATTENTION_METHODS`
    """

    tokens: tuple[str, ...]
    cls_index: int
    categories: np.ndarray
    to_cls: np.ndarray
    cls_self: np.ndarray
    entropy: np.ndarray
    max_entropy: float
    breakdown: np.ndarray
    cls_rows: np.ndarray
    rollout_cls: np.ndarray
    include_self: bool
    method: str

    @property
    def num_layers(self) -> int:
        return self.to_cls.shape[0]

    @property
    def num_heads(self) -> int:
        return self.to_cls.shape[1]

    @property
    def seq_len(self) -> int:
        return len(self.tokens)

    def cls_row(self, head: int | None = None) -> np.ndarray:
        """float32 [L, T]: the [CLS] row for one head, or the mean over heads (None)."""
        if head is None:
            return self.cls_rows.mean(axis=1)
        return self.cls_rows[:, head]


def summarize(
    trace: Trace, weights: np.ndarray | None = None, include_self: bool = True, method: str = "attention"
) -> AttentionSummary:
    """Every per-layer/per-head quantity of the Attention page for ``trace``.

    weights: [L, H, T, T] to summarise instead of ``trace.attentions`` (e.g. from
    :func:`attention_weights`); ``method`` names them. The full T x T maps are not kept.
    """
    a = trace.attentions if weights is None else _check_attentions(weights)
    if a.shape != trace.attentions.shape:
        raise ValueError(f"weights: expected {list(trace.attentions.shape)}, got {list(a.shape)}")
    check_attention_method(method)
    cls = summary_index(trace, "The attention summary around [CLS]")
    cats = token_categories(trace.tokens, trace.special_mask, cls)
    return AttentionSummary(
        tokens=tuple(trace.tokens),
        cls_index=cls,
        categories=cats,
        to_cls=attention_to_cls(a, cls, include_self=include_self),
        cls_self=cls_self_attention(a, cls),
        entropy=cls_entropy(a, cls),
        max_entropy=max_entropy(trace.seq_len),
        breakdown=attention_breakdown(a, cats, per_head=True),
        cls_rows=cls_rows(a, cls),
        rollout_cls=rollout_row(a, cls),
        include_self=include_self,
        method=method,
    )


# --- tidy tables (one per figure) ---------------------------------------------------------------
def _layer_head_grid(num_layers: int, num_heads: int) -> dict[str, np.ndarray]:
    block, head = np.meshgrid(np.arange(1, num_layers + 1), np.arange(1, num_heads + 1), indexing="ij")
    return {"block": block.ravel(), "head": head.ravel()}


# Each table is one DataFrame construction: adding columns one by one costs pandas about as much
# per column as building the whole frame, and a page rerun builds every table behind its figures.


def to_cls_table(summary: AttentionSummary) -> pd.DataFrame:
    """One row per (block, head): ``attention_to_cls``, ``cls_self_attention``, ``include_self``."""
    return pd.DataFrame({
        **_layer_head_grid(summary.num_layers, summary.num_heads),
        "attention_to_cls": summary.to_cls.ravel(),
        "cls_self_attention": summary.cls_self.ravel(),
        "include_self": summary.include_self,
        "method": summary.method,
    })  # fmt: skip


def entropy_table(summary: AttentionSummary) -> pd.DataFrame:
    """One row per (block, head): ``entropy`` (nats), ``max_entropy`` (log T), ``relative`` (ratio)."""
    entropy = summary.entropy.ravel()
    return pd.DataFrame({
        **_layer_head_grid(summary.num_layers, summary.num_heads),
        "entropy": entropy,
        "max_entropy": summary.max_entropy,
        "relative": entropy / summary.max_entropy if summary.max_entropy > 0 else 0.0,
        "method": summary.method,
    })  # fmt: skip


def breakdown_table(summary: AttentionSummary, per_head: bool = False) -> pd.DataFrame:
    """One row per (block[, head], category): ``share`` of attention and ``tokens`` in the category."""
    counts = np.bincount(summary.categories, minlength=len(TOKEN_CATEGORIES))
    if per_head:
        grid = _layer_head_grid(summary.num_layers, summary.num_heads)
        values = summary.breakdown.reshape(-1, len(TOKEN_CATEGORIES))
    else:
        grid = {"block": np.arange(1, summary.num_layers + 1)}
        values = summary.breakdown.mean(axis=1)
    rows = len(values)
    return pd.DataFrame({
        **{k: np.repeat(v, len(TOKEN_CATEGORIES)) for k, v in grid.items()},
        "category": np.tile(np.array(TOKEN_CATEGORIES, dtype=object), rows),
        "share": values.ravel(),
        "tokens": np.tile(counts, rows),
        "method": summary.method,
    })  # fmt: skip


def _token_columns(tokens: Sequence[str], repeat: int) -> dict[str, np.ndarray]:
    return {
        "position": np.tile(np.arange(len(tokens)), repeat),
        "token": np.tile(np.array(tokens, dtype=object), repeat),
    }


def cls_row_table(summary: AttentionSummary, head: int | None = None) -> pd.DataFrame:
    """One row per (block, token): the ``weight`` [CLS] puts on the token (head 0-based, None = mean)."""
    return pd.DataFrame({
        "block": np.repeat(np.arange(1, summary.num_layers + 1), summary.seq_len),
        **_token_columns(summary.tokens, summary.num_layers),
        "head": "mean" if head is None else str(head + 1),
        "weight": summary.cls_row(head).ravel(),
        "method": summary.method,
    })  # fmt: skip


def rollout_table(summary: AttentionSummary) -> pd.DataFrame:
    """One row per (block, token): raw [CLS] row (mean over heads) and its cumulative ``rollout``."""
    return pd.DataFrame({
        "block": np.repeat(np.arange(1, summary.num_layers + 1), summary.seq_len),
        **_token_columns(summary.tokens, summary.num_layers),
        "raw": summary.cls_row(None).ravel(),
        "rollout": summary.rollout_cls.ravel(),
        "method": summary.method,
    })  # fmt: skip


def token_matrix_table(matrix: np.ndarray, tokens: Sequence[str]) -> pd.DataFrame:
    """One row per (query, key) of a [T, T] map: positions, tokens and ``weight``."""
    m = np.asarray(matrix)
    n = len(tokens)
    if m.shape != (n, n):
        raise ValueError(f"matrix: expected [{n}, {n}], got {list(m.shape)}")
    toks = np.array(tokens, dtype=object)
    return pd.DataFrame(
        {
            "query_position": np.repeat(np.arange(n), n),
            "query_token": np.repeat(toks, n),
            "key_position": np.tile(np.arange(n), n),
            "key_token": np.tile(toks, n),
            "weight": m.ravel(),
        }
    )
