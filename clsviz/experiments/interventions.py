"""Causal tests on [CLS]: cut what it reads, swap it between sentences, ablate heads, zero the
massive dimensions, give the model registers - and see what changes.

One sentence at a time (:mod:`clsviz.experiments.one_sentence`, re-exported here):

* :func:`knockout` - float32 [L+1, D]: [CLS] when its query may not read some keys in some blocks
* :func:`patch_cls` - float32 [L+1, D]: the target's [CLS] after the source's is put in its place
* :func:`ablate_heads` - a :class:`~clsviz.tracing.Trace` of the run with (block, head)s ablated
* :func:`ablate_dimensions` - a Trace with the massive dimensions of the special tokens zeroed
  or set to their corpus mean at one layer
* :func:`add_registers` - a Trace of the sentence with k extra tokens after [CLS]
* :func:`head_means`, :func:`dimension_means` - the corpus means the "mean" modes use

On a corpus (tidy tables with progress and cancel, each with one plain sentence of what the
model does; re-exported here): :func:`knockout_sweep`, :func:`patching_sweep`,
:func:`head_sweep`, :func:`massive_sweep`, :func:`register_sweep`.

Layers follow :mod:`clsviz.layers`: hidden-state index 0 = embeddings, l = after block l;
blocks are numbered 1..L; heads are 0-based indexes (shown as 1..H to people). Every run
drives the blocks from the model's weights (:mod:`clsviz.blocks`) with per-call masks and
knobs: the shared model is never changed, so other threads may trace it meanwhile.
"""

from __future__ import annotations

from ..blocks import InterventionError
from .causal_runs import MEAN_SAMPLE, demo_sample
from .head_ablation import HEAD_ROLE_RULE, classify_heads, head_sweep, summarize_heads
from .knockouts import KNOCKOUT_KEYS, knockout_sweep, summarize_knockout
from .one_sentence import (
    HEAD_MODES,
    ablate_dimensions,
    ablate_heads,
    add_registers,
    check_dimension_means,
    dimension_means,
    head_means,
    head_plan,
    knockout,
    patch_cls,
    register_tokens,
    resolve_head_means,
)
from .patching import (
    REFERENCE_SOURCES,
    patch_profile,
    patching_sweep,
    summarize_patch_profile,
    summarize_patching,
)
from .registers import REGISTER_COUNTS, check_register_room, register_sweep, summarize_registers
from .sink_dimensions import MASSIVE_RATIO, find_massive_dimensions, massive_sweep, summarize_massive

__all__ = [
    "HEAD_MODES",
    "HEAD_ROLE_RULE",
    "KNOCKOUT_KEYS",
    "MASSIVE_RATIO",
    "MEAN_SAMPLE",
    "REFERENCE_SOURCES",
    "REGISTER_COUNTS",
    "InterventionError",
    "ablate_dimensions",
    "ablate_heads",
    "add_registers",
    "check_register_room",
    "check_dimension_means",
    "classify_heads",
    "demo_sample",
    "dimension_means",
    "find_massive_dimensions",
    "head_means",
    "head_plan",
    "head_sweep",
    "knockout",
    "knockout_sweep",
    "massive_sweep",
    "patch_cls",
    "patch_profile",
    "patching_sweep",
    "register_sweep",
    "register_tokens",
    "resolve_head_means",
    "summarize_heads",
    "summarize_knockout",
    "summarize_massive",
    "summarize_patch_profile",
    "summarize_patching",
    "summarize_registers",
]
