"""Responsiveness under load: the p95 time to plot a new sentence on the Attention page while one
fine-tune and one probe run, against the same with the server idle (target: at most 3x).

One app server (``python -m ui.serve``, as ``make run`` starts it). Session A (the person measured) types new sentences on the
Attention page. A second Chromium, driven from its own thread, holds two more sessions: B, on the
"How does [CLS] learn?" page, starts the watched fine-tuning through the page's button (a
background job, in the low-priority worker process) and C, on the "Could any token do?" page,
presses "Run the probe" again each time it finishes (one step further on the Folds slider, so each press computes a
new probe rather than showing the kept result). Rounds alternate: an idle block of
sentences, then the load is started, a loaded block, and the load is stopped (fine-tuning
cancelled through its button, the probe left to finish) before the next idle block.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.browser_sessions import chromium, enter_and_wait
from benchmarks.inputs import fresh_sentence
from benchmarks.results import Collector
from benchmarks.timing import Settings, percentile

__all__ = ["LoadDriver", "measure_load"]

FINETUNE_PAGE = "How_it_learns"  # pages/9_How_it_learns.py: "Start fine-tuning", "Cancel"
RUNNING = '[data-testid="stApp"][data-test-script-state="running"]'
LOAD_TIMEOUT_MS = 600_000
FOLDS = (5, 6, 7, 8, 9, 10, 4, 3, 2)
"""The probe's folds at each press, in turn (the page's default first)."""


class LoadDriver(threading.Thread):
    """Sessions B (fine-tuning) and C (probe after probe) in their own Chromium, driven from this
    thread (Playwright objects belong to the thread that made them). Commands: :meth:`prime`
    (run the probe once, so the corpus vectors are embedded and cached before any timing),
    :meth:`start`, :meth:`stop`, :meth:`close`; each blocks until done and re-raises a failure."""

    def __init__(self, url: str):
        super().__init__(name="bench-load", daemon=True)
        self.url = url
        self.probes = 0
        self._presses = 0
        self._pending = False
        self._commands: queue.Queue = queue.Queue()
        self._replies: queue.Queue = queue.Queue()
        self._running = False

    # -- called from the measuring thread ---------------------------------------------------------
    def _call(self, command: str):
        self._commands.put(command)
        ok, value = self._replies.get(timeout=LOAD_TIMEOUT_MS / 1000 * 2)
        if not ok:
            raise RuntimeError(f"load driver, {command}: {value}")
        return value

    def prime(self) -> None:
        self._call("prime")

    def start_load(self) -> None:
        self._call("start")

    def stop_load(self) -> int:
        """Stop the load; returns the probe runs completed while it ran."""
        return self._call("stop")

    def close(self) -> None:
        self._call("close")
        self.join(timeout=60)

    # -- the thread --------------------------------------------------------------------------------
    def run(self) -> None:
        from playwright.sync_api import sync_playwright

        from devtools.browser import launch_chromium, open_app

        with sync_playwright() as pw:
            browser = launch_chromium(pw, chromium())
            b, c = (browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2))
            try:
                open_app(b, self.url, FINETUNE_PAGE)
                open_app(c, self.url, "Any_token")
            except Exception as exc:
                self._replies.put((False, f"{type(exc).__name__}: {exc}"))
                return
            while True:
                try:
                    command = self._commands.get(timeout=0.05 if self._running else None)
                except queue.Empty:
                    self._probe(c)  # the load keeps going between commands
                    continue
                try:
                    reply = self._do(command, b, c)
                except Exception as exc:  # the measuring thread gets the failure, not a silent hang
                    self._replies.put((False, f"{type(exc).__name__}: {exc}"))
                    continue
                self._replies.put((True, reply))
                if command == "close":
                    break
            browser.close()

    def _do(self, command: str, b, c):
        if command == "prime":
            self._probe(c, wait=True)
            return None
        if command == "start":
            self.probes = 0
            self._start_finetune(b)
            self._running = True
            return None
        if command == "stop":
            self._running = False
            self._cancel_finetune(b)
            if self._pending:  # the probe is left to finish before the next idle block
                from playwright.sync_api import expect

                expect(c.get_by_role("button", name="Run the probe")).to_be_enabled(timeout=LOAD_TIMEOUT_MS)
                self._pending = False
                self.probes += 1
            return self.probes
        return None

    def _probe(self, c, wait: bool = False) -> None:
        """Press "Run the probe" once the last press's probe has ended (counted in ``probes``); with
        ``wait``, also wait for this one to end. The probe is a background job, queued behind the
        fine-tune when only one job computes at a time: between its panel's polls the page is idle,
        so the button, which comes back when the job has ended, says when it is done. The page keeps
        each result (seeded, so the same settings give the same numbers), so from the second press on
        the Folds slider moves first (:data:`FOLDS`): every press is a probe computed anew."""
        from playwright.sync_api import expect

        from devtools.browser import wait_for_app

        button = c.get_by_role("button", name="Run the probe")
        if self._pending:
            if not button.is_enabled():
                time.sleep(0.5)  # still queued or computing; the driver looks at its commands meanwhile
                return
            self._pending = False
            self.probes += 1
        if self._presses:  # from the folds of the last press to this press's
            now, then = FOLDS[(self._presses - 1) % len(FOLDS)], FOLDS[self._presses % len(FOLDS)]
            slider = c.get_by_test_id("stSlider").first.get_by_role("slider")  # "Folds", the page's one slider
            slider.focus()
            for _ in range(abs(then - now)):
                c.keyboard.press("ArrowRight" if then > now else "ArrowLeft")
            wait_for_app(c, timeout_ms=LOAD_TIMEOUT_MS)
        self._presses += 1
        button.click()
        try:
            c.wait_for_selector(RUNNING, timeout=5_000)
        except Exception:  # a run that finished within the poll interval
            pass
        wait_for_app(c, timeout_ms=LOAD_TIMEOUT_MS)  # the run the press started has drawn the page
        self._pending = True
        if wait:
            expect(button).to_be_enabled(timeout=LOAD_TIMEOUT_MS)
            wait_for_app(c, timeout_ms=LOAD_TIMEOUT_MS)
            self._pending = False

    def _start_finetune(self, b) -> None:
        """Press "Start fine-tuning" and wait until the job reports progress (it is computing)."""
        b.get_by_role("button", name="Start fine-tuning").click()
        b.wait_for_function(
            """() => [...document.querySelectorAll('[role="progressbar"]')].some(
                    el => Number(el.getAttribute('aria-valuenow') || 0) > 0)""",
            timeout=LOAD_TIMEOUT_MS,
        )

    def _cancel_finetune(self, b) -> None:
        from devtools.browser import wait_for_app

        b.get_by_role("button", name="Cancel", exact=True).first.click()
        b.get_by_text("Fine-tuning was cancelled.").wait_for(timeout=LOAD_TIMEOUT_MS)
        wait_for_app(b, timeout_ms=LOAD_TIMEOUT_MS)


def measure_load(settings: Settings, out: Collector) -> None:
    """Per round: p95 of a block of new sentences idle, then with the fine-tune and the probe
    running; the ratio of the two."""
    from playwright.sync_api import sync_playwright

    from devtools.browser import launch_chromium, open_app, streamlit_process

    block = settings.pick(12, 3)  # 12 x 2 x 3 rounds: the loaded blocks alone take minutes on two cores
    idle, loaded, probes = [], [], []
    counter = iter(range(20_000, 40_000))
    with tempfile.TemporaryDirectory() as tmp, \
            streamlit_process(Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp}) as server, \
            sync_playwright() as pw:
        browser = launch_chromium(pw, chromium())
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        open_app(page, server.url, "Attention")
        driver = LoadDriver(server.url)
        driver.start()
        try:
            driver.prime()
            enter_and_wait(page, fresh_sentence(next(counter)))  # warm: the first run after the others'
            for _ in range(settings.runs):
                idle.append([enter_and_wait(page, fresh_sentence(next(counter))) for _ in range(block)])
                driver.start_load()
                started = time.perf_counter()
                loaded.append([enter_and_wait(page, fresh_sentence(next(counter))) for _ in range(block)])
                elapsed = time.perf_counter() - started
                probes.append((driver.stop_load(), elapsed))
        finally:
            try:
                driver.close()
            finally:
                browser.close()
    idle_p95 = [percentile(b, 0.95) for b in idle]
    load_p95 = [percentile(b, 0.95) for b in loaded]
    rounds = len(idle)
    context = (f"{rounds} rounds of {block} new sentences each, idle then loaded; under load session B's fine-tuning "
               "(How it learns page, its defaults, background job in the low-priority worker) was computing and session C pressed "
               "'Run the probe' again after each run (demo corpus, every layer x reading, vectors cached): "
               + ", ".join(f"{n} probe runs in {s:.0f} s" for n, s in probes))
    out.add("new_sentence_idle_p95_s", idle_p95, f"p95 per round, Ctrl+Enter -> Attention heatmap drawn; {context}")
    out.add("new_sentence_under_load_p95_s", load_p95, "p95 per round while the fine-tune and the probe run")
    out.add("responsiveness_under_load_ratio", [a / b for a, b in zip(load_p95, idle_p95)],
            "per-round loaded p95 / idle p95 (the rounds alternate, so drift falls on both)")
