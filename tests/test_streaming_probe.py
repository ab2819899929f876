"""Probes on shard folders: in memory they equal run_probe on the same vectors; streamed (out of
core) they agree with the in-memory probe within a point."""

from __future__ import annotations

import numpy as np
import pytest

from clsviz.experiments.probe import ProbeError, run_probe
from clsviz.experiments.streaming_probe import column_fits, hash_folds
from clsviz.extraction import save_shards
from clsviz.vectors import PooledVectors

N, D, LAYERS = 6000, 24, 2


def _synthetic(n: int = N, seed: int = 0) -> PooledVectors:
    """Three classes of Gaussian points, more separable at layer 1 than at layer 0 (float16-exact
    values, so the shard folder holds exactly these numbers)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(size=(3, D))
    vectors = np.empty((n, LAYERS, 2, D), dtype=np.float32)
    for layer, spread in enumerate((1.8, 1.0)):
        for p in range(2):
            vectors[:, layer, p] = centres[y] * (0.5 + 0.5 * p) + spread * rng.normal(size=(n, D))
    vectors = vectors.astype(np.float16).astype(np.float32)
    labels = np.array(["red", "green", "blue"])[y]
    labels[:7] = ""  # unlabelled rows are left out by both probes
    return PooledVectors(
        vectors=vectors,
        poolings=("cls", "mean"),
        texts=tuple(f"text {i}" for i in range(n)),
        model_name="synthetic",
        truncated=np.zeros(n, dtype=bool),
        labels={"colour": tuple(labels)},
    )


def _chunks(pv: PooledVectors, size: int):
    for start in range(0, len(pv.texts), size):
        rows = slice(start, start + size)
        yield PooledVectors(
            vectors=pv.vectors[rows],
            poolings=pv.poolings,
            texts=pv.texts[rows],
            model_name=pv.model_name,
            truncated=pv.truncated[rows],
            labels={k: v[rows] for k, v in pv.labels.items()},
        )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    pv = _synthetic()
    return pv, save_shards(_chunks(pv, 1000), tmp_path_factory.mktemp("probe") / "s", rows=N)


def _table(result):
    return result.table.set_index(["layer", "pooling"])["accuracy_mean"].sort_index()


def test_in_memory_probe_of_a_folder_equals_run_probe(folder):
    pv, shards = folder
    assert np.array_equal(shards.get("cls", 1), pv.get("cls", 1))
    a = run_probe(pv, "colour", folds=5, seed=0)
    b = run_probe(shards, "colour", folds=5, seed=0, memory_budget=10**9)
    assert a.n == b.n == N - 7 and a.classes == b.classes
    assert np.array_equal(_table(a).to_numpy(), _table(b).to_numpy())
    assert not any("streamed" in m for m in b.messages)


def test_streamed_probe_agrees_within_a_point(folder):
    pv, shards = folder
    budget = 100_000  # smaller than one column: every cell is streamed
    assert not column_fits(shards, budget)
    before = shards.stats.shard_reads
    streamed = run_probe(shards, "colour", folds=5, seed=0, memory_budget=budget)
    assert any("streamed" in m for m in streamed.messages)
    assert shards.stats.shard_reads > before
    exact = run_probe(pv, "colour", folds=5, seed=0)
    diff = (_table(streamed) - _table(exact)).abs()
    assert diff.max() <= 0.01, diff
    # the cells differ from one another by far more than a point, so agreement is not trivial
    assert _table(exact).max() - _table(exact).min() > 0.1


def test_hash_folds_are_fixed_and_balanced():
    rows = np.arange(100_000)
    folds = hash_folds(rows, 5, seed=3)
    assert np.array_equal(folds[[5, 77, 99_999]], hash_folds(np.array([5, 77, 99_999]), 5, seed=3))
    counts = np.bincount(folds, minlength=5)
    assert counts.min() > 19_500 and counts.max() < 20_500
    assert not np.array_equal(folds, hash_folds(rows, 5, seed=4))


def test_bad_requests_on_a_folder(folder):
    _, shards = folder
    with pytest.raises(ProbeError, match="No label column 'size'"):
        run_probe(shards, "size")
    with pytest.raises(ProbeError, match="Not saved in this folder: max"):
        run_probe(shards, "colour", poolings=["max"])
    with pytest.raises(ProbeError, match="named"):
        run_probe(shards, list(shards.labels["colour"]))
