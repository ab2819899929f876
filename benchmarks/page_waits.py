"""The waits a person feels on pages that compute in the background, in a real browser on a real
server (``python -m ui.serve``, as ``make run`` starts it; a fresh server each run):

- ``embeddings_first_visit_s``: Chromium opens the Embeddings page (demo corpus) as soon as the
  server answers -> the first projection is drawn;
- ``job_first_result_s``: on "What flows into [CLS]?", value zeroing of a 16-token sentence, from
  the click on "Compute value zeroing" -> its map drawn (the server up and the page drawn first);
- ``finetune_page_defaults_minutes``: on "How does [CLS] learn?", the page's defaults, from the
  click on "Start fine-tuning" -> the result on the page.

Chromium is started before the server, so its own start-up is not counted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.inputs import sentence_of
from benchmarks.results import Collector
from benchmarks.server_waits import browser_page, scatter_drawn
from benchmarks.timing import Settings

__all__ = ["embeddings_first_visit", "finetune_defaults", "job_first_result", "measure_first_visit",
           "measure_finetune_page", "measure_job_wait"]

RESULT_TEXT = "Trained with the same seed, split and budget"
"""What the How does [CLS] learn? page shows once the fine-tune has finished."""


def embeddings_first_visit() -> dict:
    """One fresh server; the Embeddings page opened once it is healthy: seconds from the opening to
    the first projection drawn (``first_s``) and to the run finished with every panel (``done_s``)."""
    from playwright.sync_api import sync_playwright

    from clsviz.corpus import demo_corpus
    from devtools.browser import streamlit_process, wait_for_app

    topics = sorted(set(demo_corpus().labels["topic"]))
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser, page = browser_page(pw)
        start = time.perf_counter()
        with streamlit_process(Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp}) as server:
            healthy = time.perf_counter() - start
            opened = time.perf_counter()
            page.goto(f"{server.url}/Embeddings")
            scatter_drawn(page, topics)
            first = time.perf_counter() - opened
            wait_for_app(page, timeout_ms=1_800_000)
            done = time.perf_counter() - opened
        browser.close()
    return {"healthy_s": healthy, "first_s": first, "done_s": done}


def measure_first_visit(settings: Settings, out: Collector) -> None:
    runs = [embeddings_first_visit() for _ in range(settings.runs)]
    out.add("embeddings_first_visit_s", [r["first_s"] for r in runs],
            "a fresh server started as `make run` starts it; Chromium opens the Embeddings page (demo corpus, "
            f"{_median(runs, 'healthy_s'):.1f} s after the start, when the health endpoint answered, median) -> the "
            f"first projection drawn; every panel drawn and the run finished after {_median(runs, 'done_s'):.1f} s "
            "(median)")


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _open_with_sentence(page, url: str, path: str, text: str) -> None:
    from devtools.browser import open_app, type_sentences, wait_for_app

    open_app(page, url, path)
    type_sentences(page, text)
    wait_for_app(page)


def job_first_result(seed: int) -> dict:
    """One fresh server: the mixing page drawn with a new 16-token sentence, "value zeroing"
    picked, then seconds from the click on "Compute value zeroing" to its map drawn."""
    from playwright.sync_api import sync_playwright

    from devtools.browser import streamlit_process

    text = sentence_of(16, seed=9000 + seed)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser, page = browser_page(pw)
        start = time.perf_counter()
        with streamlit_process(Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp}) as server:
            _open_with_sentence(page, server.url, "What_flows_in", text)
            main = page.get_by_test_id("stMain")
            main.get_by_role("radiogroup", name="Measure").get_by_text("value zeroing", exact=True).click()
            button = main.get_by_role("button", name="Compute value zeroing", exact=True)
            button.wait_for()
            ready = time.perf_counter() - start
            clicked = time.perf_counter()
            button.click()
            page.wait_for_function(
                """() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g._fullLayout && (g.data || [])
                        .some(t => t.type === 'heatmap' && String(t.hovertemplate || '').includes('value zeroing')))""",
                timeout=1_800_000)
            seconds = time.perf_counter() - clicked
        browser.close()
    return {"s": seconds, "ready_s": ready}


def measure_job_wait(settings: Settings, out: Collector) -> None:
    runs = [job_first_result(i) for i in range(settings.runs)]
    out.add("job_first_result_s", [r["s"] for r in runs],
            "value zeroing of a new 16-token sentence (bundled model) as a background job, from the click on "
            "'Compute value zeroing' in Chromium to its map drawn; a fresh server each run, the click "
            f"{_median(runs, 'ready_s'):.1f} s after the server's start (median: the page opened, the sentence "
            "typed and drawn)")


def finetune_defaults() -> dict:
    """One fresh server: "How does [CLS] learn?" with a sentence, its defaults untouched, seconds
    from the click on "Start fine-tuning" to the result shown."""
    from playwright.sync_api import sync_playwright

    from devtools.browser import streamlit_process, wait_for_app

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser, page = browser_page(pw)
        with streamlit_process(Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp}) as server:
            _open_with_sentence(page, server.url, "How_it_learns", "Why is the [CLS] token always first?")
            main = page.get_by_test_id("stMain")
            clicked = time.perf_counter()
            main.get_by_role("button", name="Start fine-tuning", exact=True).click()
            main.get_by_text(RESULT_TEXT, exact=False).first.wait_for(timeout=3_600_000)
            seconds = time.perf_counter() - clicked
            wait_for_app(page)
            shown = page.get_by_test_id("stMain").inner_text()
        browser.close()
    return {"s": seconds, "caption": next((line for line in shown.splitlines() if " · label '" in line), "")}


def measure_finetune_page(settings: Settings, out: Collector) -> None:
    from clsviz.experiments.finetune import WATCH_SETTINGS

    runs = [finetune_defaults() for _ in range(settings.runs)]
    s = WATCH_SETTINGS
    out.add("finetune_page_defaults_minutes", [r["s"] / 60 for r in runs],
            f"'How does [CLS] learn?' with its defaults ({len(s['poolings'])} runs: {', '.join(s['poolings'])}; "
            f"{s['max_texts']} demo texts, {s['epochs']} epochs, {s['checkpoints']} checkpoints), from the click on "
            "'Start fine-tuning' in Chromium to the result on the page; a fresh server each run; the page's "
            f"caption of the last run: {runs[-1]['caption']}")
