"""Attention to and from [CLS]: per-head summaries, token categories, rollout, value norms.

Shapes (L = layers, H = heads, T = tokens including specials, D = hidden size). Layers are
indexed from 0 in arrays; layer ``l`` of ``attentions`` reads ``trace.hidden_states[l]`` and
writes ``trace.hidden_states[l + 1]``, so tables and figures number them 1..L.

Every function that takes ``attentions`` accepts any non-negative ``[L, H, T, T]`` array whose
rows are weights over keys: the raw softmax attention of a Trace, or the row-normalised
value-norm weighted attention (``normalize_rows(value_weighted_attention(...))``).

* :func:`attention_to_cls` – [L, H] mean attention each head pays to [CLS]
* :func:`cls_self_attention` – [L, H] attention of [CLS] to itself
* :func:`cls_entropy` – [L, H] entropy of the [CLS] row (broad vs focused); max is ``log T``
* :func:`token_categories` / :func:`attention_breakdown` – where attention goes
  ([CLS], [SEP], punctuation, other), after Clark et al. (2019), "What Does BERT Look At?"
* :func:`cls_rows` – [L, H, T] what [CLS] reads in each layer/head
* :func:`rollout` – [L, T, T] attention rollout (Abnar & Zuidema, 2020)
* :func:`value_weighted_attention` – [L, H, T, T] ``||alpha_ij f(x_j)||`` (Kobayashi et al.,
  2020, "Attention is Not Only a Weight")
* :func:`summarize` – all of the above for one Trace in one :class:`AttentionSummary`, and
  ``*_table`` functions that turn it into tidy DataFrames (one per figure).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .tracing import Trace

__all__ = [
    "TOKEN_CATEGORIES",
    "ATTENTION_KINDS",
    "AttentionSummary",
    "attention_to_cls",
    "cls_self_attention",
    "cls_entropy",
    "max_entropy",
    "token_categories",
    "attention_breakdown",
    "cls_rows",
    "rollout",
    "rollout_row",
    "normalize_rows",
    "value_weighted_attention",
    "attention_weights",
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

ATTENTION_KINDS = ("attention", "value-norm")
"""``"attention"``: softmax weights alpha. ``"value-norm"``: ||alpha f(x)|| per row, normalised to
sum to 1 (the share of each key token in the size of what the head writes)."""

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
    row = a[:, :, cls_index, :].astype(np.float64)  # [L, H, T]
    total = row.sum(axis=-1, keepdims=True)
    p = np.divide(row, total, out=np.zeros_like(row), where=total > 0)
    logp = np.log(p, out=np.zeros_like(p), where=p > 0)
    return (-(p * logp).sum(axis=-1)).astype(np.float32)


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


def token_categories(tokens: Sequence[str], special_mask: Sequence[bool], cls_index: int = 0) -> np.ndarray:
    """int64 [T]: index into :data:`TOKEN_CATEGORIES` for every token.

    ``cls_index`` -> "[CLS]"; any other special token -> "[SEP]"; a text token made only of
    punctuation characters (Unicode category P*, ignoring sub-word markers) -> "punctuation";
    everything else -> "other".
    """
    special = np.asarray(special_mask, dtype=bool)
    if len(tokens) != len(special):
        raise ValueError(f"tokens ({len(tokens)}) and special_mask ({len(special)}) differ in length")
    cls_index = _check_index(cls_index, len(tokens))
    cats = np.full(len(tokens), TOKEN_CATEGORIES.index("other"), dtype=np.int64)
    for i, tok in enumerate(tokens):
        if special[i]:
            cats[i] = TOKEN_CATEGORIES.index("[SEP]")
        elif _is_punctuation(tok):
            cats[i] = TOKEN_CATEGORIES.index("punctuation")
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


def normalize_rows(weights: np.ndarray) -> np.ndarray:
    """float32 [..., T]: each row divided by its sum (rows summing to 0 stay 0)."""
    w = np.asarray(weights, dtype=np.float32)
    total = w.sum(axis=-1, keepdims=True, dtype=np.float64).astype(np.float32)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def _value_and_output_layers(encoder) -> list[tuple[object, object]]:
    """(value Linear, output-projection Linear) of each attention layer, in order."""
    model = encoder.model
    num_layers = encoder.info.num_layers
    enc = getattr(model, "encoder", None)
    layers = getattr(enc, "layer", None)
    if layers is not None and len(layers) and hasattr(layers[0], "attention"):
        attn = layers[0].attention
        if hasattr(getattr(attn, "self", None), "value") and hasattr(getattr(attn, "output", None), "dense"):
            return [(lay.attention.self.value, lay.attention.output.dense) for lay in layers]
    transformer = getattr(model, "transformer", None)
    layers = getattr(transformer, "layer", None)
    if layers is not None and len(layers) and hasattr(getattr(layers[0], "attention", None), "v_lin"):
        return [(lay.attention.v_lin, lay.attention.out_lin) for lay in layers]
    groups = getattr(enc, "albert_layer_groups", None)
    if groups is not None:
        config = model.config
        if any(len(g.albert_layers) != 1 for g in groups):
            raise ValueError(
                "Value-norm weighted attention supports ALBERT models with one layer per group "
                f"(inner_group_num=1); this one has inner_group_num={config.inner_group_num}."
            )
        per_group = num_layers / len(groups)
        picked = [groups[int(i / per_group)].albert_layers[0].attention for i in range(num_layers)]
        return [(att.value, att.dense) for att in picked]
    raise ValueError(
        "Value-norm weighted attention needs each layer's value and output-projection weights; "
        "clsviz knows where they are in BERT, RoBERTa, ELECTRA, DistilBERT and ALBERT models, "
        f"not in '{encoder.info.name}' (model type '{encoder.info.model_type}'). "
        "Use plain attention weights for this model."
    )


def value_weighted_attention(encoder, trace: Trace) -> np.ndarray:
    """Value-norm weighted attention ``||alpha_ij^h f_h(x_j)||`` (Kobayashi et al., 2020).

    ``f_h(x) = (x W_V^h + b_V^h) W_O^h`` is what head h writes for key token x: its value
    vector mapped through the head's slice of the attention output projection (the output
    bias is shared by all tokens and left out). Since alpha >= 0,
    ``||alpha_ij f_h(x_j)|| = alpha_ij * ||f_h(x_j)||``. ``x_j`` is the layer input
    ``trace.hidden_states[l]``, so the model is not run again.

    encoder: the Encoder that produced ``trace``. Returns float32 [L, H, T, T]. Raises
    ValueError for architectures whose value/output weights clsviz cannot locate.
    """
    import torch

    if trace.model_name != encoder.info.name:
        raise ValueError(
            f"The trace was made with '{trace.model_name}' but the encoder is '{encoder.info.name}'."
        )
    pairs = _value_and_output_layers(encoder)
    if len(pairs) != trace.num_layers:
        raise ValueError(f"Found {len(pairs)} attention layers in the model; the trace has {trace.num_layers}.")
    num_heads = trace.num_heads
    norms = np.empty((trace.num_layers, num_heads, trace.seq_len), dtype=np.float32)
    with torch.inference_mode():
        for layer, (value, output) in enumerate(pairs):
            weight = value.weight
            x = torch.as_tensor(trace.hidden_states[layer], device=weight.device, dtype=weight.dtype)
            head_dim = value.out_features // num_heads
            v = value(x).view(trace.seq_len, num_heads, head_dim).float()  # [T, H, d]
            w_o = output.weight.float().view(output.out_features, num_heads, head_dim)  # [D, H, d]
            # ||v_h W_O^h||^2 = v_h G_h v_h^T with G_h = W_O^h^T W_O^h: [H, d, d], cheaper than [H, T, D].
            gram = torch.einsum("dhk,dhm->hkm", w_o, w_o)
            sq = torch.einsum("thk,hkm,thm->ht", v, gram, v).clamp_min_(0.0)
            norms[layer] = sq.sqrt().cpu().numpy()
    return (trace.attentions * norms[:, :, None, :]).astype(np.float32)


def attention_weights(encoder, trace: Trace, kind: str = "attention") -> np.ndarray:
    """float32 [L, H, T, T] weights of ``kind`` (one of :data:`ATTENTION_KINDS`).

    "attention" is ``trace.attentions`` itself; "value-norm" is
    ``normalize_rows(value_weighted_attention(encoder, trace))``.
    """
    if kind == "attention":
        return trace.attentions
    if kind == "value-norm":
        return normalize_rows(value_weighted_attention(encoder, trace))
    raise ValueError(f"Unknown attention kind '{kind}'; choose one of {', '.join(ATTENTION_KINDS)}.")


# --- one summary per trace ----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AttentionSummary:
    """The small derived arrays the Attention page draws, for one Trace and one weight kind.

    * ``tokens``: T strings; ``categories``: int64 [T] into :data:`TOKEN_CATEGORIES`
    * ``to_cls``: float32 [L, H] mean weight on [CLS] over queries (``include_self`` says
      whether the [CLS] query was counted); ``cls_self``: float32 [L, H]
    * ``entropy``: float32 [L, H] entropy of the [CLS] row in nats; ``max_entropy`` = log T
    * ``breakdown``: float32 [L, H, C] share of each token category (mean over queries)
    * ``cls_rows``: float32 [L, H, T] the [CLS] row of every layer and head
    * ``rollout_cls``: float32 [L, T] the [CLS] row of the cumulative rollout
    * ``kind``: one of :data:`ATTENTION_KINDS`
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
    kind: str

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
    trace: Trace, weights: np.ndarray | None = None, include_self: bool = True, kind: str = "attention"
) -> AttentionSummary:
    """Every per-layer/per-head quantity of the Attention page for ``trace``.

    weights: [L, H, T, T] to summarise instead of ``trace.attentions`` (e.g. from
    :func:`attention_weights`); ``kind`` names them. The full T x T maps are not kept.
    """
    a = trace.attentions if weights is None else _check_attentions(weights)
    if a.shape != trace.attentions.shape:
        raise ValueError(f"weights: expected {list(trace.attentions.shape)}, got {list(a.shape)}")
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"Unknown attention kind '{kind}'; choose one of {', '.join(ATTENTION_KINDS)}.")
    cls = trace.cls_index
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
        kind=kind,
    )


# --- tidy tables (one per figure) ---------------------------------------------------------------
def _layer_head_grid(num_layers: int, num_heads: int) -> dict[str, np.ndarray]:
    layer, head = np.meshgrid(np.arange(1, num_layers + 1), np.arange(1, num_heads + 1), indexing="ij")
    return {"layer": layer.ravel(), "head": head.ravel()}


def to_cls_table(summary: AttentionSummary) -> pd.DataFrame:
    """One row per (layer, head): ``attention_to_cls``, ``cls_self_attention``, ``include_self``."""
    df = pd.DataFrame(_layer_head_grid(summary.num_layers, summary.num_heads))
    df["attention_to_cls"] = summary.to_cls.ravel()
    df["cls_self_attention"] = summary.cls_self.ravel()
    df["include_self"] = summary.include_self
    df["kind"] = summary.kind
    return df


def entropy_table(summary: AttentionSummary) -> pd.DataFrame:
    """One row per (layer, head): ``entropy`` (nats), ``max_entropy`` (log T), ``relative`` (ratio)."""
    df = pd.DataFrame(_layer_head_grid(summary.num_layers, summary.num_heads))
    df["entropy"] = summary.entropy.ravel()
    df["max_entropy"] = summary.max_entropy
    df["relative"] = df["entropy"] / summary.max_entropy if summary.max_entropy > 0 else 0.0
    df["kind"] = summary.kind
    return df


def breakdown_table(summary: AttentionSummary, per_head: bool = False) -> pd.DataFrame:
    """One row per (layer[, head], category): ``share`` of attention and ``tokens`` in the category."""
    counts = np.bincount(summary.categories, minlength=len(TOKEN_CATEGORIES))
    if per_head:
        grid = _layer_head_grid(summary.num_layers, summary.num_heads)
        values = summary.breakdown.reshape(-1, len(TOKEN_CATEGORIES))
    else:
        grid = {"layer": np.arange(1, summary.num_layers + 1)}
        values = summary.breakdown.mean(axis=1)
    rows = len(values)
    df = pd.DataFrame({k: np.repeat(v, len(TOKEN_CATEGORIES)) for k, v in grid.items()})
    df["category"] = np.tile(np.array(TOKEN_CATEGORIES, dtype=object), rows)
    df["share"] = values.ravel()
    df["tokens"] = np.tile(counts, rows)
    df["kind"] = summary.kind
    return df


def _token_columns(tokens: Sequence[str], repeat: int) -> dict[str, np.ndarray]:
    return {
        "position": np.tile(np.arange(len(tokens)), repeat),
        "token": np.tile(np.array(tokens, dtype=object), repeat),
    }


def cls_row_table(summary: AttentionSummary, head: int | None = None) -> pd.DataFrame:
    """One row per (layer, token): the ``weight`` [CLS] puts on the token (head 0-based, None = mean)."""
    rows = summary.cls_row(head)
    df = pd.DataFrame({"layer": np.repeat(np.arange(1, summary.num_layers + 1), summary.seq_len)})
    df = df.assign(**_token_columns(summary.tokens, summary.num_layers))
    df["head"] = "mean" if head is None else str(head + 1)
    df["weight"] = rows.ravel()
    df["kind"] = summary.kind
    return df


def rollout_table(summary: AttentionSummary) -> pd.DataFrame:
    """One row per (layer, token): raw [CLS] row (mean over heads) and its cumulative ``rollout``."""
    df = pd.DataFrame({"layer": np.repeat(np.arange(1, summary.num_layers + 1), summary.seq_len)})
    df = df.assign(**_token_columns(summary.tokens, summary.num_layers))
    df["raw"] = summary.cls_row(None).ravel()
    df["rollout"] = summary.rollout_cls.ravel()
    df["kind"] = summary.kind
    return df


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
