"""The massive dimensions behind the sink: zero them or set them to their corpus mean.

A few hidden dimensions take huge values on [CLS] and [SEP] (Sun et al. 2024, "Massive
activations"; Kovaleva et al. 2021). Sun et al. report that zeroing them collapses a model
while setting them to their mean is harmless. :func:`massive_sweep` sets them, on the special
tokens at one layer, to zero and to their corpus mean, and measures the final [CLS] (each
cosine with its 95% bootstrap interval over the texts), the probe, and where the attention of
the words goes afterwards - does the sink move?

Two numbers keep the test honest. ``variation``: how much the replaced values differ between
inputs at that layer (their spread around the mean, relative to their size); where they barely
vary, setting them to their mean changes nothing by construction and "the mean is harmless"
says nothing. The control: the same number of *random* dimensions zeroed or set to their mean
(modes ``random_zero`` and ``random_mean``), so that "zeroing breaks the model" is read against
what zeroing any dimensions of the special tokens does.

"Massive" has one definition in clsviz: :data:`MASSIVE_RATIO`, Sun et al.'s 1,000 times the
median magnitude (the published-findings check reads the same constant).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..encoder import Encoder
from ..layers import block_row, check_layer, later_blocks
from ..metrics import cosine
from ..norms import massive_dimensions, top_dimensions
from ..tracing import Trace, trace
from ..verdicts import INCONCLUSIVE, REPRODUCES, Estimate, decide, estimate
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
from .one_sentence import check_dimension_means, check_dims, dimension_means, special_replacer

__all__ = [
    "BREAKS",
    "DIMENSION_MODES",
    "HARMLESS",
    "MASSIVE_RATIO",
    "SWEEP_MODES",
    "find_massive_dimensions",
    "massive_sweep",
    "random_dimensions",
    "relative_spread",
    "summarize_massive",
]

MASSIVE_RATIO = 1000.0
"""A dimension counts as massive when |value| on [CLS] or [SEP] is at least this many times the
median |activation| of its layer: Sun et al.'s (2024) own scale. BERT-size sentence encoders such as
the bundled model reach tens; the sweep then uses the largest dimensions and says they are not massive."""
BREAKS = 0.9
"""A final [CLS] at cosine this or less to its clean self counts as broken."""
HARMLESS = 0.99
"""A final [CLS] at cosine this or more to its clean self counts as unchanged."""
MAX_DIMENSIONS = 4
DIMENSION_MODES = ("clean", "zero", "mean")
SWEEP_MODES = ("zero", "mean", "random_zero", "random_mean")
"""The rows of a sweep's table: the chosen dimensions zeroed or set to their mean, then the same
number of random dimensions (the control)."""
SHARE_ROLES = ("cls", "special", "content")
MOVED = 0.1
"""A change of at least this share of the words' attention on [CLS] counts as the sink moving."""


def find_massive_dimensions(encoder: Encoder, texts: Sequence[str], layer: int, k: int = MAX_DIMENSIONS,
                            min_ratio: float = MASSIVE_RATIO, max_texts: int = 16) -> pd.DataFrame:  # fmt: skip
    """The massive dimensions at hidden-state index ``layer``, largest first (``texts``: strings,
    or Traces of ``encoder`` already run): one row per
    dimension with ``dimension``, ``role`` (cls/sep, where it is largest), ``times_median``
    (largest over the first ``max_texts`` texts, :func:`clsviz.norms.top_dimensions`), and
    ``massive`` (>= ``min_ratio``). At most ``k`` rows; the single largest dimension is
    kept even when none reaches ``min_ratio`` (its ``massive`` is then False)."""
    layer = check_layer(layer, encoder.info.num_layers)
    traces = [t if isinstance(t, Trace) else trace(encoder, t) for t in list(texts)[:max_texts]]
    top = pd.concat([top_dimensions(t, k=5, layers=[layer]) for t in traces])
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
        sums[mode][block_row(block)] += np.append(total, count)

    with torch.inference_mode():
        out = run_with_parts(encoder, None if hidden is not None else batch.ids, batch.mask, start=start,
                             hidden=hidden, replace=replace, on_block=on_block)  # fmt: skip
    rows = torch.arange(len(batch.rows), device=out.device)
    return out, out[-1][rows, batch.cls_index].float().cpu().numpy()


def random_dimensions(hidden_size: int, avoid, k: int, seed: int = 0) -> list[int]:
    """``k`` dimensions drawn at random (seeded) from 0..hidden_size-1, none of ``avoid``."""
    pool = np.setdiff1d(np.arange(hidden_size), np.asarray(list(avoid), dtype=np.int64))
    rng = np.random.default_rng(seed)
    return sorted(int(d) for d in rng.choice(pool, size=min(k, len(pool)), replace=False))


def relative_spread(*groups: np.ndarray) -> float:
    """How much the rows of each group [N_g, K] (one input each: the [CLS] rows, the other
    special tokens' rows) differ between inputs: the root-mean-square distance of every row to
    its group's mean row, over the root-mean-square value (0 = the same for every input)."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if not groups:
        return 0.0
    deviation = sum(float(np.sum((g - g.mean(axis=0)) ** 2)) for g in groups)
    size = sum(float(np.sum(g**2)) for g in groups)
    return float(np.sqrt(deviation / size)) if size > 0 else 0.0


def _special_values(h, batch, dims: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(the [CLS] rows [B, K], the other special tokens' rows [S, K]) of ``dims`` of h [B, T, D]."""
    import torch

    rows = torch.arange(h.shape[0], device=h.device)
    other = batch.special & batch.mask
    other[rows, batch.cls_index] = False
    return (h[rows, batch.cls_index][:, dims].double().cpu().numpy(), h[other][:, dims].double().cpu().numpy())


def _mean_pairwise_cosine(vectors: np.ndarray) -> float:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    n = len(unit)
    total = unit.sum(axis=0)
    return float((total @ total - n) / (n * n - n)) if n > 1 else float("nan")


def _effects(finals: dict, mode: str, probe, seed: int) -> dict:
    """The final [CLS] of ``mode`` against the clean one: mean cosine with its bootstrap interval
    over the texts, 1 - cosine, probe accuracies."""
    cos = cosine(finals[mode], finals["clean"]).astype(np.float64)
    found = estimate(cos, seed=seed)
    return dict(
        cosine=found.value, cosine_low=found.low, cosine_high=found.high, one_minus_cos=float(np.mean(1.0 - cos)),
        accuracy=probe.accuracy(finals[mode]) if probe else np.nan,
        clean_accuracy=probe.accuracy(finals["clean"]) if probe else np.nan,
    )  # fmt: skip


def massive_sweep(encoder: Encoder, texts: Sequence[str], labels: Sequence | None = None, *, layer: int = 1,
                  dims: Sequence[int] | None = None, mean_from=None, folds: int = 5, seed: int = 0,
                  batch_size: int = 64, max_tokens: int | None = None, label_name: str = "label",
                  progress=None, cancel=None) -> SweepResult:  # fmt: skip
    """Zero the massive dimensions of the special tokens at hidden-state index ``layer``, or
    set them to their corpus mean, and run on; the same for as many random dimensions (the control).

    ``dims``: the dimensions (default :func:`find_massive_dimensions` at ``layer``);
    ``mean_from``: texts, the [2, K] array of
    :func:`~clsviz.experiments.interventions.dimension_means`, or None for these texts.
    ``table``: one row per mode of :data:`SWEEP_MODES` with ``cosine`` (the final [CLS] to its
    clean self, mean over the texts) and its 95% interval ``cosine_low`` / ``cosine_high``,
    ``one_minus_cos``, ``accuracy`` / ``clean_accuracy`` (probe fitted on clean final [CLS], out
    of fold; NaN without labels), ``cls_share`` and ``cls_share_clean`` (the words' attention on
    [CLS], mean over the blocks after ``layer``; the massive modes only), ``layer``, ``dims``
    (the chosen ones, or the random ones on the control rows), ``times_median`` (their largest
    size in multiples of the layer's median), ``massive`` (at least :data:`MASSIVE_RATIO`),
    ``variation`` (:func:`relative_spread` of the replaced values across the inputs),
    ``input_cosine`` (mean pairwise cosine of [CLS] across the inputs at ``layer``), ``n``.
    ``attention``: mode (clean/zero/mean), block, role (cls/special/content), share - where the
    words' attention goes in each block after ``layer``. ``per_text``: mode, text, cosine.
    """
    start_time = time.perf_counter()
    info = encoder.info
    num_layers = info.num_layers
    layer = check_layer(layer, num_layers)
    labelled = labelled_texts(texts, labels, folds, label_name) if labels is not None else None
    used = labelled.texts if labelled else tuple(texts)
    found = find_massive_dimensions(encoder, used, layer) if dims is None else None
    dims = check_dims(found["dimension"].tolist() if dims is None else dims, encoder)
    control = random_dimensions(info.hidden_size, dims, len(dims), seed)
    both = dims + control
    tokens = TokenizedBatches.from_texts(encoder, used, max_tokens)
    batches = list(tokens.batches(encoder, batch_size))
    step = ticker(progress, 5 * len(batches), cancel, "The massive-dimension test")
    sums = {m: np.zeros((num_layers, len(SHARE_ROLES) + 1)) for m in (*DIMENSION_MODES, "random_zero", "random_mean")}
    finals = {m: np.zeros((len(tokens), info.hidden_size), np.float32) for m in ("clean", *SWEEP_MODES)}
    resume, value_sums, counts, ratios = [], np.zeros((2, len(both))), np.zeros(2), np.zeros(2)
    cls_states, replaced = [], ([], [])
    for batch in batches:
        out, finals["clean"][batch.rows] = _run(encoder, batch, 0, None, None, sums, "clean", num_layers)
        h = out[layer]
        resume.append(h)
        ratios = np.maximum(ratios, [_largest_ratio(h, batch, dims), _largest_ratio(h, batch, control)])
        total, count = special_sums(h, batch, both)
        value_sums, counts = value_sums + total, counts + count
        for part, values in zip(replaced, _special_values(h, batch, both)):
            part.append(values)
        cls_states.append(h[_rows(h), batch.cls_index].double().cpu().numpy())
        step("Clean runs")
    own = (value_sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    if mean_from is None:
        means = own[:, : len(dims)]
    elif isinstance(mean_from, np.ndarray):
        means = check_dimension_means(mean_from, dims)
    else:
        means = dimension_means(encoder, list(mean_from), dims, layer, max_tokens=max_tokens)
    plans = {"zero": (dims, None), "mean": (dims, means), "random_zero": (control, None),
             "random_mean": (control, own[:, len(dims):])}  # fmt: skip
    for mode, (chosen, values) in plans.items():
        for batch, h in zip(batches, resume):
            swap = special_replacer(chosen, values, batch.cls_index, batch.special & batch.mask)
            _, finals[mode][batch.rows] = _run(encoder, batch, layer, swap(h), None, sums, mode, num_layers)
            step(f"{'Random d' if mode.startswith('random') else 'D'}imensions set to {mode.removeprefix('random_')}")
    probe = CleanProbe(folds, seed).fit(finals["clean"], labelled.y) if labelled else None
    attention = pd.DataFrame([
        dict(mode=m, block=b, role=r, share=float(sums[m][block_row(b), i] / max(sums[m][block_row(b), -1], 1.0)))
        for m in DIMENSION_MODES for b in later_blocks(layer, num_layers) for i, r in enumerate(SHARE_ROLES)
    ])  # fmt: skip
    cls_share = attention[attention["role"] == "cls"].groupby("mode")["share"].mean()
    cls_values, other_values = (np.concatenate(part) for part in replaced)
    k = len(dims)
    spread = {"massive": relative_spread(cls_values[:, :k], other_values[:, :k]),
              "random": relative_spread(cls_values[:, k:], other_values[:, k:])}  # fmt: skip
    input_cosine = _mean_pairwise_cosine(np.concatenate(cls_states))
    rows = []
    for mode in SWEEP_MODES:
        kind = "random" if mode.startswith("random") else "massive"
        chosen = control if kind == "random" else dims
        ratio = float(ratios[1] if kind == "random" else ratios[0])
        rows.append(dict(mode=mode, layer=layer, dims=", ".join(str(d) for d in chosen), times_median=ratio,
                         massive=ratio >= MASSIVE_RATIO, variation=spread[kind], input_cosine=input_cosine,
                         **_effects(finals, mode, probe, seed), cls_share=float(cls_share.get(mode, np.nan)),
                         cls_share_clean=float(cls_share.get("clean", np.nan)), n=len(tokens)))  # fmt: skip
    table = pd.DataFrame(rows)
    per_text = pd.DataFrame([dict(mode=m, text=i, cosine=float(c))
                             for m in SWEEP_MODES for i, c in enumerate(cosine(finals[m], finals["clean"]))])  # fmt: skip
    notes = [] if ratios[0] >= MASSIVE_RATIO else [
        f"No dimension reaches {MASSIVE_RATIO:,.0f} times the median at layer {layer} (the largest used here: "
        f"{ratios[0]:,.0f} times): these are the largest dimensions, not massive activations in Sun et al.'s sense."
    ]  # fmt: skip
    return SweepResult(
        kind="massive", table=table, finding=summarize_massive(table, attention), model_name=encoder.name,
        label=labelled.label if labelled else None, n=len(tokens), seconds=time.perf_counter() - start_time,
        messages=(*(labelled.messages if labelled else ()), *tokens.notes(), *notes), attention=attention,
        per_text=per_text,
    )  # fmt: skip


def _rows(h):
    """torch arange over the batch of h [B, T, D] (the rows of a per-text gather)."""
    import torch

    return torch.arange(h.shape[0], device=h.device)


def _cosine_words(row) -> str:
    interval = "" if pd.isna(row.get("cosine_low", np.nan)) else f" ({row['cosine_low']:.3f}–{row['cosine_high']:.3f})"
    probe = "" if pd.isna(row["accuracy"]) else f", probe {row['accuracy']:.0%} vs {row['clean_accuracy']:.0%} clean"
    return f"cosine {row['cosine']:.3f}{interval} to its clean self{probe}"


def _reading(row, rule: str, threshold: float) -> str:
    value = Estimate(float(row["cosine"]), float(row.get("cosine_low", np.nan)), float(row.get("cosine_high", np.nan)),
                     int(row.get("n", 0)))  # fmt: skip
    return decide(rule, value, threshold).verdict


def summarize_massive(table: pd.DataFrame, attention: pd.DataFrame | None = None) -> str:
    """Plain sentences of a :func:`massive_sweep`: what zeroing vs the mean does to the final
    [CLS] (with intervals; "breaks" only when the whole interval is at most :data:`BREAKS`,
    "unchanged" only when it is at least :data:`HARMLESS`), beside the random-dimension control,
    how much the replaced values vary between inputs, whether the model agrees with Sun et al.
    2024 (only where the dimensions are massive by their definition), and whether the sink moves."""
    by = table.set_index("mode")
    if not {"zero", "mean"} <= set(by.index):
        return "The massive-dimension test needs both the zero and the mean runs."
    zero, mean = by.loc["zero"], by.loc["mean"]
    ratio = "" if pd.isna(zero.get("times_median", np.nan)) else f" (up to {zero['times_median']:,.0f} times the median activation)"
    text = (f"Zeroing dimension(s) {zero['dims']}{ratio} of the special tokens at layer {int(zero['layer'])} leaves the "
            f"final [CLS] at {_cosine_words(zero)}; setting them to their corpus mean leaves it at {_cosine_words(mean)}.")
    if "random_zero" in by.index:
        control = by.loc["random_zero"]
        text += f" Zeroing as many random dimensions ({control['dims']}) instead leaves it at {_cosine_words(control)}."
    if "variation" in by.columns and not pd.isna(zero.get("variation", np.nan)):
        text += (f" The replaced values vary between inputs by {zero['variation']:.1%} of their size"
                 + (f" ([CLS] itself has mean pairwise cosine {zero['input_cosine']:.6f} across the inputs there)"
                    if not pd.isna(zero.get("input_cosine", np.nan)) else "") + ".")
        if zero["variation"] < 0.01:
            text += " They are nearly the same for every input, so setting them to their mean cannot change much here."
    breaks, kept = _reading(zero, "at_most", BREAKS), _reading(mean, "at_least", HARMLESS)
    massive = bool(zero.get("massive", True))
    if not massive:
        text += (f" They are not massive by Sun et al.'s definition ({MASSIVE_RATIO:,.0f} times the median), so this "
                 "is not their experiment.")
    elif breaks == REPRODUCES and kept == REPRODUCES:
        text += " This model agrees with Sun et al. (2024): zeroing breaks it, the mean is harmless."
    elif INCONCLUSIVE in (breaks, kept):
        text += " The intervals do not settle whether this model agrees with Sun et al. (2024) at this sample size."
    else:
        text += " This model does not behave as Sun et al. (2024) report: zeroing " + (
            "breaks it" if breaks == REPRODUCES else "does not break it") + " and the mean " + (
            "is harmless." if kept == REPRODUCES else "changes it.")  # fmt: skip
    if attention is not None and not attention.empty and not pd.isna(zero.get("cls_share", np.nan)):
        moved = zero["cls_share"] - zero["cls_share_clean"]
        verb = "moves" if abs(moved) >= MOVED else "stays"
        text += (f" The words' attention on [CLS] after that layer goes from {zero['cls_share_clean']:.0%} to "
                 f"{zero['cls_share']:.0%} when zeroed: the sink {verb}.")
    return text
