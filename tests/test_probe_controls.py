"""Control tasks, selectivity and the MDL probe on synthetic data where the answer is known."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from clsviz.experiments import ProbeError
from clsviz.experiments.probe_controls import (
    control_labels,
    online_codelength,
    run_mdl,
    run_selectivity,
    summarize_selectivity,
    word_types,
)

TYPES, PER, DIM = 40, 10, 48


def _memorising(seed: int = 0):
    """Vectors that carry only the identity of their word type (a random vector per type plus a
    little noise), and a label that is a function of the type: readable only by memorising."""
    rng = np.random.default_rng(seed)
    types = np.repeat(np.arange(TYPES), PER)
    X = rng.normal(size=(TYPES, DIM))[types] + 0.1 * rng.normal(size=(len(types), DIM))
    return X, types, types % 2


def _reading(seed: int = 1):
    """Vectors that carry the label along one direction and nothing about the word type."""
    rng = np.random.default_rng(seed)
    types = np.repeat(np.arange(TYPES), PER)
    y = rng.permutation(np.arange(len(types)) % 2)
    X = np.outer(2 * y - 1, rng.normal(size=DIM)) * 0.6 + rng.normal(size=(len(types), DIM))
    return X, types, y


def test_control_labels_are_a_function_of_the_type_with_the_class_balance():
    rng = np.random.default_rng(3)
    types = rng.integers(0, 60, size=500)
    labels = np.array(["a", "b", "c"])[rng.choice(3, size=500, p=[0.5, 0.3, 0.2])]
    control = control_labels(types, labels, seed=0)
    for t in np.unique(types):  # one label per type
        assert len(set(control[types == t])) == 1
    real, ctrl = Counter(labels), Counter(control)
    biggest_type = int(np.bincount(types).max())
    for name in real:  # matched as closely as whole types allow
        assert abs(real[name] - ctrl[name]) <= biggest_type
    assert not np.array_equal(control, control_labels(types, labels, seed=1))
    np.testing.assert_array_equal(control, control_labels(types, labels, seed=0))
    singletons = control_labels(np.arange(30), ["x"] * 10 + ["y"] * 20, seed=5)
    assert Counter(singletons) == {"x": 10, "y": 20}  # one text per type: the balance is exact


def test_a_memorising_probe_is_not_selective_when_the_control_task_is_matched():
    X, types, y = _memorising()
    matched = run_selectivity({"vec": X[:, None]}, list(y), types=list(types), folds=5).iloc[0]
    assert matched["accuracy"] > 0.95 and matched["control_accuracy"] > 0.95
    assert abs(matched["selectivity"]) < 0.05
    # A control that is random per text (not per type) cannot be memorised: the same probe then
    # looks selective, wrongly - the point of matching the control task to the types.
    unmatched = run_selectivity({"vec": X[:, None]}, list(y), types=list(range(len(y))), folds=5).iloc[0]
    assert unmatched["control_accuracy"] < 0.65 and unmatched["selectivity"] > 0.3


def test_a_probe_that_reads_the_property_is_selective():
    X, types, y = _reading()
    row = run_selectivity({"vec": X[:, None]}, list(y), types=list(types), folds=5).iloc[0]
    assert row["accuracy"] > 0.9
    assert row["control_accuracy"] < 0.65
    assert row["selectivity"] > 0.3
    assert row["types"] == TYPES and row["n"] == len(y)


def test_selectivity_table_per_layer_and_pooling_with_its_sentence():
    X, types, y = _memorising()
    Xr, _, _ = _reading()
    vectors = {"cls": np.stack([X, X], axis=1), "mean": np.stack([Xr, X], axis=1)}
    table = run_selectivity(vectors, list(y), types=list(types), folds=4)
    assert list(table.columns) == [
        "layer",
        "pooling",
        "accuracy",
        "accuracy_sd",
        "control_accuracy",
        "control_sd",
        "selectivity",
        "n",
        "folds",
        "types",
    ]
    assert len(table) == 4 and set(table["layer"]) == {0, 1}
    np.testing.assert_allclose(table["selectivity"], table["accuracy"] - table["control_accuracy"])
    text = summarize_selectivity(table)
    best = table.loc[table["selectivity"].idxmax()]
    assert f"{best['pooling']} at layer {int(best['layer'])}" in text


def test_word_types_are_first_words():
    assert word_types(["The cat sat.", "  why Not", "...", "Über alles"]) == ["the", "why", "", "über"]


def test_mdl_codelength_is_short_for_a_readable_label_and_long_for_noise():
    X, _, y = _reading()
    noise = np.random.default_rng(9).normal(size=X.shape)
    readable, random = online_codelength(X, y), online_codelength(noise, y)
    assert readable["uniform"] == pytest.approx(len(y) * 1.0)  # two classes: one bit each
    assert readable["codelength"] < 0.6 * readable["uniform"] < random["codelength"]
    assert readable["compression"] > 1.5 > random["compression"]
    table = run_mdl({"good": X[:, None], "noise": noise[:, None]}, list(y))
    assert list(table["pooling"]) == ["good", "noise"]
    assert table.loc[0, "codelength_bits"] == pytest.approx(readable["codelength"])


def test_mdl_first_block_uses_the_uniform_code():
    y = np.array([0, 1] * 20)
    X = np.random.default_rng(0).normal(size=(40, 4))
    only_first = online_codelength(X, y, fractions=(1.0,))
    assert only_first["codelength"] == pytest.approx(40.0)  # nothing learned: log2(2) bits per text


def test_bad_input_gives_a_message():
    X, types, y = _memorising()
    with pytest.raises(ProbeError, match="one type per text"):
        run_selectivity({"vec": X[:, None]}, list(y), types=list(types[:5]))
    with pytest.raises(ProbeError, match="types="):
        run_selectivity({"vec": X[:, None]}, list(y))
    with pytest.raises(ProbeError, match="all are 'the'"):
        run_selectivity({"vec": X[:, None]}, list(y), types=["the"] * len(y))
    with pytest.raises(ProbeError, match="control task .* cannot be probed"):
        run_selectivity({"vec": X[:, None]}, list(y), types=[i % 3 for i in range(len(y))], folds=200)
    with pytest.raises(ProbeError, match="Not extracted"):
        run_mdl({"vec": X[:, None]}, list(y), poolings=["cls"])
    with pytest.raises(ProbeError, match="single class"):
        run_mdl({"vec": X[:, None]}, ["a"] * len(y))
