"""A server restart with a job in flight, in a real browser: the server is killed while a
fine-tune runs; after it comes back, the same page (its URL names the job) says the job was
lost, shows nothing half-computed as a result, and starts the job again on request."""

from __future__ import annotations

import os
import signal

import pytest

from devtools.browser import open_app, page_problems, streamlit_process, wait_for_app, wait_for_plots

pytestmark = pytest.mark.browser

PATH = "How_it_learns"
RESULT_TEXT = "Trained with the same seed, split and budget"


def _start_a_short_finetune(page) -> None:
    main = page.get_by_test_id("stMain")
    texts = main.get_by_role("spinbutton", name="Texts", exact=True)
    texts.fill("40")
    texts.press("Enter")
    wait_for_app(page)
    main.get_by_role("button", name="Start fine-tuning", exact=True).click()


def test_a_job_lost_with_the_server_says_so_and_starts_again(new_page, chromium_path, tmp_path):
    # Jobs in the worker process, as a deployed server runs them (the test session runs them in threads).
    env = {"CLSVIZ_STATE_DIR": str(tmp_path / "state"), "CLSVIZ_JOB_PROCESS": "1"}
    log = tmp_path / "server.log"
    page = new_page()
    with streamlit_process(log, env=env) as first:
        open_app(page, first.url, PATH)
        wait_for_plots(page)
        _start_a_short_finetune(page)
        # Running in the background: its progress bar is on the page and the URL names the job.
        page.get_by_test_id("stProgress").first.wait_for()
        assert "jobs=how_it_learns.finetune" in page.url.replace("%3A", ":")
        job_url, port = page.url, first.port
        os.killpg(first.process.pid, signal.SIGKILL)  # a crash, not a clean shutdown
        first.process.wait(timeout=30)

    with streamlit_process(log, env=env, port=port):
        page.goto(job_url)
        wait_for_app(page)
        main = page.get_by_test_id("stMain")
        warning = main.get_by_test_id("stAlertContentWarning").filter(has_text="server restarted")
        warning.first.wait_for()
        assert "interrupted when the server restarted" in warning.first.inner_text()
        assert main.get_by_text(RESULT_TEXT, exact=False).count() == 0  # nothing half-computed shown
        main.get_by_role("button", name="Start the fine-tuning again").click()
        # The same job runs again: its progress bar is back, and Cancel stops it.
        page.get_by_test_id("stProgress").first.wait_for()
        main.get_by_role("button", name="Cancel", exact=True).click()
        main.get_by_text("Fine-tuning was cancelled.").wait_for()
        assert page_problems(page) == []
