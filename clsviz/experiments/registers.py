"""Registers: give the model k extra tokens after [CLS] - do they take over the sink?

Darcet et al. (2023) found that vision transformers park attention on a few background
patches and that extra "register" tokens take over that role. :func:`register_sweep` inserts
k = 0..4 tokens after [CLS] (unused vocabulary entries where the vocabulary has them, else
copies of the [CLS]-like token; see :func:`~clsviz.experiments.interventions.register_tokens`)
and measures, per block, where the words' attention goes, and how well a probe reads the
label from the final [CLS].

Inserting k tokens also moves every word k positions to the right. The shift-only control runs
each text with no registers but its words' position ids moved by the same k, so a change that
comes from the shift alone shows beside the registers' (the ``shift_*`` columns).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..blocks import InterventionError, embedding_weights
from ..encoder import Encoder
from ..layers import block_row
from ..metrics import cosine
from ..vectors import padded_batches
from ..verdicts import estimate
from .causal_runs import (
    ROLES,
    CleanProbe,
    SweepResult,
    TokenizedBatches,
    attention_shares,
    labelled_texts,
    run_with_parts,
    ticker,
    token_roles,
)
from .one_sentence import check_register_room, register_tokens

__all__ = ["REGISTER_COUNTS", "check_register_room", "register_sweep", "summarize_registers"]

REGISTER_COUNTS = (0, 1, 2, 3, 4)
"""The numbers of registers tried by default."""


def _check_counts(encoder: Encoder, ks, max_tokens: int | None) -> tuple[list[int], int]:
    """The register counts and the token limit left for each text (special tokens included)."""
    try:
        ks = sorted({int(k) for k in ks})
    except (TypeError, ValueError):
        raise InterventionError("ks: give the numbers of registers as whole numbers, e.g. 0, 1, 2.") from None
    if not ks or ks[0] < 0:
        raise InterventionError(f"ks: give register counts of 0 or more; got {ks}.")
    limit = encoder.info.max_tokens
    room = limit - encoder.tokenizer.num_special_tokens_to_add(pair=False) - 1
    if ks[-1] > room:
        raise InterventionError(
            f"{ks[-1]} registers do not fit: this model reads at most {limit} tokens, so with its special tokens "
            f"and at least one word there is room for {max(room, 0)} register(s). Use fewer registers."
        )
    text_limit = limit - ks[-1] if max_tokens is None else min(int(max_tokens), limit - ks[-1])
    return ks, text_limit


def _with_registers(tokens: TokenizedBatches, reg_ids: list[int]):
    """Per-text ids, special masks and register masks with ``reg_ids`` right after [CLS]."""
    ids, special, registers = [], [], []
    k = len(reg_ids)
    for x, s, at in zip(tokens.ids, tokens.special, tokens.cls_index + 1):
        ids.append(np.concatenate([x[:at], np.asarray(reg_ids, dtype=np.int64), x[at:]]))
        special.append(np.concatenate([s[:at], np.ones(k, bool), s[at:]]))
        registers.append(np.concatenate([np.zeros(at, bool), np.ones(k, bool), np.zeros(len(x) - at, bool)]))
    return ids, special, registers


def _shifted_positions(encoder: Encoder, tokens: TokenizedBatches, k: int) -> list[np.ndarray]:
    """Per text: the model's own position ids with every token after [CLS] moved right by ``k``."""
    offset = embedding_weights(encoder).pad_offset
    start = 0 if offset is None else offset + 1
    out = []
    for x, at in zip(tokens.ids, tokens.cls_index + 1):
        positions = np.arange(start, start + len(x), dtype=np.int64)
        positions[at:] += k
        out.append(positions)
    return out


def _run_condition(encoder, ids, special, registers, positions, cls_index, batch_size, sums, finals, step, label):
    """Run one condition (registers inserted, or positions shifted), adding the words' attention
    per block and role to ``sums`` and writing the final [CLS] of each text into ``finals``."""
    import torch

    for rows, b_ids, mask, b_special, b_positions in padded_batches(encoder, ids, special, batch_size, positions):
        regs = torch.zeros_like(mask)
        for j, r in enumerate(rows):
            regs[j, : len(registers[r])] = torch.as_tensor(registers[r], device=mask.device)
        at = torch.as_tensor(cls_index[rows], device=mask.device)
        roles = token_roles(mask, b_special, at, regs)

        def on_block(block, parts, roles=roles):
            total, count = attention_shares(parts.attn_probs, roles["content"], roles)
            sums[block_row(block)] += np.append(total, count)

        with torch.inference_mode():
            out = run_with_parts(encoder, b_ids, mask, on_block=on_block, position_ids=b_positions)
        finals[rows] = out[-1][torch.arange(len(rows), device=out.device), at].float().cpu().numpy()
        step(label)


def _cut_note(tokens: TokenizedBatches, text_limit: int, k: int) -> tuple[str, ...]:
    n = int(np.sum(tokens.truncated))
    if not n:
        return ()
    room = f" to leave room for {k} register(s)" if k else ""
    return (f"{n} text(s) were cut to {text_limit} tokens{room}.",)


def register_sweep(encoder: Encoder, texts: Sequence[str], labels: Sequence | None = None, *,
                   ks: Sequence[int] = REGISTER_COUNTS, folds: int = 5, seed: int = 0, batch_size: int = 64,
                   max_tokens: int | None = None, label_name: str = "label", progress=None,
                   cancel=None) -> SweepResult:  # fmt: skip
    """Insert k registers after [CLS] for every k in ``ks``; see the module docstring.

    ``table``: one row per ``k`` with ``accuracy`` (a probe fitted and read, out of fold, on
    that k's final [CLS]; NaN without labels), ``cos_to_no_registers`` (final [CLS] against
    the run without registers, when 0 is in ``ks``, mean over the texts, with its 95% interval
    ``cos_low`` / ``cos_high``), ``cls_share`` / ``register_share`` (the words' attention on
    [CLS] / on the registers, mean over blocks), ``tokens`` (which tokens), ``chance``, ``n``,
    and the shift-only control beside them: ``shift_accuracy``, ``shift_cos_to_no_registers``,
    ``shift_cls_share`` (no registers, the words' positions moved by k; at k = 0 the run itself). ``attention``: k, block, role (cls/registers/special/content),
    share. Texts are cut so that the most registers still fit; too many registers for the
    model's length limit raise :class:`~clsviz.blocks.InterventionError`.
    """
    start_time = time.perf_counter()
    ks, text_limit = _check_counts(encoder, ks, max_tokens)
    labelled = labelled_texts(texts, labels, folds, label_name) if labels is not None else None
    tokens = TokenizedBatches.from_texts(encoder, labelled.texts if labelled else texts, text_limit)
    n_batches = -(-len(tokens) // batch_size)
    shifts = [k for k in ks if k > 0]
    step = ticker(progress, n_batches * (len(ks) + len(shifts)), cancel, "The register test")
    num_layers, dim = encoder.info.num_layers, encoder.info.hidden_size
    conditions = [("registers", k) for k in ks] + [("shift", k) for k in shifts]
    sums = {c: np.zeros((num_layers, len(ROLES) + 1)) for c in conditions}
    finals = {c: np.zeros((len(tokens), dim), np.float32) for c in conditions}
    for condition, k in conditions:
        if condition == "registers":
            reg_ids, _ = register_tokens(encoder, k)
            ids, special, registers = _with_registers(tokens, reg_ids)
            positions = None
        else:
            ids, special = tokens.ids, tokens.special
            registers = [np.zeros(len(x), bool) for x in ids]
            positions = _shifted_positions(encoder, tokens, k)
        _run_condition(encoder, ids, special, registers, positions, tokens.cls_index, batch_size,
                       sums[(condition, k)], finals[(condition, k)], step,
                       f"{k} register(s)" if condition == "registers" else f"words shifted by {k}, no registers")  # fmt: skip
    attention = pd.DataFrame([
        dict(k=k, block=b, role=r, share=float(sums[("registers", k)][block_row(b), i] / max(sums[("registers", k)][block_row(b), -1], 1.0)))
        for k in ks for b in range(1, num_layers + 1) for i, r in enumerate(ROLES)
    ])  # fmt: skip
    shares = attention.groupby(["k", "role"])["share"].mean()
    reference = finals.get(("registers", 0))

    def effects(condition, k):
        vectors = finals[(condition, k)]
        cos = estimate(cosine(vectors, reference).astype(np.float64), seed=seed) if reference is not None else None
        total = sums[(condition, k)]
        cls_share = float(np.mean(total[:, 0] / np.maximum(total[:, -1], 1.0)))
        accuracy = CleanProbe(folds, seed).fit(vectors, labelled.y).accuracy(vectors) if labelled else np.nan
        return cos, cls_share, accuracy

    rows = []
    for k in ks:
        cos, cls_share, accuracy = effects("registers", k)
        shift = effects("shift", k) if k > 0 else (cos, cls_share, accuracy)
        rows.append(dict(
            k=k, tokens=register_tokens(encoder, k)[1] if k else "none", accuracy=accuracy,
            cos_to_no_registers=cos.value if cos else np.nan, cos_low=cos.low if cos else np.nan,
            cos_high=cos.high if cos else np.nan, cls_share=float(shares[(k, "cls")]),
            register_share=float(shares[(k, "registers")]), shift_accuracy=shift[2],
            shift_cos_to_no_registers=shift[0].value if shift[0] else np.nan, shift_cls_share=shift[1],
            chance=labelled.chance if labelled else np.nan, n=len(tokens),
        ))  # fmt: skip
    table = pd.DataFrame(rows)
    notes = [f"Registers: {register_tokens(encoder, ks[-1])[1]}."] if ks[-1] else []
    return SweepResult(
        kind="registers", table=table, finding=summarize_registers(table), model_name=encoder.name,
        label=labelled.label if labelled else None, n=len(tokens), seconds=time.perf_counter() - start_time,
        messages=(*(labelled.messages if labelled else ()), *_cut_note(tokens, text_limit, ks[-1]), *notes),
        attention=attention,
    )  # fmt: skip


def summarize_registers(table: pd.DataFrame) -> str:
    """One plain sentence of a :func:`register_sweep` table: with the most registers, does the
    words' attention leave [CLS] for the registers, and does the [CLS] probe change?"""
    rows = table.sort_values("k").reset_index(drop=True)
    if rows.empty:
        return "No register run."
    base, most = rows.iloc[0], rows.iloc[-1]
    k = int(most["k"])
    if k == int(base["k"]):
        return f"With {k} register(s), the words put {most['cls_share']:.0%} of their attention on [CLS] (averaged over blocks)."
    text = (f"With {k} registers the words' attention on [CLS] (averaged over blocks) goes from {base['cls_share']:.0%} "
            f"({int(base['k'])} registers) to {most['cls_share']:.0%}, and the registers take {most['register_share']:.0%}: ")
    if most["register_share"] > most["cls_share"]:
        text += "the registers take over the sink role, as Darcet et al. (2023) found for vision transformers."
    elif most["register_share"] >= 0.1:
        text += "they share the sink role with [CLS]."
    else:
        text += "[CLS] stays the sink."
    if not pd.isna(most["accuracy"]):
        text += f" The [CLS] probe reads the label at {most['accuracy']:.0%}, against {base['accuracy']:.0%} with {int(base['k'])}."
    if "shift_cls_share" in rows.columns and not pd.isna(most.get("shift_cls_share", np.nan)):
        text += (f" Shift-only control (no registers, the words moved {k} positions right): [CLS] gets "
                 f"{most['shift_cls_share']:.0%} of the words' attention")
        if not pd.isna(most.get("shift_cos_to_no_registers", np.nan)):
            text += (f" and the final [CLS] has cosine {most['shift_cos_to_no_registers']:.3f} to the plain run "
                     f"(with the registers: {most['cos_to_no_registers']:.3f})")
        if not pd.isna(most.get("shift_accuracy", np.nan)):
            text += f"; the probe reads {most['shift_accuracy']:.0%}"
        text += ": what the shift alone does, beside what the registers do."
    return text
