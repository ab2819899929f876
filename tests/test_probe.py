"""The pooling probe: known answers on synthetic data, agreement with scikit-learn, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clsviz import PooledVectors, extract, figures, trace
from clsviz.experiments import (
    RANDOM_TOKEN,
    Cancelled,
    ProbeError,
    check_labels,
    default_poolings,
    random_content_positions,
    random_token_vectors,
    run_probe,
)
from clsviz.pooling import pool_hidden

TEXTS = [
    "The cat sat on the mat.",
    "A dog barked at the mailman all night.",
    "Why is the sky blue?",
    "Please close the door.",
    "Stocks fell sharply on Monday morning.",
    "She plays the violin beautifully.",
    "The soup was far too salty.",
    "We hiked up the mountain at dawn.",
]


@pytest.fixture(scope="module")
def token_data():
    """Random hidden states [N, 3, T, D]; the label is the sign of token 3's first dim at the last layer."""
    rng = np.random.default_rng(1)
    n, layers, t, d = 160, 3, 8, 12
    hidden = rng.normal(size=(n, layers, t, d)).astype(np.float32)
    mask = np.ones((n, t), dtype=bool)
    special = np.zeros((n, t), dtype=bool)
    special[:, 0] = special[:, -1] = True
    y = (hidden[:, -1, 3, 0] > 0).astype(int)
    feats = {s: pool_hidden(hidden, mask, special, s) for s in ("token:3", "token:5", "cls")}
    return feats, y


def test_label_of_one_token_is_read_from_that_token_only(token_data):
    feats, y = token_data
    result = run_probe(feats, y, folds=5)
    acc = result.table.set_index(["layer", "pooling"])["accuracy_mean"]
    assert acc[(2, "token:3")] >= 0.95
    # Independent noise: the other token, other layers of the same token, and [CLS].
    for cell in [(2, "token:5"), (0, "token:3"), (1, "token:3"), (2, "cls")]:
        assert acc[cell] < 0.75, cell
    assert result.chance == 0.5
    assert result.majority == pytest.approx(np.bincount(y).max() / len(y))
    assert result.best()["pooling"] == "token:3" and result.best()["layer"] == 2


def test_accuracies_match_sklearn_cross_val_score(token_data):
    feats, y = token_data
    result = run_probe(feats, y, folds=4, seed=3, C=0.5, max_iter=50)
    table = result.table.set_index(["layer", "pooling"])
    for layer, pooling in [(2, "token:3"), (1, "token:5"), (0, "cls")]:
        X = feats[pooling][:, layer]
        est = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=50))
        scores = cross_val_score(est, X, y, cv=StratifiedKFold(4, shuffle=True, random_state=3))
        assert table.loc[(layer, pooling), "accuracy_mean"] == pytest.approx(scores.mean())
        assert table.loc[(layer, pooling), "accuracy_sd"] == pytest.approx(scores.std(ddof=1))
    assert set(result.table.columns) >= {"layer", "pooling", "accuracy_mean", "accuracy_sd", "n", "folds"}
    assert (result.table["n"] == len(y)).all() and (result.table["folds"] == 4).all()


def test_cells_fitted_in_worker_processes_score_as_fitted_here(token_data):
    feats, y = token_data
    here = run_probe(feats, y, folds=4, seed=2, max_iter=3, n_jobs=1)  # a tight cap: capped fits too
    pooled = run_probe(feats, y, folds=4, seed=2, max_iter=3, n_jobs=2)
    assert here.capped_fits > 0 and here.capped_fits == pooled.capped_fits
    pd.testing.assert_frame_equal(here.table, pooled.table)


def test_multiclass_baselines_and_missing_labels(token_data):
    feats, _ = token_data
    labels = ["a"] * 80 + ["b"] * 50 + ["c"] * 20 + [""] * 5 + [None] * 5
    result = run_probe(feats, labels, folds=5)
    assert result.n == 150
    assert result.classes == ("a", "b", "c")
    assert result.chance == pytest.approx(1 / 3)
    assert result.majority == pytest.approx(80 / 150)
    assert any("10 of 160" in m for m in result.messages)


@pytest.mark.parametrize(
    "labels, folds, fragment",
    [
        (["x"] * 20, 5, "single class"),
        (["a"] * 10 + ["b"] * 10 + ["rare"] * 2, 5, "'rare' (2)"),
        (["a", "b"] * 3, 5, "needs at least 10"),
        (["a", "b"] * 10, 1, "at least 2 folds"),
    ],
)
def test_bad_labels_give_clear_messages(labels, folds, fragment):
    with pytest.raises(ProbeError) as info:
        check_labels(labels, folds, "topic")
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_inputs_to_run_probe(token_data):
    feats, y = token_data
    with pytest.raises(ProbeError, match="labels for 160 texts"):
        run_probe(feats, y[:10])
    with pytest.raises(ProbeError, match="No label column"):
        run_probe(feats, "topic")
    with pytest.raises(ProbeError, match="Not extracted"):
        run_probe(feats, y, poolings=["mean"])
    with pytest.raises(ProbeError, match="outside"):
        run_probe(feats, y, layers=[7])
    same = {"cls": np.ones((20, 2, 4), dtype=np.float32)}
    with pytest.raises(ProbeError, match="same vector"):
        run_probe(same, ["a", "b"] * 10)


def test_identical_sentences_are_refused():
    vectors = PooledVectors(
        vectors=np.random.default_rng(0).normal(size=(20, 2, 1, 4)).astype(np.float32),
        poolings=("cls",),
        texts=("same sentence",) * 20,
        model_name="m",
        truncated=np.zeros(20, dtype=bool),
        labels={"y": ("a", "b") * 10},
    )
    with pytest.raises(ProbeError, match="same sentence"):
        run_probe(vectors, "y")


def test_cancel_stops_the_probe(token_data):
    feats, y = token_data
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        run_probe(feats, y, cancel=stop)


def test_progress_reaches_the_total(token_data):
    feats, y = token_data
    seen = []
    run_probe(feats, y, layers=[2], progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (3, 3)


def test_random_token_is_a_content_token_read_at_every_layer(tiny_encoder):
    positions = random_content_positions(tiny_encoder, TEXTS, seed=0)
    vectors = random_token_vectors(tiny_encoder, TEXTS, seed=0, batch_size=3)
    assert vectors.shape == (len(TEXTS), tiny_encoder.info.num_layers + 1, tiny_encoder.info.hidden_size)
    for i, text in enumerate(TEXTS):
        t = trace(tiny_encoder, text)
        assert not t.special_mask[positions[i]]
        np.testing.assert_allclose(vectors[i], t.hidden_states[:, positions[i]], atol=1e-4)
    # Seeded by the text: the same sentence gets the same token in another corpus, in another order.
    again = random_content_positions(tiny_encoder, TEXTS[::-1] + ["Another one."], seed=0)
    np.testing.assert_array_equal(again[: len(TEXTS)][::-1], positions)
    # A different seed picks differently somewhere.
    assert not np.array_equal(random_content_positions(tiny_encoder, TEXTS, seed=1), positions)


def test_extract_reads_the_random_tokens_from_its_own_pass(tiny_encoder):
    # The same tokens, the same vectors as the separate pass the probe ran before (an independent computation:
    # random_token_vectors runs the model again and picks the positions itself).
    texts = [f"{t} Number {i}." for i, t in enumerate(TEXTS * 3)]
    pv = extract(tiny_encoder, texts, ["cls", "mean"], random_token_seed=4, max_tokens=9)
    again = random_token_vectors(tiny_encoder, texts, seed=4, max_tokens=9)
    np.testing.assert_array_equal(pv.random_token, again)
    assert pv.random_token_of == (4, 9) and pv.nbytes == pv.vectors.nbytes + again.nbytes
    assert extract(tiny_encoder, texts, ["cls"]).random_token is None  # not asked for: nothing extra held
    with pytest.raises(ValueError, match="random_token: expected shape"):
        PooledVectors(vectors=pv.vectors, poolings=pv.poolings, texts=pv.texts, model_name=pv.model_name,
                      truncated=pv.truncated, random_token=again[:, :1])  # fmt: skip


def test_full_grid_on_extracted_vectors(tiny_encoder):
    texts = [f"{t} Number {i}." for i, t in enumerate(TEXTS * 3)]
    labels = {"kind": tuple(("a", "b", "c")[i % 3] for i in range(len(texts)))}
    poolings = [s for s in default_poolings(tiny_encoder.info.has_pooler) if s != RANDOM_TOKEN]
    pv = extract(tiny_encoder, texts, poolings, labels=labels)
    rnd = random_token_vectors(tiny_encoder, texts)
    result = run_probe(pv, "kind", random_token=rnd, folds=3)
    layers = tiny_encoder.info.num_layers + 1
    assert len(result.table) == layers * (len(poolings) + 1)
    assert set(result.table["pooling"]) == {*poolings, RANDOM_TOKEN}
    assert result.table["accuracy_mean"].between(0, 1).all()
    assert result.model_name == tiny_encoder.name
    best = result.table.loc[result.table["accuracy_mean"].idxmax()]
    assert f"{best['pooling']} at layer {int(best['layer'])}" in result.summary()


def test_probe_figure_draws_every_pooling_and_both_baselines(token_data):
    feats, y = token_data
    result = run_probe(feats, y)
    fig = figures.probe_figure(result).to_dict()
    names = [tr["name"] for tr in fig["data"]]
    assert names[:3] == ["token:3", "token:5", "cls"]
    assert any(n.startswith("chance") for n in names) and any(n.startswith("majority") for n in names)
    t3 = result.table[result.table["pooling"] == "token:3"].sort_values("layer")
    np.testing.assert_allclose(fig["data"][0]["y"], t3["accuracy_mean"].to_numpy(), atol=1e-4)
    dashed = [tr for tr in fig["data"] if tr["line"].get("dash")]
    assert {round(tr["y"][0], 4) for tr in dashed} == {round(result.chance, 4), round(result.majority, 4)}


def _warned_fits(feats, y, folds, max_iter) -> tuple[int, int]:
    """(fits, fits that raised scikit-learn's ConvergenceWarning), fitted here one by one."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(np.zeros(len(y)), y))
    fits = warned = 0
    for arr in feats.values():
        for layer in range(arr.shape[1]):
            X = arr[:, layer].astype(np.float32)
            for train, _ in splits:
                model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=0))
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    model.fit(X[train], y[train])
                fits += 1
                warned += any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return fits, warned


@pytest.mark.parametrize("max_iter", [6, 8, 1000])
def test_fits_stopped_at_the_iteration_cap_are_counted_and_said(token_data, max_iter):
    feats, y = token_data
    result = run_probe(feats, y, folds=4, max_iter=max_iter, n_jobs=2)
    fits, warned = _warned_fits(feats, y, 4, max_iter)
    assert result.fits == fits == 3 * 3 * 4
    assert result.capped_fits == warned
    said = [m for m in result.messages if "iteration cap" in m]
    if warned:
        assert said == [
            f"{warned} of {fits} fits stopped at the {max_iter}-iteration cap before converging; their "
            "accuracies may be slightly low. Raise max_iter to let them finish."
        ]
    else:
        assert not said


def test_a_tight_cap_is_said_and_a_generous_one_is_not(token_data):
    feats, y = token_data
    assert run_probe(feats, y, folds=4, max_iter=2).capped_fits > 0
    assert run_probe(feats, y, folds=4, max_iter=1000).capped_fits == 0
