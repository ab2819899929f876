"""Evidence from cosines and norms: [CLS] against its own tokens, sentences against each other,
cosine against human scores, vector norms and massive activations, the anisotropy baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .. import figures
from ..baseline import Baseline
from ..benchmark import COMPARE_POOLINGS, BenchmarkResult, benchmark_from_vectors
from ..layers import check_layer
from ..narrative import benchmark_summary
from ..norms import dimension_values, massive_dimensions, token_norms, top_dimensions
from ..similarity import (
    cls_summary,
    cls_token_cosines,
    compare_sentences,
    comparison_at_layer,
    describe_summary,
    token_table,
)
from ..tracing import Trace
from ..vectors import PooledVectors
from .core import NotApplicable, Result, analysis

__all__ = ["BaselineResult", "BenchmarkView", "ClsSimilarity", "ComparisonResult", "NormsResult"]

View = Literal["raw", "minus baseline", "centred"]


def _checked_view(view: str, baseline: Baseline | None) -> str:
    if view != "raw" and baseline is None:
        raise NotApplicable(
            f"The '{view}' view needs the anisotropy baseline of this model (pass one, or use the 'raw' view)."
        )
    return view


@dataclass(frozen=True, eq=False)
class ClsSimilarity(Result):
    """cos([CLS], token) per layer × token and [CLS] against the mean and the pooler per layer,
    in one cosine ``view``; ``baseline`` adds what unrelated text looks like."""

    trace: Trace
    cosines: np.ndarray  # [L + 1, T]
    layers: pd.DataFrame  # cls_summary
    view: str
    baseline: Baseline | None

    def table(self) -> pd.DataFrame:
        return self.layers

    def figure_keys(self) -> tuple[str, ...]:
        return ("similarity.cls_tokens", "similarity.summary")

    def figure(self, key: str, **view):
        if key == "similarity.cls_tokens":
            return figures.cls_token_cosine_figure(self.trace, self.cosines, self.view)
        if key == "similarity.summary":
            return figures.cls_summary_figure(self.layers, self.baseline, self.view)
        return super().figure(key)

    def figure_table(self, key: str, **view) -> pd.DataFrame:
        if key == "similarity.cls_tokens":
            return token_table(self.trace, self.cosines, "cosine")
        return self.layers

    def summary(self) -> list[str]:
        return [describe_summary(self.layers, self.baseline, self.view)]


@analysis("similarity", title="[CLS] and its tokens", inputs=("trace",), optional=("baseline",),
          figures=("similarity.cls_tokens", "similarity.summary"), report=True, questions=(1,))  # fmt: skip
def similarity_analysis(trace: Trace, baseline: Baseline | None = None, *, view: View = "raw") -> ClsSimilarity:
    """How close the [CLS] vector is to the sentence's own tokens, to their mean and to the pooler,
    layer by layer, next to what unrelated text looks like (Ethayarajh 2019)."""
    view = _checked_view(view, baseline)
    return ClsSimilarity(trace, cls_token_cosines(trace, view, baseline), cls_summary(trace, view, baseline), view, baseline)


@dataclass(frozen=True, eq=False)
class ComparisonResult(Result):
    """Cosine between every pair of typed sentences per layer × pooling (``table``)."""

    comparison: pd.DataFrame
    view: str

    def table(self) -> pd.DataFrame:
        return self.comparison

    def last_layer(self) -> pd.DataFrame:
        """The last layer's cosines, one column per pooling."""
        return comparison_at_layer(self.comparison)

    def figure_keys(self) -> tuple[str, ...]:
        return ("similarity.compare",)

    def figure(self, key: str, **view):
        if key == "similarity.compare":
            return figures.comparison_figure(self.comparison, self.view)
        return super().figure(key)


@analysis("similarity.compare", title="Compare sentences", inputs=("traces",), optional=("baseline",),
          figures=("similarity.compare",), questions=(1, 2))  # fmt: skip
def compare_analysis(traces, baseline: Baseline | None = None, *, view: View = "raw") -> ComparisonResult:
    """Cosine between every pair of sentences per layer and pooling: which pooling tells a
    paraphrase from an unrelated sentence?"""
    view = _checked_view(view, baseline)
    return ComparisonResult(compare_sentences(list(traces), COMPARE_POOLINGS, view=view, baseline=baseline), view)


@dataclass(frozen=True, eq=False)
class BenchmarkView(Result):
    """Spearman between cosine and human scores per layer × pooling (:class:`BenchmarkResult`).
    View: ``layer`` for the scatter of each pair's cosine against its score."""

    benchmark: BenchmarkResult
    source: str

    def table(self) -> pd.DataFrame:
        return self.benchmark.table

    def figure_keys(self) -> tuple[str, ...]:
        return ("similarity.benchmark", "similarity.benchmark_scatter")

    def figure(self, key: str, layer: int = -1, **view):
        if key == "similarity.benchmark":
            return figures.benchmark_figure(self.benchmark.table)
        if key == "similarity.benchmark_scatter":
            return figures.benchmark_scatter_figure(self.benchmark.pair_table(layer), self.benchmark.poolings)
        return super().figure(key)

    def figure_table(self, key: str, layer: int = -1, **view) -> pd.DataFrame:
        if key == "similarity.benchmark_scatter":
            return self.benchmark.pair_table(layer)
        return self.benchmark.table

    def summary(self) -> list[str]:
        if self.benchmark.best() is None:
            return ["Every cosine or every score is the same, so no ranking can be compared. Use pairs with different scores."]
        return [benchmark_summary(self.benchmark, f"pairs ({self.source})")]


@analysis("similarity.benchmark", title="Cosine against human similarity scores", inputs=("vectors", "pairs"),
          figures=("similarity.benchmark", "similarity.benchmark_scatter"), questions=(1, 2))  # fmt: skip
def benchmark_analysis(vectors: PooledVectors, pairs: pd.DataFrame, *, source: str = "pairs") -> BenchmarkView:
    """Spearman correlation between cosine and human scores per layer and pooling, with bootstrap
    intervals: the live version of Sentence-BERT's Table 1 (Reimers & Gurevych 2019)."""
    return BenchmarkView(benchmark_from_vectors(vectors, pairs), source)


@dataclass(frozen=True, eq=False)
class NormsResult(Result):
    """Vector norms of every token per layer, and the largest dimensions of [CLS] and [SEP].

    View: ``layer`` (hidden-state index, default the last) and ``k`` (the largest dimensions shown
    per token, default 5) for the top dimensions; ``dimension`` (default the largest relative to
    the median at that layer) to follow through the layers."""

    trace: Trace
    norms: np.ndarray  # float64 [L + 1, T]
    top: pd.DataFrame  # top_dimensions(trace, TOP_KEPT)

    def table(self) -> pd.DataFrame:
        return self.top

    def top_dimensions(self, k: int = 5) -> pd.DataFrame:
        """The ``k`` largest dimensions of [CLS] and [SEP] per layer (``clsviz.norms.top_dimensions``)."""
        if not 1 <= int(k) <= TOP_KEPT:
            raise ValueError(f"k (dimensions to show) must be between 1 and {TOP_KEPT}; got {k}.")
        return self.top[self.top["rank"] <= int(k)].reset_index(drop=True)

    def dimensions(self, layer: int = -1, k: int = 5) -> list[int]:
        """The listed dimensions at ``layer``, largest relative to the median first."""
        layer = check_layer(layer, self.trace.num_layers)
        top = self.top_dimensions(k)
        return massive_dimensions(top[top["layer"] == layer])

    def _dimension(self, layer: int, k: int, dimension: int | None) -> int:
        return self.dimensions(layer, k)[0] if dimension is None else int(dimension)

    def figure_keys(self) -> tuple[str, ...]:
        return ("similarity.norms", "similarity.massive", "similarity.dimension")

    def figure(self, key: str, layer: int = -1, k: int = 5, dimension: int | None = None, **view):
        layer = check_layer(layer, self.trace.num_layers)
        if key == "similarity.norms":
            return figures.token_norms_figure(self.trace, self.norms)
        if key == "similarity.massive":
            return figures.top_dimensions_figure(self.top_dimensions(k), layer)
        if key == "similarity.dimension":
            dim = self._dimension(layer, k, dimension)
            return figures.dimension_figure(self.trace, dimension_values(self.trace, dim), dim)
        return super().figure(key)

    def figure_table(self, key: str, layer: int = -1, k: int = 5, dimension: int | None = None, **view) -> pd.DataFrame:
        if key == "similarity.norms":
            return token_table(self.trace, self.norms, "norm")
        if key == "similarity.dimension":
            dim = self._dimension(check_layer(layer, self.trace.num_layers), k, dimension)
            return token_table(self.trace, dimension_values(self.trace, dim), f"dim_{dim}")
        return self.top_dimensions(k)

    def summary(self) -> list[str]:
        last = self.top[self.top["layer"] == self.trace.num_layers]
        biggest = last.sort_values("times_median", ascending=False).iloc[0]
        return [
            f"The largest activation at the last layer is dimension {int(biggest['dimension'])} on "
            f"{biggest['token']}, {biggest['times_median']:.0f} times the layer's median magnitude "
            "(Sun et al. 2024 call thousands of times 'massive')."
        ]


TOP_KEPT = 20
"""The largest dimensions of [CLS] and [SEP] kept per layer (the view shows up to this many)."""


@analysis("norms", title="Norms and massive activations", inputs=("trace",),
          figures=("similarity.norms", "similarity.massive", "similarity.dimension"), report=True,
          questions=(1, 2))  # fmt: skip
def norms_analysis(trace: Trace) -> NormsResult:
    """The norm of every token's vector per layer, and the largest dimensions of [CLS] and [SEP]
    per layer relative to the layer's median (massive activations, Sun et al. 2024)."""
    return NormsResult(trace, token_norms(trace), top_dimensions(trace, TOP_KEPT))


@dataclass(frozen=True, eq=False)
class BaselineResult(Result):
    """The anisotropy baseline: cosines of unrelated tokens and sentences per layer and pooling."""

    baseline: Baseline
    view: str

    def table(self) -> pd.DataFrame:
        return self.baseline.table

    def figure_keys(self) -> tuple[str, ...]:
        return ("similarity.baseline",)

    def figure(self, key: str, **view):
        if key == "similarity.baseline":
            return figures.anisotropy_figure(self.baseline, self.view)
        return super().figure(key)


@analysis("baseline", title="What unrelated text looks like", inputs=("baseline",), figures=("similarity.baseline",),
          report=True, questions=(1,))  # fmt: skip
def baseline_analysis(baseline: Baseline, *, view: View = "raw") -> BaselineResult:
    """Cosine between unrelated tokens and sentences per layer (Ethayarajh 2019): the floor under
    every cosine clsviz shows."""
    return BaselineResult(baseline, view)
