"""A person opens "What flows into [CLS]?", sees the maps and the attribution drawn (tokens as
text, never markup), and runs the faithfulness scoreboard in the background."""

from __future__ import annotations

import pytest

from devtools.browser import (
    RUN_TIMEOUT_MS,
    expected_tokens,
    follow_sidebar_link,
    open_app,
    page_problems,
    plot_traces,
    type_sentences,
    wait_for_app,
    wait_for_heatmap_tokens,
    wait_for_plots,
)
from ui.state import ROOT

pytestmark = pytest.mark.browser

LABEL, FILE = "What flows into [CLS]?", "pages/7_What_flows_in.py"
SENTENCE = "The <i>film</i> was not bad."


def test_the_page_draws_its_maps_and_escaped_attributions(page, server):
    open_app(page, server)
    follow_sidebar_link(page, server, LABEL, FILE)
    type_sentences(page, SENTENCE)
    wait_for_heatmap_tokens(page, expected_tokens(SENTENCE))
    wait_for_plots(page, count=5)
    assert page_problems(page) == []
    # The attribution figure: one row per pooling, the tokens as the cells' text.
    rows = [tr["text"] for chart in plot_traces(page) for tr in chart
            if tr["type"] == "heatmap" and tr["text"] and isinstance(tr["text"][0], list)]  # fmt: skip
    assert rows and len(rows[-1]) == 2
    # The text's "<i>" (the tokens "<", "i", ">") is drawn literally in the cells, and no italic
    # markup appeared anywhere in the plots.
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot text')].map(t => t.textContent)"
    )
    assert {"<", ">", "film"} <= set(drawn)
    assert page.locator(".js-plotly-plot tspan[style*='italic']").count() == 0
    page.screenshot(path=str(_shots() / "What_flows_in.png"))


def test_the_scoreboard_runs_in_the_background(page, server):
    open_app(page, server)
    follow_sidebar_link(page, server, LABEL, FILE)
    type_sentences(page, "The cat sat.")
    wait_for_heatmap_tokens(page, expected_tokens("The cat sat."))
    main = page.get_by_test_id("stMain")
    main.get_by_role("button", name="Run the scoreboard", exact=True).click()
    # The verdict, decided on the intervals over the sentences: one sentence cannot name a clear best.
    page.get_by_text("what removing tokens does", exact=False).first.wait_for(timeout=RUN_TIMEOUT_MS)
    wait_for_app(page)
    titles = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .gtitle')].map(t => t.textContent)")
    assert any("Faithfulness scoreboard" in t for t in titles)
    assert any("Deletion curves" in t for t in titles)
    assert page_problems(page) == []


def _shots():
    folder = ROOT / "test-artifacts" / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
