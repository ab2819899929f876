"""The sentence-similarity benchmark: does the cosine of a pooling rank sentence pairs as people do?

Spearman correlation between the cosine of two sentences' vectors and a human similarity score,
per layer and pooling - the live version of Sentence-BERT's Table 1 (Reimers & Gurevych 2019),
where off-the-shelf BERT's [CLS] scored far below mean pooling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .encoder import Encoder
from .metrics import centre, cosine, spearman, spearman_interval
from .pooling import check_pooling
from .vectors import PooledVectors, extract

__all__ = ["COMPARE_POOLINGS", "BenchmarkResult", "benchmark_from_vectors", "pair_texts", "sentence_benchmark"]

COMPARE_POOLINGS = ("cls", "mean", "max")
"""Poolings compared between sentences and in the benchmark."""

BOOTSTRAP_SAMPLES = 1000
"""Resamples of the pairs behind each ρ's 95% interval (spearman_low / spearman_high)."""


@dataclass(frozen=True, eq=False)
class BenchmarkResult:
    """Cosine against human scores on sentence pairs.

    * ``table``: one row per (layer, pooling): ``spearman`` (raw cosine vs score) with its 95%
      bootstrap interval over the pairs (``spearman_low``, ``spearman_high``),
      ``spearman_centred`` (vectors centred on the mean over the pairs' sentences first),
      ``pairs``
    * ``cosines``: float64 [P, L + 1, S] raw cosine of each pair; ``scores``: float64 [P]
    * ``pairs``: the input pairs (sentence1, sentence2, score, ...)
    """

    table: pd.DataFrame
    cosines: np.ndarray
    scores: np.ndarray
    poolings: tuple[str, ...]
    pairs: pd.DataFrame
    model_name: str

    def interval(self, pooling: str, layer: int = -1) -> tuple[float, float, float]:
        """(ρ, low, high) of one pooling at one layer (-1 = the last)."""
        layer = int(self.table["layer"].max()) + 1 + layer if layer < 0 else layer
        row = self.table[(self.table["pooling"] == pooling) & (self.table["layer"] == layer)].iloc[0]
        return float(row["spearman"]), float(row["spearman_low"]), float(row["spearman_high"])

    def best(self) -> pd.Series | None:
        """The (layer, pooling) row with the highest Spearman ρ, or None when no ρ is defined
        (every cosine or every score the same)."""
        scored = self.table.dropna(subset=["spearman"])
        return None if scored.empty else scored.loc[scored["spearman"].idxmax()]

    def pair_table(self, layer: int = -1) -> pd.DataFrame:
        """Each pair with its score and one ``cos_<pooling>`` column per pooling at ``layer``."""
        out = self.pairs.copy()
        for k, s in enumerate(self.poolings):
            out[f"cos_{s}"] = self.cosines[:, layer, k]
        return out


def _check_pairs(pairs: pd.DataFrame) -> None:
    missing = [c for c in ("sentence1", "sentence2", "score") if c not in pairs.columns]
    if missing:
        raise ValueError(
            f"The pairs table lacks column(s) {', '.join(missing)}; it needs sentence1, sentence2, score."
        )
    if len(pairs) < 3:
        raise ValueError(f"A rank correlation needs at least 3 pairs; got {len(pairs)}.")


def pair_texts(pairs: pd.DataFrame) -> tuple[str, ...]:
    """Each distinct sentence of ``pairs`` (columns ``sentence1``, ``sentence2``) once, in order."""
    return tuple(dict.fromkeys([*pairs["sentence1"].astype(str), *pairs["sentence2"].astype(str)]))


def benchmark_from_vectors(vectors: PooledVectors, pairs: pd.DataFrame) -> BenchmarkResult:
    """Spearman correlation between cosine and ``score`` per layer × pooling, from vectors
    already extracted for (at least) every sentence of ``pairs`` (see :func:`pair_texts`)."""
    _check_pairs(pairs)
    where = {t: i for i, t in enumerate(vectors.texts)}
    left = pairs["sentence1"].astype(str).tolist()
    right = pairs["sentence2"].astype(str).tolist()
    absent = [t for t in dict.fromkeys(left + right) if t not in where]
    if absent:
        raise ValueError(f"{len(absent)} sentence(s) of the pairs have no vectors, e.g. {absent[0]!r}.")
    needed = sorted({where[t] for t in left + right})
    vec = vectors.vectors[needed].astype(np.float64)  # [U, L+1, S, D]
    local = {old: new for new, old in enumerate(needed)}
    li = np.array([local[where[t]] for t in left])
    ri = np.array([local[where[t]] for t in right])
    raw = cosine(vec[li], vec[ri])  # [P, L+1, S]
    # Centre on the mean over the pairs' own sentences: the corpus-mean correction.
    centred_vec = centre(vec, vec.mean(axis=0, keepdims=True))
    centred = cosine(centred_vec[li], centred_vec[ri])
    scores = pd.to_numeric(pairs["score"], errors="raise").to_numpy(dtype=np.float64)
    rows = []
    for layer in range(vec.shape[1]):
        for k, s in enumerate(vectors.poolings):
            rho, low, high = spearman_interval(raw[:, layer, k], scores, n_boot=BOOTSTRAP_SAMPLES)
            rows.append(
                dict(
                    layer=layer,
                    pooling=s,
                    spearman=rho,
                    spearman_low=low,
                    spearman_high=high,
                    spearman_centred=spearman(centred[:, layer, k], scores),
                    pairs=len(scores),
                )
            )
    return BenchmarkResult(
        table=pd.DataFrame(rows),
        cosines=raw,
        scores=scores,
        poolings=tuple(vectors.poolings),
        pairs=pairs.reset_index(drop=True),
        model_name=vectors.model_name,
    )


def sentence_benchmark(
    encoder: Encoder,
    pairs: pd.DataFrame,
    poolings: Sequence[str] = COMPARE_POOLINGS,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    max_tokens: int | None = None,
) -> BenchmarkResult:
    """Spearman correlation between cosine and ``score`` on sentence pairs, per layer × pooling.

    ``pairs`` needs columns ``sentence1``, ``sentence2``, ``score`` (e.g.
    :func:`clsviz.corpus.demo_pairs` or :func:`clsviz.corpus.load_pairs`). Each distinct
    sentence is encoded once with :func:`clsviz.extract`. The live version of Sentence-BERT's
    Table 1, where BERT's [CLS] scored far below mean pooling.
    """
    _check_pairs(pairs)
    poolings = tuple(check_pooling(s) for s in poolings)
    vectors = extract(
        encoder, pair_texts(pairs), poolings, batch_size=batch_size, progress=progress, max_tokens=max_tokens
    )
    return benchmark_from_vectors(vectors, pairs)


