"""Nearest neighbours: which corpus sentences lie closest to a vector (cosine), do [CLS] and the
mean agree on them, and how often is a sentence's paraphrase partner the single closest one
(recall@1) per layer. A neighbour search only finds what the corpus contains: a lower bound on
what a vector keeps of its sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..benchmark import pair_texts
from ..metrics import cosine_matrix
from ..narrative import SAME_VECTOR
from ..vectors import PooledVectors

__all__ = [
    "neighbours_summary",
    "PairSet",
    "nearest_neighbours",
    "neighbour_agreement",
    "neighbour_table",
    "pair_set",
    "paraphrase_recall",
    "recall_at_1",
]



def nearest_neighbours(
    query: np.ndarray,
    vectors: np.ndarray,
    texts: Sequence[str],
    k: int = 5,
    exclude_text: str | None = None,
) -> pd.DataFrame:
    """The ``k`` rows of ``vectors`` [N, D] closest to ``query`` [D] by cosine.

    Rows whose text equals ``exclude_text`` are skipped (the query sentence itself when it is
    in the corpus). Returns columns rank (1 = closest), index, text, cosine.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"vectors must be [N, D] with N = {len(texts)} texts, got {list(vectors.shape)}")
    sims = cosine_matrix(np.asarray(query)[None, :], vectors)[0]
    keep = np.ones(len(texts), dtype=bool)
    if exclude_text is not None:
        keep &= np.array([t != exclude_text for t in texts], dtype=bool)
    candidates = np.flatnonzero(keep)
    if len(candidates) == 0:
        raise ValueError("The corpus has no sentence other than the query itself.")
    # Stable order: by cosine, ties by corpus order.
    order = candidates[np.lexsort((candidates, -sims[candidates]))][: max(int(k), 1)]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "index": order,
            "text": [texts[i] for i in order],
            "cosine": sims[order],
        }
    )


@dataclass(frozen=True)
class PairSet:
    """Unique sentences and the index pairs of the paraphrases among them.

    * ``texts``: N unique sentences (every sentence of every pair: the others are distractors)
    * ``pairs``: int64 [P, 2] indices into ``texts`` of the paraphrase pairs
    """

    texts: tuple[str, ...]
    pairs: np.ndarray
    notes: tuple[str, ...] = ()


def pair_set(pairs: pd.DataFrame, kind: str = "paraphrase", min_score: float = 4.0) -> PairSet:
    """Build a :class:`PairSet` from a pairs table (columns sentence1, sentence2; kind or score).

    Pairs whose ``kind`` is ``kind`` are the queries (without a kind column: pairs scored at
    least ``min_score``); every other sentence stays in as a distractor. Pairs of two identical
    sentences are dropped (finding an exact copy proves nothing). The texts are in the order of
    :func:`clsviz.similarity.pair_texts`, so their vectors can be shared with the benchmark.
    """
    for col in ("sentence1", "sentence2"):
        if col not in pairs.columns:
            raise ValueError(f"The pairs table needs a '{col}' column; it has {', '.join(map(str, pairs.columns))}.")
    texts = pair_texts(pairs)
    index = {t: i for i, t in enumerate(texts)}
    s1, s2 = pairs["sentence1"].astype(str), pairs["sentence2"].astype(str)
    notes = []
    if "kind" in pairs.columns:
        chosen = pairs["kind"].astype(str) == kind
    elif "score" in pairs.columns:
        chosen = pd.to_numeric(pairs["score"], errors="coerce") >= min_score
        notes.append(f"The pairs have no 'kind' column, so pairs scored {min_score:g} or more count as paraphrases.")
    else:
        chosen = pd.Series(True, index=pairs.index)
        notes.append("The pairs have neither 'kind' nor 'score', so every pair counts as a paraphrase.")
    same = chosen & (s1 == s2)
    if same.any():
        notes.append(f"{int(same.sum())} pair(s) of two identical sentences were left out.")
    chosen &= ~same
    idx = np.array([[index[a], index[b]] for a, b in zip(s1[chosen], s2[chosen])], dtype=np.int64).reshape(-1, 2)
    if len(idx) == 0:
        raise ValueError(f"No usable '{kind}' pairs (two different sentences) in the pairs table.")
    return PairSet(texts=texts, pairs=idx, notes=tuple(notes))


def recall_at_1(vectors: np.ndarray, pairs: np.ndarray) -> tuple[float, int, float]:
    """How often a sentence's nearest other sentence is one of its partners.

    vectors : [N, D]; pairs : int [P, 2]. Each pair gives two queries (a -> b, b -> a); the
    candidates are all N sentences except the query. Returns (recall@1, queries, chance),
    chance being the mean of partners / (N - 1) over the queries.
    """
    vectors = np.asarray(vectors)
    n = len(vectors)
    if n < 2:
        raise ValueError("recall@1 needs at least two sentences")
    partners: dict[int, set[int]] = {}
    for a, b in np.asarray(pairs, dtype=np.int64):
        if a != b:
            partners.setdefault(int(a), set()).add(int(b))
            partners.setdefault(int(b), set()).add(int(a))
    queries = np.array(sorted(partners), dtype=np.int64)
    if len(queries) == 0:
        raise ValueError("no pairs of two different sentences")
    sims = cosine_matrix(vectors[queries], vectors)
    sims[np.arange(len(queries)), queries] = -np.inf
    top = sims.argmax(axis=1)
    hits = np.array([top[i] in partners[int(q)] for i, q in enumerate(queries)])
    chance = float(np.mean([len(partners[int(q)]) / (n - 1) for q in queries]))
    return float(hits.mean()), len(queries), chance


def paraphrase_recall(pooled: PooledVectors, pairs: np.ndarray, poolings: Sequence[str] = ("cls", "mean")) -> pd.DataFrame:
    """recall@1 of the paraphrase partner per pooling and layer.

    ``pooled`` holds the vectors of :attr:`PairSet.texts`; ``pairs`` its index pairs.
    Columns: pooling, layer, recall_at_1, queries, candidates, chance.
    """
    rows = []
    for s in poolings:
        for layer in range(pooled.num_layers + 1):
            recall, queries, chance = recall_at_1(pooled.get(s, layer), pairs)
            rows.append(
                {
                    "pooling": s,
                    "layer": layer,
                    "recall_at_1": recall,
                    "queries": queries,
                    "candidates": len(pooled.texts) - 1,
                    "chance": chance,
                }
            )
    return pd.DataFrame(rows)




def neighbour_table(
    queries: dict[str, np.ndarray], vectors: PooledVectors, layer: int, k: int = 5, exclude_text: str | None = None
) -> pd.DataFrame:
    """The ``k`` nearest corpus sentences for each pooling's query vector at ``layer``.

    queries : pooling -> float [D] (e.g. ``{"cls": trace.cls(layer), "mean": pool(trace, "mean", layer)}``)
    Returns the rows of :func:`nearest_neighbours` with ``pooling`` and ``layer`` columns added.
    """
    frames = [
        nearest_neighbours(q, vectors.get(p, layer), vectors.texts, k=k, exclude_text=exclude_text).assign(
            pooling=p, layer=layer
        )
        for p, q in queries.items()
    ]
    return pd.concat(frames, ignore_index=True)


def neighbour_agreement(table: pd.DataFrame, a: str = "cls", b: str = "mean") -> int:
    """How many corpus sentences two poolings' neighbour lists (a :func:`neighbour_table`) share."""
    return len(set(table.loc[table["pooling"] == a, "index"]) & set(table.loc[table["pooling"] == b, "index"]))


def neighbours_summary(table, layer: int, k: int, baseline=None) -> str:
    """The nearest-neighbour table of one layer (columns pooling, rank, index, cosine) in words:
    how far [CLS] and the mean agree, and each closest cosine beside the same cosine for an
    unrelated sentence - a cosine of 1.00 means nothing where every [CLS] is one vector."""
    text = f"At layer {layer}, [CLS] and the mean agree on {neighbour_agreement(table)} of their top {k} neighbours."
    for pooling, name in (("cls", "[CLS]"), ("mean", "the mean")):
        rows = table[table["pooling"] == pooling]
        if rows.empty:
            continue
        top = float(rows.iloc[0]["cosine"])
        text += f" The closest sentence by {name} has cosine {top:.4f}"
        if baseline is not None and pooling in baseline.references:
            reference, spread = baseline.reference(pooling)
            ref = float(reference[layer])
            text += f"; two unrelated sentences have {ref:.4f} ± {float(spread[layer]):.4f} on average"
            if pooling == "cls" and ref >= SAME_VECTOR:
                text += (", so at this layer [CLS] is almost the same vector for every input and this ranking rests "
                         "on tiny differences, not on a closeness a cosine can show")
        text += "."
    return text
