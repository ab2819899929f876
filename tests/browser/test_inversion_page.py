"""A person opens "Recover the sentence?", trains the inversion ladder in the background, sees it
beside vec2text's figures, then trains the inverters of one layer and types a sentence to recover
from its [CLS] and from its mean; hostile text stays text."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from devtools.browser import page_problems, plot_traces, set_number, wait_for_app, wait_for_plots
from ui.state import ROOT

pytestmark = pytest.mark.browser

SHOTS = ROOT / "test-artifacts" / "pages"
TYPED = "<b>bold</b> The weather was cold and rainy all week."


def test_ladder_and_typed_sentence(page, server):
    page.goto(f"{server}/Inversion")
    wait_for_app(page)
    wait_for_plots(page)  # the neighbours tab draws at once
    main = page.get_by_test_id("stMain")
    set_number(page, "Corpus texts to use", "40")
    main.get_by_role("tab", name="Trained inverter").click()
    wait_for_app(page)
    main.get_by_test_id("stRadio").filter(has_text="Layers").get_by_text("last", exact=True).click()
    wait_for_app(page)
    set_number(page, "Training steps per inverter", "50")

    ladder = main.get_by_role("button", name="Train the ladder", exact=True)
    expect(ladder).to_have_count(1)
    ladder.click()
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(g => (g._fullData || [])"
                           ".some(t => t.name === 'cls · inverter'))", timeout=900_000)
    wait_for_app(page)
    names = {tr.get("name") for chart in plot_traces(page) for tr in chart}
    assert {"cls · inverter", "mean · retrieval", "max · bag of words (content-word F1)"} <= names
    expect(main.get_by_text("vec2text reports about 30", exact=False).first).to_be_visible()
    expect(main.get_by_text("GTR-base", exact=False).first).to_be_visible()
    assert page_problems(page) == []

    train = main.get_by_role("button", name="Train the inverters", exact=True)
    expect(train).to_have_count(1)
    train.click()
    box = main.get_by_role("textbox", name="Sentence to recover", exact=True)
    box.wait_for(timeout=900_000)
    wait_for_app(page)
    box.fill(TYPED)
    box.press("Enter")
    wait_for_app(page)
    expect(main.get_by_text("From [CLS]", exact=True)).to_be_visible()
    expect(main.get_by_text("From mean of all tokens", exact=True)).to_be_visible()
    expect(main.get_by_text("token F1", exact=False).first).to_be_visible()
    # The typed markup is never rendered as HTML anywhere on the page.
    assert main.locator("b", has_text="bold").count() == 0
    assert page_problems(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "Inversion_trained.png"), full_page=True)
