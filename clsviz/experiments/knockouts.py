"""Knockout sweep: from which block on does [CLS] still need to read the words?

For each block b, [CLS]'s reads of the content tokens are cut from block b upward (scope
``"from"``) and at block b only (scope ``"only"``); the final [CLS] is compared with its clean
self and read by a probe fitted on clean [CLS] vectors. The same cuts applied to every
token's reads (each token may still read itself and the special tokens) show what mean
pooling loses - the contrast (the encoder analogue of Geva et al. 2023's attention knockout).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..blocks import InterventionError, block_weights, run_block, run_stack
from ..encoder import Encoder
from ..layers import block_input, block_row, later_blocks
from ..metrics import cosine
from ..pooling import pool_hidden
from ..verdicts import estimate
from .causal_runs import CleanProbe, SweepResult, TokenizedBatches, labelled_texts, run_last, ticker

__all__ = ["KNOCKOUT_KEYS", "READINGS", "UNCHANGED_COSINE", "knockout_sweep", "summarize_knockout"]

KNOCKOUT_KEYS = ("others", "content", "special")
"""Named key sets [CLS] may be cut from: every position but itself, the text's tokens, the
other special tokens ([SEP], </s>, ...)."""

READINGS = ("cls", "mean")
"""What the sweep reads at the end: [CLS] with its reads cut, or mean pooling with every
token's reads cut."""

UNCHANGED_COSINE = 0.99
"""A final vector at least this close (cosine) to its clean self counts as unchanged."""


def _cut_keys(batch, keys: str):
    """bool [B, T]: the keys cut for this batch (never [CLS] itself, never padding)."""
    import torch

    rows = torch.arange(batch.ids.shape[0], device=batch.ids.device)
    not_cls = batch.mask.clone()
    not_cls[rows, batch.cls_index] = False
    return {"others": not_cls, "content": batch.mask & ~batch.special, "special": batch.special & not_cls}[keys]


def _blocked(batch, keys: str, reading: str):
    """bool [B, T, T]: True where query i may not read key j."""
    import torch

    cut = _cut_keys(batch, keys)
    n, t = cut.shape
    if reading == "cls":
        blocked = torch.zeros(n, t, t, dtype=torch.bool, device=cut.device)
        blocked[torch.arange(n, device=cut.device), batch.cls_index] = cut
        return blocked
    eye = torch.eye(t, dtype=torch.bool, device=cut.device)
    return cut[:, None, :].expand(n, t, t) & ~eye  # every token keeps reading itself


def _final(last, batch, reading: str):
    """float32 [B, D]: the [CLS] or the mean over real tokens of the last hidden state [B, T, D]."""
    import torch

    if reading == "cls":
        return last[torch.arange(last.shape[0], device=last.device), batch.cls_index].float().cpu().numpy()
    pooled = pool_hidden(last[:, None], batch.mask, batch.special, "mean")
    return pooled[:, 0].float().cpu().numpy()


def _cut_runs(encoder, hidden, batch, blocked, reading: str, cut: dict, step) -> None:
    """Both scopes for every block b: block b runs once with the reads cut, then the later
    blocks run on with the cut (scope "from") and without it (scope "only")."""
    weights = block_weights(encoder)
    num_layers = len(weights)
    for block in range(1, num_layers + 1):
        h = run_block(weights[block_row(block)], hidden[block_input(block)], attention_mask=batch.mask, blocked=blocked)
        later = {b: {"blocked": blocked} for b in later_blocks(block, num_layers)}
        for scope, plan in (("from", later), ("only", {})):
            out = run_last(encoder, h, batch.mask, block, plan)
            cut[(reading, scope, block)][batch.rows] = _final(out, batch, reading)
            step(f"Reads cut ({reading}, {scope} block {block})")


def knockout_sweep(encoder: Encoder, texts: Sequence[str], labels: Sequence | None = None, *, keys: str = "content",
                   folds: int = 5, seed: int = 0, batch_size: int = 64, max_tokens: int | None = None,
                   label_name: str = "label", progress=None, cancel=None) -> SweepResult:  # fmt: skip
    """Cut reads block by block on every text; one row per (reading, scope, block).

    Columns: ``reading`` (cls / mean), ``scope`` (from: blocks b..L; only: block b),
    ``block`` (1..L), ``cosine`` (mean over texts of the final vector's cosine to its clean
    self) with its 95% bootstrap interval over the texts ``cosine_low`` / ``cosine_high``,
    ``one_minus_cos`` (its mean in float64), ``accuracy`` and ``clean_accuracy`` (a
    probe fitted on the clean final vectors of that reading, read out of fold; NaN without
    labels), ``chance``, ``n``. ``keys``: what is cut (default the text's tokens; see
    :data:`KNOCKOUT_KEYS`). ``progress(done, total, message)``; ``cancel`` stops it.
    """
    import torch

    start_time = time.perf_counter()
    if keys not in KNOCKOUT_KEYS:
        raise InterventionError(f"keys={keys!r}: allowed are {', '.join(KNOCKOUT_KEYS)}.")
    labelled = labelled_texts(texts, labels, folds, label_name) if labels is not None else None
    tokens = TokenizedBatches.from_texts(encoder, labelled.texts if labelled else texts, max_tokens)
    num_layers = encoder.info.num_layers
    variants = [(r, s, b) for r in READINGS for s in ("from", "only") for b in range(1, num_layers + 1)]
    batches = list(tokens.batches(encoder, batch_size))
    step = ticker(progress, len(batches) * (1 + len(variants)), cancel, "The knockout sweep")
    dim = encoder.info.hidden_size
    clean = {r: np.zeros((len(tokens), dim), np.float32) for r in READINGS}
    cut = {v: np.zeros((len(tokens), dim), np.float32) for v in variants}
    for batch in batches:
        with torch.inference_mode():
            hidden = run_stack(encoder, batch.ids, attention_mask=batch.mask)
            for r in READINGS:
                clean[r][batch.rows] = _final(hidden[-1], batch, r)
            step("Clean run")
            masks = {r: _blocked(batch, keys, r) for r in READINGS}
            for reading in READINGS:
                _cut_runs(encoder, hidden, batch, masks[reading], reading, cut, step)
    probes = {r: CleanProbe(folds, seed).fit(clean[r], labelled.y) for r in READINGS} if labelled else {}
    rows = []
    for reading, scope, block in variants:
        cos = cosine(cut[(reading, scope, block)], clean[reading]).astype(np.float64)
        found = estimate(cos, seed=seed)
        probe = probes.get(reading)
        rows.append(dict(
            reading=reading, scope=scope, block=block, cosine=found.value, cosine_low=found.low,
            cosine_high=found.high, one_minus_cos=float(np.mean(1.0 - cos)),
            accuracy=probe.accuracy(cut[(reading, scope, block)]) if probe else np.nan,
            clean_accuracy=probe.accuracy(clean[reading]) if probe else np.nan,
            chance=labelled.chance if labelled else np.nan, n=len(tokens),
        ))  # fmt: skip
    table = pd.DataFrame(rows)
    return SweepResult(
        kind="knockout", table=table, finding=summarize_knockout(table), model_name=encoder.name,
        label=labelled.label if labelled else None, n=len(tokens), seconds=time.perf_counter() - start_time,
        messages=(*(labelled.messages if labelled else ()), *tokens.notes()),
    )  # fmt: skip


def _low(rows: pd.DataFrame) -> pd.Series:
    """The lower end of each row's cosine interval (the cosine itself where there is none)."""
    return rows["cosine_low"].fillna(rows["cosine"]) if "cosine_low" in rows.columns else rows["cosine"]


def _said(row: pd.Series) -> str:
    """``"0.812 (95% interval 0.790–0.833)"`` (the interval where the row has one)."""
    low, high = row.get("cosine_low", np.nan), row.get("cosine_high", np.nan)
    if pd.isna(low) or pd.isna(high):
        return f"{row['cosine']:.3f}"
    return f"{row['cosine']:.3f} (95% interval {low:.3f}–{high:.3f})"


def _unchanged_from(rows: pd.DataFrame) -> int | None:
    """The first block b such that cutting from every block >= b leaves the vector unchanged:
    the whole interval of its cosine at or above :data:`UNCHANGED_COSINE`."""
    first = None
    for block, cos in zip(rows["block"][::-1], _low(rows)[::-1]):
        if cos < UNCHANGED_COSINE:
            break
        first = int(block)
    return first


def _accuracy_clause(row: pd.Series, what: str) -> str:
    if pd.isna(row.get("accuracy", np.nan)):
        return ""
    return f" a probe fitted on clean {what} then reads the label at {row['accuracy']:.0%} (clean: {row['clean_accuracy']:.0%})"


def summarize_knockout(table: pd.DataFrame) -> str:
    """One plain sentence of what the model does in a :func:`knockout_sweep` table: the first
    block from which [CLS] no longer needs to read the words, and the mean-pooling contrast."""
    cls = table[(table["reading"] == "cls") & (table["scope"] == "from")].sort_values("block").reset_index(drop=True)
    if cls.empty:
        return "No [CLS] knockout was run."
    last, first_row = int(cls["block"].iloc[-1]), cls.iloc[0]
    b = _unchanged_from(cls)
    if b == 1:
        text = (f"Cut off from the words in every block, [CLS] ends almost where it would anyway (cosine "
                f"{_said(first_row)} to its clean self): this model's final [CLS] does not depend on reading the words.")
    elif b is None:
        text = (f"[CLS] still needs to read the words in the last block: cutting its reads at block {last} alone "
                f"moves its final state to cosine {_said(cls.iloc[-1])} of its clean self.")
    else:
        before = cls[cls["block"] == b - 1].iloc[0]
        text = (f"From block {b} on, [CLS] no longer needs to read the words: cutting its reads from block {b} upward "
                f"leaves its final state at cosine {_said(cls[cls['block'] == b].iloc[0])} of its clean self, "
                f"while cutting them from block {b - 1} upward moves it to {_said(before)}.")
    cut_once = table[(table["reading"] == "cls") & (table["scope"] == "only")]
    only = cut_once[_low(cut_once) < UNCHANGED_COSINE]
    if len(only):
        named = ", ".join(str(int(b)) for b in sorted(only["block"]))
        text += f" Cut at a single block, only block {named} matters{'' if len(only) == 1 else ' each'}."
    elif (table["scope"] == "only").any():
        text += " Cut at any single block, it barely moves."
    clause = _accuracy_clause(first_row, "[CLS]")
    if clause:
        text += f" With every read of the words cut (from block 1),{clause}."
    mean = table[(table["reading"] == "mean") & (table["scope"] == "from") & (table["block"] == cls["block"].iloc[0])]
    if not mean.empty:
        m = mean.iloc[0]
        text += (f" Cutting every token's reads of the other words from block 1 leaves mean pooling at cosine "
                 f"{m['cosine']:.3f}" + (f" and its probe at {m['accuracy']:.0%}" if not pd.isna(m["accuracy"]) else "")
                 + ", a contrast: the words themselves are still there to average.")
    return text
