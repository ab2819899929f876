"""Head ablation: every (block, head) ablated one at a time, against the attention-to-[CLS] map.

A head that parks the other tokens' attention on [CLS] but whose ablation leaves the final
[CLS] where it was is a *sink*, not an aggregator (Clark et al. 2019; Xiao et al. 2023). The
sweep measures, per head, how far its ablation moves the final [CLS] (and a probe's accuracy),
and how much attention the head pays to [CLS] and [CLS] pays to the words in the clean run;
:func:`classify_heads` then names each head by the rule :data:`HEAD_ROLE_RULE`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..blocks import run_stack
from ..encoder import Encoder
from ..layers import block_input, block_row
from ..metrics import cosine
from ..verdicts import estimate
from .causal_runs import (
    CleanProbe,
    SweepResult,
    TokenizedBatches,
    labelled_texts,
    run_last,
    run_with_parts,
    ticker,
)
from .one_sentence import HEAD_MODES, InterventionError, resolve_head_means

__all__ = ["HEAD_ROLES", "HEAD_ROLE_RULE", "PARK_SHARE", "READ_SHARE", "classify_heads", "head_sweep", "summarize_heads"]

PARK_SHARE = 0.3
"""A head parks on [CLS] when the other tokens put at least this share of their attention on it."""
READ_SHARE = 0.3
"""[CLS] reads the words through a head when it puts at least this share of its attention on them."""
MATTERS_TIMES_MEDIAN = 2.0
"""A head matters when its ablation moves the final [CLS] at least this many times as far as the median head's."""

HEAD_ROLES = ("aggregator", "sink", "important", "minor")
HEAD_ROLE_RULE = (
    f"A head matters when ablating it moves the final [CLS] (1 - cosine) at least {MATTERS_TIMES_MEDIAN:g} times "
    f"as far as the median head does. Aggregator: it matters and [CLS] puts at least {READ_SHARE:.0%} of its "
    f"attention on the words in it. Sink: the other tokens put at least {PARK_SHARE:.0%} of their attention on "
    "[CLS] in it, yet it does not matter. Important: it matters without being an aggregator. Minor: the rest."
)
"""The rule of :func:`classify_heads`, in words (pages and captions quote it)."""

TOKEN_BUDGET = 8192
"""Rows x tokens per ablated run: the heads of a block are run side by side up to this size."""


def classify_heads(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (columns ``effect``, ``attention_to_cls``, ``cls_reads_content``) with a
    ``matters`` and a ``role`` column added by :data:`HEAD_ROLE_RULE`."""
    effect = table["effect"].to_numpy(dtype=float)
    matters = (effect >= MATTERS_TIMES_MEDIAN * float(np.median(effect))) & (effect > 0)
    reads = table["cls_reads_content"].to_numpy(dtype=float) >= READ_SHARE
    parks = table["attention_to_cls"].to_numpy(dtype=float) >= PARK_SHARE
    role = np.where(matters & reads, "aggregator", np.where(parks & ~matters, "sink", np.where(matters, "important", "minor")))
    return table.assign(matters=matters, role=role)


def _clean_pass(encoder, batch, stats):
    """The clean run of a batch: final [CLS] [B, D]; adds head attention sums and head contexts to ``stats``."""
    import torch

    rows = torch.arange(len(batch.rows), device=batch.ids.device)
    queries = batch.mask.clone()
    queries[rows, batch.cls_index] = False  # the other tokens' attention to [CLS]
    content = (batch.mask & ~batch.special).to(torch.float64)
    weight = batch.mask.to(torch.float64)[:, None, :, None]

    def on_block(block, parts):
        probs = parts.attn_probs.to(torch.float64)  # [B, H, T, T]
        to_cls = probs[rows, :, :, batch.cls_index]  # [B, H, T] each query's weight on its [CLS]
        stats["to_cls"][block_row(block)] += (to_cls * queries[:, None, :]).sum(dim=(0, 2)).cpu()
        cls_row = probs[rows, :, batch.cls_index, :]  # [B, H, T]
        stats["reads"][block_row(block)] += (cls_row * content[:, None, :]).sum(dim=(0, 2)).cpu()
        stats["context"][block_row(block)] += (parts.context.to(torch.float64) * weight).sum(dim=(0, 2)).cpu()

    with torch.inference_mode():
        hidden = run_with_parts(encoder, batch.ids, batch.mask, on_block=on_block)
    stats["queries"] += float(queries.sum())
    stats["tokens"] += float(batch.mask.sum())
    stats["texts"] += len(batch.rows)
    return hidden, hidden[-1][rows, batch.cls_index].float().cpu().numpy()


def _ablated_finals(encoder, batch, hidden, block: int, heads: Sequence[int], means) -> np.ndarray:
    """float32 [len(heads), B, D]: the final [CLS] with each head of ``heads`` in ``block``
    ablated in turn (one copy of the batch per head, run side by side from block ``block``)."""
    import torch

    info = encoder.info
    n, g, dh = len(batch.rows), len(heads), info.hidden_size // info.num_heads
    scale = torch.ones(g, n, info.num_heads, dtype=hidden.dtype, device=hidden.device)
    bias = torch.zeros(g, n, info.num_heads, dh, dtype=hidden.dtype, device=hidden.device)
    for i, head in enumerate(heads):
        scale[i, :, head] = 0.0
        if means is not None:
            bias[i, :, head] = torch.as_tensor(means[block_row(block), head], dtype=hidden.dtype, device=hidden.device)
    start = hidden[block_input(block)].repeat(g, 1, 1)
    knobs = {block: {"head_scale": scale.reshape(g * n, -1), "head_bias": bias.reshape(g * n, info.num_heads, dh)}}
    with torch.inference_mode():
        out = run_last(encoder, start, batch.mask.repeat(g, 1), block_input(block), knobs)
    last = out.reshape(g, n, *out.shape[-2:])
    rows = torch.arange(n, device=last.device)
    return last[:, rows, batch.cls_index].float().cpu().numpy()


def head_sweep(encoder: Encoder, texts: Sequence[str], labels: Sequence | None = None, *, mode: str = "mean",
               mean_from=None, folds: int = 5, seed: int = 0, batch_size: int = 32, max_tokens: int | None = None,
               label_name: str = "label", progress=None, cancel=None) -> SweepResult:  # fmt: skip
    """Ablate every (block, head) alone on every text; one row per (block, head).

    Columns: ``block`` (1..L), ``head`` (0-based index), ``effect`` (mean 1 - cosine of the
    final [CLS] to its clean self, float64), ``cosine`` (mean) with its 95% bootstrap interval over
    the texts ``cosine_low`` / ``cosine_high``, ``accuracy`` / ``clean_accuracy`` /
    ``accuracy_drop`` (a probe fitted on clean final [CLS], read out of fold; NaN without
    labels), ``attention_to_cls`` (the other tokens' mean attention on [CLS], clean run),
    ``cls_reads_content`` ([CLS]'s attention on the words), ``matters``, ``role``
    (:func:`classify_heads`), ``mode``, ``n``. ``mode``: ``"mean"`` (default, the head's
    output replaced by its mean over ``mean_from`` - texts or the [L, H, dh] array of
    :func:`~clsviz.experiments.interventions.head_means`; default: these texts) or ``"zero"``.
    """
    start_time = time.perf_counter()
    if mode not in HEAD_MODES:
        raise InterventionError(f"mode={mode!r}: allowed are {', '.join(HEAD_MODES)}.")
    labelled = labelled_texts(texts, labels, folds, label_name) if labels is not None else None
    tokens = TokenizedBatches.from_texts(encoder, labelled.texts if labelled else texts, max_tokens)
    info = encoder.info
    num_layers, num_heads, dim = info.num_layers, info.num_heads, info.hidden_size
    batches = list(tokens.batches(encoder, batch_size))
    step = ticker(progress, len(batches) * (1 + num_layers), cancel, "The head ablation")
    import torch

    stats = {k: torch.zeros(num_layers, num_heads, dtype=torch.float64) for k in ("to_cls", "reads")}
    stats.update(context=torch.zeros(num_layers, num_heads, dim // num_heads, dtype=torch.float64),
                 queries=0.0, tokens=0.0, texts=0)  # fmt: skip
    clean = np.zeros((len(tokens), dim), np.float32)
    for batch in batches:
        _, clean[batch.rows] = _clean_pass(encoder, batch, stats)
        step("Clean runs")
    means = None
    if mode == "mean":
        own = (stats["context"] / max(stats["tokens"], 1.0)).numpy().astype(np.float32)
        means = own if mean_from is None else resolve_head_means(encoder, mean_from, max_tokens)
    ablated = np.zeros((num_layers, num_heads, len(tokens), dim), np.float32)
    for batch in batches:
        with torch.inference_mode():
            hidden = run_stack(encoder, batch.ids, attention_mask=batch.mask)
        group = max(1, min(num_heads, TOKEN_BUDGET // max(1, batch.ids.numel())))
        for block in range(1, num_layers + 1):
            for lo in range(0, num_heads, group):
                heads = list(range(lo, min(num_heads, lo + group)))
                ablated[block_row(block), heads[0] : heads[-1] + 1][:, batch.rows] = _ablated_finals(
                    encoder, batch, hidden, block, heads, means
                )
            step(f"Ablating the heads of block {block}")
    probe = CleanProbe(folds, seed).fit(clean, labelled.y) if labelled else None
    clean_accuracy = probe.accuracy(clean) if probe else np.nan
    rows = []
    for block in range(1, num_layers + 1):
        for head in range(num_heads):
            cos = cosine(ablated[block_row(block), head], clean).astype(np.float64)
            found = estimate(cos, seed=seed)
            accuracy = probe.accuracy(ablated[block_row(block), head]) if probe else np.nan
            rows.append(dict(
                block=block, head=head, effect=float(np.mean(1.0 - cos)), cosine=found.value, cosine_low=found.low,
                cosine_high=found.high,
                accuracy=accuracy, clean_accuracy=clean_accuracy, accuracy_drop=clean_accuracy - accuracy,
                attention_to_cls=float(stats["to_cls"][block_row(block), head] / max(stats["queries"], 1.0)),
                cls_reads_content=float(stats["reads"][block_row(block), head] / max(stats["texts"], 1)),
                mode=mode, n=len(tokens),
            ))  # fmt: skip
    table = classify_heads(pd.DataFrame(rows))
    return SweepResult(
        kind="heads", table=table, finding=summarize_heads(table), model_name=encoder.name,
        label=labelled.label if labelled else None, n=len(tokens), seconds=time.perf_counter() - start_time,
        messages=(*(labelled.messages if labelled else ()), *tokens.notes()),
    )  # fmt: skip


def summarize_heads(table: pd.DataFrame) -> str:
    """One plain sentence of a :func:`head_sweep` table: the head that matters most, and how
    many heads that park attention on [CLS] are sinks rather than aggregators."""
    if table.empty:
        return "No head was ablated."
    if "role" not in table.columns:
        table = classify_heads(table)
    top = table.loc[table["effect"].idxmax()]
    mode = str(table["mode"].iloc[0]) if "mode" in table.columns else "mean"
    interval = "" if pd.isna(top.get("cosine_low", np.nan)) else f", 95% interval {top['cosine_low']:.3f}–{top['cosine_high']:.3f}"
    text = (f"Ablating one head at a time ({mode} ablation), block {int(top['block'])} head {int(top['head']) + 1} moves "
            f"the final [CLS] most (cosine {top['cosine']:.3f}{interval} to its clean self")
    if not pd.isna(top.get("accuracy", np.nan)):
        text += f"; probe {top['accuracy']:.0%} vs {top['clean_accuracy']:.0%} clean"
    text += ")."
    parks = table[table["attention_to_cls"] >= PARK_SHARE]
    sinks, aggregators = table[table["role"] == "sink"], table[table["role"] == "aggregator"]
    if len(parks):
        text += (f" Of the {len(parks)} heads that park at least {PARK_SHARE:.0%} of the attention on [CLS], "
                 f"{len(parks[parks['role'] == 'sink'])} change it little when ablated: sinks, not aggregators.")
    if len(aggregators):
        blocks = aggregators["block"].value_counts()
        text += (f" {len(aggregators)} head(s) are aggregators, where [CLS] reads the words and ablation matters "
                 f"(most in block {int(blocks.index[0])}).")
    elif not len(sinks):
        text += " No head is a clear sink or aggregator by this rule."
    return text
