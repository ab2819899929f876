"""Context mixing: how much each token contributes to each token's next state, block by block.

Raw attention weights ignore the size of what a head copies, the residual stream and the
LayerNorms. This package measures context mixing from raw attention up to whole-block
measures, for one Trace:

* :func:`contributions` (``enc, trace, method``) -> float32 [L, T, T]; :func:`measure` -> a
  :class:`ContextMixing` with the raw scores too; :func:`rollout` chains the blocks
* methods (:data:`METHODS`): ``"attention"`` (mean over heads), ``"value_norm"`` (Kobayashi et
  al. 2020), ``"globenc"`` (Modarressi et al. 2022), ``"alti"`` (Ferrando et al. 2022),
  ``"value_zeroing"`` (Mohebbi et al. 2023) - defined in :mod:`.decomposition` and
  :mod:`.zeroing`
* per head (:mod:`.headwise`): :data:`ATTENTION_METHODS` / :func:`attention_weights` and
  :func:`value_weighted_attention`, [L, H, T, T], used by the Attention page

>>> from clsviz import load_encoder, trace, mixing
>>> enc = load_encoder()
>>> t = trace(enc, "The cat chased the dog.")
>>> M = mixing.contributions(enc, t, "alti")          # [L, T, T], rows sum to 1
>>> mixing.rollout(M)[-1, t.cls_index]                # what reached [CLS] after the last block
"""

from .context import (
    METHOD_NAMES,
    METHODS,
    WHOLE_BLOCK,
    ContextMixing,
    MixingError,
    MixingMatrix,
    block_table,
    check_method,
    cls_row_table,
    contributions,
    measure,
    rollout,
    top_contributors,
)
from .decomposition import DEFAULT_BUDGET, BlockDecomposition, decompose_block
from .headwise import ATTENTION_METHODS, attention_weights, check_attention_method, value_weighted_attention
from .zeroing import BARELY_MIXES, reruns_per_chunk

__all__ = [
    "ATTENTION_METHODS",
    "BARELY_MIXES",
    "DEFAULT_BUDGET",
    "METHODS",
    "METHOD_NAMES",
    "WHOLE_BLOCK",
    "BlockDecomposition",
    "ContextMixing",
    "MixingError",
    "MixingMatrix",
    "attention_weights",
    "block_table",
    "check_attention_method",
    "check_method",
    "cls_row_table",
    "contributions",
    "decompose_block",
    "measure",
    "reruns_per_chunk",
    "rollout",
    "top_contributors",
    "value_weighted_attention",
]
