"""AppTest for the "Why first?" page: per-sentence variants, the corpus probe, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import ui.corpus
from clsviz import load_encoder
from clsviz.corpus import Corpus, demo_corpus
from clsviz.experiments.moved_cls import position_probe
from clsviz.experiments.position import VARIANT_LABELS, position_experiment
from clsviz.figures import safe_text
from tests.conftest import open_page
from tests.test_attention import _arr
from ui.state import DEFAULT_MAX_TOKENS, OTHER

# The sample size is kept per corpus: the demo corpus's key.
SAMPLE_KEY = "why_first.sample." + demo_corpus().content_hash[:16]

PAGE = "pages/5_Why_first.py"
SENTENCE = "The film was not bad at all."


def chart_specs(at: AppTest) -> list[dict]:
    """The plotly figures of the page, in order, as dicts."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _open(**state) -> AppTest:
    return open_page(PAGE, SENTENCE, **state)


_specs = chart_specs


def _tiny(tiny_model_dirs, **state) -> AppTest:
    return _open(**{"clsviz.model": OTHER, "clsviz.custom_model": str(tiny_model_dirs["bert"]), **state})


def test_default_run_shows_variants_and_their_numbers(encoder):
    at = _open()
    specs = _specs(at)
    assert len(specs) == 2  # the inputs grid and the three-panel lines
    tokens_grid, lines = specs
    assert list(tokens_grid["data"][0]["y"]) == [safe_text(VARIANT_LABELS[v]) for v in VARIANT_LABELS]
    expected = position_experiment(
        encoder, SENTENCE, shift=20, replacement="the", max_tokens=DEFAULT_MAX_TOKENS
    ).table
    moved = expected[expected["variant"] == "cls_end"].sort_values("layer")
    trace = next(
        d for d in lines["data"] if d["name"] == safe_text(VARIANT_LABELS["cls_end"]) and d["xaxis"] == "x"
    )
    np.testing.assert_allclose(
        _arr(trace["y"]).astype(float), np.round(moved["cos_to_standard_cls"], 4), atol=1e-4
    )
    summary = next(m.value for m in at.markdown if m.value.startswith("**For "))
    last = expected[expected["layer"] == expected["layer"].max()].set_index("variant")
    assert f"{last.loc['standard', 'cos_to_mean']:.2f}" in summary
    assert f"{last.loc['cls_end', 'cos_to_standard_cls']:.2f}" in summary
    assert len(at.get("download_button")) == 1
    assert at.button(key="why_first.run").label == "Run the corpus probe"
    assert "both directions" in at.info[0].value


def test_corpus_probe_on_a_tiny_model(tiny_model_dirs):
    at = _tiny(tiny_model_dirs, **{SAMPLE_KEY: 60, "why_first.folds": 3})
    at.multiselect(key="why_first.variants").set_value(["standard", "cls_end"]).run()
    at.button(key="why_first.run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    specs = _specs(at)
    assert len(specs) == 3
    probe = specs[2]
    corpus = demo_corpus()
    texts, labels = list(corpus.texts[:60]), list(corpus.labels["topic"][:60])
    expected, _ = position_probe(
        load_encoder(str(tiny_model_dirs["bert"])), texts, labels, variants=("standard", "cls_end"), folds=3
    )
    for variant in ("standard", "cls_end"):
        line = next(d for d in probe["data"] if d["name"] == safe_text(VARIANT_LABELS[variant]))
        want = expected[expected["variant"] == variant].sort_values("layer")["accuracy"]
        np.testing.assert_allclose(_arr(line["y"]).astype(float), np.round(want, 4), atol=1e-4)
    assert len(at.get("download_button")) == 2
    # The result is remembered: the button is disabled and the chart stays after another rerun.
    at.run()
    assert len(_specs(at)) == 3


def test_notes_for_a_long_shift_and_a_multi_token_word(tiny_model_dirs):
    at = _tiny(tiny_model_dirs, **{"why_first.shift": 60, "why_first.word": "unbelievableness"})
    warnings = " ".join(w.value for w in at.warning)
    assert "60" in warnings and "positions" in warnings
    assert "tokens for this tokenizer" in warnings


def test_single_class_labels_and_unlabelled_corpus_give_messages(tiny_model_dirs, monkeypatch):
    texts = tuple(f"Sentence number {i} is about the weather." for i in range(30))
    monkeypatch.setattr(
        ui.corpus, "demo_corpus", lambda: Corpus(texts=texts, labels={"topic": ("weather",) * 30})
    )
    at = _tiny(tiny_model_dirs)
    at.button(key="why_first.run").click().run()
    assert not at.exception, at.exception
    assert any("single class" in e.value for e in at.error)

    monkeypatch.setattr(ui.corpus, "demo_corpus", lambda: Corpus(texts=texts))
    at = _tiny(tiny_model_dirs)
    assert any("no label column" in i.value for i in at.info)

    few = Corpus(texts=texts[:6], labels={"topic": ("a", "b") * 3})
    monkeypatch.setattr(ui.corpus, "demo_corpus", lambda: few)
    at = _tiny(tiny_model_dirs)
    assert at.number_input(key="why_first.sample." + few.content_hash[:16]).value == 6
    at.button(key="why_first.run").click().run()
    assert not at.exception, at.exception
    assert any("Only 6 labelled" in e.value for e in at.error)


@pytest.mark.parametrize("label", ["order"])
def test_label_with_missing_values_is_probed_on_labelled_rows(tiny_model_dirs, label):
    # The demo 'order' column is empty for most rows: only labelled rows are used.
    at = _tiny(tiny_model_dirs, **{"why_first.label": label, SAMPLE_KEY: 40, "why_first.folds": 2})
    at.multiselect(key="why_first.variants").set_value(["standard"]).run()
    at.button(key="why_first.run").click().run()
    assert not at.exception, at.exception
    probe = _specs(at)[-1]
    assert "order" in probe["layout"]["title"]["text"]


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "electra", "albert"])
def test_every_tiny_family_runs(tiny_model_dirs, kind):
    at = _open(**{"clsviz.model": OTHER, "clsviz.custom_model": str(tiny_model_dirs[kind])})
    assert not at.error, [e.value for e in at.error]
    tokens_grid, lines = _specs(at)
    assert len(tokens_grid["data"][0]["y"]) == len(VARIANT_LABELS)
    assert len(lines["data"]) == 3 * len(VARIANT_LABELS) + 1
