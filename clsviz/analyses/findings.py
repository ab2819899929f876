"""Evidence with a verdict: the published findings checked on this model, and the causal tests
on a corpus (background jobs, each deciding number with its 95% interval).

``findings`` runs :func:`clsviz.literature.check_claims` on fixed, stated samples: its verdicts
never depend on what else was computed before. ``causal.corpus`` runs one causal test of
:mod:`clsviz.experiments.interventions` on a stratified sample of a corpus, with a probe of a
label when one is given; its sample is checked before a job is queued (:func:`causal_sample`).
``position.probe`` reads a label from the [CLS] slot when [CLS] is moved, removed or replaced
(:func:`clsviz.experiments.moved_cls.position_probe`): the corpus side of "Why first?".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import pandas as pd

from .. import figures
from ..architectures import BlockStructureError
from ..corpus import is_missing, stratified_rows
from ..experiments import interventions as iv
from ..experiments.causal_runs import labelled_texts
from ..experiments.moved_cls import position_probe, summarize_probe
from ..experiments.position import POSITION_VARIANTS
from ..literature import check_claims, count_verdicts
from ..literature.measures import ATTENTION_SAMPLE, SAMPLE_SIZE
from ..progress import check_cancel
from ..verdicts import VERDICTS
from .core import NotApplicable, Result, analysis
from .sweeps import CAUSAL_FIGURES, CausalResult, PositionView

__all__ = ["CAUSAL_KINDS", "PROBE_VARIANTS", "FindingsResult", "causal_sample", "corpus_rows"]


@dataclass(frozen=True, eq=False)
class FindingsResult(Result):
    """The published findings on one model: ``findings`` is :func:`check_claims`'s table (one
    row per claim: verdict, reason, low / high / threshold of the deciding number, caveat)."""

    findings: pd.DataFrame
    model_name: str

    def table(self) -> pd.DataFrame:
        return self.findings

    def figure_keys(self) -> tuple[str, ...]:
        return ("findings.intervals",)

    def figure(self, key: str, **view):
        if key == "findings.intervals":
            return figures.findings_intervals_figure(self.findings)
        return super().figure(key)

    def counts(self) -> dict[str, int]:
        """How many rows got each verdict (every verdict listed, 0 where none)."""
        found = self.findings["verdict"].value_counts()
        return {v: int(found.get(v, 0)) for v in VERDICTS}

    def summary(self) -> list[str]:
        return [count_verdicts(self.findings, self.model_name), *self.findings["sentence"]]


@analysis("findings", title="Published findings, checked on this model", inputs=("encoder",),
          optional=("corpus", "pairs", "second"), figures=("findings.intervals",), long=True, questions=(1, 2, 3, 4))  # fmt: skip
def findings_analysis(encoder, corpus=None, pairs=None, second=None, *, sample_size: int = SAMPLE_SIZE,
                      attention_sample: int = ATTENTION_SAMPLE, seed: int = 0, progress=None,
                      cancel=None) -> FindingsResult:  # fmt: skip
    """Every published finding about [CLS] that clsviz can measure, measured on this model by the
    same protocol as far as the model allows, each deciding number with its 95% interval and one
    of five verdicts; ``second`` is a fine-tuned copy of the model (for "fine-tuning changes the
    top layers"); ``corpus`` and ``pairs`` replace the demo corpus and pairs."""
    table = check_claims(encoder, corpus=corpus, pairs=pairs, finetuned=second, sample_size=sample_size,
                         attention_sample=attention_sample, seed=seed, progress=progress, cancel=cancel)  # fmt: skip
    return FindingsResult(table, encoder.name)


CausalKind = Literal["knockout", "patching", "heads", "massive", "registers"]
CAUSAL_KINDS: tuple[str, ...] = get_args(CausalKind)


def corpus_rows(corpus, label: str | None, n: int, seed: int = 0) -> list[int]:
    """At most ``n`` rows of ``corpus``: with a label, the labelled rows (a stratified sample when
    fewer than all); without one, the first ``n`` texts."""
    if label is None:
        return list(range(min(n, len(corpus))))
    rows = [i for i, v in enumerate(corpus.labels[label]) if not is_missing(v)]
    if len(rows) <= n:
        return rows
    picked = stratified_rows([corpus.labels[label][i] for i in rows], n, seed=seed)
    return [rows[i] for i in picked]


def _check_label(corpus, label: str | None) -> None:
    if label is not None and label not in corpus.labels:
        raise ValueError(f"The corpus has no label column '{label}'; its labels: {', '.join(corpus.labels) or 'none'}.")


def causal_sample(corpus, *, kind: str = "knockout", label: str | None = None, texts: int = 200, folds: int = 5,
                  seed: int = 0) -> tuple[list[str], list | None]:  # fmt: skip
    """The texts (and their labels, None without a label) that :func:`causal_corpus_analysis`
    runs on, checked for a ``folds``-fold probe of ``label``: a ``ValueError`` a person can act on
    (a missing column, a single class, a class smaller than the folds) before anything runs."""
    _check_label(corpus, label)
    if kind == "patching" and label is None:
        raise NotApplicable("Patching is read by a probe: pick a corpus with a label column and name it.")
    rows = corpus_rows(corpus, label, int(texts), seed)
    chosen = [corpus.texts[i] for i in rows]
    if label is None:
        return chosen, None
    values = [corpus.labels[label][i] for i in rows]
    labelled_texts(chosen, values, folds, label)
    return chosen, values


def _check_causal(encoder, corpus, *, kind, label, texts, folds, seed, **test_options) -> None:
    causal_sample(corpus, kind=kind, label=label, texts=texts, folds=folds, seed=seed)


@analysis("causal.corpus", title="A causal test on a corpus", inputs=("encoder", "corpus"),
          figures=tuple(CAUSAL_FIGURES.values()), long=True, questions=(1, 2, 3), precheck=_check_causal)  # fmt: skip
def causal_corpus_analysis(encoder, corpus, *, kind: CausalKind = "knockout", label: str | None = None,
                           texts: int = 200, folds: int = 5, pairs: int = 200, mode: Literal["mean", "zero"] = "mean",
                           layer: int = 1, registers: int = 4, seed: int = 0, progress=None,
                           cancel=None) -> CausalResult:  # fmt: skip
    """One causal test on a stratified sample of ``texts`` corpus texts (every corpus mean with its
    95% interval over the texts or pairs), with a probe of ``label`` fitted on the clean [CLS]
    vectors when a label is given (patching needs one)."""
    chosen, values = causal_sample(corpus, kind=kind, label=label, texts=texts, folds=folds, seed=seed)
    common = dict(folds=folds, seed=seed, label_name=label or "label", progress=progress, cancel=cancel)
    runs = {
        "knockout": lambda: iv.knockout_sweep(encoder, chosen, values, **common),
        "patching": lambda: iv.patching_sweep(encoder, chosen, values, pairs=pairs, **common),
        "heads": lambda: iv.head_sweep(encoder, chosen, values, mode=mode, **common),
        "massive": lambda: iv.massive_sweep(encoder, chosen, values, layer=layer, **common),
        "registers": lambda: iv.register_sweep(encoder, chosen, values, ks=tuple(range(int(registers) + 1)), **common),
    }
    try:
        return CausalResult(runs[kind]())
    except BlockStructureError as exc:
        raise NotApplicable(str(exc)) from None


PROBE_VARIANTS = ("standard", "cls_end", "cls_middle", "mask")
"""The variants the moved-[CLS] probe runs by default (every one of
:data:`clsviz.experiments.position.POSITION_VARIANTS` can be asked for)."""


def _variants(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [v for v in chosen if v not in POSITION_VARIANTS]
    if unknown or not chosen:
        raise ValueError(f"variants: give comma-separated names of {', '.join(POSITION_VARIANTS)}; "
                         f"got {', '.join(unknown) or 'none'}.")  # fmt: skip
    return chosen


@analysis("position.probe", title="A probe on the moved [CLS], over a corpus", inputs=("encoder", "corpus"),
          figures=("position.probe",), long=True, questions=(2,))  # fmt: skip
def position_probe_analysis(encoder, corpus, *, label: str | None = None, texts: int = 300, folds: int = 5,
                            variants: str = ",".join(PROBE_VARIANTS), shift: int = 20, replacement: str = "the",
                            seed: int = 0, progress=None, cancel=None) -> PositionView:  # fmt: skip
    """Each of the first ``texts`` labelled texts rebuilt as each variant ([CLS] moved, removed or
    replaced; ``variants``: comma-separated names), the vector read from the [CLS] slot wherever
    it sits, and a linear probe of ``label`` (default: the corpus's first label column)
    cross-validated per layer - the same probe as for the poolings."""
    chosen = _variants(variants)
    if not corpus.labels:
        raise NotApplicable("This corpus has no label column, so there is nothing for a probe to predict.")
    label = corpus.label_names[0] if label is None else label
    _check_label(corpus, label)
    labels = corpus.labels[label]
    rows = [i for i, v in enumerate(labels) if str(v).strip()][: int(texts)]

    def step(fraction: float, message: str) -> None:
        check_cancel(cancel, "The moved-[CLS] probe")
        if progress is not None:
            progress(round(1000 * min(1.0, fraction)), 1000, message)

    table, notes = position_probe(encoder, [corpus.texts[i] for i in rows], [labels[i] for i in rows], variants=chosen,
                                  folds=folds, seed=seed, shift=shift, replacement=replacement, label_name=label,
                                  progress=step)  # fmt: skip
    return PositionView(drawings={"position.probe": (table, label)}, tidy=table, sentences=(summarize_probe(table),),
                        data=table, notes=notes)  # fmt: skip
