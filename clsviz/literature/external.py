"""The claims whose measurement runs an experiment of another module (the causal tests, the
faithfulness scoreboard) or needs a fine-tuned copy of the model given as an input.

Each runs on a fixed sample drawn from the corpus with the context's seed and says so; results
other pages of a session computed are never used for a verdict (a verdict must not depend on
what was run before), only described beside the row (:func:`describe_elsewhere`). The modules
are imported where the measurement runs; when one is absent the row says "not measured yet" and
why. The functions called in them (one line each in :data:`OPTIONAL`):

* ``clsviz.experiments.interventions.massive_sweep(encoder, texts, layer=, seed=, cancel=)`` -> a
  result whose ``per_text`` has one row per (``mode``, text) with ``cosine`` and whose ``table``
  has ``massive``, ``times_median``, ``variation``, ``input_cosine``, ``dims`` per mode
* ``clsviz.faithfulness.rank_measures(encoder, texts, measures=(...), max_tokens=, seed=, cancel=)``
  -> a scoreboard with ``per_text(measure)`` and ``ranking()``
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import numpy as np

from ..experiments.side_by_side import describe_change
from ..experiments.sink_dimensions import MASSIVE_RATIO, find_massive_dimensions, relative_spread
from ..layers import later_blocks
from ..narrative import benchmark_summary
from ..verdicts import estimate, paired_difference
from .claims import NOT_MEASURABLE, NOT_YET, Claim
from .measures import MAX_TOKENS, MEASURED, Context, Measurement, sample_texts

__all__ = [
    "OPTIONAL",
    "SESSION_RESULTS",
    "ablation_numbers",
    "describe_elsewhere",
    "massive_ablation",
    "mixing_faithfulness",
    "mixing_numbers",
    "optional",
    "varying_layer",
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
    "comparison": ("finetuning_top_layers", "a CKA comparison (clsviz.compare.ModelComparison) with this model as A"),
    "scoreboard": ("faithful_mixing", "a faithfulness scoreboard from 'What flows into [CLS]?'"),
    "massive": ("massive_ablation", "a massive-dimension test from 'Causal tests'"),
}
"""Keys of ``session_results``: the claim each one is described beside (never measured from)."""

WHOLE_BLOCK = ("alti", "value_zeroing")
COMPARED = ("attention", "rollout", "alti", "value_zeroing", "alti_block", "value_zeroing_block")


def optional(name: str):
    """The function ``name`` of :data:`OPTIONAL`, or None when its module is not installed."""
    module, function, _ = OPTIONAL[name]
    try:
        return getattr(importlib.import_module(module), function, None)
    except ImportError:
        return None


def _absent(name: str) -> Measurement:
    module, function, what = OPTIONAL[name]
    return Measurement(NOT_YET, notes=(
        f"Not measured yet: this installation of clsviz has no {what} ({module}.{function}), so the row cannot be "
        "computed here yet.",))  # fmt: skip


def _model_name(result) -> str | None:
    return getattr(result, "model_name", None) or getattr(result, "model_a", None)


# --- massive dimensions zeroed or set to their mean -----------------------------------------------


def varying_layer(ctx: Context) -> tuple[int, float, float, list[int]]:
    """(layer, variation, [CLS] input cosine, the dimensions): among hidden-state indexes 1..L-1, the one where
    the values the test replaces (the largest dimensions of [CLS] and the other special tokens)
    vary most between the sample's inputs (:func:`~clsviz.experiments.sink_dimensions.relative_spread`)."""
    traces = ctx.attention_traces()
    best = (1, -1.0, float("nan"), [])
    for layer in range(1, ctx.num_layers):
        dims = find_massive_dimensions(ctx.encoder, traces, layer)["dimension"].tolist()
        cls = np.stack([t.hidden_states[layer, t.cls_index, dims] for t in traces])
        others = np.stack([t.hidden_states[layer, t.sep_index, dims] for t in traces if t.sep_index is not None])
        spread = relative_spread(cls, others)
        if spread > best[1]:
            unit = np.stack([t.hidden_states[layer, t.cls_index] for t in traces]).astype(np.float64)
            unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
            total = unit.sum(axis=0)
            n = len(unit)
            best = (layer, spread, float((total @ total - n) / max(n * n - n, 1)), dims)
    return best


def ablation_numbers(result) -> dict:
    """The deciding numbers of a massive-dimension sweep, each with its bootstrap interval over
    the texts: ``zero_cosine``, ``mean_cosine`` (the final [CLS] to its clean self) and
    ``control_gap`` (random dimensions zeroed minus the chosen ones zeroed, paired per text)."""
    per = result.per_text.pivot(index="text", columns="mode", values="cosine").sort_index()
    return {
        "zero_cosine": estimate(per["zero"].to_numpy()),
        "mean_cosine": estimate(per["mean"].to_numpy()),
        "control_gap": paired_difference(per["random_zero"].to_numpy(), per["zero"].to_numpy()),
    }


def massive_ablation(claim: Claim, ctx: Context) -> Measurement:
    """The final [CLS] after the largest dimensions are zeroed vs set to their mean (cosine), at
    the layer where the replaced values vary most, beside as many random dimensions; measurable
    only where those dimensions are massive by Sun et al.'s definition."""
    sweep = optional("massive_sweep")
    if sweep is None:
        return _absent("massive_sweep")
    texts = sample_texts(ctx.corpus, ctx.attention_sample, ctx.seed)
    try:
        layer, spread, same, dims = ctx.memo("varying_layer", lambda: varying_layer(ctx))
        result = ctx.memo("massive_sweep", lambda: sweep(ctx.encoder, texts, layer=layer, dims=dims, seed=ctx.seed,
                                                        max_tokens=MAX_TOKENS, cancel=ctx.cancel))
    except ValueError as exc:
        return Measurement(NOT_MEASURABLE, notes=(str(exc),))
    numbers = ablation_numbers(result)
    by = result.table.set_index("mode")
    row, control = by.loc["zero"], by.loc["random_zero"]
    random_zero = estimate(result.per_text[result.per_text["mode"] == "random_zero"]["cosine"].to_numpy())
    value = (f"final [CLS] cosine to its clean self: {numbers['zero_cosine'].text('.3f')} with dimension(s) "
             f"{row['dims']} ({row['times_median']:,.0f}× the median) zeroed at layer {layer}, "
             f"{numbers['mean_cosine'].text('.3f')} with them set to their mean; as many random dimensions "
             f"({control['dims']}) zeroed: {random_zero.text('.3f')}")
    notes = [f"Replaced at layer {layer}, where the replaced values vary most between inputs ({spread:.1%} of their "
             f"size; [CLS] itself has mean pairwise cosine {same:.6f} across the inputs there)."]
    protocol = (f"the special tokens' largest dimensions at layer {layer} (blocks {later_blocks(layer, ctx.num_layers).start}–{ctx.num_layers} run "
                "after), against the same number of random dimensions; intervals over the texts")
    sample = f"{len(texts)} corpus sentences"
    if not bool(row["massive"]):
        why = (f"No dimension of this model reaches Sun et al.'s {MASSIVE_RATIO:,.0f} times the median (the largest "
               f"here: {row['times_median']:,.0f}×), so it has no massive activations to ablate; the numbers are "
               "shown for reference. Measurable on a model with massive activations (Sun et al. found them in "
               "large language models).")
        return Measurement(NOT_MEASURABLE, value, numbers, protocol, sample, (why, *notes))
    return Measurement(MEASURED, value, numbers, protocol, sample, tuple(notes))


# --- faithfulness of context-mixing measures ------------------------------------------------------


def mixing_numbers(board) -> dict:
    """The deciding numbers of the faithfulness claim from a scoreboard holding
    :data:`COMPARED`: like with like, each paired per text, the weaker of ALTI and value zeroing
    minus raw attention - ``rollout_gap`` (rolled out over the blocks, against attention
    rollout) and ``block_gap`` (the last block alone, against that block's raw attention)."""
    numbers = {}
    for name, pairs in (("rollout_gap", (("alti", "rollout"), ("value_zeroing", "rollout"))),
                        ("block_gap", (("alti_block", "attention"), ("value_zeroing_block", "attention")))):  # fmt: skip
        diffs = np.column_stack([board.per_text(a) - board.per_text(b) for a, b in pairs])
        numbers[name] = estimate(diffs, lambda rows: float(rows.mean(axis=0).min()))
    return numbers


def mixing_faithfulness(claim: Claim, ctx: Context) -> Measurement:
    """AOPC of ALTI and value zeroing against raw attention on the faithfulness scoreboard, rollout
    against rollout and one block against one block, on a fixed sample of sentences."""
    rank = optional("rank_measures")
    if rank is None:
        return _absent("rank_measures")
    texts = sample_texts(ctx.corpus, int(ctx.scoreboard_sample or claim.params.get("sentences", 30)), ctx.seed)
    try:
        board = ctx.memo("scoreboard", lambda: rank(ctx.encoder, texts, measures=(*COMPARED, "random"),
                                                    max_tokens=MAX_TOKENS, seed=ctx.seed, cancel=ctx.cancel))
    except ValueError as exc:
        return Measurement(NOT_MEASURABLE, notes=(str(exc),))
    left_out = [m for m in COMPARED if m not in set(board.table["measure"])]
    if left_out:
        return Measurement(NOT_MEASURABLE, notes=(f"{', '.join(left_out)} could not be scored on this model.",
                                                  *board.notes))  # fmt: skip
    numbers = mixing_numbers(board)
    ranking = board.ranking().set_index("measure")

    def aopc(m):
        r = ranking.loc[m]
        return f"{r['aopc']:.3f} ({r['aopc_low']:.3f}–{r['aopc_high']:.3f})"

    value = (f"AOPC, rolled out: ALTI {aopc('alti')}, value zeroing {aopc('value_zeroing')}, attention rollout "
             f"{aopc('rollout')} (weaker minus attention {numbers['rollout_gap'].text('.3f')}); one block (the last): "
             f"ALTI {aopc('alti_block')}, value zeroing {aopc('value_zeroing_block')}, raw attention "
             f"{aopc('attention')} (weaker minus attention {numbers['block_gap'].text('.3f')}); random order "
             f"{aopc('random')}")
    return Measurement(MEASURED, value, numbers,
                       f"deletion curves of the {board.target}, tokens replaced by the mask token; AOPC as Samek et "
                       "al. (k = 0..n); differences paired per sentence, bootstrap over the sentences",
                       f"{len(texts)} corpus sentences", tuple(board.notes))


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
        if key not in SESSION_RESULTS or result is None:
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
