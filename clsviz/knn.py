"""Nearest-neighbour search over a corpus's vectors of one (layer, pooling), with faiss.

An index is built once per (vectors, layer, pooling) (:func:`build_index`) and answers a query in
milliseconds at 100k rows. Vectors are scaled to unit length, so inner product is cosine. Up to
:data:`EXACT_LIMIT` rows the index is exact (``IndexFlatIP``: a search is one matrix-vector
product, faster than building a graph is worth); above it, an HNSW graph (``IndexHNSWFlat``) keeps
queries fast at millions of rows, approximately.

faiss-cpu is used because it installs as a wheel on Linux, macOS and Windows, is maintained, and
holds exact and approximate indexes behind one interface; hnswlib's last release has no wheel for
current Pythons (it needs a C++ compiler at install time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .metrics import check_matrix, unit_rows

__all__ = ["EXACT_LIMIT", "NeighbourIndex", "build_index", "neighbour_search"]

EXACT_LIMIT = 1_000_000
"""Indexes of at most this many rows are exact; larger ones use an HNSW graph."""


class NeighbourIndex:
    """Cosine nearest neighbours among N vectors [N, D].

    * ``kind``: "exact" or "hnsw" ("auto": exact up to :data:`EXACT_LIMIT` rows)
    * ``nbytes``: the memory the index holds (the unit vectors; an HNSW graph adds its links)
    """

    def __init__(self, vectors: np.ndarray, kind: str = "auto", hnsw_neighbors: int = 32):
        import faiss

        X = check_matrix(vectors)
        if kind == "auto":
            kind = "exact" if len(X) <= EXACT_LIMIT else "hnsw"
        if kind not in ("exact", "hnsw"):
            raise ValueError(f"kind must be 'auto', 'exact' or 'hnsw', got {kind!r}")
        self.kind = kind
        self.rows, self.dim = X.shape
        unit = np.ascontiguousarray(unit_rows(X), dtype=np.float32)
        if kind == "exact":
            self._index = faiss.IndexFlatIP(self.dim)
            self.nbytes = int(unit.nbytes) + 4096
        else:
            self._index = faiss.IndexHNSWFlat(self.dim, int(hnsw_neighbors), faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efSearch = 128
            self.nbytes = int(unit.nbytes) + self.rows * int(hnsw_neighbors) * 2 * 4 + 4096
        self._index.add(unit)

    def search(self, queries: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(cosines float64 [M, k] in [-1, 1], row indexes int64 [M, k]) for queries [M, D],
        nearest first (fewer than k columns when the index has fewer rows)."""
        Q = check_matrix(np.atleast_2d(queries), "queries")
        if Q.shape[1] != self.dim:
            raise ValueError(f"queries have {Q.shape[1]} dimensions; the index holds {self.dim}")
        k = max(1, min(int(k), self.rows))
        scores, rows = self._index.search(np.ascontiguousarray(unit_rows(Q), dtype=np.float32), k)
        return np.clip(scores.astype(np.float64), -1.0, 1.0), rows.astype(np.int64)


def build_index(vectors, pooling: str, layer: int, kind: str = "auto") -> NeighbourIndex:
    """The index of one pooling at one layer of :class:`~clsviz.vectors.PooledVectors` or a shard
    folder (:class:`~clsviz.shards.ShardedVectors`, which reads only that column)."""
    return NeighbourIndex(vectors.get(pooling, layer), kind=kind)


def neighbour_search(
    indexes: Mapping[str, NeighbourIndex],
    queries: Mapping[str, np.ndarray],
    texts: Sequence[str],
    k: int = 5,
    exclude_text: str | None = None,
    layer: int | None = None,
) -> pd.DataFrame:
    """The ``k`` nearest corpus texts of each pooling's query (pooling -> vector [D]), from that
    pooling's index; rows whose text is ``exclude_text`` (the query itself) are skipped.

    Columns: rank (1 = nearest), index, text, cosine, pooling, layer - the table of
    :func:`clsviz.experiments.neighbours.neighbour_table`."""
    frames = []
    for pooling, query in queries.items():
        index = indexes[pooling]
        fetch = int(k) + (0 if exclude_text is None else 8)
        while True:
            cosines, rows = index.search(query, fetch)
            keep = [(c, r) for c, r in zip(cosines[0], rows[0]) if r >= 0 and texts[r] != exclude_text]
            if len(keep) >= k or len(rows[0]) >= index.rows:
                break
            fetch *= 4  # many copies of the query sentence: look further
        keep = keep[: int(k)]
        if not keep:
            raise ValueError("The corpus has no sentence other than the query itself.")
        frames.append(pd.DataFrame({
            "rank": np.arange(1, len(keep) + 1), "index": [r for _, r in keep], "text": [texts[r] for _, r in keep],
            "cosine": [c for c, _ in keep], "pooling": pooling, "layer": layer,
        }))
    return pd.concat(frames, ignore_index=True)
