"""Time from Ctrl+Enter to the plot in a real browser: one session alone, then 8 at once, and a
512-token text on the Attention page.

    python benchmarks/browser_sessions.py [--sessions 8] [--rounds 5] [--json out.json]

Starts the app server (``python -m ui.serve``, as ``make run`` does) on a loopback port and Debian's headless Chromium (the helpers
of tests/browser, devtools/browser.py). Each time is the wall time from pressing Ctrl+Enter in
the sidebar's sentence box to the Attention page's heatmap showing that sentence's tokens and
the run finishing with every chart drawn. Every sentence is new to the server (no cache hit).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.inputs import fresh_sentence, sentence_of, tokenizer  # noqa: E402
from benchmarks.timing import emit_json, percentile  # noqa: E402

__all__ = ["chromium", "enter_and_wait", "measure", "measure_browser", "set_max_tokens"]


def chromium() -> str:
    """Debian's chromium, or RuntimeError saying how to get it."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed (Debian package 'chromium'; scripts/ensure-chromium.sh)")
    return path


def expected_tokens(text: str, limit: int) -> list[str]:
    """The bundled tokenizer's tokens of ``text`` cut to ``limit`` (specials included), computed here."""
    tok = tokenizer()
    return [tok.cls_token, *tok.tokenize(text)[: limit - 2], tok.sep_token]


def enter_and_wait(page, text: str, limit: int = 512) -> float:
    """Type ``text`` (not yet applied), press Ctrl+Enter and return the seconds until the
    heatmap shows its tokens and every chart is drawn."""
    from devtools.browser import sentences_box, type_sentences, wait_for_heatmap_tokens

    type_sentences(page, text, submit=False)
    start = time.perf_counter()
    sentences_box(page).press("ControlOrMeta+Enter")
    wait_for_heatmap_tokens(page, expected_tokens(text, limit))
    return time.perf_counter() - start


def set_max_tokens(page, value: int) -> None:
    """Set the sidebar's Max tokens and wait for the rerun."""
    from devtools.browser import wait_for_app

    box = page.get_by_role("spinbutton", name="Max tokens")
    box.fill(str(value))
    box.press("Enter")
    wait_for_app(page)


def measure(sessions: int = 8, rounds: int = 5, long_runs: int = 3) -> dict:
    """Raw times (seconds): ``single`` (one session, ``rounds`` sentences), ``concurrent`` (one
    list per round, ``sessions`` sentences typed at once) and ``long_512`` (new >512-token texts
    on the Attention page at Max tokens 512)."""
    from playwright.sync_api import sync_playwright

    from devtools.browser import (
        launch_chromium,
        open_app,
        sentences_box,
        streamlit_server,
        type_sentences,
        wait_for_heatmap_tokens,
    )

    counter = iter(range(10_000))
    with tempfile.TemporaryDirectory() as tmp, streamlit_server(Path(tmp) / "server.log") as url, \
            sync_playwright() as pw:
        browser = launch_chromium(pw, chromium())
        pages = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(sessions)]
        for page in pages:
            open_app(page, url, "Attention")
        single = [enter_and_wait(pages[0], fresh_sentence(next(counter))) for _ in range(rounds)]
        concurrent = []
        for _ in range(rounds):
            texts = [fresh_sentence(next(counter)) for _ in pages]
            for page, text in zip(pages, texts):
                type_sentences(page, text, submit=False)
            starts = []
            for page in pages:
                starts.append(time.perf_counter())
                sentences_box(page).press("ControlOrMeta+Enter")
            # Awaited in order: a page that finished earlier is read later, so its time is an
            # upper bound (the check itself takes milliseconds).
            times = []
            for page, text, start in zip(pages, texts, starts):
                wait_for_heatmap_tokens(page, expected_tokens(text, 512))
                times.append(time.perf_counter() - start)
            concurrent.append(times)
        set_max_tokens(pages[0], 512)
        long_512 = [enter_and_wait(pages[0], sentence_of(600, seed=5000 + i), 512) for i in range(long_runs)]
        browser.close()
    return {"sessions": sessions, "rounds": rounds, "single": single, "concurrent": concurrent, "long_512": long_512}


def measure_browser(settings, out) -> None:
    """The browser figures of results.json from :func:`measure`."""
    sessions = settings.pick(8, 2)
    rounds = max(settings.runs, settings.pick(5, 2))
    raw = measure(sessions, rounds, settings.runs)
    single = raw["single"]
    out.add("browser_enter_to_plot_s", single,
            f"one session, {rounds} new short sentences (p95 {percentile(single, 0.95):.2f} s); "
            "Ctrl+Enter -> heatmap with the sentence's tokens, every chart drawn")
    p50s = [statistics.median(r) for r in raw["concurrent"]]
    out.add("browser_8_sessions_p50_s", p50s,
            f"{sessions} sessions press Ctrl+Enter on new sentences at the same moment; per-round median, "
            f"{rounds} rounds")
    out.add("browser_8_sessions_p95_s", [percentile(r, 0.95) for r in raw["concurrent"]],
            f"{sessions} sessions at once; per-round p95, {rounds} rounds")
    base = statistics.median(single)
    out.add("browser_8_sessions_p50_ratio", [p / base for p in p50s],
            "per-round concurrent median / the single-session median")
    out.add("browser_512_tokens_s", raw["long_512"],
            "Attention page at Max tokens 512: a new text cut to 512 tokens, Ctrl+Enter -> every Attention "
            "chart drawn (5 heatmaps/bar charts incl. the 512 x 512 token map)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the raw times to this file")
    args = parser.parse_args(argv)
    emit_json(measure(args.sessions, args.rounds), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
