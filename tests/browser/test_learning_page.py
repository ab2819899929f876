"""A person on "How does [CLS] learn?": sees where the signal enters for their sentence, fine-tunes
a copy in the background, moves the checkpoint slider, and never sees an error."""

from __future__ import annotations

import pytest

from devtools.browser import (
    expected_tokens,
    open_app,
    page_problems,
    type_sentences,
    wait_for_app,
    wait_for_heatmap_tokens,
    wait_for_plots,
)
from ui.state import ROOT

pytestmark = pytest.mark.browser

PATH = "How_it_learns"
SENTENCE = "The film was not bad at all."
FINETUNE_TIMEOUT_MS = 400_000


def _slider(page, label: str):
    return page.get_by_test_id("stMain").get_by_role("slider", name=label)


def test_gradient_flow_follows_the_typed_sentence(page, server):
    open_app(page, server, PATH)
    wait_for_plots(page)
    type_sentences(page, SENTENCE)
    wait_for_heatmap_tokens(page, expected_tokens(SENTENCE))
    assert page.get_by_text("zero everywhere except at [CLS]", exact=False).count() >= 1
    assert page_problems(page) == []


def test_finetune_in_the_background_then_step_through_checkpoints(page, server):
    open_app(page, server, PATH)
    wait_for_plots(page)
    main = page.get_by_test_id("stMain")
    texts = main.get_by_role("spinbutton", name="Texts", exact=True)
    texts.fill("20")
    texts.press("Enter")
    wait_for_app(page)
    for pooling in ("mean", "fresh_middle"):  # two runs ([CLS] first and placed last) keep the test short
        main.locator(f'button[aria-label^="Remove {pooling}:"]').click()
        wait_for_app(page)
    for label, key in (("Epochs", "Home"), ("Checkpoints", "Home")):
        _slider(page, label).focus()
        page.keyboard.press(key)
        wait_for_app(page)
    main.get_by_role("button", name="Start fine-tuning", exact=True).click()
    # The run goes on in the background; the page polls it and redraws with the results.
    main.get_by_text("Trained with the same seed, split and budget", exact=False).wait_for(
        timeout=FINETUNE_TIMEOUT_MS
    )
    wait_for_app(page)
    assert main.get_by_text("What the model state shows at step", exact=False).count() >= 1
    step = _slider(page, "Checkpoint (training step)")
    step.focus()
    page.keyboard.press("Home")
    main.get_by_text("What the model state shows at step 0", exact=False).wait_for()
    wait_for_app(page)
    assert page.locator(".js-plotly-plot .main-svg").count() >= 6
    assert page_problems(page) == []
    shots = ROOT / "test-artifacts" / "pages"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "How_it_learns-finetuned.png"), full_page=True)
