"""clsviz.experiments.side_by_side and the compare figures: two models read side by side."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from clsviz import demo_corpus, demo_pairs, figures
from clsviz.compare import AttentionChange, ModelComparison
from clsviz.experiments import ProbeError, describe_change, diagonal_table, run_side_by_side, sample_corpus
from clsviz.progress import Cancelled
from tests.test_attention import _arr


@pytest.fixture(scope="module")
def texts_labels():
    sample = sample_corpus(demo_corpus(), 40, "sentiment", seed=0)
    return list(sample.texts), list(sample.labels["sentiment"])


@pytest.fixture(scope="module")
def pairs():
    return demo_pairs().iloc[:30]


def _comparison(cls: np.ndarray, mean: np.ndarray, tokens: np.ndarray | None = None) -> ModelComparison:
    cka = {"cls": cls, "mean": mean} if tokens is None else {"tokens": tokens, "cls": cls, "mean": mean}
    return ModelComparison("A-model", "B-model", num_texts=50, num_tokens=0, same_tokenization=True, cka=cka)


def _diag(values) -> np.ndarray:
    m = np.full((len(values), len(values)), 0.3)
    np.fill_diagonal(m, values)
    return m


# --- sample_corpus ---------------------------------------------------------------------------
def test_sample_corpus_is_stratified_and_in_corpus_order():
    corpus = demo_corpus()
    sample = sample_corpus(corpus, 70, "topic", seed=0)
    assert len(sample) == 70
    assert pd.Series(sample.labels["topic"]).value_counts().tolist() == [10] * 7  # 7 balanced topics
    index = {t: i for i, t in enumerate(corpus.texts)}
    positions = [index[t] for t in sample.texts]
    assert positions == sorted(positions)
    assert sample_corpus(corpus, None) is corpus and sample_corpus(corpus, 10_000) is corpus


# --- run_side_by_side ---------------------------------------------------------------------------
def test_a_model_against_itself_gives_the_same_curves(tiny_encoder, texts_labels, pairs):
    texts, labels = texts_labels
    seen = []
    result = run_side_by_side(
        tiny_encoder, tiny_encoder, texts, labels, pairs, label_name="sentiment",
        progress=lambda done, total, message: seen.append((done, total)),
    )
    probe = result.probe.pivot_table(index=["layer", "pooling"], columns="side", values="accuracy_mean")
    assert len(probe) == 3 * 2  # layers 0..2 x cls, mean
    np.testing.assert_array_equal(probe["A"], probe["B"])
    sts = result.sts.pivot_table(index=["layer", "pooling"], columns="side", values="spearman")
    np.testing.assert_allclose(sts["A"], sts["B"], atol=1e-9)
    assert result.n == 40 and result.pairs == 30 and result.label == "sentiment"
    assert result.chance == 0.5 and 0.5 <= result.majority <= 0.6
    assert seen[-1][0] == seen[-1][1] and all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))
    assert result.summary().count("predicts 'sentiment' best") == 2


def test_models_of_different_depths(encoder, tiny_encoder, texts_labels):
    texts, labels = texts_labels
    result = run_side_by_side(encoder, tiny_encoder, texts, labels, label_name="sentiment")
    assert result.sts is None and result.pairs == 0
    layers = result.probe.groupby("side")["layer"].max().to_dict()
    assert layers == {"A": 6, "B": 2}
    assert set(result.probe["model"]) == {encoder.name, tiny_encoder.name}
    # The bundled model reads sentiment far better than a random tiny one at its top layer.
    top = result.probe[(result.probe["layer"] == result.probe.groupby("side")["layer"].transform("max"))]
    best = top.groupby("side")["accuracy_mean"].max()
    assert best["A"] > best["B"] + 0.1


def test_bad_labels_are_refused_before_any_model_runs(tiny_encoder):
    class Exploding:
        info = tiny_encoder.info
        name = "exploding"

    texts = [f"sentence {i}" for i in range(12)]
    with pytest.raises(ProbeError, match="single class"):
        run_side_by_side(Exploding(), Exploding(), texts, ["same"] * 12)
    with pytest.raises(ProbeError, match="11 labels for 12 texts"):
        run_side_by_side(Exploding(), Exploding(), texts, ["a", "b"] * 5 + ["a"])


def test_cancel_stops_the_run(tiny_encoder, texts_labels):
    texts, labels = texts_labels
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        run_side_by_side(tiny_encoder, tiny_encoder, texts, labels, cancel=cancel)


# --- reading a comparison -------------------------------------------------------------------------
def test_diagonal_table_same_and_different_depths():
    cls = _diag([np.nan, 0.9, 0.5])
    table = diagonal_table(_comparison(cls, _diag([1.0, 0.95, 0.8])))
    rows = table[table["reading"] == "cls"]
    assert rows["layer_b"].tolist() == [0, 1, 2]
    assert np.isnan(rows["cka"].iloc[0]) and np.isnan(rows["change"].iloc[0])
    np.testing.assert_allclose(rows["change"].iloc[1:], [0.1, 0.5])
    # 6 layers against 2: layer l of A meets layer round(l / 3) of B.
    deep = np.arange(7 * 3, dtype=np.float64).reshape(7, 3) / 21
    table = diagonal_table(_comparison(deep, deep))
    rows = table[table["reading"] == "mean"]
    assert rows["layer_b"].tolist() == [0, 0, 1, 1, 1, 2, 2]
    np.testing.assert_allclose(rows["cka"], [deep[a, b] for a, b in zip(range(7), [0, 0, 1, 1, 1, 2, 2])])


@pytest.mark.parametrize(
    "cls_last, others_last, verdict",
    [(0.5, (0.9, 0.95), "more than"), (0.97, (0.6, 0.7), "less than"), (0.9, (0.91, 0.895), "about as much as"),
     (0.8, (0.7, 0.9), "neither clearly more nor less than")],
)
def test_describe_change(cls_last, others_last, verdict):
    comparison = _comparison(
        _diag([np.nan, 0.99, cls_last]), _diag([1.0, 0.99, others_last[0]]), _diag([1.0, 0.99, others_last[1]])
    )
    text = describe_change(comparison)
    assert f"differs most at layer 2 of A (1 − CKA = {1 - cls_last:.3f})" in text
    assert f"At the last layer [CLS] changed {verdict} the rest" in text
    assert "relative depth" not in text


def test_describe_change_of_identical_models():
    same = _comparison(_diag([np.nan, 1.0, 1.0]), _diag([1.0, 1.0, 0.99995]))
    assert describe_change(same).startswith("The two models arrange these texts the same way at every layer")


def test_describe_change_without_numbers():
    empty = ModelComparison("a", "b", 2, 0, True, cka={"cls": np.full((3, 3), np.nan)})
    assert "No CKA could be computed" in describe_change(empty)


# --- figures --------------------------------------------------------------------------------------
def test_cka_heatmap_and_diagonal_figures():
    cls = _diag([np.nan, 0.9, 0.5])
    comparison = _comparison(cls, _diag([1.0, 0.95, 0.8]))
    heat = figures.cka_heatmap(comparison, "cls").to_dict()["data"][0]
    z = _arr(heat["z"]).astype(np.float64)
    np.testing.assert_allclose(z, np.round(cls, 4))
    assert heat["text"][0][0] == "undefined" and heat["text"][1][1] == "0.900"
    with pytest.raises(ValueError, match="No CKA for 'tokens'"):
        figures.cka_heatmap(comparison, "tokens")
    lines = figures.cka_diagonal_figure(diagonal_table(comparison), "A-model", "B-model").to_dict()["data"]
    assert [tr["name"] for tr in lines] == ["[CLS] vectors", "mean vectors"]
    assert list(lines[0]["y"]) == [None, 0.9, 0.5] and list(lines[1]["y"]) == [1.0, 0.95, 0.8]


def test_attention_change_figure_is_b_minus_a_on_a_centred_scale():
    rng = np.random.default_rng(0)
    a = {m: rng.random((2, 3)).astype(np.float32) for m in ("to_cls", "cls_to_content", "cls_entropy")}
    b = {m: rng.random((2, 3)).astype(np.float32) for m in a}
    change = AttentionChange("A", "<b>B</b>", ("[CLS]", "x", "[SEP]"), a, b)
    fig = figures.attention_change_figure(change, "cls_to_content").to_dict()
    data = fig["data"][0]
    expected = b["cls_to_content"].astype(np.float64) - a["cls_to_content"].astype(np.float64)
    np.testing.assert_allclose(_arr(data["z"]), expected, atol=1e-5)
    assert data["zmin"] == -data["zmax"] == pytest.approx(-np.abs(expected).max())
    assert list(data["x"]) == ["head 1", "head 2", "head 3"]
    assert "&lt;b&gt;B&lt;/b&gt;" in fig["layout"]["title"]["text"]


def test_side_by_side_figures(tiny_encoder, texts_labels, pairs):
    texts, labels = texts_labels
    result = run_side_by_side(tiny_encoder, tiny_encoder, texts, labels, pairs, label_name="sentiment")
    probe = figures.side_by_side_probe_figure(result).to_dict()
    assert [tr["name"] for tr in probe["data"]] == ["A: cls", "A: mean", "B: cls", "B: mean"]
    assert [tr["line"]["dash"] for tr in probe["data"]] == ["solid", "solid", "dash", "dash"]
    rows = result.probe[(result.probe["side"] == "B") & (result.probe["pooling"] == "mean")].sort_values("layer")
    np.testing.assert_allclose(probe["data"][3]["y"], rows["accuracy_mean"].round(4))
    sts = figures.side_by_side_sts_figure(result).to_dict()
    assert len(sts["data"]) == 4 and sts["layout"]["yaxis"]["range"] == [-1.02, 1.02]
    without = run_side_by_side(tiny_encoder, tiny_encoder, texts, labels, label_name="sentiment")
    with pytest.raises(ValueError, match="no scored pairs"):
        figures.side_by_side_sts_figure(without)


def test_a_fine_tuned_models_training_texts_are_not_probed(encoder, finetuned_classifier_dir):
    """The fixture's classifier was fine-tuned on 16 of the first 20 demo texts: they leave the
    probe and the pairs, and the run says so."""
    from clsviz import load_encoder
    from clsviz.corpus import demo_corpus
    from clsviz.provenance import text_digest, training_texts

    tuned = load_encoder(str(finetuned_classifier_dir))
    corpus = demo_corpus()
    texts, labels = list(corpus.texts[:60]), list(corpus.labels["sentiment"][:60])
    seen = training_texts(tuned)
    pairs = pd.DataFrame({"sentence1": [texts[0], *texts[30:34]], "sentence2": texts[40:45], "score": [1.0, 2, 3, 4, 5]})
    result = run_side_by_side(encoder, tuned, texts, labels, pairs, folds=2, label_name="sentiment")
    assert result.n == 44 == sum(text_digest(t) not in seen for t in texts)
    assert any("16 of 60 texts were left out because the fine-tuned model was trained on them" in m
               for m in result.messages)  # fmt: skip
    assert result.pairs == 4 and any("1 pair(s) with a training text" in m for m in result.messages)


def test_describe_change_decides_on_the_intervals():
    cls, mean = _diag([np.nan, 0.99, 0.5]), _diag([1.0, 0.99, 0.6])
    apart = ModelComparison("A", "B", 50, 0, True, cka={"cls": cls, "mean": mean},
                            intervals={"cls": np.array([[np.nan, np.nan], [0.98, 1.0], [0.45, 0.55]]),
                                       "mean": np.array([[1.0, 1.0], [0.98, 1.0], [0.57, 0.63]])})  # fmt: skip
    text = describe_change(apart)
    assert "changed more than the rest" in text and "[CLS] 0.500 (0.450–0.550)" in text
    overlapping = ModelComparison("A", "B", 50, 0, True, cka={"cls": cls, "mean": mean},
                                  intervals={"cls": np.array([[np.nan, np.nan], [0.98, 1.0], [0.3, 0.7]]),
                                             "mean": np.array([[1.0, 1.0], [0.98, 1.0], [0.5, 0.7]])})  # fmt: skip
    assert "about as much as (the 95% intervals overlap)" in describe_change(overlapping)


def test_the_cka_diagonal_interval_resamples_the_texts():
    from clsviz.compare import ResampledCKA, cka, diagonal_intervals, resample_weights

    rng = np.random.default_rng(1)
    a = rng.normal(size=(2, 30, 6))
    b = a + rng.normal(scale=[[[0.1]], [[2.0]]], size=(2, 30, 6))  # layer 1 of B keeps little of A
    found = diagonal_intervals(a, b, n_boot=100, seed=0)
    draws = resample_weights(30, 100, seed=0)
    for layer in range(2):
        by_hand = [cka(np.repeat(a[layer], w, axis=0), np.repeat(b[layer], w, axis=0)) for w in draws]
        np.testing.assert_allclose(found[layer], np.percentile(by_hand, [2.5, 97.5]), atol=1e-9)
        assert ResampledCKA(a[layer], b[layer])() == pytest.approx(cka(a[layer], b[layer]), abs=1e-10)
    assert found[0, 0] > found[1, 1]  # the kept layer is clearly more alike
