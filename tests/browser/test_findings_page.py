"""The Published findings page in a real browser: a person picks a model, starts the check, waits
for the background job, and reads the table, one sentence per finding and the links to explore."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from clsviz.literature import VERDICTS, load_claims
from devtools.browser import RUN_TIMEOUT_MS, open_app, page_problems, wait_for_app

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "pages"
OTHER = "Other (hub id or local folder)…"
BUTTON = "Check the findings on this model"


def _load_sidebar_model(page, folder) -> None:
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").filter(has_text="Model").first.click()
    page.get_by_role("option", name=OTHER, exact=True).click()
    wait_for_app(page)
    field = page.get_by_role("textbox", name="Hugging Face id or local folder", exact=True)
    field.fill(str(folder))
    field.press("Enter")
    wait_for_app(page)


def test_the_findings_are_checked_on_the_chosen_model(page, server, tiny_model_dirs):
    open_app(page, server, "Findings")
    main = page.get_by_test_id("stMain")
    assert "Published findings, checked live" in main.inner_text()
    _load_sidebar_model(page, tiny_model_dirs["bert"])
    expect(main).to_contain_text("Model: " + str(tiny_model_dirs["bert"]), timeout=RUN_TIMEOUT_MS)
    wait_for_app(page)
    main.get_by_role("button", name=BUTTON, exact=True).click()
    # The job runs in the background; the page draws the table once it has finished.
    page.wait_for_function(
        """() => /\\d+ findings on /.test(document.querySelector('[data-testid="stMain"]').innerText)""",
        timeout=4 * RUN_TIMEOUT_MS,
    )
    wait_for_app(page)
    text = main.inner_text()
    claims = load_claims()
    for claim in claims:  # one sentence per finding, under the table
        assert f"{claim.source}: {claim.claim[0].lower()}{claim.claim[1:30]}" in text
    assert any(v in text for v in VERDICTS)
    assert main.get_by_test_id("stDataFrame").count() >= 1
    assert main.get_by_test_id("stDownloadButton").filter(has_text="Download the table").count() == 1
    assert main.get_by_role("link", name="Explore on 'Similarity'").count() >= 1
    assert main.get_by_role("button", name=BUTTON, exact=True).count() == 0
    assert page_problems(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "Findings.png"), full_page=True)
    # Following a link opens the page where the finding is explored.
    main.get_by_role("link", name="Explore on 'Attention'").first.click()
    page.wait_for_url(f"{server}/Attention")
    wait_for_app(page)
    assert page_problems(page) == []
