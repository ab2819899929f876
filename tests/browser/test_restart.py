"""Jobs cut short, in a real browser: the server killed while a fine-tune runs (after it comes
back, the same page - its URL names the job - says the job was lost, shows nothing half-computed
as a result, and starts the job again on request), and the job's worker process killed while
the server runs on (the page says so, with a Retry that runs it again on a fresh worker)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

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
        assert "jobs=analysis.how_it_learns.finetune" in page.url.replace("%3A", ":")
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


def _job_worker(server_pid: int) -> int:
    """The pid of the server's job worker process (loky's), once it has started."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (
            int(stat.rsplit(")", 1)[1].split()[1]) == server_pid
            and "loky" in cmdline
            and "resource_tracker" not in cmdline
        ):
            return int(entry.name)
    raise LookupError("no job worker yet")


def test_a_worker_killed_mid_job_says_so_and_retry_runs_it_again(new_page, chromium_path, tmp_path):
    env = {"CLSVIZ_STATE_DIR": str(tmp_path / "state"), "CLSVIZ_JOB_PROCESS": "1"}
    page = new_page()
    with streamlit_process(tmp_path / "server.log", env=env) as server:
        open_app(page, server.url, PATH)
        wait_for_plots(page)
        _start_a_short_finetune(page)
        main = page.get_by_test_id("stMain")
        main.get_by_text("run 1 of", exact=False).first.wait_for(timeout=240_000)  # computing in the worker
        os.kill(_job_worker(server.process.pid), signal.SIGKILL)  # as the out-of-memory killer would
        error = main.get_by_test_id("stAlertContentError").filter(has_text="Fine-tuning failed")
        error.first.wait_for(timeout=60_000)
        assert (
            "was killed" in error.first.inner_text()
            and "Nothing it computed was kept" in error.first.inner_text()
        )
        assert main.get_by_text(RESULT_TEXT, exact=False).count() == 0
        assert server.process.poll() is None  # the server itself never noticed
        main.get_by_role("button", name="Retry", exact=True).click()
        # The same job runs again on a fresh worker: its progress is back, and Cancel stops it.
        main.get_by_text("run 1 of", exact=False).first.wait_for(timeout=240_000)
        main.get_by_role("button", name="Cancel", exact=True).click()
        main.get_by_text("Fine-tuning was cancelled.").wait_for(timeout=120_000)
        assert page_problems(page) == []
