"""Evidence that runs the model again on one sentence: [CLS] moved, the masked-LM head reading
[CLS], context mixing through the blocks, attributions, the faithfulness scoreboard, the causal
tests on one sentence and where a classifier's gradient enters.

Each analysis here takes the ``encoder`` and the ``trace`` (or ``traces``) it made; runs of the
model on the text keep the trace's own length, so a cut text is cut the same way in every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from .. import figures
from ..architectures import BlockStructureError
from ..attribution import attribute, attribution_table
from ..experiments import interventions as iv
from ..experiments.dynamics import flow_table, gradient_flows
from ..experiments.inversion import load_mlm_head, mlm_reading, summarize_mlm_reading
from ..experiments.position import position_experiment, summarize_position
from ..faithfulness import MEASURES, rank_measures, verdict
from ..layers import block_of_row, check_block
from ..mixing import METHODS as MIXING_METHODS
from ..mixing import ContextMixing, MixingError, block_table, cls_row_table, measure
from ..tracing import Trace, no_summary_message
from .core import Drawn, NotApplicable, Result, analysis
from .sweeps import CausalResult, PositionView, demo_dimension_means, demo_head_means

__all__ = ["MixingResult"]

MixingMethod = Literal["attention", "value_norm", "globenc", "alti", "value_zeroing"]
FAST_MIXING = tuple(m for m in MIXING_METHODS if m != "value_zeroing")
"""The context-mixing measures that decompose the trace's own blocks (seconds, not minutes)."""


@analysis("position", title="Why first? [CLS] moved, removed, replaced", inputs=("encoder", "trace"),
          optional=("baseline",), figures=("position.tokens", "position.lines"), report=True, questions=(2,))  # fmt: skip
def position_analysis(encoder, trace: Trace, baseline=None, *, shift: int = 20, replacement: str = "the") -> PositionView:
    """[CLS] moved to the end or the middle, removed, replaced, position ids shifted: how its
    vector and the attention it receives change, layer by layer (the anisotropy ``baseline``,
    when given, says how close unrelated sentences already look)."""
    result = position_experiment(encoder, trace.text, shift=shift, replacement=replacement, max_tokens=trace.seq_len)
    return PositionView(
        drawings={"position.tokens": ([r.variant for r in result.runs],), "position.lines": (result.table,)},
        tidy=result.table,
        sentences=(summarize_position(result.table, baseline),),
        data=result,
        notes=result.notes,
    )


@analysis("inversion.mlm", title="What the masked-LM head reads from [CLS]", inputs=("encoder", "trace"),
          figures=("inversion.mlm",), report=True, questions=(4,))  # fmt: skip
def mlm_analysis(encoder, trace: Trace, *, k: int = 5) -> Drawn:
    """The model's own masked-LM head applied to [CLS] at every layer: the words it would predict
    from the [CLS] vector (models with a trained MLM head only)."""
    head = load_mlm_head(encoder)
    if not head.available:
        raise NotApplicable(head.note)
    if trace.cls_index is None:
        raise NotApplicable(no_summary_message("Reading [CLS] with the masked-LM head", trace.info.name))
    reading = mlm_reading(head, trace.hidden_states[:, trace.cls_index], encoder.tokenizer, k=k)
    return Drawn(drawings={"inversion.mlm": (reading,)}, tidy=reading,
                 sentences=(summarize_mlm_reading(reading, trace.text),))


@dataclass(frozen=True, eq=False)
class MixingResult(Result):
    """Context mixing by one ``method`` beside raw attention (the same trace). View: ``block``
    (1..L, default the last) for the token x token map of one block."""

    mixing: ContextMixing
    attention: ContextMixing

    def table(self) -> pd.DataFrame:
        return cls_row_table(self.mixing)

    def figure_keys(self) -> tuple[str, ...]:
        raw = ("mixing.raw",) if self.mixing.method != "attention" else ()
        return ("mixing.cls_row", "mixing.rollout", *raw, "mixing.block")

    def _block(self, block: int | None) -> int:
        return self.mixing.num_layers if block is None else check_block(int(block), self.mixing.num_layers)

    def figure(self, key: str, block: int | None = None, **view):
        if key == "mixing.cls_row":
            return figures.mixing_cls_figure(self.mixing, self.attention)
        if key == "mixing.rollout":
            return figures.mixing_rollout_figure(self.mixing, self.attention)
        if key == "mixing.raw" and self.mixing.method != "attention":
            return figures.mixing_raw_figure(self.mixing)
        if key == "mixing.block":
            return figures.mixing_block_figure(self.mixing, self.attention, self._block(block))
        return super().figure(key)

    def figure_table(self, key: str, block: int | None = None, **view) -> pd.DataFrame:
        if key == "mixing.block":
            return block_table(self.mixing, self._block(block))
        return self.table()

    def barely_mixing_blocks(self) -> list[int]:
        """Blocks (1..L) that move almost nothing into [CLS] (value zeroing; see
        :data:`clsviz.mixing.BARELY_MIXES`)."""
        return [block_of_row(b) for b, flag in enumerate(self.mixing.barely_mixes()) if flag]


def _measure(encoder, trace: Trace, method: str, progress=None, cancel=None) -> ContextMixing:
    try:
        return measure(encoder, trace, method, progress=progress, cancel=cancel)
    except (MixingError, BlockStructureError) as exc:  # a family whose blocks clsviz cannot run
        raise NotApplicable(str(exc)) from exc


@analysis("mixing", title="What flows into [CLS], block by block", inputs=("encoder", "trace"),
          figures=("mixing.cls_row", "mixing.rollout", "mixing.block"), report=True, questions=(1, 3))  # fmt: skip
def mixing_analysis(encoder, trace: Trace, *, method: MixingMethod = "alti", progress=None, cancel=None) -> MixingResult:
    """What [CLS] takes in at each block and through the blocks, by raw attention, value norms
    (Kobayashi et al. 2020), GlobEnc (Modarressi et al. 2022), ALTI (Ferrando et al. 2022) or value
    zeroing (Mohebbi et al. 2023, float64, one rerun of every block per token)."""
    attention = _measure(encoder, trace, "attention")
    mix = attention if method == "attention" else _measure(encoder, trace, method, progress, cancel)
    return MixingResult(mix, attention)


@analysis("mixing.value_zeroing", title="Value zeroing", inputs=("encoder", "trace"),
          figures=("mixing.cls_row", "mixing.rollout", "mixing.block"), long=True, questions=(1, 3))  # fmt: skip
def value_zeroing_analysis(encoder, trace: Trace, *, progress=None, cancel=None) -> MixingResult:
    """Context mixing by value zeroing (Mohebbi et al. 2023): every block rerun once per token with
    that token's value vectors zeroed, in float64 - minutes on long texts, so it runs as a job."""
    return mixing_analysis(encoder, trace, method="value_zeroing", progress=progress, cancel=cancel)


@analysis("mixing.compare", title="Every fast measure side by side", inputs=("encoder", "trace"),
          figures=("mixing.compare",), report=True, questions=(1,))  # fmt: skip
def mixing_compare_analysis(encoder, trace: Trace) -> Drawn:
    """What reaches [CLS] through the blocks by each fast measure (raw attention, value norms,
    GlobEnc, ALTI), side by side."""
    measured = [_measure(encoder, trace, m) for m in FAST_MIXING]
    tidy = pd.concat([cls_row_table(m) for m in measured], ignore_index=True)
    return Drawn(drawings={"mixing.compare": (measured,)}, tidy=tidy, data=measured)


ATTRIBUTION_TOKENS = 128
"""Longest text attributed in the report: integrated gradients cost a backward pass per step."""


@analysis("attribution", title="Attribution: which words the target depends on", inputs=("encoder", "trace"),
          figures=("attribution.tokens",), report=True, questions=(1,))  # fmt: skip
def attribution_analysis(
    encoder,
    trace: Trace,
    *,
    target: Literal["similarity", "classifier"] = "similarity",
    method: Literal["integrated_gradients", "grad_x_input", "occlusion"] = "integrated_gradients",
    other: str | None = None,
    steps: int = 16,
    length_limit: int = ATTRIBUTION_TOKENS,
) -> Drawn:
    """The target split over the input tokens for [CLS] and for mean pooling (integrated gradients,
    gradient x input or occlusion): its cosine to ``other`` (itself when None), or the model's own
    classifier."""
    if trace.seq_len > length_limit:
        raise NotApplicable(
            f"The text has {trace.seq_len} tokens; attributions here run on texts of up to {length_limit} "
            "(integrated gradients cost a forward and backward pass per step). Raise length_limit to run it."
        )
    try:
        found = [attribute(encoder, trace.text, target=target, other=other, pooling=p, method=method, steps=steps,
                           max_tokens=trace.seq_len) for p in ("cls", "mean")]  # fmt: skip
    except (ValueError, BlockStructureError) as exc:
        raise NotApplicable(str(exc)) from exc
    # Completeness (scores summing to value - baseline) is a property of integrated gradients only.
    notes = tuple(
        f"{a.pooling}: value {a.value:.4f}, baseline {a.baseline_value:.4f}"
        + (f", completeness gap {a.completeness_gap:+.2e}" if a.method == "integrated_gradients" else "")
        for a in found
    )
    return Drawn(drawings={"attribution.tokens": (found,)}, tidy=attribution_table(found), sentences=notes, data=found)


SCOREBOARD_TOKENS = 48
"""Longest text the report ranks measures on: the deletion curves rerun the model per token."""


@analysis("faithfulness", title="Faithfulness scoreboard: which measure predicts removals?", inputs=("encoder", "traces"),
          figures=("faithfulness.ranking", "faithfulness.curves"), long=True, report=True, questions=(1,))  # fmt: skip
def faithfulness_analysis(
    encoder,
    traces,
    *,
    pooling: Literal["cls", "mean"] = "cls",
    target: Literal["auto", "probe", "classifier", "self_similarity"] = "auto",
    measures: str = "all",
    steps: int = 16,
    length_limit: int = SCOREBOARD_TOKENS,
    progress=None,
    cancel=None,
) -> Drawn:
    """Each measure ranks the words; removing them in that order shows whether the words it names
    really matter (deletion curves, AOPC as Samek et al. with its 95% interval over the texts;
    DeYoung et al. 2020). The default target (``auto``) is the model's classifier logit, or a demo
    sentiment probe's: a target with a gradient at the input for every family of measures.
    ``measures``: "all" or comma-separated names of :data:`clsviz.faithfulness.MEASURES`."""
    chosen = MEASURES if measures == "all" else tuple(m.strip() for m in measures.split(",") if m.strip())
    longest = max(t.seq_len for t in traces)
    if longest > length_limit:
        raise NotApplicable(
            f"A text has {longest} tokens; the scoreboard here ranks the measures on texts of up to {length_limit} "
            "(the deletion curves rerun the model once per token and measure). Raise length_limit to run it."
        )
    try:
        board = rank_measures(encoder, list(traces), target=target, measures=chosen, pooling=pooling, steps=steps,
                              progress=progress, cancel=cancel)  # fmt: skip
    except (ValueError, BlockStructureError) as exc:
        raise NotApplicable(str(exc)) from exc
    return Drawn(
        drawings={"faithfulness.ranking": (board,), "faithfulness.curves": (board,)},
        tidy=board.table,
        tables={"faithfulness.ranking": board.ranking(), "faithfulness.curves": board.curves},
        sentences=(verdict(board), *board.notes),
        data=board,
    )


def _causal(run) -> CausalResult:
    try:
        return CausalResult(run())
    except BlockStructureError as exc:  # a family whose blocks clsviz cannot run
        raise NotApplicable(str(exc)) from None


def _texts_and_length(traces) -> tuple[list[str], int]:
    return [t.text for t in traces], max(t.seq_len for t in traces)


@analysis("interventions.knockout", title="Attention knockout: does [CLS] still need to read the words?",
          inputs=("encoder", "traces"), figures=("interventions.knockout",), report=True, questions=(1, 3))  # fmt: skip
def knockout_analysis(encoder, traces, *, progress=None, cancel=None) -> CausalResult:
    """[CLS]'s reads of the words cut from a block on (Geva et al. 2023): how far its final vector
    moves, block by block."""
    texts, n = _texts_and_length(traces)
    return _causal(lambda: iv.knockout_sweep(encoder, texts, max_tokens=n, progress=progress, cancel=cancel))


@analysis("interventions.patch", title="[CLS] patched from another sentence", inputs=("encoder", "trace"),
          figures=("interventions.patch_profile",), report=True, questions=(1, 3))  # fmt: skip
def patch_analysis(encoder, trace: Trace, *, source: str | None = None) -> Drawn:
    """The sentence's [CLS] replaced by another sentence's at each layer: from which layer on does
    the final [CLS] follow the patched-in vector? ``source`` defaults to the first reference
    sentence that is not this one."""
    sources = [source] if source else list(iv.REFERENCE_SOURCES)
    for candidate in sources:
        try:
            table = iv.patch_profile(encoder, candidate, trace.text, max_tokens=trace.seq_len)
        except iv.InterventionError:
            if source:
                raise
            continue  # the sentence is this reference: take the next one
        except BlockStructureError as exc:
            raise NotApplicable(str(exc)) from None
        return Drawn(drawings={"interventions.patch_profile": (table, candidate)}, tidy=table,
                     sentences=(iv.summarize_patch_profile(table),))  # fmt: skip
    raise NotApplicable("The sentence is every reference source; there is nothing else to patch from.")


@analysis("interventions.heads", title="Every head ablated alone", inputs=("encoder", "traces"),
          figures=("interventions.heads",), report=True, questions=(1, 2))  # fmt: skip
def heads_analysis(encoder, traces, *, mode: Literal["mean", "zero"] = "mean", progress=None,
                   cancel=None) -> CausalResult:  # fmt: skip
    """Every (block, head) ablated alone (mean: the head's output over a demo-corpus sample, or
    zero): sink or aggregator? (Xiao et al. 2023)."""
    texts, n = _texts_and_length(traces)

    def run():
        means = demo_head_means(encoder, progress, cancel) if mode == "mean" else None
        return iv.head_sweep(encoder, texts, mode=mode, mean_from=means, max_tokens=n, progress=progress, cancel=cancel)

    return _causal(run)


@analysis("interventions.massive", title="Massive dimensions zeroed or set to their mean", inputs=("encoder", "traces"),
          figures=("interventions.massive",), report=True, questions=(1, 2))  # fmt: skip
def massive_analysis(encoder, traces, *, layer: int = 1, progress=None, cancel=None) -> CausalResult:
    """The special tokens' massive dimensions zeroed or set to their mean over a demo-corpus sample
    at one layer (Sun et al. 2024): does the final [CLS] change, and does attention to the sink
    collapse?"""
    texts, n = _texts_and_length(traces)

    def run():
        dims = tuple(iv.find_massive_dimensions(encoder, texts, layer)["dimension"].tolist())
        means = demo_dimension_means(encoder, dims, layer)
        return iv.massive_sweep(encoder, texts, layer=layer, dims=list(dims), mean_from=means, max_tokens=n,
                                progress=progress, cancel=cancel)  # fmt: skip

    return _causal(run)


@analysis("interventions.registers", title="Registers inserted after [CLS]", inputs=("encoder", "traces"),
          figures=("interventions.registers",), report=True, questions=(2,))  # fmt: skip
def registers_analysis(encoder, traces, *, registers: int = max(iv.REGISTER_COUNTS), progress=None,
                       cancel=None) -> CausalResult:  # fmt: skip
    """Runs with 0..``registers`` extra tokens inserted after [CLS] (Darcet et al. 2023): does the
    parked attention move to them, and does [CLS] change? A sentence is never cut to make room."""
    texts, n = _texts_and_length(traces)
    try:
        iv.check_register_room(encoder, n, registers)
    except iv.InterventionError as exc:
        raise NotApplicable(str(exc)) from None
    return _causal(lambda: iv.register_sweep(encoder, texts, ks=tuple(range(registers + 1)), max_tokens=n,
                                             progress=progress, cancel=cancel))  # fmt: skip


@analysis("gradient_flow", title="Where a classifier's gradient enters", inputs=("encoder", "trace"),
          figures=("dynamics.gradient_flow",), report=True, questions=(3,))  # fmt: skip
def gradient_flow_analysis(encoder, trace: Trace, *, seed: int = 0) -> Drawn:
    """‖∂loss/∂h‖ per layer and token for a seeded random head on [CLS] and on the mean: only
    [CLS] receives the signal at the last layer, and attention spreads it below."""
    try:
        flows = gradient_flows(encoder, trace.text, seed=seed, max_tokens=trace.seq_len)
    except BlockStructureError as exc:
        raise NotApplicable(str(exc)) from None
    return Drawn(drawings={"dynamics.gradient_flow": (flows, list(trace.tokens))}, tidy=flow_table(flows, trace.tokens),
                 data=flows)  # fmt: skip
