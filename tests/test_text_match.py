"""Scores of a recovered sentence: token F1 and BLEU against hand computations and sacrebleu's own
entry points, exact match, and the intervals over a set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu

from clsviz.experiments.text_match import (
    bleu_counts,
    corpus_bleu,
    exact_match,
    score_interval,
    score_pairs,
    sentence_bleu,
    token_f1,
    words,
)


def test_token_f1_by_hand():
    assert words("Don't stop, now!") == ["don", "'", "t", "stop", ",", "now", "!"]
    assert token_f1("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    # Multisets: "the the" matches "the" once.
    assert token_f1("the the", "the") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("The Cat", "the cat") == 1.0
    assert token_f1("", "") == 1.0 and token_f1("", "a") == 0.0 and token_f1("dog", "cat") == 0.0


def test_bleu_by_hand_and_against_sacrebleu():
    hyp, ref = "the cat sat on the mat", "the cat sat on a mat"
    expected = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(2 / 4) + math.log(1 / 3)) / 4)
    assert sentence_bleu(hyp, ref) == pytest.approx(expected)
    assert corpus_bleu(bleu_counts([hyp], [ref])) == pytest.approx(expected)
    outputs = ["the cat sat on the mat", "a dog ran in the park today", "hello there", "it is what it is"]
    refs = ["the cat sat on a mat", "the dog ran in the park", "hello there friend", "it is what it is"]
    assert corpus_bleu(bleu_counts(outputs, refs)) == pytest.approx(sacrebleu.corpus_bleu(outputs, [refs]).score)
    for o, r in zip(outputs, refs):
        assert sentence_bleu(o, r) == pytest.approx(sacrebleu.sentence_bleu(o, [r]).score)
    assert sentence_bleu(refs[3], refs[3]) == 100.0  # bounded: never 100.0000001


def test_exact_and_table():
    assert exact_match("a  cat ", "a cat") and not exact_match("a cat", "A cat")
    table = score_pairs(["a cat", "dog"], ["a cat", "a dog"])
    assert table.columns.tolist() == ["token_f1", "bleu", "exact"]
    assert table["exact"].tolist() == [True, False]
    with pytest.raises(ValueError, match="one output per reference"):
        score_pairs(["a"], ["a", "b"])


def test_intervals_over_a_set():
    rng = np.random.default_rng(0)
    vocab = "the a cat dog sat ran on in mat park".split()
    refs = [" ".join(rng.choice(vocab, 8)) for _ in range(30)]
    outputs = [" ".join(r.split()[:5] + list(rng.choice(vocab, 3))) for r in refs]
    scores = score_pairs(outputs, refs)
    summary = score_interval(scores, outputs, refs, n_boot=300).set_index("metric")
    assert summary.index.tolist() == ["token_f1", "bleu", "exact"]
    assert summary.loc["token_f1", "estimate"] == pytest.approx(scores["token_f1"].mean())
    assert summary.loc["bleu", "estimate"] == pytest.approx(sacrebleu.corpus_bleu(outputs, [refs]).score)
    for m in summary.index:
        assert summary.loc[m, "low"] <= summary.loc[m, "estimate"] <= summary.loc[m, "high"]
    assert (summary["n"] == 30).all()
    # A single sentence has no interval.
    one = score_interval(scores.iloc[:1], outputs[:1], refs[:1]).set_index("metric")
    assert np.isnan(one.loc["bleu", "low"]) and not np.isnan(one.loc["bleu", "estimate"])
