"""Evidence with a verdict: the published findings checked on this model, and the causal tests
on a corpus (background jobs, each deciding number with its 95% interval).

``findings`` runs :func:`clsviz.literature.check_claims` on fixed, stated samples: its verdicts
never depend on what else was computed before. ``causal.corpus`` runs one causal test of
:mod:`clsviz.experiments.interventions` on a stratified sample of a corpus, with a probe of a
label when one is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from .. import figures
from ..architectures import BlockStructureError
from ..corpus import is_missing, stratified_rows
from ..experiments import interventions as iv
from ..literature import check_claims, count_verdicts
from ..literature.measures import ATTENTION_SAMPLE, SAMPLE_SIZE
from ..verdicts import VERDICTS
from .core import Drawn, NotApplicable, Result, analysis

__all__ = ["CAUSAL_KINDS", "FindingsResult", "corpus_rows"]


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
CAUSAL_KINDS: tuple[str, ...] = ("knockout", "patching", "heads", "massive", "registers")
_FIGURES = {
    "knockout": ("interventions.knockout", lambda s: (s.table,)),
    "patching": ("interventions.patching", lambda s: (s.table,)),
    "heads": ("interventions.heads", lambda s: (s.table,)),
    "massive": ("interventions.massive", lambda s: (s.table, s.attention)),
    "registers": ("interventions.registers", lambda s: (s.table, s.attention)),
}


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


@analysis("causal.corpus", title="A causal test on a corpus", inputs=("encoder", "corpus"),
          figures=tuple(f for f, _ in _FIGURES.values()), long=True, questions=(1, 2, 3))  # fmt: skip
def causal_corpus_analysis(encoder, corpus, *, kind: CausalKind = "knockout", label: str | None = None,
                           texts: int = 200, folds: int = 5, pairs: int = 200, mode: Literal["mean", "zero"] = "mean",
                           layer: int = 1, registers: int = 4, seed: int = 0, progress=None,
                           cancel=None) -> Drawn:  # fmt: skip
    """One causal test on a stratified sample of ``texts`` corpus texts (every corpus mean with its
    95% interval over the texts or pairs), with a probe of ``label`` fitted on the clean [CLS]
    vectors when a label is given (patching needs one)."""
    if label is not None and label not in corpus.labels:
        raise ValueError(f"The corpus has no label column '{label}'; its labels: {', '.join(corpus.labels) or 'none'}.")
    if kind == "patching" and label is None:
        raise NotApplicable("Patching is read by a probe: pick a corpus with a label column and name it.")
    rows = corpus_rows(corpus, label, int(texts), seed)
    chosen = [corpus.texts[i] for i in rows]
    values = None if label is None else [corpus.labels[label][i] for i in rows]
    common = dict(folds=folds, seed=seed, label_name=label or "label", progress=progress, cancel=cancel)
    runs = {
        "knockout": lambda: iv.knockout_sweep(encoder, chosen, values, **common),
        "patching": lambda: iv.patching_sweep(encoder, chosen, values, pairs=pairs, **common),
        "heads": lambda: iv.head_sweep(encoder, chosen, values, mode=mode, **common),
        "massive": lambda: iv.massive_sweep(encoder, chosen, values, layer=layer, **common),
        "registers": lambda: iv.register_sweep(encoder, chosen, values, ks=tuple(range(int(registers) + 1)), **common),
    }
    try:
        sweep = runs[kind]()
    except BlockStructureError as exc:
        raise NotApplicable(str(exc)) from None
    key, args = _FIGURES[kind]
    tables = {key: sweep.table}
    if sweep.attention is not None:
        tables["attention"] = sweep.attention
    return Drawn(drawings={key: args(sweep)}, tidy=sweep.table, tables=tables,
                 sentences=(*sweep.messages, sweep.finding), data=sweep)  # fmt: skip
