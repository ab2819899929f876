"""What a person does and sees in the browser, as small functions the browser tests share,
plus starting the app server and Chromium; the browser tests and benchmarks/browser_sessions.py use them."""

from __future__ import annotations

import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from playwright.sync_api import Page, expect

ROOT = Path(__file__).resolve().parents[1]
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
SENTENCES_BOX = "Sentences (one per line)"
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"][data-test-connection-state="CONNECTED"]'
# Bounded waits (milliseconds): generous for 2 busy CPU cores, never unbounded.
RUN_TIMEOUT_MS = 240_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    """True when the server's health endpoint answers 200 within 2 seconds."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Server:
    """A running app server (``python -m ui.serve``): its base URL and process (for its memory, or a kill)."""

    url: str
    process: subprocess.Popen
    port: int


@contextmanager
def streamlit_process(log_path: Path, env: dict | None = None, port: int | None = None) -> Iterator[Server]:
    """Run the app as ``make run`` does (``python -m ui.serve``: ``streamlit run app.py``, the bundled model
    preloading) on a loopback port (free, or ``port``), offline, with no model
    allow-list and ``env`` added to the environment; yield a :class:`Server` once
    /_stcore/health answers; stop it (and its children) afterwards. Raises RuntimeError, with
    the end of the server log, when it does not come up."""
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    full_env.pop("CLSVIZ_ALLOWED_MODELS", None)
    cmd = [
        sys.executable,
        "-m",
        "ui.serve",  # what make run starts: streamlit run app.py, the model preloading
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(log_path).read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"streamlit did not become healthy on {url} (exit code {proc.poll()}):\n{tail}"
                )
            time.sleep(0.25)
        yield Server(url, proc, port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


@contextmanager
def streamlit_server(log_path: Path) -> Iterator[str]:
    """:func:`streamlit_process` yielding just the base URL."""
    with streamlit_process(log_path) as server:
        yield server.url


def resident_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory in bytes: now (``VmRSS``) or its peak so far (``VmHWM``)."""
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(f"{field}:"))


def launch_chromium(playwright, executable_path: str):
    """Debian's headless Chromium with background networking off (nothing is downloaded)."""
    return playwright.chromium.launch(executable_path=executable_path, args=CHROMIUM_ARGS, headless=True)


def set_number(page: Page, name: str, value: str) -> None:
    """Type ``value`` into the main area's number input labelled ``name``, press Enter and wait
    until the app shows it and has rerun."""
    box = page.get_by_test_id("stMain").get_by_role("spinbutton", name=name, exact=True)
    box.fill(value)
    box.press("Enter")
    page.wait_for_function(
        "([name, value]) => [...document.querySelectorAll('input[type=number]')].some("
        "  e => e.getAttribute('aria-label') === name && e.value === value)",
        arg=[name, value],
    )
    wait_for_app(page)


def wait_for_app(page: Page, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Wait until the script run finished (connected, not running, no status widget) and
    every chart it sent has been drawn (plotly loads and draws after the run ends)."""
    page.wait_for_selector(IDLE, timeout=timeout_ms)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stSidebar"] textarea', timeout=timeout_ms)
    # Lazily loaded elements (charts among them) show a skeleton until their code has loaded.
    expect(page.locator('[data-testid="stMain"] [data-testid="stSkeleton"]')).to_have_count(
        0, timeout=timeout_ms
    )
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(
                el => { const g = el.querySelector('.js-plotly-plot'); return g && g._fullLayout; })""",
        timeout=timeout_ms,
    )


def wait_for_plots(page: Page, count: int = 1, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Wait until at least ``count`` plotly charts are drawn (the chart code loads lazily, so a
    finished run can still be showing placeholders for a moment)."""
    page.wait_for_function(
        """(count) => [...document.querySelectorAll('.js-plotly-plot')].filter(g => g._fullLayout).length >= count""",
        arg=count,
        timeout=timeout_ms,
    )


def open_app(page: Page, base_url: str, path: str = "") -> None:
    page.goto(f"{base_url}/{path}")
    wait_for_app(page)


def url_path(page_file: str) -> str:
    """Streamlit's URL path of a page file: pages/3_Embeddings.py -> "Embeddings", app.py -> ""."""
    if page_file == "app.py":
        return ""
    stem = page_file.rsplit("/", 1)[-1].removesuffix(".py")
    prefix, _, rest = stem.partition("_")
    return rest if prefix.isdigit() and rest else stem


def follow_sidebar_link(page: Page, base_url: str, label: str, page_file: str) -> None:
    """Click a page link in the sidebar and wait until that page ran and drew its charts."""
    before = page.title()
    page.get_by_test_id("stSidebar").get_by_role("link", name=label, exact=True).click()
    page.wait_for_url(f"{base_url}/{url_path(page_file)}")
    # Each page sets its own title first thing, so a new title means the new page's run began.
    page.wait_for_function("(before) => document.title !== before", arg=before)
    wait_for_app(page)


def sentences_box(page: Page):
    return page.get_by_role("textbox", name=SENTENCES_BOX)


def type_sentences(page: Page, text: str, submit: bool = True) -> None:
    """Replace the sidebar sentences the way a person does: click, select all, type, and
    (``submit``) press Ctrl+Enter to apply them."""
    box = sentences_box(page)
    box.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if len(line) > 200:  # a paste, not keystrokes: typing it would take minutes
            page.keyboard.insert_text(line)
        elif line:
            page.keyboard.type(line)
        if i < len(lines) - 1:
            page.keyboard.press("Enter")
    if submit:
        page.keyboard.press("ControlOrMeta+Enter")


def plot_traces(page: Page) -> list[list[dict]]:
    """The data of every rendered plotly chart (what plotly drew), one list of traces per chart."""
    # _fullData holds what plotly drew, with binary-encoded arrays decoded; Array.from turns
    # typed arrays into plain lists.
    return page.evaluate(
        """() => {
            const list = v => (v && typeof v === 'object' && 'length' in v) ? Array.from(v) : (v ?? null);
            return [...document.querySelectorAll('.js-plotly-plot')].map(g => (g._fullData || []).map(t => ({
                type: t.type || 'scatter', x: list(t.x), y: list(t.y), text: list(t.text),
                hovertext: list(t.hovertext), name: t.name ?? null})));
        }"""
    )


def _label_token(label) -> str:
    """A heatmap axis label is "<position> <token>", escaped for plotly; return the token."""
    label = html.unescape(str(label))
    m = re.match(r"^\d+ (.*)$", label, re.S)
    return m.group(1) if m else label


def heatmap_token_axes(page: Page) -> list[list[str]]:
    """Token sequences on the axes of every rendered heatmap."""
    axes = []
    for chart in plot_traces(page):
        for tr in chart:
            if tr["type"] != "heatmap":
                continue
            for axis in (tr["x"], tr["y"]):
                if axis and all(isinstance(v, str) for v in axis):
                    axes.append([_label_token(v) for v in axis])
    return axes


def wait_for_heatmap_tokens(page: Page, tokens: list[str], timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Wait until a heatmap has exactly ``tokens`` on an axis, then until the run finished."""
    page.wait_for_function(
        """(tokens) => [...document.querySelectorAll('.js-plotly-plot')].some(g => (g.data || []).some(t =>
            t.type === 'heatmap' && [t.x, t.y].some(a => Array.isArray(a) && a.length === tokens.length &&
              a.every((v, i) => {
                const el = document.createElement('textarea'); el.innerHTML = String(v);
                return el.value.replace(/^\\d+ /, '') === tokens[i];
              }))))""",
        arg=tokens,
        timeout=timeout_ms,
    )
    wait_for_app(page)


def page_problems(page: Page) -> list[str]:
    """Anything on the page a person should never see: exception boxes, tracebacks, script errors."""
    problems = []
    exceptions = page.get_by_test_id("stException")
    if exceptions.count():
        problems.append(f"{exceptions.count()} exception element(s): {exceptions.first.inner_text()[:500]}")
    body = page.locator("body").inner_text()
    for marker in ("Traceback (most recent call last)", 'File "/'):
        if marker in body:
            problems.append(f"page text contains {marker!r}")
    problems += [f"page error: {e}" for e in page.watch.page_errors]
    problems += [f"dialog opened: {d}" for d in page.watch.dialogs]
    return problems


@lru_cache(maxsize=1)
def bundled_tokenizer():
    from transformers import AutoTokenizer

    from clsviz.encoder import bundled_model_path

    return AutoTokenizer.from_pretrained(str(bundled_model_path()))


def expected_tokens(text: str) -> list[str]:
    """The bundled model's tokens of ``text`` with its special tokens, computed here, not by the app."""
    tok = bundled_tokenizer()
    return [tok.cls_token, *tok.tokenize(text), tok.sep_token]
