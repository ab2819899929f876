"""A person opens "Causal tests": the five tests on the typed sentence draw at once, a corpus run
goes to the background with a progress bar and comes back with its figure; a source equal to the
target gives a message and the page keeps working."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from devtools.browser import page_problems, type_sentences, wait_for_app, wait_for_plots
from ui.state import ROOT

pytestmark = pytest.mark.browser

SENTENCE = "The film was not bad at all."
SHOTS = ROOT / "test-artifacts" / "pages"


def _charts(page) -> int:
    return page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')].filter(g => g._fullLayout).length"
    )


def test_sentence_tests_draw_and_a_corpus_run_comes_back(page, server):
    page.goto(f"{server}/Causal_tests")
    wait_for_app(page)
    type_sentences(page, SENTENCE)
    wait_for_app(page)
    wait_for_plots(page, count=5)
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("Does [CLS] need to read the words", exact=False).first).to_be_visible()
    # The knockout's plain sentence names this model's behaviour for the typed sentence.
    expect(main.get_by_text("[CLS]", exact=False).first).to_be_visible()
    assert page_problems(page) == []

    # One sentence typed: the patching source is typed too; the same sentence is refused.
    source = main.get_by_role("textbox", name="Source sentence")
    source.fill(SENTENCE)
    source.press("Enter")
    wait_for_app(page)
    expect(main.get_by_text("same sentence", exact=False).first).to_be_visible()
    wait_for_app(page)
    # The patching figure is gone (the run that refused it drew the other four again).
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length === 4")
    assert _charts(page) == 4 and page_problems(page) == []
    source.fill("Stock markets fell sharply after the announcement.")
    source.press("Enter")
    wait_for_app(page)
    wait_for_plots(page, count=5)

    # A corpus run: 40 demo texts, no label (effects on [CLS] only), in the background.
    texts = main.get_by_role("spinbutton", name="Texts", exact=True)
    texts.fill("40")
    texts.press("Enter")
    wait_for_app(page)
    run = main.get_by_role("button", name="Run on the corpus", exact=True)
    expect(run).to_have_count(1)  # while a rerun settles, the old button can still stand beside the new one
    run.click()
    wait_for_plots(page, count=6)
    wait_for_app(page)
    expect(main.get_by_text("40 texts", exact=False).first).to_be_visible()
    assert page_problems(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "Causal_tests_full.png"), full_page=True)
