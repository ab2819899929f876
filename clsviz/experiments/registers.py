"""Registers: give the model k extra tokens after [CLS] - do they take over the sink?

Darcet et al. (2023) found that vision transformers park attention on a few background
patches and that extra "register" tokens take over that role. :func:`register_sweep` inserts
k = 0..4 tokens after [CLS] (unused vocabulary entries where the vocabulary has them, else
copies of the [CLS]-like token; see :func:`~clsviz.experiments.interventions.register_tokens`)
and measures, per block, where the words' attention goes, and how well a probe reads the
label from the final [CLS].
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..blocks import InterventionError
from ..encoder import Encoder
from ..metrics import cosine
from ..vectors import padded_batches
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

__all__ = ["REGISTER_COUNTS", "check_register_room", "register_sweep", "summarize_registers"]

REGISTER_COUNTS = (0, 1, 2, 3, 4)
"""The numbers of registers tried by default."""


def check_register_room(encoder: Encoder, num_tokens: int, k: int) -> None:
    """Raise :class:`~clsviz.blocks.InterventionError` when ``k`` registers after [CLS] would take
    a text of ``num_tokens`` tokens (special tokens included) past the model's length limit."""
    limit = encoder.info.max_length
    if num_tokens + k > limit:
        raise InterventionError(
            f"{k} register(s) after [CLS] make {num_tokens + k} tokens, more than this model's limit of {limit}. "
            f"Use at most {max(0, limit - num_tokens)} register(s) or a shorter text."
        )


def _check_counts(encoder: Encoder, ks, max_length: int | None) -> tuple[list[int], int]:
    """The register counts and the token limit left for each text (special tokens included)."""
    try:
        ks = sorted({int(k) for k in ks})
    except (TypeError, ValueError):
        raise InterventionError("ks: give the numbers of registers as whole numbers, e.g. 0, 1, 2.") from None
    if not ks or ks[0] < 0:
        raise InterventionError(f"ks: give register counts of 0 or more; got {ks}.")
    limit = encoder.info.max_length
    room = limit - encoder.tokenizer.num_special_tokens_to_add(pair=False) - 1
    if ks[-1] > room:
        raise InterventionError(
            f"{ks[-1]} registers do not fit: this model reads at most {limit} tokens, so with its special tokens "
            f"and at least one word there is room for {max(room, 0)} register(s). Use fewer registers."
        )
    text_limit = limit - ks[-1] if max_length is None else min(int(max_length), limit - ks[-1])
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


def _cut_note(tokens: TokenizedBatches, text_limit: int, k: int) -> tuple[str, ...]:
    n = int(np.sum(tokens.truncated))
    if not n:
        return ()
    room = f" to leave room for {k} register(s)" if k else ""
    return (f"{n} text(s) were cut to {text_limit} tokens{room}.",)


def register_sweep(encoder: Encoder, texts: Sequence[str], labels: Sequence | None = None, *,
                   ks: Sequence[int] = REGISTER_COUNTS, folds: int = 5, seed: int = 0, batch_size: int = 64,
                   max_length: int | None = None, label_name: str = "label", progress=None,
                   cancel=None) -> SweepResult:  # fmt: skip
    """Insert k registers after [CLS] for every k in ``ks``; see the module docstring.

    ``table``: one row per ``k`` with ``accuracy`` (a probe fitted and read, out of fold, on
    that k's final [CLS]; NaN without labels), ``cos_to_no_registers`` (final [CLS] against
    the run without registers, when 0 is in ``ks``), ``cls_share`` / ``register_share`` (the
    words' attention on [CLS] / on the registers, mean over blocks), ``tokens`` (which
    tokens), ``chance``, ``n``. ``attention``: k, block, role (cls/registers/special/content),
    share. Texts are cut so that the most registers still fit; too many registers for the
    model's length limit raise :class:`~clsviz.blocks.InterventionError`.
    """
    import torch

    from .interventions import register_tokens

    start_time = time.perf_counter()
    ks, text_limit = _check_counts(encoder, ks, max_length)
    labelled = labelled_texts(texts, labels, folds, label_name) if labels is not None else None
    tokens = TokenizedBatches.from_texts(encoder, labelled.texts if labelled else texts, text_limit)
    n_batches = -(-len(tokens) // batch_size)
    step = ticker(progress, n_batches * len(ks), cancel, "The register test")
    num_layers, dim = encoder.info.num_layers, encoder.info.hidden_size
    sums = {k: np.zeros((num_layers, len(ROLES) + 1)) for k in ks}
    finals = {k: np.zeros((len(tokens), dim), np.float32) for k in ks}
    for k in ks:
        reg_ids, _ = register_tokens(encoder, k)
        ids, special, registers = _with_registers(tokens, reg_ids)
        for rows, b_ids, mask, b_special, _ in padded_batches(encoder, ids, special, batch_size):
            regs = torch.zeros_like(mask)
            for j, r in enumerate(rows):
                regs[j, : len(registers[r])] = torch.as_tensor(registers[r], device=mask.device)
            cls_index = torch.as_tensor(tokens.cls_index[rows], device=mask.device)
            roles = token_roles(mask, b_special, cls_index, regs)

            def on_block(block, parts, roles=roles, k=k):
                total, count = attention_shares(parts.attn_probs, roles["content"], roles)
                sums[k][block - 1] += np.append(total, count)

            with torch.inference_mode():
                out = run_with_parts(encoder, b_ids, mask, on_block=on_block)
            at = torch.arange(len(rows), device=out.device)
            finals[k][rows] = out[-1][at, cls_index].float().cpu().numpy()
            step(f"{k} register(s)")
    attention = pd.DataFrame([
        dict(k=k, block=b, role=r, share=float(sums[k][b - 1, i] / max(sums[k][b - 1, -1], 1.0)))
        for k in ks for b in range(1, num_layers + 1) for i, r in enumerate(ROLES)
    ])  # fmt: skip
    shares = attention.groupby(["k", "role"])["share"].mean()
    rows = []
    for k in ks:
        rows.append(dict(
            k=k, tokens=register_tokens(encoder, k)[1] if k else "none",
            accuracy=CleanProbe(folds, seed).fit(finals[k], labelled.y).accuracy(finals[k]) if labelled else np.nan,
            cos_to_no_registers=float(cosine(finals[k], finals[0]).mean()) if 0 in finals else np.nan,
            cls_share=float(shares[(k, "cls")]), register_share=float(shares[(k, "registers")]),
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
    return text
