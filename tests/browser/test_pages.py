"""A person moves through every page from the sidebar links and sees plots, never an error."""

from __future__ import annotations

import pytest

from devtools.browser import (
    follow_sidebar_link,
    open_app,
    page_problems,
    set_number,
    url_path,
    wait_for_app,
    wait_for_plots,
)
from ui.state import PAGES, ROOT

pytestmark = pytest.mark.browser

# Every page's screenshot is kept (the README's pictures are copied from here).
SHOTS = ROOT / "test-artifacts" / "pages"

EXISTING = [(path, label) for path, label, _ in PAGES if (ROOT / path).is_file()]

# Pages that draw their plot only when a person asks for a computation: the number inputs
# to set first (a small sample keeps the run short) and the button to press.
ACTIONS = {
    "Could any token do?": ({"Texts to use": "50"}, "Run the probe"),
}
# Pages that draw only once a person loads what the bundled model lacks (a classifier head, a
# second model); on the bundled model they say what to do. tests/browser/test_classifier_pages.py
# draws them.
EXPLAIN_FIRST = {
    "Classifier": "has no classification head",
    "Compare two models": "Pick a second model",
    "Published findings": "Check the findings on this model",
    # Draws once a model has been pretrained in the lab (tests/browser/test_lab_page.py starts one).
    "The [CLS] lab": "Start pretraining",
}


def _ask(page, inputs: dict[str, str], button: str) -> None:
    main = page.get_by_test_id("stMain")
    for name, value in inputs.items():
        set_number(page, name, value)
    main.get_by_role("button", name=button, exact=True).click()
    page.locator(".js-plotly-plot .main-svg").first.wait_for()
    wait_for_app(page)


def test_sidebar_links_are_the_existing_pages(page, server):
    open_app(page, server)
    links = page.get_by_test_id("stSidebar").get_by_test_id("stPageLink-NavLink")
    labels = [text.split("\n")[-1].strip() for text in links.all_inner_texts()]
    assert labels == [label for _, label in EXISTING]
    # Streamlit's own page list stays hidden: the sidebar shows only these links.
    assert page.get_by_test_id("stSidebarNav").count() == 0


@pytest.mark.parametrize(("path", "label"), EXISTING[1:], ids=[url_path(p) for p, _ in EXISTING[1:]])
def test_page_from_the_sidebar_shows_plots_and_no_error(page, server, path, label):
    open_app(page, server)
    follow_sidebar_link(page, server, label, path)
    if label in ACTIONS:
        _ask(page, *ACTIONS[label])
    if label in EXPLAIN_FIRST:
        assert EXPLAIN_FIRST[label] in page.get_by_test_id("stMain").inner_text()
    else:
        wait_for_plots(page)
        assert page.locator(".js-plotly-plot").count() >= 1, f"{label}: no plot on the page"
        # Drawn, not only mounted: plotly built its SVG.
        assert page.locator(".js-plotly-plot .main-svg").count() >= 1, f"{label}: plot not drawn"
    assert page_problems(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{url_path(path) or 'overview'}.png"))
    # And back to the Overview through its link.
    follow_sidebar_link(page, server, EXISTING[0][1], EXISTING[0][0])
    wait_for_plots(page)
    assert page.locator(".js-plotly-plot").count() >= 1 and page_problems(page) == []
    page.screenshot(path=str(SHOTS / "overview.png"))
