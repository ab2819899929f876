"""A person on "The [CLS] lab": picks a tiny model, starts a pretraining run in the background (in
the job worker process, as `make run` does), watches it finish, and sees the checkpoint curves."""

from __future__ import annotations

import pytest

from devtools.browser import open_app, page_problems, streamlit_process, wait_for_app, wait_for_plots
from ui.state import ROOT

pytestmark = pytest.mark.browser

PATH = "Lab"
RUN_TIMEOUT_MS = 900_000


@pytest.fixture(scope="module")
def lab_server(chromium_path, tmp_path_factory):
    """An app server with an empty lab folder and no installed corpus (the shipped excerpt)."""
    home = tmp_path_factory.mktemp("lab-browser")
    env = {"CLSVIZ_LAB_DIR": str(home / "lab"), "CLSVIZ_CORPORA_DIR": str(home / "corpora"),
           "CLSVIZ_STATE_DIR": str(home / "state"), "CLSVIZ_JOB_PROCESS": "1"}  # fmt: skip
    with streamlit_process(home / "server.log", env=env) as server:
        yield server.url, home / "lab"


def test_pretrain_in_the_background_then_see_the_curves(page, lab_server):
    url, lab = lab_server
    open_app(page, url, PATH)
    main = page.get_by_test_id("stMain")
    assert main.get_by_text("No lab model yet", exact=False).count() == 1
    main.get_by_test_id("stSelectbox").filter(has_text="Model size").click()
    page.get_by_role("option", name="tiny: 2 layers × 32 dims").click()
    wait_for_app(page)
    steps = main.get_by_role("spinbutton", name="Steps per variant", exact=True)
    steps.fill("10")
    steps.press("Enter")
    wait_for_app(page)
    slider = main.get_by_role("slider", name="Checkpoints")
    slider.focus()
    page.keyboard.press("Home")
    wait_for_app(page)
    main.get_by_role("button", name="Start pretraining", exact=True).click()
    page.get_by_test_id("stProgress").first.wait_for()  # the job's progress, with a Cancel button
    assert main.get_by_role("button", name="Cancel").count() >= 1
    main.get_by_text("first+nsp: 10 steps on an excerpt of Pride and Prejudice", exact=False).first.wait_for(
        timeout=RUN_TIMEOUT_MS
    )
    wait_for_app(page)
    wait_for_plots(page, 4)
    assert (
        main.get_by_text(
            "The share of attention the other tokens give the summary token", exact=False
        ).count()
        >= 1
    )
    saved = list(lab.glob("set-*/first-nsp/model.safetensors"))
    assert len(saved) == 1  # the model the job saved, where the page said
    assert page_problems(page) == []
    shots = ROOT / "test-artifacts" / "pages"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "Lab-pretrained.png"), full_page=True)
