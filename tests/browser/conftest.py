"""End-to-end fixtures: one `streamlit run app.py` server and one headless Chromium per session.

The server listens on a free loopback port; Chromium is Debian's package driven by
Playwright (no browser download). Without chromium the browser tests skip and say why.
On failure a screenshot of every open page is saved under test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser.helpers import RUN_TIMEOUT_MS

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SERVER_START_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


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
        pytest.skip("chromium not installed (Debian package 'chromium'; scripts/ensure-chromium.sh installs it)")
    return path


@pytest.fixture(scope="session")
def server(chromium_path, tmp_path_factory):
    """Base URL of `streamlit run app.py` on a free loopback port; stopped after the session."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    env.pop("CLSVIZ_ALLOWED_MODELS", None)
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.headless", "true",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"streamlit did not become healthy on {url} (exit code {proc.poll()}):\n{tail}")
            time.sleep(0.25)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        server_log = log_path.read_text(errors="replace")
        # A traceback in the server log means something failed that the page may have hidden.
        if "Traceback (most recent call last)" in server_log:
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "streamlit-server.log").write_text(server_log)


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
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
            pg.screenshot(path=str(ARTIFACTS / f"{_artifact_name(request.node.nodeid)}-{i}.png"), full_page=True)
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
