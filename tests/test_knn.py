"""Nearest-neighbour search with faiss: the same neighbours and cosines as a search written here
with numpy, from in-memory vectors and from a shard folder; HNSW finds the exact neighbours on
clustered data; the query sentence itself is skipped."""

from __future__ import annotations

import numpy as np
import pytest

from clsviz.experiments.neighbours import neighbour_table
from clsviz.knn import NeighbourIndex, build_index, neighbour_search
from clsviz.vectors import PooledVectors


def _brute(X: np.ndarray, q: np.ndarray, k: int):
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    c = Xn @ (q / np.linalg.norm(q))
    order = np.argsort(-c, kind="stable")[:k]
    return order, c[order]


def test_exact_index_matches_numpy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 48)).astype(np.float32)
    index = NeighbourIndex(X)
    assert index.kind == "exact" and index.nbytes >= X.nbytes
    for q in rng.normal(size=(5, 48)):
        cos, rows = index.search(q, k=10)
        order, expected = _brute(X.astype(np.float64), q, 10)
        assert list(rows[0]) == list(order)
        assert np.allclose(cos[0], expected, atol=1e-5) and (np.abs(cos) <= 1).all()


def test_hnsw_finds_the_neighbours_of_clustered_points():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 32))
    X = (centres[rng.integers(0, 50, 5000)] + 0.05 * rng.normal(size=(5000, 32))).astype(np.float32)
    index = NeighbourIndex(X, kind="hnsw")
    hits = 0
    for i in rng.choice(5000, 20, replace=False):
        _, rows = index.search(X[i], k=5)
        hits += len(set(rows[0]) & set(_brute(X.astype(np.float64), X[i].astype(np.float64), 5)[0]))
    assert hits >= 0.9 * 100


def test_search_table_equals_neighbour_table_and_skips_the_query():
    rng = np.random.default_rng(2)
    texts = tuple(f"sentence {i % 40}" for i in range(120))  # each text three times
    pv = PooledVectors(
        vectors=rng.normal(size=(120, 3, 2, 16)).astype(np.float32),
        poolings=("cls", "mean"),
        texts=texts,
        model_name="m",
        truncated=np.zeros(120, dtype=bool),
    )
    queries = {"cls": pv.get("cls", 2)[5] + 0.01, "mean": pv.get("mean", 2)[5]}
    indexes = {p: build_index(pv, p, 2) for p in queries}
    got = neighbour_search(indexes, queries, texts, k=6, exclude_text=texts[5], layer=2)
    want = neighbour_table(queries, pv, 2, k=6, exclude_text=texts[5])
    assert list(got["index"]) == list(want["index"]) and texts[5] not in set(got["text"])
    assert np.allclose(got["cosine"], want["cosine"], atol=1e-5)
    assert list(got.columns) == list(want.columns)


def test_bad_queries():
    index = NeighbourIndex(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(3), 2)
    with pytest.raises(ValueError, match="kind"):
        NeighbourIndex(np.eye(4), kind="ivf")
    with pytest.raises(ValueError, match="no sentence other"):
        neighbour_search({"cls": index}, {"cls": np.ones(4)}, ("a", "a", "a", "a"), exclude_text="a")
