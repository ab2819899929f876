"""What simple readers recover from a sentence vector: its nearest corpus sentences, whether the
nearest one is its paraphrase, and the words a linear decoder names (the "Recover the sentence?"
page's one-step readers; the trained ones are in :mod:`clsviz.analyses.recovery`).

Each takes corpus vectors (:class:`clsviz.PooledVectors` with ``cls`` and ``mean``) and, where it
reads the typed sentence, its trace; a layer is a hidden-state index (0 = embeddings, -1 = last).
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

from ..experiments.inversion import bow_f1, decode_words, summarize_bow, summarize_recall
from ..experiments.neighbours import neighbour_table, neighbours_summary, pair_set, paraphrase_recall
from ..layers import check_layer
from ..pooling import pool
from ..tracing import Trace
from ..vectors import PooledVectors
from .core import Drawn, analysis

__all__ = ["POOLING_NAMES"]

POOLING_NAMES = {"cls": "[CLS]", "mean": "mean of all tokens"}


def _layer(trace: Trace, layer: int) -> int:
    return check_layer(layer, trace.num_layers)


@analysis("inversion.neighbours", title="Nearest corpus sentences of [CLS] and of the mean",
          inputs=("trace", "vectors"), optional=("baseline",), figures=("inversion.neighbours",),
          questions=(4, 1))  # fmt: skip
def neighbours_analysis(trace: Trace, vectors: PooledVectors, baseline=None, *, layer: int = -1, k: int = 5) -> Drawn:
    """The ``k`` corpus sentences whose [CLS] (and mean) vector at ``layer`` lies closest (cosine) to
    the typed sentence's, the sentence itself left out; how far the two poolings agree."""
    layer = _layer(trace, layer)
    queries = {"cls": trace.cls(layer), "mean": pool(trace, "mean", layer)}
    table = neighbour_table(queries, vectors, layer, k=k, exclude_text=trace.text)
    return Drawn(drawings={"inversion.neighbours": (table, f"Nearest corpus sentences at layer {layer}")},
                 tidy=table, sentences=(neighbours_summary(table, layer, k, baseline),), data=table)


@analysis("inversion.recall", title="Is the nearest sentence its paraphrase? (recall@1)", inputs=("vectors", "pairs"),
          figures=("inversion.recall",), questions=(4, 1))  # fmt: skip
def recall_analysis(vectors: PooledVectors, pairs: pd.DataFrame) -> Drawn:
    """For every paraphrase pair, each sentence a query: is the single closest other sentence its
    partner? recall@1 per layer for [CLS] and the mean. ``vectors`` hold the pairs' sentences in
    the order of :func:`clsviz.benchmark.pair_texts`."""
    ps = pair_set(pairs)
    if tuple(vectors.texts) != tuple(ps.texts):
        raise ValueError("The vectors do not hold the pairs' sentences in order; embed pair_texts(pairs).")
    table = paraphrase_recall(vectors, ps.pairs, ("cls", "mean"))
    return Drawn(drawings={"inversion.recall": (table,)}, tidy=table, sentences=(summarize_recall(table),), data=ps)


@analysis("inversion.bow", title="A linear bag-of-words decoder per layer", inputs=("vectors",),
          figures=("inversion.bow",), questions=(4,))  # fmt: skip
def bow_analysis(vectors: PooledVectors, *, vocab_size: int = 300) -> Drawn:
    """Held-out F1 of a linear decoder that names the corpus's frequent content words from the
    [CLS] (and mean) vector, per layer, against guessing frequent words without the vector."""
    table, vocab = bow_f1(vectors, ("cls", "mean"), vocab_size=int(vocab_size))
    return Drawn(drawings={"inversion.bow": (table,)}, tidy=table, sentences=(summarize_bow(table),),
                 data=vocab)


@analysis("inversion.words", title="The words read from one sentence's vector", inputs=("trace", "vectors"),
          figures=("inversion.words",), questions=(4,))  # fmt: skip
def words_analysis(trace: Trace, vectors: PooledVectors, *, pooling: Literal["cls", "mean"] = "cls",
                   layer: int = -1, vocab_size: int = 300, k: int = 8) -> Drawn:
    """The top ``k`` words the bag-of-words decoder (trained on the corpus, this sentence left
    out) reads from the typed sentence's vector, and which of them the sentence contains."""
    layer = _layer(trace, layer)
    query = trace.cls(layer) if pooling == "cls" else pool(trace, "mean", layer)
    decoded = decode_words(query, trace.text, vectors.get(pooling, layer), vectors.texts, vocab_size=vocab_size, k=k)
    title = f"{POOLING_NAMES[pooling]}: top {len(decoded.table)} words"
    return Drawn(drawings={"inversion.words": (decoded.table, title)}, tidy=decoded.table, data=decoded)
