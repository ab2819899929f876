"""clsviz.heads: a fine-tuned classifier's own head read through every layer of [CLS]."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clsviz import load_encoder, trace
from clsviz.heads import (
    MEAN_LENS_CAPTION,
    NoClassifierError,
    Prediction,
    classifier_lens,
    describe_settled,
    lens_table,
    mean_lens,
    predict,
    probabilities,
    settled_layer,
)

from .conftest import TINY, TINY_KINDS, TINY_LABELS, redraw_head

TEXT = "The film was slow at first, but the ending was wonderful."
LABELS = tuple(TINY_LABELS[i] for i in range(3))
EXTRA_KINDS = ("deberta-v2", "mpnet")
# What each family's head does to the [CLS] vector, as EncoderInfo.head_pooling words it.
POOLING_WORDS = {
    "bert": "pooler (dense + tanh)",
    "albert": "pooler (dense + tanh)",
    "roberta": "dense + tanh → out_proj",
    "mpnet": "dense + tanh → out_proj",
    "electra": "dense + gelu → out_proj",
    "distilbert": "pre_classifier (dense + ReLU)",
    "deberta-v2": "context pooler",
}


def _build_from_config(kind: str, folder):
    """A tiny classifier of a family without a base-model builder in conftest."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DebertaV2Config, MPNetConfig

    from clsviz.encoder import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    labels = dict(num_labels=3, id2label=TINY_LABELS, label2id={v: k for k, v in TINY_LABELS.items()})
    if kind == "deberta-v2":
        config = DebertaV2Config(vocab_size=tokenizer.vocab_size, max_position_embeddings=64, **TINY, **labels)
    else:
        config = MPNetConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=66, **TINY, **labels)
    torch.manual_seed(3)
    model = AutoModelForSequenceClassification.from_config(config)
    redraw_head(model, seed=3)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def classifier_dirs(tiny_classifier_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("more-classifiers")
    return {**tiny_classifier_dirs, **{k: _build_from_config(k, root / k) for k in EXTRA_KINDS}}


@pytest.fixture(scope="module")
def bundled_classifier(bundled_classifier_dir):
    return load_encoder(str(bundled_classifier_dir))


def _reference_logits(folder, input_ids: np.ndarray) -> np.ndarray:
    """The logits of the checkpoint's own *ForSequenceClassification forward, loaded here."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    ids = torch.as_tensor(input_ids)[None]
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].numpy()


@pytest.mark.parametrize("kind", TINY_KINDS + EXTRA_KINDS)
def test_classifier_keeps_head_and_labels(classifier_dirs, kind):
    enc = load_encoder(str(classifier_dirs[kind]))
    assert enc.classifier is not None
    assert enc.info.labels == LABELS and enc.info.num_labels == 3
    assert POOLING_WORDS[kind] in enc.info.head_pooling
    assert enc.info.head_pooling.startswith(enc.info.cls_token)
    assert enc.info.notes == ()
    # The encoder fields are still the bare encoder, as every other module expects.
    assert type(enc.model).__name__.endswith("Model") and "ForSequence" not in type(enc.model).__name__
    assert all(not p.requires_grad for p in enc.model.parameters())


@pytest.mark.parametrize("kind", TINY_KINDS + EXTRA_KINDS)
def test_lens_last_row_equals_model_logits(classifier_dirs, kind):
    enc = load_encoder(str(classifier_dirs[kind]))
    tr = trace(enc, TEXT)
    lens = classifier_lens(enc, tr)
    assert lens.shape == (enc.info.num_layers + 1, 3) and lens.dtype == np.float32
    expected = _reference_logits(classifier_dirs[kind], tr.input_ids)
    assert np.abs(expected).max() > 0.05  # a head that says something, so the match means something
    np.testing.assert_allclose(lens[-1], expected, rtol=1e-4, atol=1e-5)


def _bundled_head_weights(folder):
    from safetensors.numpy import load_file

    w = load_file(str(folder / "model.safetensors"))
    return (w["bert.pooler.dense.weight"], w["bert.pooler.dense.bias"], w["classifier.weight"], w["classifier.bias"])


def _bert_head(vectors: np.ndarray, weights) -> np.ndarray:
    wp, bp, wc, bc = (x.astype(np.float64) for x in weights)
    return np.tanh(vectors.astype(np.float64) @ wp.T + bp) @ wc.T + bc


def test_bundled_classifier_keeps_trained_pooler(bundled_classifier, encoder):
    assert bundled_classifier.info.has_pooler
    trained = encoder.model.pooler.dense.weight
    assert torch.equal(bundled_classifier.model.pooler.dense.weight, trained)
    assert bundled_classifier.classifier.kind == "pooler"


def test_every_lens_row_recomputed_by_hand(bundled_classifier, bundled_classifier_dir):
    tr = trace(bundled_classifier, TEXT)
    weights = _bundled_head_weights(bundled_classifier_dir)
    by_hand = _bert_head(tr.hidden_states[:, tr.cls_index, :], weights)
    np.testing.assert_allclose(classifier_lens(bundled_classifier, tr), by_hand, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(by_hand[-1], _reference_logits(bundled_classifier_dir, tr.input_ids), rtol=1e-4, atol=1e-5)


def test_mean_lens_reads_the_mean_of_all_tokens(bundled_classifier, bundled_classifier_dir):
    tr = trace(bundled_classifier, TEXT)
    weights = _bundled_head_weights(bundled_classifier_dir)
    lens = mean_lens(bundled_classifier, tr)
    by_hand = _bert_head(tr.hidden_states.astype(np.float64).mean(axis=1), weights)
    np.testing.assert_allclose(lens, by_hand, rtol=1e-4, atol=1e-5)
    assert np.abs(lens - classifier_lens(bundled_classifier, tr)).max() > 1e-2
    assert "never" in MEAN_LENS_CAPTION and "[CLS]" in MEAN_LENS_CAPTION


def test_predict_matches_the_model(bundled_classifier, bundled_classifier_dir):
    tr = trace(bundled_classifier, TEXT)
    pred = predict(bundled_classifier, tr)
    expected = _reference_logits(bundled_classifier_dir, tr.input_ids)
    np.testing.assert_allclose(pred.logits, expected, rtol=1e-4, atol=1e-5)
    assert pred.label == LABELS[int(np.argmax(expected))]
    assert pred.probabilities.dtype == np.float64
    assert np.all((pred.probabilities >= 0) & (pred.probabilities <= 1))
    assert pred.probabilities.sum() == pytest.approx(1.0, abs=1e-12)
    e = np.exp(expected.astype(np.float64) - expected.max())
    np.testing.assert_allclose(pred.probabilities, e / e.sum(), rtol=1e-5)


def test_probabilities_stay_bounded_for_extreme_logits():
    p = probabilities(np.array([[1000.0, 0.0, -1000.0], [1e308, 1e308, -1e308]]))
    assert np.isfinite(p).all() and np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(p[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    multi = probabilities(np.array([-800.0, 0.0, 800.0, 2.0]), "multi_label_classification")
    np.testing.assert_allclose(multi, [0.0, 0.5, 1.0, 1 / (1 + np.exp(-2.0))])
    assert probabilities(np.array([0.3]), "regression") is None


def test_settled_layer():
    assert settled_layer(np.array([[1, 0], [0, 1], [1, 0], [1, 0]])) == 2
    assert settled_layer(np.array([[1, 0], [1, 0]])) == 0
    assert settled_layer(np.array([[0, 1], [1, 0]])) == 1
    with pytest.raises(ValueError, match="expected"):
        settled_layer(np.zeros(3))


def test_lens_table_is_tidy_and_matches_the_arrays(bundled_classifier):
    tr = trace(bundled_classifier, TEXT)
    table = lens_table(bundled_classifier, tr)
    n = bundled_classifier.info.num_layers + 1
    assert len(table) == 2 * n * 3
    assert {"model", "reading", "layer", "label", "logit", "probability", "top"} <= set(table.columns)
    cls = table[table.reading == "cls"].pivot(index="layer", columns="label", values="logit")[list(LABELS)]
    np.testing.assert_allclose(cls.to_numpy(), classifier_lens(bundled_classifier, tr), rtol=1e-6)
    mean = table[table.reading == "mean"].pivot(index="layer", columns="label", values="probability")[list(LABELS)]
    np.testing.assert_allclose(mean.to_numpy(), probabilities(mean_lens(bundled_classifier, tr)), rtol=1e-6)
    assert (table.groupby(["reading", "layer"])["top"].sum() == 1).all()
    with pytest.raises(ValueError, match="Unknown lens reading"):
        lens_table(bundled_classifier, tr, readings=("max",))


def test_plain_encoder_has_no_head(encoder):
    tr = trace(encoder, TEXT)
    assert encoder.classifier is None and encoder.info.labels == () and encoder.info.head_pooling is None
    for fn in (classifier_lens, mean_lens, predict, lens_table):
        with pytest.raises(NoClassifierError, match="no classification head.*ForSequenceClassification"):
            fn(encoder, tr)
    assert issubclass(NoClassifierError, ValueError)


def test_trace_of_another_model_refused(bundled_classifier, encoder):
    with pytest.raises(ValueError, match="made with"):
        classifier_lens(bundled_classifier, trace(encoder, TEXT))


def test_lens_calls_leave_the_shared_encoder_unchanged(bundled_classifier):
    enc = bundled_classifier
    modules = [enc.model, enc.eager_model, enc.classifier.classifier]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]

    def hooks():  # transformers installs its own at load time; none may be added later
        return [(dict(sub._forward_hooks), dict(sub._forward_pre_hooks)) for m in modules for sub in m.modules()]

    hooks_before = hooks()
    attn = (enc.model.config._attn_implementation, enc.eager_model.config._attn_implementation)
    tr = trace(enc, TEXT)
    first = classifier_lens(enc, tr)
    mean_lens(enc, tr), predict(enc, tr), lens_table(enc, tr)
    np.testing.assert_array_equal(classifier_lens(enc, tr), first)
    for module, state in zip(modules, before):
        assert not module.training
        for name, value in module.state_dict().items():
            assert torch.equal(value, state[name]), name
        assert all(not p.requires_grad for p in module.parameters())
    assert (enc.model.config._attn_implementation, enc.eager_model.config._attn_implementation) == attn
    assert hooks() == hooks_before


# --- in words, and drawn ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "winners, expected",
    [
        ([2, 2, 2], "picks 'positive' at every layer, already from the [CLS] embedding (layer 0)"),
        ([0, 1, 2, 2], "forms in [CLS] at layer 2 of 3: from there on the head reads 'positive' at every layer "
                       "('positive' 91% vs 'negative' 5% at layer 3; at layer 1 it would have said 'neutral'"),
        ([2, 2, 0, 1], "forms in [CLS] only at the last layer (3): at layer 2 the head would still have said "
                       "'negative' ('negative' 91% vs"),
    ],
)
def test_describe_settled(winners, expected):
    lens = np.full((len(winners), 3), -1.0)
    lens[np.arange(len(winners)), winners] = 2.0
    assert expected in describe_settled(lens, LABELS)
    assert "<s>" in describe_settled(lens, LABELS, cls_token="<s>")
    assert "score" in describe_settled(lens[:, :1], LABELS[:1], "regression") and "-1" in describe_settled(
        lens[:, :1], LABELS[:1], "regression"
    )
    with pytest.raises(ValueError, match="for 2 labels"):
        describe_settled(lens, LABELS[:2])


def test_words_follow_the_margin():
    # A 51 / 49 split at layer 2 is not a prediction: the last layer tips it, it does not "form" it.
    close = np.log(np.array([[0.7, 0.2, 0.1], [0.6, 0.1, 0.3], [0.51, 0.0001, 0.49], [0.3, 0.0001, 0.7]]))
    text = describe_settled(close, LABELS)
    assert "tips in [CLS] only at the last layer" in text and "about even at layer 2" in text
    # The answer never flips, but the probability moves: say so with the numbers.
    steady = np.log(np.array([[0.5, 0.49, 0.01], [0.55, 0.44, 0.01], [0.66, 0.33, 0.01]]))
    text = describe_settled(steady, LABELS)
    assert "no block flips the answer" in text and "goes from 50% at layer 0 to 66% at layer 2" in text
    assert "about even at layer 0" in text


def test_prediction_summary_lists_the_most_probable_labels(bundled_classifier):
    pred = predict(bundled_classifier, trace(bundled_classifier, TEXT))
    parts = pred.summary(top=2).split(" · ")
    order = np.argsort(-pred.probabilities)
    assert parts == [f"{LABELS[i]} {pred.probabilities[i]:.0%}" for i in order[:2]]
    assert len(pred.summary(top=10).split(" · ")) == 3
    regression = Prediction(("score",), np.array([0.7312]), None, "score", "regression")
    assert regression.summary() == "score 0.731"


def test_lens_figures_draw_the_table(bundled_classifier):
    from clsviz.figures import lens_figure, mean_lens_figure

    tr = trace(bundled_classifier, TEXT)
    table = lens_table(bundled_classifier, tr)
    lens = classifier_lens(bundled_classifier, tr)
    fig = lens_figure(table, "cls", settled_layer(lens)).to_dict()
    assert [t["name"] for t in fig["data"]] == list(LABELS)
    expected = probabilities(lens)  # [L+1, 3]
    for i, t in enumerate(fig["data"]):
        np.testing.assert_allclose(t["y"], expected[:, i], atol=1e-4)
        filled = [s == "circle" for s in t["marker"]["symbol"]]
        assert filled == list(expected.argmax(axis=1) == i)
    assert fig["layout"]["shapes"][0]["x0"] == settled_layer(lens)
    mean = mean_lens_figure(table).to_dict()
    np.testing.assert_allclose(mean["data"][0]["y"], probabilities(mean_lens(bundled_classifier, tr))[:, 0], atol=1e-4)
    assert "mean of all tokens" in mean["layout"]["title"]["text"] and not mean["layout"].get("shapes")


def test_lens_figure_keeps_the_likeliest_labels():
    rows = [
        {"reading": "cls", "layer": layer, "label": f"L{k}", "logit": 0.0, "probability": p, "top": k == 11}
        for layer in range(3) for k, p in enumerate(np.linspace(0.01, 0.2, 12))
    ]
    fig = lens_figure_of(pd.DataFrame(rows), max_labels=4)
    assert [t["name"] for t in fig["data"]] == ["L8", "L9", "L10", "L11"]
    assert "8 less likely labels not drawn" in fig["layout"]["title"]["text"]
    with pytest.raises(ValueError, match="no 'mean' rows"):
        lens_figure_of(pd.DataFrame(rows), reading="mean")


def lens_figure_of(table, **kwargs) -> dict:
    from clsviz.figures import lens_figure

    return lens_figure(table, **kwargs).to_dict()
