"""Time from Ctrl+Enter to the plot in a real browser: one session alone, then 8 at once.

    python benchmarks/browser_sessions.py [--sessions 8] [--rounds 3] [--json out.json]

Starts ``streamlit run app.py`` on a loopback port and Debian's headless Chromium (the same
helpers as tests/browser). Each measurement is the wall time from pressing Ctrl+Enter in the
sidebar's sentence box to the Attention page's heatmap showing that sentence's tokens and
the run finishing. Every sentence is new to the server, so nothing comes from a cache.
Prints JSON: single-session p50/p95, concurrent p50/p95 and their ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = (
    "amber birch cobalt delta ember fjord granite harbor indigo juniper kelp lagoon meadow nectar "
    "orchid pebble quartz river saffron tundra umber violet willow xenon yarrow zephyr"
).split()


def _sentence(i: int) -> str:
    """A sentence no earlier measurement used (so the server traces it afresh)."""
    picks = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(5)]
    return f"Run {i}: the {picks[0]} {picks[1]} met a {picks[2]} {picks[3]} near the {picks[4]}."


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_s": round(_percentile(values, 0.5), 3), "p95_s": round(_percentile(values, 0.95), 3)}


def measure(sessions: int = 8, rounds: int = 3) -> dict:
    from playwright.sync_api import sync_playwright

    from devtools.browser import (
        expected_tokens,
        launch_chromium,
        open_app,
        sentences_box,
        streamlit_server,
        type_sentences,
        wait_for_heatmap_tokens,
    )

    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("chromium is not installed (Debian package 'chromium')")
    counter = iter(range(10_000))
    with tempfile.TemporaryDirectory() as tmp, streamlit_server(Path(tmp) / "server.log") as url, \
            sync_playwright() as pw:
        browser = launch_chromium(pw, chromium)
        contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(sessions)]
        pages = [ctx.new_page() for ctx in contexts]
        for page in pages:
            open_app(page, url, "Attention")

        single = []
        for _ in range(rounds):
            text = _sentence(next(counter))
            type_sentences(pages[0], text, submit=False)
            start = time.perf_counter()
            sentences_box(pages[0]).press("ControlOrMeta+Enter")
            wait_for_heatmap_tokens(pages[0], expected_tokens(text))
            single.append(time.perf_counter() - start)

        concurrent = []
        for _ in range(rounds):
            texts = [_sentence(next(counter)) for _ in pages]
            for page, text in zip(pages, texts):
                type_sentences(page, text, submit=False)
            starts = []
            for page in pages:
                starts.append(time.perf_counter())
                sentences_box(page).press("ControlOrMeta+Enter")
            # Pages are awaited in order; a page finished earlier is only read later, so its
            # time is an upper bound (the heatmap check itself takes milliseconds).
            for page, text, start in zip(pages, texts, starts):
                wait_for_heatmap_tokens(page, expected_tokens(text))
                concurrent.append(time.perf_counter() - start)
        browser.close()

    one, many = _summary(single), _summary(concurrent)
    return {
        "sessions": sessions,
        "rounds": rounds,
        "single_session": one,
        "concurrent_sessions": many,
        "p50_ratio_concurrent_vs_single": round(many["p50_s"] / one["p50_s"], 2),
        "browser_enter_to_plot_s": one["p50_s"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args(argv)
    result = measure(args.sessions, args.rounds)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
