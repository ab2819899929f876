"""The Classifier and Compare pages in a real browser, on tiny checkpoints built by the tests:
a person loads a fine-tuned classifier, reads its prediction and lens, and compares it with
the model it came from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools.browser import (
    open_app,
    page_problems,
    plot_traces,
    type_sentences,
    wait_for_app,
    wait_for_plots,
)

pytestmark = pytest.mark.browser

# Screenshots of the drawn pages are kept beside the page tour's (tests/browser/test_pages.py).
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "pages"

OTHER = "Other (hub id or local folder)…"
SENTENCES = "the cat chased a dog\nwhy is the token always first"


def _choose(page, where, label: str, option: str) -> None:
    """Pick ``option`` in the select box called ``label`` inside ``where``."""
    where.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app(page)


def _type_into(page, name: str, text: str) -> None:
    field = page.get_by_role("textbox", name=name, exact=True)
    field.fill(text)
    field.press("Enter")
    wait_for_app(page)


def _load_sidebar_model(page, folder) -> None:
    _choose(page, page.get_by_test_id("stSidebar"), "Model", OTHER)
    _type_into(page, "Hugging Face id or local folder", str(folder))


def _sidebar_predictions(page) -> list[str]:
    text = page.get_by_test_id("stSidebar").inner_text()
    return re.findall(r"^\d+\. .*%.*$", text, flags=re.M)


def test_a_classifier_shows_its_prediction_and_lens(page, server, tiny_classifier_dirs):
    open_app(page, server, "Classifier")
    # On the bundled model the page says how to get a classifier instead of drawing.
    main = page.get_by_test_id("stMain")
    assert "has no classification head" in main.inner_text()
    _load_sidebar_model(page, tiny_classifier_dirs["bert"])
    type_sentences(page, SENTENCES)
    # The sidebar lists one prediction per typed line (three default lines before the change).
    page.wait_for_function(
        """() => { const t = document.querySelector('[data-testid="stSidebar"]').innerText;
                   return /^2\\. /m.test(t) && !/^3\\. /m.test(t); }"""
    )
    wait_for_app(page)
    wait_for_plots(page, 2)
    predictions = _sidebar_predictions(page)
    assert len(predictions) == 2, page.get_by_test_id("stSidebar").inner_text()
    assert all(
        {"negative", "neutral", "positive"} <= set(re.findall(r"[a-z]+", line)) for line in predictions
    )
    charts = plot_traces(page)
    assert len(charts) == 2
    assert [tr["name"] for tr in charts[0]] == ["negative", "neutral", "positive"]
    # The last point of each line is the prediction: the probabilities sum to one.
    assert sum(tr["y"][-1] for tr in charts[0]) == pytest.approx(1.0, abs=2e-3)
    assert "never does this" in main.inner_text()
    assert page_problems(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "Classifier-lens.png"), full_page=True)


def test_two_models_compared_layer_by_layer(page, server, tiny_model_dirs, tiny_classifier_dirs):
    open_app(page, server, "Compare")
    main = page.get_by_test_id("stMain")
    assert "Pick a second model" in main.inner_text()
    _load_sidebar_model(page, tiny_model_dirs["bert"])
    type_sentences(page, SENTENCES)
    wait_for_app(page)
    _choose(page, main, "Second model (B)", OTHER)
    _type_into(page, "Hugging Face id or local folder (B)", str(tiny_classifier_dirs["bert"]))
    texts = main.get_by_role("spinbutton", name="Texts", exact=True)
    texts.fill("40")
    texts.press("Enter")
    wait_for_app(page)
    main.get_by_role("button", name="Compare the layers", exact=True).click()
    wait_for_plots(page, 4)  # three CKA maps and the diagonal, after the background job
    wait_for_app(page)
    diagonal = plot_traces(page)[3]
    # B's encoder is A's own: every defined point of the diagonal is 1.
    values = [v for tr in diagonal for v in tr["y"] if v is not None]
    assert values and all(v == pytest.approx(1.0, abs=1e-3) for v in values)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "Compare-cka.png"), full_page=True)
    # The attention view draws B − A per block x head for the chosen sentence.
    main.get_by_role("tab", name="Attention around [CLS]").click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot')].some(g => (g._fullData || []).some(
               t => t.type === 'heatmap' && Array.from(t.y || []).join('|') === 'block 1|block 2'))"""
    )
    wait_for_app(page)
    [change] = [
        tr
        for chart in plot_traces(page)
        for tr in chart
        if tr["type"] == "heatmap" and tr["y"][0] == "block 1"
    ]
    assert change["x"] == ["head 1", "head 2", "head 3", "head 4"]
    assert page_problems(page) == []


def test_a_second_model_that_fails_keeps_the_first(page, server):
    open_app(page, server, "Compare")
    main = page.get_by_test_id("stMain")
    _choose(page, main, "Second model (B)", OTHER)
    _type_into(page, "Hugging Face id or local folder (B)", "<img src=x onerror=alert(1)> ../../etc")
    error = page.get_by_test_id("stAlertContentError").first
    error.wait_for()
    assert "The second model could not be loaded" in error.inner_text()
    assert "<img src=x onerror=alert(1)>" in error.inner_text()  # shown as text
    assert page.locator('img[src="x"]').count() == 0
    # The sidebar's model keeps working on the other pages.
    page.get_by_test_id("stSidebar").get_by_role("link", name="Attention", exact=True).click()
    wait_for_app(page)
    wait_for_plots(page, 1)
    assert page_problems(page) == []
