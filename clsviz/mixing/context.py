"""Context mixing per block, one measure at a time: what flows into each token, and its rollout.

* :data:`METHODS` - ``"attention"``, ``"value_norm"``, ``"globenc"``, ``"alti"``, ``"value_zeroing"``
* :func:`measure` -> :class:`ContextMixing`: the normalised [L, T, T] matrix and the raw scores
* :func:`contributions` -> float32 [L, T, T] (a :class:`MixingMatrix` that remembers its method)
* :func:`rollout` -> float32 [L, T, T]: the blocks chained
* :func:`cls_row_table`, :func:`block_table`: tidy tables for downloads

Index ``l`` of an [L, ...] array is block ``l + 1``; row ``i`` is the receiving token (that
block's output at position ``i``), column ``j`` the contributing token (the block's input at
``j``). Every row is non-negative and sums to 1; a row whose raw scores are all zero (nothing
measurable flows in) keeps the token itself: weight 1 on the diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..blocks import BlockStructureError, block_weights
from ..layers import block_of_row, check_block
from ..progress import check_cancel
from ..tracing import NoSummaryToken, Trace, no_summary_message
from .decomposition import DEFAULT_BUDGET, block_scores
from .zeroing import BARELY_MIXES, value_zeroing_scores

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "WHOLE_BLOCK",
    "ContextMixing",
    "MixingError",
    "MixingMatrix",
    "block_table",
    "check_method",
    "cls_row_table",
    "contributions",
    "measure",
    "rollout",
    "top_contributors",
]

METHODS = ("attention", "value_norm", "globenc", "alti", "value_zeroing")
"""Context-mixing measures, from raw attention to the whole-block ones."""

METHOD_NAMES = {
    "attention": "raw attention",
    "value_norm": "value-norm ||αf(x)||",
    "globenc": "GlobEnc",
    "alti": "ALTI",
    "value_zeroing": "value zeroing",
}
"""How each measure is named to people."""

WHOLE_BLOCK = ("globenc", "alti", "value_zeroing")
"""Measures that include the residual path (and LayerNorms): :func:`rollout` chains them as
they are. ``attention`` and ``value_norm`` see the attention sublayer only."""

_RAW_UNITS = {
    "attention": "attention weight (mean over heads)",
    "value_norm": "||Σ_h α f_h(x_j)||",
    "globenc": "||part after both LayerNorms||",
    "alti": "L1 proximity of the part to the output",
    "value_zeroing": "1 − cos(output, output with j's values zeroed)",
}


class MixingError(ValueError):
    """A context-mixing measure cannot be computed for this input or model."""


def check_method(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`, else :class:`MixingError` listing them."""
    if method not in METHODS:
        raise MixingError(f"Unknown context-mixing method {method!r}; choose one of {', '.join(METHODS)}.")
    return method


class MixingMatrix(np.ndarray):
    """A float32 [L, T, T] array that remembers the ``method`` it was measured with, so
    :func:`rollout` knows whether to add the residual. Otherwise a plain numpy array."""

    method: str | None = None

    def __array_finalize__(self, obj) -> None:
        self.method = getattr(obj, "method", None)


@dataclass(frozen=True, eq=False)
class ContextMixing:
    """One measure of context mixing for one Trace (L blocks, T tokens).

    * ``matrix``: float32 [L, T, T], rows non-negative and summing to 1
    * ``raw``: float64 [L, T, T], the scores before normalisation (units in :attr:`raw_units`)
    * ``tokens``, ``special_mask`` (bool [T]), ``cls_index``: the Trace's (None for a model
      pretrained without a summary token: then a row must be named, see :meth:`position`)
    """

    method: str
    matrix: np.ndarray
    raw: np.ndarray
    tokens: tuple[str, ...]
    special_mask: np.ndarray
    cls_index: int | None
    model_name: str

    @property
    def num_layers(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def raw_units(self) -> str:
        return _RAW_UNITS[self.method]

    def position(self, index: int | None = None) -> int:
        """``index``, or [CLS]'s position when it is None (:class:`~clsviz.tracing.NoSummaryToken`
        when the model has no summary token)."""
        if index is not None:
            return int(index)
        if self.cls_index is None:
            raise NoSummaryToken(no_summary_message("What flows into [CLS]", self.model_name))
        return self.cls_index

    def row(self, index: int | None = None) -> np.ndarray:
        """float32 [L, T]: what token ``index`` (default [CLS]) takes in at each block."""
        return self.matrix[:, self.position(index), :]

    def raw_magnitude(self, index: int | None = None) -> np.ndarray:
        """float64 [L]: the largest raw score of row ``index`` (default [CLS]) from another token,
        per block: how strongly anything else mixes into that token before normalisation."""
        i = self.position(index)
        others = np.arange(self.matrix.shape[-1]) != i
        row = self.raw[:, i, others]
        return row.max(axis=-1) if row.shape[-1] else np.zeros(self.num_layers)

    def barely_mixes(self, index: int | None = None) -> np.ndarray:
        """bool [L]: blocks whose value-zeroing scores into token ``index`` (default [CLS]) all
        stay below :data:`BARELY_MIXES`; all False for the other measures (no absolute scale)."""
        if self.method != "value_zeroing":
            return np.zeros(self.num_layers, dtype=bool)
        return self.raw_magnitude(index) < BARELY_MIXES

    def rollout(self) -> np.ndarray:
        """float32 [L, T, T]: :func:`rollout` of :attr:`matrix` for this measure."""
        return rollout(self.matrix, self.method)


def _normalise(raw: np.ndarray) -> np.ndarray:
    """float32 rows summing to 1; an all-zero row puts its weight on the diagonal."""
    raw = np.clip(np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0, posinf=0.0), 0.0, None)
    total = raw.sum(axis=-1, keepdims=True)
    eye = np.broadcast_to(np.eye(raw.shape[-1]), raw.shape)
    out = np.where(total > 0, raw / np.where(total > 0, total, 1.0), eye)
    return out.astype(np.float32)


def _decomposed(encoder, trace: Trace, method: str, progress, cancel, budget: int) -> np.ndarray:

    weights = block_weights(encoder)
    raw = np.zeros((trace.num_layers, trace.seq_len, trace.seq_len))
    for layer in range(trace.num_layers):
        check_cancel(cancel, METHOD_NAMES[method])
        scores = block_scores(weights[layer], trace.hidden_states[layer], trace.attentions[layer], (method,), budget)
        raw[layer] = scores[method]
        if progress is not None:
            progress(block_of_row(layer), trace.num_layers, f"{METHOD_NAMES[method]}: block {block_of_row(layer)} of {trace.num_layers}")
    return raw


def measure(encoder, trace: Trace, method: str, *, progress=None, cancel=None,
            budget: int = DEFAULT_BUDGET) -> ContextMixing:  # fmt: skip
    """Context mixing of ``trace`` by ``method`` (one of :data:`METHODS`).

    ``encoder`` is the Encoder that made ``trace``. Value zeroing runs entirely in float64; the
    decomposed measures (value norm, GlobEnc, ALTI) read the trace's own attention weights and
    hidden states and decompose in float64. ``budget``: bytes of scratch memory per
    chunk (long inputs are split into chunks of receiving tokens or of reruns). ``progress``
    and ``cancel`` follow :mod:`clsviz.progress`. Raises :class:`MixingError` (a ValueError)
    for an unknown method, a trace of another model, or a model whose blocks clsviz cannot
    run (every method except ``"attention"`` needs them).
    """

    check_method(method)
    if trace.info.name != encoder.info.name or trace.info.num_layers != encoder.info.num_layers:
        raise MixingError(
            f"This trace was made with '{trace.info.name}', not with '{encoder.info.name}'. "
            "Trace the text with the encoder whose mixing you measure."
        )
    if method == "attention":
        raw = trace.attentions.mean(axis=1, dtype=np.float64)
    else:
        try:
            if method == "value_zeroing":
                raw = value_zeroing_scores(encoder, trace, progress=progress, cancel=cancel, budget=budget)
            else:
                raw = _decomposed(encoder, trace, method, progress, cancel, budget)
        except BlockStructureError as exc:
            raise MixingError(f"{METHOD_NAMES[method]} runs the model's blocks from their weights, and {exc}") from exc
    return ContextMixing(
        method=method,
        matrix=_normalise(raw),
        raw=raw,
        tokens=tuple(trace.tokens),
        special_mask=np.asarray(trace.special_mask, dtype=bool),
        cls_index=None if trace.cls_index is None else int(trace.cls_index),
        model_name=trace.model_name,
    )


def contributions(encoder, trace: Trace, method: str, **options) -> MixingMatrix:
    """float32 [L, T, T]: ``measure(encoder, trace, method, **options).matrix``.

    Index ``l`` is block ``l + 1``; row ``i`` the receiving token, column ``j`` the
    contributing one; non-negative, every row sums to 1. The array remembers ``method`` so
    ``rollout(contributions(...))`` adds the residual only where the measure lacks it.
    """
    out = measure(encoder, trace, method, **options).matrix.view(MixingMatrix)
    out.method = method
    return out


def rollout(matrix, method: str | None = None, residual: float | None = None) -> np.ndarray:
    """float32 [L, T, T]: the blocks chained, ``R_1 = A_1``, ``R_l = A_l @ R_{l-1}``.

    Row i of ``R_l`` is how much each input token (embedding position j) has flowed into token
    i's state after block l. ``A_l = (1 - r) M_l + r I`` with the residual share ``r``:

    * ``"attention"`` and ``"value_norm"`` see the attention sublayer only, so ``r = 0.5``
      stands for the residual path (Abnar & Zuidema 2020); for ``"attention"`` this equals
      :func:`clsviz.attention.rollout` of the trace's attentions;
    * ``"globenc"``, ``"alti"``, ``"value_zeroing"`` measure the whole block, residual and
      LayerNorms included, so ``r = 0``: the matrices are chained as they are (as those papers do).

    ``method`` defaults to the one a :class:`MixingMatrix` remembers; with neither, ``r = 0``.
    ``residual`` overrides ``r`` (0..1).
    """
    method = method if method is not None else getattr(matrix, "method", None)
    if method is not None:
        check_method(method)
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 3 or m.shape[1] != m.shape[2]:
        raise MixingError(f"rollout needs an [L, T, T] array of per-block contributions; got shape {list(m.shape)}.")
    if residual is None:
        residual = 0.0 if method is None or method in WHOLE_BLOCK else 0.5
    if not 0.0 <= residual <= 1.0:
        raise MixingError(f"residual must be between 0 and 1, got {residual}.")
    factors = (1.0 - residual) * m + residual * np.eye(m.shape[-1])
    factors /= np.where(factors.sum(axis=-1, keepdims=True) > 0, factors.sum(axis=-1, keepdims=True), 1.0)
    out = np.empty_like(factors)
    joint = np.eye(m.shape[-1])
    for layer in range(m.shape[0]):
        joint = factors[layer] @ joint
        out[layer] = joint
    return out.astype(np.float32)


def cls_row_table(mix: ContextMixing, index: int | None = None) -> pd.DataFrame:
    """Tidy table of the [CLS] row (or row ``index``): one row per (block, contributing token)
    with ``share`` (normalised), ``raw`` (before normalisation) and ``rollout``."""
    i = mix.position(index)
    num_layers, seq_len = mix.num_layers, len(mix.tokens)
    return pd.DataFrame(
        {
            "model": mix.model_name,
            "method": mix.method,
            "block": np.repeat(np.arange(1, num_layers + 1), seq_len),
            "receiving_position": i,
            "position": np.tile(np.arange(seq_len), num_layers),
            "token": np.tile(np.array(mix.tokens, dtype=object), num_layers),
            "share": mix.matrix[:, i, :].ravel().astype(np.float64),
            "raw": mix.raw[:, i, :].ravel(),
            "rollout": mix.rollout()[:, i, :].ravel().astype(np.float64),
        }
    )


def block_table(mix: ContextMixing, block: int) -> pd.DataFrame:
    """Tidy token x token table of block ``block`` (1..L): ``receiving_position``,
    ``receiving_token``, ``position``, ``token``, ``share``, ``raw``."""

    b = check_block(block, mix.num_layers) - 1
    seq_len = len(mix.tokens)
    tokens = np.array(mix.tokens, dtype=object)
    return pd.DataFrame(
        {
            "method": mix.method,
            "block": block_of_row(b),
            "receiving_position": np.repeat(np.arange(seq_len), seq_len),
            "receiving_token": np.repeat(tokens, seq_len),
            "position": np.tile(np.arange(seq_len), seq_len),
            "token": np.tile(tokens, seq_len),
            "share": mix.matrix[b].ravel().astype(np.float64),
            "raw": mix.raw[b].ravel(),
        }
    )


def top_contributors(mix: ContextMixing, k: int = 3, index: int | None = None) -> list[tuple[int, str, float]]:
    """The ``k`` input tokens with the largest share in the rollout row of token ``index``
    (default [CLS]) after the last block: ``(position, token, share)``, largest first."""
    i = mix.position(index)
    row = mix.rollout()[-1, i]
    order = np.argsort(-row, kind="stable")[: max(0, int(k))]
    return [(int(j), mix.tokens[j], float(row[j])) for j in order]
