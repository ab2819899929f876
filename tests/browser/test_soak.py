"""Soak: 300 page runs across pages and 20 sentences in one server process, in a real browser.

A server that stays up neither leaks memory run after run nor stops answering its health
check while it computes. The server's resident memory after the run must be within 15% of
what it held after the first 30 runs, no run may show an error, and /_stcore/health must
answer throughout.
"""

from __future__ import annotations

import threading
import time

import pytest

from devtools.browser import (
    follow_sidebar_link,
    healthy,
    open_app,
    resident_bytes,
    streamlit_process,
    type_sentences,
    wait_for_app,
)

PAGES = (
    ("app.py", "Overview"),
    ("pages/1_Attention.py", "Attention"),
    ("pages/5_Why_first.py", "Why first?"),
    ("pages/2_Similarity.py", "Similarity"),
)
SENTENCES = [
    f"Sentence {i}: the {animal} {verb} the {thing} near the old harbour."
    for i, (animal, verb, thing) in enumerate(
        (a, v, t)
        for a in ("cat", "dog", "heron", "fox", "horse")
        for v, t in (("chased", "ball"), ("watched", "boat"), ("ignored", "rain"), ("found", "key"))
    )
]
RUNS = 300
WARM = 30
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


class HealthWatch:
    """Polls the health endpoint in the background and counts the times it did not answer."""

    def __init__(self, url: str, every: float = 0.5):
        self.url, self.every = url, every
        self.checks = self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.checks += 1
            if not healthy(self.url):
                self.failures += 1
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


@pytest.mark.slow
@pytest.mark.browser
def test_three_hundred_runs_no_leak_no_error_health_throughout(browser, tmp_path):
    assert len(set(SENTENCES)) == 20
    env = {"CLSVIZ_UMAP_WARMUP": "0", "CLSVIZ_STATE_DIR": str(tmp_path / "state")}
    with streamlit_process(tmp_path / "server.log", env=env) as server, HealthWatch(server.url) as health:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            open_app(page, server.url)
            runs, after_warm, started = 1, None, time.monotonic()
            where = 0
            while runs < RUNS:
                if runs % 2:  # a new sentence on the current page
                    type_sentences(page, SENTENCES[(runs // 2) % len(SENTENCES)])
                    wait_for_app(page)
                else:  # the next page, from the sidebar
                    where = (where + 1) % len(PAGES)
                    file, label = PAGES[where]
                    follow_sidebar_link(page, server.url, label, file)
                runs += 1
                assert page.locator(ERRORS).count() == 0, (
                    f"an error is shown after run {runs} on {PAGES[where][1]}"
                )
                if runs == WARM:
                    after_warm = resident_bytes(server.process.pid)
            after_all = resident_bytes(server.process.pid)
        finally:
            context.close()
        elapsed = time.monotonic() - started
    assert health.checks > 0 and health.failures == 0, (
        f"{health.failures} of {health.checks} health checks failed"
    )
    growth = after_all / after_warm - 1
    assert growth <= 0.15, (
        f"resident memory grew {growth:.0%} from run {WARM} ({after_warm / 1e6:.0f} MB) to run {RUNS} "
        f"({after_all / 1e6:.0f} MB) in {elapsed:.0f} s"
    )
