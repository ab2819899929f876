"""AppTest for the Attention page: default run, selectors, toggles, other models, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from clsviz import trace
from clsviz.figures import safe_text
from clsviz.metrics import normalize_rows
from clsviz.mixing import value_weighted_attention
from tests.conftest import open_page
from tests.test_attention import _arr, tiny_mpnet_dir  # noqa: F401 (fixture)
from ui.state import DEFAULT_MAX_TOKENS, OTHER

PAGE = "pages/1_Attention.py"
SENTENCES = "Why is the [CLS] token always first?\nThe film was not bad at all."
CHART_KEYS = (
    "attention.to_cls",
    "attention.entropy",
    "attention.matrix",
    "attention.breakdown",
    "attention.cls_row",
    "attention.rollout",
)


def _open(**state) -> AppTest:
    # The page runs inside the app (entry file app.py), as it does in the browser.
    return open_page(PAGE, SENTENCES, timeout=180, **state)


def _specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _chart(at: AppTest, key: str) -> dict:
    return _specs(at)[CHART_KEYS.index(key)]


def _subtitle(spec: dict) -> str:
    return spec["layout"]["title"]["subtitle"]["text"]


@pytest.fixture(scope="module")
def page() -> AppTest:
    return _open()


def test_default_run_shows_every_chart_with_a_download(page):
    specs = _specs(page)
    assert len(specs) == len(CHART_KEYS)
    # One CSV per chart, plus the HTML report of the sentence.
    labels = [b.proto.label for b in page.get("download_button")]
    assert len(labels) == len(CHART_KEYS) + 1
    assert labels.count("Download an HTML report") == 1
    assert len(page.caption) >= len(CHART_KEYS)
    matrix = _chart(page, "attention.matrix")
    assert "Block 6, mean over heads" in matrix["layout"]["title"]["text"]
    assert [t.value for t in page.title] == ["Attention around [CLS]"]


def test_layer_and_head_selectors_pick_the_map(encoder, page):
    page.slider(key="attention.layer").set_value(2).run()
    page.selectbox(key="attention.head").set_value(3).run()
    assert not page.exception
    matrix = _chart(page, "attention.matrix")
    assert "Block 2, head 4" in matrix["layout"]["title"]["text"]
    t = trace(encoder, SENTENCES.splitlines()[0], max_tokens=DEFAULT_MAX_TOKENS)
    assert list(matrix["data"][0]["x"]) == [safe_text(f"{i} {tok}") for i, tok in enumerate(t.tokens)]
    np.testing.assert_allclose(_arr(matrix["data"][0]["z"]), np.round(t.attention(2, 3), 4), atol=1e-4)
    cls_row = _chart(page, "attention.cls_row")
    assert "head 4" in _subtitle(cls_row)


def test_changing_the_sentence_changes_the_tokens(encoder, page):
    picker = page.selectbox(key="attention.sentence")
    picker.set_value(picker.options[1]).run()
    assert not page.exception
    t = trace(encoder, SENTENCES.splitlines()[1], max_tokens=DEFAULT_MAX_TOKENS)
    labels = [safe_text(f"{i} {tok}") for i, tok in enumerate(t.tokens)]
    assert list(_chart(page, "attention.matrix")["data"][0]["x"]) == labels
    assert list(_chart(page, "attention.rollout")["data"][1]["x"]) == labels


def test_toggles_exclude_self_and_value_norm(encoder):
    at = _open()
    at.toggle(key="attention.exclude_self").set_value(True).run()
    assert not at.exception
    assert "queries other than [CLS]" in _subtitle(_chart(at, "attention.to_cls"))

    at.toggle(key="attention.value_norm").set_value(True).run()
    assert not at.exception
    assert any("value-norm weighted" in i.value for i in at.info)
    matrix = _chart(at, "attention.matrix")
    assert "value-norm" in _subtitle(matrix)
    t = trace(encoder, SENTENCES.splitlines()[0], max_tokens=DEFAULT_MAX_TOKENS)
    expected = normalize_rows(value_weighted_attention(encoder, t))[-1].mean(axis=0)
    np.testing.assert_allclose(_arr(matrix["data"][0]["z"]), np.round(expected, 4), atol=1e-4)


def test_other_model_with_fewer_layers_clamps_the_layer(tiny_model_dirs):
    at = _open()
    assert at.slider(key="attention.layer").value == 6
    at.session_state["clsviz.model"] = OTHER
    at.session_state["clsviz.custom_model"] = str(tiny_model_dirs["distilbert"])
    at.toggle(key="attention.value_norm").set_value(True).run()
    assert not at.exception
    assert not at.error
    assert at.slider(key="attention.layer").value == 2
    assert len(at.get("plotly_chart")) == len(CHART_KEYS)
    assert "Block 2" in _chart(at, "attention.matrix")["layout"]["title"]["text"]


def test_value_norm_on_an_unsupported_model_warns_and_falls_back(tiny_mpnet_dir):  # noqa: F811
    at = _open(**{"clsviz.model": OTHER, "clsviz.custom_model": str(tiny_mpnet_dir)})
    at.toggle(key="attention.value_norm").set_value(True).run()
    assert not at.exception
    assert any("not in" in w.value and "plain attention" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == len(CHART_KEYS)
    assert "attention weights" in _subtitle(_chart(at, "attention.matrix"))


def test_empty_sentence_box_prompts_instead_of_failing():
    at = _open(**{"clsviz.sentences": "  \n "})
    assert any("Type a sentence" in i.value for i in at.info)
    assert not at.get("plotly_chart")
