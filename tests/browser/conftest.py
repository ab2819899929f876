"""End-to-end fixtures: one app server (`python -m ui.serve`, as `make run` starts it) and one headless Chromium per session.

The server listens on a free loopback port; Chromium is Debian's package driven by
Playwright (no browser download). Without chromium the browser tests skip and say why.
On failure a screenshot of every open page is saved under test-artifacts/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from devtools.browser import RUN_TIMEOUT_MS, launch_chromium, streamlit_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell whether it failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip(
            "chromium not installed (Debian package 'chromium'; scripts/ensure-chromium.sh installs it)"
        )
    return path


@pytest.fixture(scope="session")
def server(chromium_path, tmp_path_factory):
    """Base URL of the app server (`python -m ui.serve`) on a free loopback port; stopped after the session."""
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    try:
        with streamlit_server(log_path) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))
    finally:
        server_log = log_path.read_text(errors="replace") if log_path.exists() else ""
        # A traceback in the server log means something failed that the page may have hidden.
        if "Traceback (most recent call last)" in server_log:
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "streamlit-server.log").write_text(server_log)


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw, chromium_path)
        yield b
        b.close()


class PageWatch:
    """What a page did that a person would notice: dialogs opened, uncaught script errors."""

    def __init__(self, page):
        self.dialogs: list[str] = []
        self.page_errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]


def save_screenshots(request, pages) -> None:
    """Screenshots of ``pages`` under test-artifacts/ when the calling test failed."""
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    for i, pg in enumerate(pages):
        try:
            pg.screenshot(
                path=str(ARTIFACTS / f"{_artifact_name(request.node.nodeid)}-{i}.png"), full_page=True
            )
        except Exception:  # a crashed page cannot be photographed; the failure itself is reported
            pass


@pytest.fixture
def new_page(browser, request):
    """Factory for fresh pages (each in its own context = its own Streamlit session)."""
    contexts, pages = [], []

    def make():
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = ctx.new_page()
        pg.set_default_timeout(RUN_TIMEOUT_MS)
        pg.watch = PageWatch(pg)
        contexts.append(ctx)
        pages.append(pg)
        return pg

    yield make
    save_screenshots(request, pages)
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def page(new_page):
    return new_page()
