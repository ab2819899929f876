"""The massive dimensions behind the sink: zero them or set them to their corpus mean.

A few hidden dimensions take huge values on [CLS] and [SEP] (Sun et al. 2024, "Massive
activations"; Kovaleva et al. 2021). Sun et al. report that zeroing them collapses a model
while setting them to their mean is harmless. :func:`massive_sweep` sets them, on the special
tokens at one layer, to zero and to their corpus mean, and measures the final [CLS], the
probe, and where the attention of the words goes afterwards - does the sink move?
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..encoder import Encoder
from ..layers import check_layer
from ..metrics import cosine
from ..norms import massive_dimensions, top_dimensions
from ..tracing import trace
from .causal_runs import (
    CleanProbe,
    SweepResult,
    TokenizedBatches,
    attention_shares,
    labelled_texts,
    run_with_parts,
    special_sums,
    ticker,
    token_roles,
)

__all__ = ["DIMENSION_MODES", "MASSIVE_RATIO", "find_massive_dimensions", "massive_sweep", "summarize_massive"]

MASSIVE_RATIO = 10.0
"""A dimension counts as massive when |value| on [CLS] or [SEP] is at least this many times the
median |activation| of its layer (Sun et al. find 1000x in large language models; BERT-size
encoders show tens)."""
MAX_DIMENSIONS = 4
DIMENSION_MODES = ("clean", "zero", "mean")
SHARE_ROLES = ("cls", "special", "content")
MOVED = 0.1
"""A change of at least this share of the words' attention on [CLS] counts as the sink moving."""


def find_massive_dimensions(encoder: Encoder, texts: Sequence[str], layer: int, k: int = MAX_DIMENSIONS,
                            min_ratio: float = MASSIVE_RATIO, max_texts: int = 16) -> pd.DataFrame:  # fmt: skip
    """The massive dimensions at hidden-state index ``layer``, largest first: one row per
    dimension with ``dimension``, ``role`` (cls/sep, where it is largest), ``times_median``
    (largest over the first ``max_texts`` texts, :func:`clsviz.norms.top_dimensions`), and
    ``massive`` (>= ``min_ratio``). At most ``k`` rows; the single largest dimension is
    kept even when none reaches ``min_ratio`` (its ``massive`` is then False)."""
    layer = check_layer(layer, encoder.info.num_layers)
    top = pd.concat([top_dimensions(trace(encoder, t), k=5, layers=[layer]) for t in list(texts)[:max_texts]])
    order = massive_dimensions(top)
    best = top.sort_values("times_median", ascending=False).drop_duplicates("dimension").set_index("dimension")
    rows = [dict(dimension=d, role=best.loc[d, "role"], times_median=float(best.loc[d, "times_median"]),
                 massive=bool(best.loc[d, "times_median"] >= min_ratio)) for d in order]  # fmt: skip
    table = pd.DataFrame(rows)
    keep = table[table["massive"]].head(k)
    return (keep if len(keep) else table.head(1)).reset_index(drop=True)


def _largest_ratio(h, batch, dims: list[int]) -> float:
    """max over the texts of a batch of max |h[special, dims]| / median |h[real tokens]| (h [B, T, D])."""
    best = 0.0
    for j in range(h.shape[0]):
        real = h[j][batch.mask[j]].double().abs().cpu().numpy()
        special = h[j][batch.special[j] & batch.mask[j]][:, dims].double().abs().cpu().numpy()
        median = float(np.median(real))
        if special.size and median > 0:
            best = max(best, float(special.max()) / median)
    return best


def _run(encoder, batch, start, hidden, replace, sums, mode, num_layers):
    """Run from ``start``; add the words' attention shares per block to ``sums[mode]``; final [CLS] [B, D]."""
    import torch

    roles = token_roles(batch.mask, batch.special, batch.cls_index)
    shares = {r: roles[r] for r in SHARE_ROLES}
    words = roles["content"]

    def on_block(block, parts):
        total, count = attention_shares(parts.attn_probs, words, shares)
        sums[mode][block - 1] += np.append(total, count)

    with torch.inference_mode():
        out = run_with_parts(encoder, None if hidden is not None else batch.ids, batch.mask, start=start,
                             hidden=hidden, replace=replace, on_block=on_block)  # fmt: skip
    rows = torch.arange(len(batch.rows), device=out.device)
    return out, out[-1][rows, batch.cls_index].float().cpu().numpy()


def _effects(finals: dict, mode: str, probe) -> dict:
    """The final [CLS] of ``mode`` against the clean one: cosine, 1 - cosine, probe accuracies."""
    cos = cosine(finals[mode], finals["clean"])
    return dict(
        cosine=float(cos.mean()), one_minus_cos=float(np.mean(1.0 - cos)),
        accuracy=probe.accuracy(finals[mode]) if probe else np.nan,
        clean_accuracy=probe.accuracy(finals["clean"]) if probe else np.nan,
    )  # fmt: skip


def massive_sweep(encoder: Encoder, texts: Sequence[str], labels: Sequence | None = None, *, layer: int = 1,
                  dims: Sequence[int] | None = None, mean_from=None, folds: int = 5, seed: int = 0,
                  batch_size: int = 64, max_length: int | None = None, label_name: str = "label",
                  progress=None, cancel=None) -> SweepResult:  # fmt: skip
    """Zero the massive dimensions of the special tokens at hidden-state index ``layer``, or
    set them to their corpus mean, and run on.

    ``dims``: the dimensions (default :func:`find_massive_dimensions` at ``layer``);
    ``mean_from``: texts, the [2, K] array of
    :func:`~clsviz.experiments.interventions.dimension_means`, or None for these texts.
    ``table``: one row per mode (zero, mean) with ``cosine`` / ``one_minus_cos`` (final
    [CLS] to its clean self), ``accuracy`` / ``clean_accuracy`` (probe fitted on clean final
    [CLS], out of fold; NaN without labels), ``cls_share`` and ``cls_share_clean`` (the words'
    attention on [CLS], mean over the blocks after ``layer``), ``layer``, ``dims``,
    ``times_median``. ``attention``: mode (clean/zero/mean), block, role (cls/special/content),
    share - where the words' attention goes in each block after ``layer``.
    """
    from .interventions import _check_dims, check_dimension_means, dimension_means, special_replacer

    start_time = time.perf_counter()
    num_layers = encoder.info.num_layers
    layer = check_layer(layer, num_layers)
    labelled = labelled_texts(texts, labels, folds, label_name) if labels is not None else None
    used = labelled.texts if labelled else tuple(texts)
    found = find_massive_dimensions(encoder, used, layer) if dims is None else None
    dims = _check_dims(found["dimension"].tolist() if dims is None else dims, encoder)
    tokens = TokenizedBatches.from_texts(encoder, used, max_length)
    batches = list(tokens.batches(encoder, batch_size))
    step = ticker(progress, 3 * len(batches), cancel, "The massive-dimension test")
    sums = {m: np.zeros((num_layers, len(SHARE_ROLES) + 1)) for m in DIMENSION_MODES}
    finals = {m: np.zeros((len(tokens), encoder.info.hidden_size), np.float32) for m in DIMENSION_MODES}
    resume, value_sums, counts, ratio = [], np.zeros((2, len(dims))), np.zeros(2), 0.0
    for batch in batches:
        out, finals["clean"][batch.rows] = _run(encoder, batch, 0, None, None, sums, "clean", num_layers)
        h = out[layer]
        resume.append(h)
        ratio = max(ratio, _largest_ratio(h, batch, dims))
        total, count = special_sums(h, batch, dims)
        value_sums, counts = value_sums + total, counts + count
        step("Clean runs")
    if mean_from is None:
        means = (value_sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    elif isinstance(mean_from, np.ndarray):
        means = check_dimension_means(mean_from, dims)
    else:
        means = dimension_means(encoder, list(mean_from), dims, layer, max_length=max_length)
    for mode, values in (("zero", None), ("mean", means)):
        for batch, h in zip(batches, resume):
            swap = special_replacer(dims, values, batch.cls_index, batch.special & batch.mask)
            _, finals[mode][batch.rows] = _run(encoder, batch, layer, swap(h), None, sums, mode, num_layers)
            step(f"Dimensions set to {mode}")
    probe = CleanProbe(folds, seed).fit(finals["clean"], labelled.y) if labelled else None
    attention = pd.DataFrame([
        dict(mode=m, block=b, role=r, share=float(sums[m][b - 1, i] / max(sums[m][b - 1, -1], 1.0)))
        for m in DIMENSION_MODES for b in range(layer + 1, num_layers + 1) for i, r in enumerate(SHARE_ROLES)
    ])  # fmt: skip
    cls_share = attention[attention["role"] == "cls"].groupby("mode")["share"].mean()
    rows = [dict(mode=mode, layer=layer, dims=", ".join(str(d) for d in dims), times_median=ratio,
                 **_effects(finals, mode, probe), cls_share=float(cls_share.get(mode, np.nan)),
                 cls_share_clean=float(cls_share.get("clean", np.nan)), n=len(tokens))
            for mode in ("zero", "mean")]  # fmt: skip
    table = pd.DataFrame(rows)
    notes = [] if found is None or found["massive"].all() else [
        f"No dimension reaches {MASSIVE_RATIO:g} times the median at layer {layer}; the largest one is used."
    ]  # fmt: skip
    return SweepResult(
        kind="massive", table=table, finding=summarize_massive(table, attention), model_name=encoder.name,
        label=labelled.label if labelled else None, n=len(tokens), seconds=time.perf_counter() - start_time,
        messages=(*(labelled.messages if labelled else ()), *tokens.notes(), *notes), attention=attention,
    )  # fmt: skip


def summarize_massive(table: pd.DataFrame, attention: pd.DataFrame | None = None) -> str:
    """One plain sentence of a :func:`massive_sweep`: what zeroing vs the mean does to the final
    [CLS] (and the probe), whether the model agrees with Sun et al. 2024, and whether the sink moves."""
    by = table.set_index("mode")
    if not {"zero", "mean"} <= set(by.index):
        return "The massive-dimension test needs both the zero and the mean runs."
    zero, mean = by.loc["zero"], by.loc["mean"]
    ratio = "" if pd.isna(zero.get("times_median", np.nan)) else f" (up to {zero['times_median']:.0f} times the median activation)"

    def effect(row):
        probe = "" if pd.isna(row["accuracy"]) else f", probe {row['accuracy']:.0%} vs {row['clean_accuracy']:.0%} clean"
        return f"cosine {row['cosine']:.3f} to its clean self{probe}"

    text = (f"Zeroing dimension(s) {zero['dims']}{ratio} of the special tokens at layer {int(zero['layer'])} leaves the "
            f"final [CLS] at {effect(zero)}; setting them to their corpus mean leaves it at {effect(mean)}.")
    if zero["cosine"] < 0.9 and mean["cosine"] >= 0.99:
        text += " This model agrees with Sun et al. (2024): zeroing breaks it, the mean is harmless."
    elif zero["cosine"] >= 0.99:
        text += " Unlike the language models of Sun et al. (2024), zeroing them barely matters here."
    elif mean["cosine"] < 0.99:
        text += " Here even the mean changes [CLS], so these dimensions carry more than a constant."
    else:
        text += " Zeroing changes [CLS] more than the mean does, though less drastically than Sun et al. (2024) report."
    if attention is not None and not attention.empty and not pd.isna(zero.get("cls_share", np.nan)):
        moved = zero["cls_share"] - zero["cls_share_clean"]
        verb = "moves" if abs(moved) >= MOVED else "stays"
        text += (f" The words' attention on [CLS] after that layer goes from {zero['cls_share_clean']:.0%} to "
                 f"{zero['cls_share']:.0%} when zeroed: the sink {verb}.")
    return text
