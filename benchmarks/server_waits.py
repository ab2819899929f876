"""What a person waits for on a real server (``python -m ui.serve``, as ``make run`` starts it) in a
real browser: the cold start to the first plot, a 5,000-row corpus upload, and the server's peak
memory drawing the Attention page at 512 tokens on a bert-base-sized model with value-norm on.

Chromium is started before the server in each run, so its own start-up is not counted.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.browser_sessions import chromium, enter_and_wait, set_max_tokens
from benchmarks.inputs import bert_base_folder, demo_texts, sentence_of
from benchmarks.results import Collector
from benchmarks.timing import Settings

__all__ = ["browser_page", "children_resident_bytes", "cold_start", "measure_app_memory", "measure_cold_start",
           "measure_upload", "scatter_drawn"]

GIB = 2**30
OTHER = "Other (hub id or local folder)…"


def children_resident_bytes(pid: int) -> int:
    """Resident bytes of ``pid``'s child processes (the job worker pool), summed."""
    from devtools.browser import resident_bytes

    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                total += resident_bytes(int(entry))
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return total


def browser_page(pw):
    """(browser, page): Debian's Chromium started, one 1400 x 1000 page open."""
    from devtools.browser import launch_chromium

    browser = launch_chromium(pw, chromium())
    return browser, browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()


def scatter_drawn(page, names: list[str], timeout_ms: int = 1_800_000) -> None:
    """Wait until a drawn plotly chart holds a scatter trace named after one of ``names`` (the
    label values an Embeddings projection colours by)."""
    page.wait_for_function(
        """(names) => [...document.querySelectorAll('.js-plotly-plot')].some(g => g._fullLayout && (g.data || []).some(
                t => names.includes(t.name) && t.type && t.type.startsWith('scatter')))""",
        arg=names, timeout=timeout_ms)


OPEN_AFTER_S = 6.0
"""When the later-opening cold start opens the page: seconds after the server's start."""


def cold_start(env: dict | None = None, open_after: float = 0.0) -> dict:
    """One cold start: seconds from starting the server as ``make run`` does to the Overview's first plot
    drawn in Chromium (``first_plot_s``) and to its run finished with every chart drawn
    (``page_done_s``). ``open_after``: the page is opened that many seconds after the start (or
    once the server is healthy, if later), as a person does, and ``from_open_s`` counts from then."""
    from playwright.sync_api import sync_playwright

    from devtools.browser import streamlit_process, wait_for_app, wait_for_plots

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser, page = browser_page(pw)
        start = time.perf_counter()
        with streamlit_process(Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp, **(env or {})}) as server:
            healthy = time.perf_counter() - start
            time.sleep(max(0.0, open_after - healthy))
            opened = time.perf_counter() - start
            page.goto(server.url)
            wait_for_plots(page, 1)
            first = time.perf_counter() - start
            wait_for_app(page)
            done = time.perf_counter() - start
        browser.close()
    return {"healthy_s": healthy, "first_plot_s": first, "page_done_s": done, "from_open_s": first - opened}


def measure_cold_start(settings: Settings, out: Collector) -> None:
    runs = [cold_start() for _ in range(settings.runs)]
    healthy = sorted(r["healthy_s"] for r in runs)[len(runs) // 2]
    out.add("cold_start_first_plot_s", [r["first_plot_s"] for r in runs],
            f"start of the server as `make run` starts it (`python -m ui.serve`, this venv's python) -> the Overview's "
            "first plot drawn in Chromium; "
            f"a fresh server each run (the OS file cache warm); the health endpoint answered after {healthy:.1f} s "
            "(median)")
    out.add("cold_start_page_done_s", [r["page_done_s"] for r in runs],
            "the same start -> the Overview's first run finished with every chart drawn")
    # A person opens the page a few seconds after `make run`: the preload (ui/preload.py) has
    # been loading the model meanwhile. Timed with it and without it (CLSVIZ_PRELOAD=0), runs
    # interleaved, counted from the moment the page is opened.
    opened = {"on": [], "off": []}
    for i in range(settings.runs):
        for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
            run = cold_start(env={"CLSVIZ_PRELOAD": "1" if mode == "on" else "0"}, open_after=OPEN_AFTER_S)
            opened[mode].append(run["from_open_s"])
    out.add("cold_start_opened_later_s", opened["on"],
            f"the page opened {OPEN_AFTER_S:.0f} s after the server's start -> its first plot, counted from the "
            "opening; the bundled model preloading meanwhile (as `make run` does)")
    out.add("cold_start_opened_later_no_preload_s", opened["off"],
            "the same with the preload off (CLSVIZ_PRELOAD=0): the first page loads the model itself; runs "
            "interleaved with the ones above")


def upload_csv(rows: int) -> bytes:
    """A CSV of ``rows`` distinct demo-derived texts with their topic: columns sentence, topic."""
    from clsviz.corpus import demo_corpus

    corpus = demo_corpus()
    texts, topics = demo_texts(), corpus.labels["topic"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sentence", "topic"])
    for i in range(rows):
        j = i % len(texts)
        writer.writerow([f"{texts[j]} (row {i})", topics[j]])
    return buf.getvalue().encode("utf-8")


def _upload_once(rows: int, data: bytes, topics: list[str]) -> dict:
    from playwright.sync_api import sync_playwright

    from devtools.browser import resident_bytes, streamlit_process, wait_for_app

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser, page = browser_page(pw)
        with streamlit_process(Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp}) as server:
            page.goto(f"{server.url}/Embeddings")
            wait_for_app(page)  # the demo corpus drawn first (the page opens on it)
            page.get_by_test_id("stMain").get_by_text("Upload a file", exact=True).click()
            dropzone = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
            dropzone.wait_for(state="attached")
            wait_for_app(page)
            start = time.perf_counter()
            dropzone.set_input_files(files=[{"name": f"corpus{rows}.csv", "mimeType": "text/csv", "buffer": data}])
            scatter_drawn(page, topics)
            preview = time.perf_counter() - start
            wait_for_app(page, timeout_ms=1_800_000)
            seconds = time.perf_counter() - start
            rss = resident_bytes(server.process.pid)
            workers = children_resident_bytes(server.process.pid)
        browser.close()
    return {"s": seconds, "preview_s": preview, "rss": rss, "workers": workers}


def measure_upload(settings: Settings, out: Collector) -> None:
    """A corpus CSV uploaded on the Embeddings page: file chosen -> projection drawn (a fresh
    server each run), and the server's resident memory with it loaded."""
    from clsviz.corpus import demo_corpus

    rows = settings.pick(5000, 200)
    data = upload_csv(rows)
    topics = sorted(set(demo_corpus().labels["topic"]))
    runs = [_upload_once(rows, data, topics) for _ in range(settings.runs)]
    what = f"{rows:,}-row CSV ({len(data) / 1e6:.1f} MB) set on the Embeddings page's uploader"
    out.add("corpus_upload_5000_first_projection_s", [r["preview_s"] for r in runs],
            f"{what} -> the first projection drawn (the PCA preview of the three panels at the last layer, after "
            "every layer x pooling was embedded); a fresh server each run")
    out.add("corpus_upload_5000_s", [r["s"] for r in runs],
            f"{what} -> every panel drawn and the run finished (embedding all layers, the label scores at every "
            "layer, UMAP of the three panels); a fresh server each run")
    out.add("corpus_upload_5000_server_rss_gb", [r["rss"] / GIB for r in runs],
            f"the server process's resident memory (GiB) with the {rows:,}-row corpus loaded; its job-worker "
            f"processes held {statistics.median([r['workers'] for r in runs]) / GIB:.2f} GiB more")


def _app_memory_once(folder: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from devtools.browser import open_app, resident_bytes, streamlit_process, wait_for_app

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser, page = browser_page(pw)
        with streamlit_process(Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp}) as server:
            open_app(page, server.url, "Attention")
            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_test_id("stSelectbox").filter(has_text="Model").first.click()
            page.get_by_role("option", name=OTHER, exact=True).click()
            wait_for_app(page)
            field = page.get_by_role("textbox", name="Hugging Face id or local folder", exact=True)
            field.fill(str(folder))
            field.press("Enter")
            wait_for_app(page)
            if "Could not load" in sidebar.inner_text():
                raise RuntimeError(f"the app did not load the model in {folder}: {sidebar.inner_text()[:400]}")
            set_max_tokens(page, 512)
            page.get_by_test_id("stMain").get_by_text("Value-norm weighted attention", exact=False).click()
            wait_for_app(page)
            seconds = enter_and_wait(page, sentence_of(600, seed=7000), 512)
            peak = resident_bytes(server.process.pid, "VmHWM")
            now = resident_bytes(server.process.pid)
        browser.close()
    return {"peak": peak, "now": now, "s": seconds}


def measure_app_memory(settings: Settings, out: Collector) -> None:
    """Peak resident memory of the app's server process after drawing the Attention page at 512
    tokens on a bert-base-sized model (typed into the sidebar's Other field) with value-norm on."""
    with bert_base_folder() as folder:
        runs = [_app_memory_once(folder) for _ in range(settings.runs)]
    out.add("peak_rss_512_bert_base_gb", [r["peak"] / GIB for r in runs],
            "peak resident memory (VmHWM, GiB) of the app server process (`python -m ui.serve`): Attention page opened on the "
            "bundled model, then a saved bert-base-sized model (12 layers, 768 dims, random weights) typed into the "
            "sidebar's Other field, Max tokens 512, value-norm on, a new text cut to 512 tokens drawn "
            f"(took {statistics.median([r['s'] for r in runs]):.1f} s, median); resident afterwards "
            f"{statistics.median([r['now'] for r in runs]) / GIB:.2f} GiB; the model folder is deleted afterwards")
