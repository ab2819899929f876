"""Evidence about two models side by side (the Compare page): layer x layer CKA, attention around
[CLS] in both, and the probe and similarity curves of both.

Each wraps the experiment that computes it (:func:`clsviz.compare.compare_encoders`,
:func:`clsviz.compare.attention_change`, :func:`clsviz.experiments.run_side_by_side`); model A is
the ``encoder``, model B the ``second``. Corpora are sampled here (stratified, seeded), so a page
hands over the whole corpus and the sample size.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..compare import CKA_READINGS, AttentionChange, ModelComparison, attention_change, compare_encoders
from ..corpus import Corpus
from ..encoder import Encoder
from ..experiments.side_by_side import (
    SideBySide,
    describe_change,
    diagonal_table,
    run_side_by_side,
    sample_corpus,
)
from ..figures import figure_spec
from ..tracing import Trace
from ..tracing import trace as trace_text
from .choices import comma_choices
from .core import Result, analysis

__all__ = ["AttentionComparison", "CkaComparison", "CurvesComparison", "parse_readings"]


def parse_readings(text: str) -> tuple[str, ...]:
    """Comma-separated CKA readings (``"tokens,cls,mean"``) as a tuple; a ValueError naming the
    valid ones otherwise."""
    return comma_choices(text, CKA_READINGS, "readings")


@dataclass(frozen=True, eq=False)
class CkaComparison(Result):
    """Layer x layer CKA of two models (``comparison``) and its diagonal. View for
    ``compare.cka``: ``reading`` (default the first computed)."""

    comparison: ModelComparison
    diagonal: pd.DataFrame

    def table(self) -> pd.DataFrame:
        return self.comparison.table()

    def figure_keys(self) -> tuple[str, ...]:
        return ("compare.cka", "compare.diagonal") if self.comparison.cka else ()

    def figure(self, key: str, *, reading: str | None = None, **_):
        if key == "compare.cka" and self.comparison.cka:
            return figure_spec(key).draw(self.comparison, reading or next(iter(self.comparison.cka)))
        if key == "compare.diagonal":
            return figure_spec(key).draw(self.diagonal, self.comparison.model_a, self.comparison.model_b)
        return super().figure(key)

    def figure_table(self, key: str, **view) -> pd.DataFrame:
        return self.diagonal if key == "compare.diagonal" else self.table()

    def summary(self) -> list[str]:
        return [describe_change(self.comparison)]


@analysis("compare.cka", title="Layer x layer CKA of two models", inputs=("encoder", "second", "corpus"),
          figures=("compare.cka", "compare.diagonal"), long=True, questions=(3,))  # fmt: skip
def cka_analysis(encoder: Encoder, second: Encoder, corpus: Corpus, *, texts: int = 200,
                 readings: str = ",".join(CKA_READINGS), seed: int = 0, progress=None, cancel=None) -> CkaComparison:  # fmt: skip
    """Linear CKA between every layer of A and every layer of B on a sample of ``texts`` texts of
    the corpus (stratified by its first label column), per reading (comma-separated: tokens, cls,
    mean), with the diagonal (each layer against its counterpart) and where B changed most."""
    sample = sample_corpus(corpus, texts, corpus.label_names[0] if corpus.labels else None, seed)
    comparison = compare_encoders(encoder, second, sample.texts, parse_readings(readings), seed=seed,
                                  progress=progress, cancel=cancel)  # fmt: skip
    return CkaComparison(comparison, diagonal_table(comparison))


@dataclass(frozen=True, eq=False)
class AttentionComparison(Result):
    """Attention to and from [CLS] per block and head in both models (``change``). View for
    ``compare.attention``: ``measure``, one of :data:`clsviz.compare.ATTENTION_MEASURES` (default
    ``to_cls``)."""

    change: AttentionChange

    def table(self) -> pd.DataFrame:
        return self.change.table()

    def figure_keys(self) -> tuple[str, ...]:
        return ("compare.attention",)

    def figure(self, key: str, *, measure: str = "to_cls", **_):
        if key != "compare.attention":
            return super().figure(key)
        return figure_spec(key).draw(self.change, measure)


@analysis("compare.attention", title="Attention around [CLS] in two models", inputs=("trace", "second"),
          figures=("compare.attention",), questions=(1, 3))  # fmt: skip
def attention_analysis(trace: Trace, second: Encoder) -> AttentionComparison:
    """The traced sentence read by B too (cut to the same length), and attention to and from
    [CLS] per block and head in both, with B - A. Needs the same tokenization and the same shape
    (a ValueError says so otherwise)."""
    return AttentionComparison(attention_change(trace, trace_text(second, trace.text, max_tokens=trace.seq_len)))


@dataclass(frozen=True, eq=False)
class CurvesComparison(Result):
    """Probe accuracy per layer and (with pairs) Spearman on the pairs, both models (``result``)."""

    result: SideBySide

    def table(self) -> pd.DataFrame:
        return self.result.probe

    def figure_keys(self) -> tuple[str, ...]:
        return ("compare.probe", *(("compare.sts",) if self.result.sts is not None else ()))

    def figure(self, key: str, **_):
        if key not in self.figure_keys():
            return super().figure(key)
        return figure_spec(key).draw(self.result)

    def figure_table(self, key: str, **view) -> pd.DataFrame:
        return self.result.sts if key == "compare.sts" else self.result.probe

    def summary(self) -> list[str]:
        return [self.result.summary()]


@analysis("compare.curves", title="Probe and similarity curves of two models", inputs=("encoder", "second", "corpus"),
          optional=("pairs",), figures=("compare.probe", "compare.sts"), long=True, questions=(1, 3))  # fmt: skip
def curves_analysis(encoder: Encoder, second: Encoder, corpus: Corpus, pairs: pd.DataFrame | None = None, *,
                    label_name: str = "sentiment", texts: int = 300, seed: int = 0, progress=None,
                    cancel=None) -> CurvesComparison:  # fmt: skip
    """A probe for ``label_name`` per layer (5-fold, [CLS] and mean) on a stratified sample of ``texts``
    labelled texts, and with scored ``pairs`` the Spearman correlation of cosine with their
    scores, for both models on the same texts, folds and seed."""
    if label_name not in corpus.labels:
        raise ValueError(f"The corpus has no label column '{label_name}' (label columns: {', '.join(corpus.labels) or 'none'}).")
    sample = sample_corpus(corpus.labelled(label_name), texts, label_name, seed)
    return CurvesComparison(run_side_by_side(encoder, second, sample.texts, list(sample.labels[label_name]), pairs, seed=seed,
                                             label_name=label_name, progress=progress, cancel=cancel))  # fmt: skip
