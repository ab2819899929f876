"""The analyses behind the Classifier, How does [CLS] learn? and Compare pages, each checked against
its experiment called directly: the same numbers, the figures they draw, and bad parameters refused
with the valid values named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clsviz import demo_corpus, demo_pairs, load_encoder, trace
from clsviz.analyses import NotApplicable, get, run
from clsviz.compare import attention_change, compare_encoders
from clsviz.experiments import run_finetune
from clsviz.experiments.side_by_side import describe_change, run_side_by_side, sample_corpus
from clsviz.heads import describe_settled, lens_table, predict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXT = "The film was not bad at all."


@pytest.fixture(scope="module")
def pair(tiny_model_dirs, tiny_classifier_dirs):
    """A: the tiny BERT; B: a tiny classifier over the same encoder weights (same tokenizer)."""
    return load_encoder(str(tiny_model_dirs["bert"])), load_encoder(str(tiny_classifier_dirs["bert"]))


def test_the_classifier_lens_is_the_heads_own(pair):
    _, classifier = pair
    t = trace(classifier, TEXT)
    result = run("classifier.lens", classifier, t)
    pd.testing.assert_frame_equal(result.table(), lens_table(classifier, t))
    prediction = predict(classifier, t)
    cls_rows = result.table()[result.table()["reading"] == "cls"]
    lens = cls_rows["logit"].to_numpy().reshape(-1, len(classifier.info.labels))
    assert result.summary() == [f"Prediction: {prediction.summary(top=5)}",
                                describe_settled(lens, classifier.info.labels, prediction.problem_type,
                                                 classifier.info.cls_token)]  # fmt: skip
    # The lens's last row is the model's own logits.
    np.testing.assert_allclose(lens[-1], prediction.logits, atol=1e-5)
    assert set(result.figures()) == {"classifier.lens", "classifier.mean_lens"}


def test_a_model_without_a_head_is_not_applicable(pair):
    encoder, _ = pair
    with pytest.raises(NotApplicable, match="classification head|no head|classifier"):
        run("classifier.lens", encoder, trace(encoder, TEXT))


def test_the_watched_finetuning_gives_the_experiments_numbers(pair):
    encoder, _ = pair
    corpus = demo_corpus()
    settings = dict(epochs=1, checkpoints=2, seed=0)
    result = get("finetune.watch")(encoder, corpus, label_name="sentiment", poolings="cls,cls_last", max_texts=30,
                                   flow_text=TEXT, **settings)  # fmt: skip
    direct = run_finetune(encoder, corpus.texts, corpus.labels["sentiment"], poolings=("cls", "cls_last"), max_texts=30,
                          flow_text=TEXT, label_name="sentiment", **settings)  # fmt: skip
    columns = ["pooling", "frozen_accuracy", "heldout_accuracy", "gain", "train_n", "heldout_n", "steps"]
    pd.testing.assert_frame_equal(result.table()[columns], direct.table[columns])
    pd.testing.assert_frame_equal(result.run.layer_metrics, direct.layer_metrics)
    assert result.steps() == sorted(int(s) for s in direct.checkpoints["step"].unique())
    assert result.figure_keys() == ("finetune.curves", "dynamics.checkpoint", "dynamics.checkpoint_flow",
                                    "dynamics.steps", "dynamics.moved")  # fmt: skip
    first = result.steps()[0]
    assert f"step {first}" in result.figure("dynamics.checkpoint", step=first).layout.title.text
    assert result.summary()[0] == direct.summary()


def test_unknown_poolings_and_labels_are_refused(pair):
    encoder, _ = pair
    with pytest.raises(ValueError, match="choose from .*cls_head"):
        run("finetune.watch", encoder, demo_corpus(), poolings="cls,nope")
    with pytest.raises(ValueError, match="no label column 'colour'"):
        run("finetune.watch", encoder, demo_corpus(), label_name="colour")
    with pytest.raises(ValueError, match="choose from tokens, cls, mean"):
        run("compare.cka", encoder, encoder, demo_corpus(), readings="cls,pooler")


def test_cka_gives_the_experiments_numbers(pair):
    a, b = pair
    corpus = demo_corpus()
    result = run("compare.cka", a, b, corpus, texts=30, readings="cls,mean")
    sample = sample_corpus(corpus, 30, corpus.label_names[0], 0)
    direct = compare_encoders(a, b, sample.texts, ("cls", "mean"), seed=0)
    assert result.comparison.cka.keys() == direct.cka.keys() == {"cls", "mean"}
    for reading in direct.cka:
        np.testing.assert_allclose(result.comparison.cka[reading], direct.cka[reading], equal_nan=True)
    assert result.summary() == [describe_change(direct)]
    assert result.figure("compare.cka", reading="mean").data
    # The diagonal (each layer against its counterpart) is read off the same matrices.
    mean = result.figure_table("compare.diagonal").query("reading == 'mean'")
    np.testing.assert_allclose(mean["cka"], np.diag(direct.cka["mean"]), equal_nan=True)


def test_attention_change_gives_the_experiments_numbers(pair):
    a, b = pair
    t = trace(a, TEXT)
    result = run("compare.attention", t, b)
    pd.testing.assert_frame_equal(result.table(), attention_change(t, trace(b, TEXT)).table())
    assert [tr.name for tr in result.figure("compare.attention", measure="cls_entropy").data]


def test_curves_give_the_experiments_numbers(pair):
    a, b = pair
    corpus, pairs = demo_corpus(), demo_pairs().head(20)
    result = run("compare.curves", a, b, corpus, pairs, label_name="sentiment", texts=40)
    sample = sample_corpus(corpus.labelled("sentiment"), 40, "sentiment", 0)
    direct = run_side_by_side(a, b, sample.texts, list(sample.labels["sentiment"]), pairs, seed=0, label_name="sentiment")
    pd.testing.assert_frame_equal(result.result.probe, direct.probe)
    pd.testing.assert_frame_equal(result.result.sts, direct.sts)
    assert result.figure_keys() == ("compare.probe", "compare.sts")
    assert result.summary() == [direct.summary()]
