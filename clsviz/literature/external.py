"""The claims whose measurement comes from elsewhere: an experiment run on another page of the
session (a fine-tuned copy, a scoreboard, a causal test), or a module of clsviz that this
installation may not have yet. Those modules are imported lazily, where the measurement runs;
when one is absent the row says "not measurable here yet" and why.

The functions called in the optional modules (one line each in :data:`OPTIONAL`):

* ``clsviz.experiments.interventions.massive_sweep(encoder, texts, layer=1, seed=0, cancel=)``
  -> a result whose ``table`` has one row per ``mode`` ("zero", "mean") with ``cosine`` (the
  final [CLS] to its clean self), ``layer`` and ``dims``
* ``clsviz.faithfulness.rank_measures(encoder, texts, measures=(...), seed=0, cancel=)`` -> a
  scoreboard whose ``ranking()`` has one row per ``measure`` with ``aopc``

Session results (``session_results`` of :func:`clsviz.literature.check_claims`, see
:data:`SESSION_RESULTS`) are used only when they were computed on the same model.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..narrative import benchmark_summary, describe_series, layer_span
from .claims import NOT_HERE_YET, NOT_MEASURABLE, NOT_YET, Claim
from .measures import MAX_TOKENS, MEASURED, Context, Measurement, sample_texts

__all__ = [
    "OPTIONAL",
    "SESSION_RESULTS",
    "describe_elsewhere",
    "finetune_change",
    "layer_thirds",
    "massive_ablation",
    "mixing_faithfulness",
    "optional",
    "ranking_numbers",
]

OPTIONAL = {
    "massive_sweep": ("clsviz.experiments.interventions", "massive_sweep", "causal tests"),
    "rank_measures": ("clsviz.faithfulness", "rank_measures", "faithfulness scoreboard"),
}
"""name -> (module, function, what it is called in the app) of what the rows import lazily."""

SESSION_RESULTS = {
    "benchmark": ("sts_cls_vs_mean", "a pair benchmark (clsviz.benchmark.BenchmarkResult) from the Similarity page"),
    "probe": ("layer_hierarchy", "a probe (clsviz.experiments.ProbeResult) from 'Could any token do?'"),
    "finetune": ("finetuning_top_layers", "a fine-tuning run (FinetuneResult) whose layer_metrics hold cka_to_start"),
    "finetuned": ("finetuning_top_layers", "a fine-tuned copy of the model: an Encoder or the folder it was saved to"),
    "comparison": ("finetuning_top_layers", "a CKA comparison (clsviz.compare.ModelComparison) with this model as A"),
    "scoreboard": ("faithful_mixing", "a faithfulness scoreboard from 'What flows into [CLS]?'"),
    "massive": ("massive_ablation", "a massive-dimension test from 'Causal tests'"),
}
"""Keys of ``session_results``: the claim each one serves and what it holds."""


def optional(name: str):
    """The function ``name`` of :data:`OPTIONAL`, or None when its module is not installed."""
    module, function, _ = OPTIONAL[name]
    try:
        return getattr(importlib.import_module(module), function, None)
    except ImportError:
        return None


def _absent(name: str) -> Measurement:
    module, function, what = OPTIONAL[name]
    return Measurement(NOT_HERE_YET, notes=(
        f"Not measured yet on this model: this installation of clsviz has no {what} ({module}.{function}), "
        "so the row cannot be computed here yet.",))  # fmt: skip


def _model_name(result) -> str | None:
    return getattr(result, "model_name", None) or getattr(result, "model_a", None)


def _session(ctx: Context, key: str):
    """The session result under ``key`` when it was computed on this model, else None."""
    result = ctx.session.get(key)
    if result is None or key == "finetuned":
        return result
    return result if _model_name(result) in (None, ctx.encoder.name) else None


# --- massive dimensions zeroed or set to their mean -----------------------------------------------


def _session_or_run(ctx: Context, key: str, name: str, sentences: int, run) -> tuple[object, str] | Measurement:
    """(result, where it came from): the session's result under ``key`` for this model, else
    ``run(function, texts)`` with the optional ``function`` on ``sentences`` corpus sentences; a
    :class:`Measurement` saying why not when the module is absent or the model cannot be measured."""
    result = _session(ctx, key)
    if result is not None:
        return result, f"the last {SESSION_RESULTS[key][1].split(' from ')[0].removeprefix('a ')} of this session"
    function = optional(name)
    if function is None:
        return _absent(name)
    texts = sample_texts(ctx.corpus, sentences, ctx.seed)
    try:
        return ctx.memo(name, lambda: run(function, texts)), f"{len(texts)} corpus sentences"
    except ValueError as exc:
        return Measurement(NOT_MEASURABLE, notes=(str(exc),))


def massive_ablation(claim: Claim, ctx: Context) -> Measurement:
    """The final [CLS] after the massive dimensions are zeroed vs set to their mean (cosine)."""
    found = _session_or_run(ctx, "massive", "massive_sweep", ctx.attention_sample,
                            lambda sweep, texts: sweep(ctx.encoder, texts, layer=1, seed=ctx.seed, cancel=ctx.cancel))
    if isinstance(found, Measurement):
        return found
    result, source = found
    by = result.table.set_index("mode")
    zero, mean = float(by.loc["zero", "cosine"]), float(by.loc["mean", "cosine"])
    row = by.loc["zero"]
    value = (f"final [CLS] cosine to its clean self: {zero:.3f} with dimension(s) {row['dims']} zeroed at layer "
             f"{int(row['layer'])}, {mean:.3f} with them set to their mean")
    return Measurement(MEASURED, value, {"zero_cosine": zero, "mean_cosine": mean},
                       f"special tokens' massive dimensions at layer {int(row['layer'])}, rest of the model run",
                       source)


# --- fine-tuning: which layers moved --------------------------------------------------------------


def layer_thirds(cka: np.ndarray) -> tuple[list[int], list[int]]:
    """(lower, upper) thirds of layers 1..L for a per-layer CKA array [L + 1] (index 0 = embeddings)."""
    num_layers = len(cka) - 1
    k = max(1, num_layers // 3)
    layers = list(range(1, num_layers + 1))
    return layers[:k], layers[-k:]


def _cka_from_session(ctx: Context, reading: str) -> tuple[np.ndarray, str] | None:
    """(per-layer CKA [L + 1] of this model against a fine-tuned copy, where it came from), or None."""
    finetuned = ctx.session.get("finetuned")
    if finetuned is not None:
        from ..compare import compare_encoders
        from ..encoder import load_encoder

        other = finetuned if hasattr(finetuned, "info") else load_encoder(str(finetuned))
        texts = sample_texts(ctx.corpus, min(ctx.sample_size, 200), ctx.seed)
        comparison = ctx.memo("finetuned", lambda: compare_encoders(ctx.encoder, other, texts, ("tokens", "mean"),
                                                                    seed=ctx.seed, cancel=ctx.cancel))
        return _diagonal(comparison, reading), f"{len(texts)} corpus sentences, against {other.name}"
    comparison = _session(ctx, "comparison")
    if comparison is not None:
        return _diagonal(comparison, reading), (f"the comparison with {comparison.model_b} on 'Compare two models' "
                                                f"({comparison.num_texts} texts), taken as a fine-tuned copy")
    run = _session(ctx, "finetune")
    metrics = getattr(run, "layer_metrics", None)
    if metrics is not None and not metrics.empty and "cka_to_start" in set(metrics["metric"]):
        rows = metrics[metrics["metric"] == "cka_to_start"]
        pooling = "cls" if "cls" in set(rows["pooling"]) else str(rows["pooling"].iloc[0])
        rows = rows[rows["pooling"] == pooling]
        last = rows[rows["step"] == rows["step"].max()].sort_values("layer")
        return last["value"].to_numpy(dtype=np.float64), (f"the last fine-tuning run of this session ({pooling} "
                                                          f"head, step {int(last['step'].iloc[0])}, held-out texts)")
    return None


def _diagonal(comparison, reading: str) -> np.ndarray:
    name = reading if reading in comparison.cka else next(iter(comparison.cka))
    matrix = comparison.cka[name]
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError("the fine-tuned model has a different depth, so its layers have no counterparts here")
    return np.diagonal(matrix).astype(np.float64)


def finetune_change(claim: Claim, ctx: Context) -> Measurement:
    """CKA per layer between this model and a fine-tuned copy: did the upper layers change more?"""
    try:
        found = _cka_from_session(ctx, str(claim.params.get("reading", "tokens")))
    except ValueError as exc:
        return Measurement(NOT_MEASURABLE, notes=(str(exc),))
    if found is None:
        return Measurement(NOT_YET, notes=(f"Not measured yet: {claim.to_measure[:1].lower()}{claim.to_measure[1:]}",))
    cka, source = found
    cka = np.round(cka, 6)  # float32 vectors resolve CKA to about 1e-6: closer values are the same
    if len(cka) < 3:
        return Measurement(NOT_MEASURABLE, notes=("lower and upper layers need at least two blocks; this model has one",))
    lower, upper = layer_thirds(cka)
    numbers = {"lower_cka": float(np.nanmean(cka[lower])), "upper_cka": float(np.nanmean(cka[upper]))}
    layers = list(range(1, len(cka)))
    value = (f"CKA with the fine-tuned copy {describe_series(cka[1:], layers, '.3f')}; {layer_span(lower)} "
             f"{numbers['lower_cka']:.3f}, {layer_span(upper)} {numbers['upper_cka']:.3f}")
    return Measurement(MEASURED, value, numbers, "linear CKA of token vectors, layer l against layer l", source)


# --- faithfulness of context-mixing measures ------------------------------------------------------

_WHOLE_BLOCK = ("alti", "value_zeroing")


def ranking_numbers(ranking: pd.DataFrame) -> dict[str, float]:
    """The numbers the faithfulness check reads from a scoreboard ranking (columns ``measure``,
    ``aopc``): raw attention's AOPC and the weaker whole-block measure's (missing when absent)."""
    aopc = dict(zip(ranking["measure"], ranking["aopc"].astype(float)))
    numbers = {}
    if "attention" in aopc:
        numbers["attention"] = aopc["attention"]
    present = [aopc[m] for m in _WHOLE_BLOCK if m in aopc]
    if present:
        numbers["whole_block"] = min(present)
    return numbers


def mixing_faithfulness(claim: Claim, ctx: Context) -> Measurement:
    """AOPC of ALTI and value zeroing against raw attention on the faithfulness scoreboard."""
    found = _session_or_run(ctx, "scoreboard", "rank_measures", int(claim.params.get("sentences", 3)),
                            lambda rank, texts: rank(ctx.encoder, texts, measures=("attention", *_WHOLE_BLOCK, "random"),
                                                     max_length=MAX_TOKENS, seed=ctx.seed, cancel=ctx.cancel))
    if isinstance(found, Measurement):
        return found
    board, source = found
    ranking = board.ranking()
    numbers = ranking_numbers(ranking)
    listed = ", ".join(f"{m} {a:.3f}" for m, a in zip(ranking["measure"], ranking["aopc"]))
    notes = tuple(getattr(board, "notes", ()))
    return Measurement(MEASURED, f"AOPC (higher = more faithful): {listed}", numbers,
                       "deletion curves of the [CLS] vector's cosine to itself, tokens replaced by the mask token",
                       source, notes)


# --- what other pages of the session found --------------------------------------------------------


def _describe(key: str, result) -> str:
    if key == "probe":
        best, cls = result.best(), result.best("cls") if "cls" in set(result.table["pooling"]) else None
        text = (f"the last probe on 'Could any token do?' (label '{result.label}'): best {best['pooling']} "
                f"{best['accuracy_mean']:.0%} at layer {int(best['layer'])}")
        return text + (f", [CLS] {cls['accuracy_mean']:.0%} at layer {int(cls['layer'])}" if cls is not None else "")
    if key == "benchmark":
        return "the last pair benchmark on 'Similarity': " + benchmark_summary(result)
    if key == "finetune":
        return "the last fine-tuning run: " + result.summary()
    if key == "comparison":
        from ..experiments.side_by_side import describe_change

        return f"the last comparison with {result.model_b}: " + describe_change(result)
    if key == "scoreboard":
        best = result.ranking().iloc[0]
        return f"the last faithfulness scoreboard: {best['measure']} ranks first (AOPC {best['aopc']:.3f})"
    if key == "massive":
        return "the last massive-dimension test: " + str(result.finding)
    return f"the last {key} finished"


def describe_elsewhere(session: Mapping, model_name: str) -> dict[str, str]:
    """claim key -> one sentence on the session's last result for it (from another model: said so)."""
    out: dict[str, list[str]] = {}
    for key, result in dict(session or {}).items():
        if key not in SESSION_RESULTS or result is None or key == "finetuned":
            continue
        other = _model_name(result)
        try:
            text = _describe(key, result)
        except (AttributeError, KeyError, ValueError, IndexError):
            continue  # a result of an older shape: nothing to say rather than a wrong sentence
        if other not in (None, model_name):
            text += f" (computed on {other}, not on this model, so not used here)"
        out.setdefault(SESSION_RESULTS[key][0], []).append(text[0].upper() + text[1:])
    return {claim: " ".join(t if t.endswith(".") else t + "." for t in texts) for claim, texts in out.items()}
