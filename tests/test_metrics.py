"""The shared numeric primitives: bounded numbers stay bounded, and the bootstrap intervals equal
a resampling written out here (clsviz/metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from clsviz import metrics as M


def test_cosines_of_a_vector_with_itself_never_exceed_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 384)).astype(np.float32) * rng.uniform(0.1, 100, size=(200, 1)).astype(
        np.float32
    )
    self_cos = M.cosine(x, x)
    assert np.all(self_cos <= 1.0) and np.all(self_cos >= -1.0)
    np.testing.assert_allclose(self_cos, 1.0, atol=1e-12)
    matrix = M.cosine_matrix(x, x)
    assert matrix.max() <= 1.0 and matrix.min() >= -1.0
    # Identical rows: every mean over pairs is exactly 1, never 1.0000000000000002.
    same = np.repeat(x[:1], 50, axis=0)
    assert M.cosine_matrix(same, same).mean() <= 1.0
    assert M.cosine(np.zeros(3), np.ones(3)) == 0.0


def test_spearman_and_entropy_stay_in_range():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    assert M.spearman(x, x) == pytest.approx(1.0) and M.spearman(x, x) <= 1.0
    assert M.spearman(x, -x) >= -1.0
    z = rng.normal(size=50)
    assert M.spearman(x, z) == pytest.approx(spearmanr(x, z).statistic)
    assert np.isnan(M.spearman(x, np.ones(50)))
    rows = rng.uniform(size=(10, 7))
    ent = M.entropy(rows)
    assert np.all(ent >= 0) and np.all(ent <= np.log(7))
    assert M.entropy(np.ones(7)) == pytest.approx(np.log(7))
    assert M.entropy(np.zeros(7)) == 0.0


def _direct_bootstrap(statistic, x, y, n_boot, seed):
    """The bootstrap as a textbook writes it: resample pairs with replacement, take percentiles."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(x), size=len(x))
        values.append(statistic(x[rows], y[rows]))
    values = np.array(values)
    values = values[np.isfinite(values)]
    return np.percentile(values, [2.5, 97.5])


def test_bootstrap_intervals_equal_a_direct_resampling():
    rng = np.random.default_rng(2)
    x = rng.normal(size=120)
    y = 0.6 * x + rng.normal(size=120)
    # The direct version draws rows one resample at a time; clsviz draws the whole [n_boot, n]
    # matrix at once from the same generator, which yields the same rows in the same order.
    low, high = _direct_bootstrap(lambda a, b: spearmanr(a, b).statistic, x, y, 500, 7)
    rho, lo, hi = M.spearman_interval(x, y, n_boot=500, seed=7)
    assert rho == pytest.approx(spearmanr(x, y).statistic)
    assert (lo, hi) == pytest.approx((low, high), abs=1e-9)
    assert M.bootstrap_interval(M.spearman, x, y, n_boot=500, seed=7) == pytest.approx(
        (rho, lo, hi), abs=1e-9
    )
    # An accuracy's interval: the mean of 0/1 outcomes.
    correct = (rng.uniform(size=80) < 0.7).astype(float)
    acc, a_lo, a_hi = M.bootstrap_interval(np.mean, correct, n_boot=500, seed=3)
    direct = _direct_bootstrap(lambda a, b: np.mean(a), correct, correct, 500, 3)
    assert acc == pytest.approx(correct.mean()) and (a_lo, a_hi) == pytest.approx(tuple(direct), abs=1e-12)
    assert a_lo < acc < a_hi and 0.0 <= a_lo and a_hi <= 1.0


def test_more_data_narrows_the_interval():
    rng = np.random.default_rng(4)
    small = rng.normal(size=30)
    big = rng.normal(size=600)
    _, lo_s, hi_s = M.spearman_interval(small, small + rng.normal(size=30), n_boot=400)
    _, lo_b, hi_b = M.spearman_interval(big, big + rng.normal(size=600), n_boot=400)
    assert hi_b - lo_b < (hi_s - lo_s) / 2
    with pytest.raises(ValueError, match="same number of rows"):
        M.bootstrap_interval(M.spearman, small, big)


def test_normalize_rows_in_place_equals_the_copy():
    from clsviz.metrics import normalize_rows

    rng = np.random.default_rng(0)
    w = rng.random((2, 3, 4, 5)).astype(np.float32)
    w[0, 1, 2] = 0.0  # a row summing to 0 stays 0
    w[1, 0, 3] = [1.0, -1.0, 0.5, -0.5, 0.0]  # and so does one whose entries cancel
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = w.astype(np.float64) / w.sum(-1, keepdims=True, dtype=np.float64)
    expected[0, 1, 2] = expected[1, 0, 3] = 0.0
    copy = normalize_rows(w)
    np.testing.assert_allclose(copy, expected, rtol=1e-6)
    same = normalize_rows(w, inplace=True)
    assert same is w
    np.testing.assert_array_equal(w, copy)
    with pytest.raises(ValueError, match="float32 numpy array"):
        normalize_rows(w.astype(np.float64), inplace=True)
