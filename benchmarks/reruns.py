"""Server-side time of Attention-page reruns, run in-process by Streamlit's AppTest: a control
moved (block slider, then head), a new 512-token text, and the bytes the page sends.

AppTest times the script run on the server (trace, summaries, figure building and
serialisation); the browser's drawing is measured by benchmarks/browser_sessions.py.
"""

from __future__ import annotations

from benchmarks.inputs import ROOT, sentence_of
from benchmarks.results import Collector
from benchmarks.timing import Settings, timed

__all__ = ["attention_apptest", "measure_page", "new_text_seconds", "payload_bytes"]

PAGE = "pages/1_Attention.py"


def attention_apptest(text: str, max_tokens: int):
    """An AppTest of the Attention page inside the app, with ``text`` and ``max_tokens`` set
    and its first run done (model load and trace, not timed). Raises on a page exception."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.session_state["clsviz.sentences"] = text
    at.session_state["clsviz.max_tokens"] = int(max_tokens)
    at.switch_page(PAGE)
    at.run()
    _check(at)
    return at


def _check(at) -> None:
    if at.exception:
        raise RuntimeError(f"the Attention page failed: {at.exception[0].value}")


def payload_bytes(at) -> int:
    """Bytes of the figures the page sends: the UTF-8 encoding of every plotly chart's JSON spec."""
    return sum(len(el.proto.spec.encode("utf-8")) for el in at.get("plotly_chart"))


def new_text_seconds(at, text: str) -> float:
    """Seconds of the page run after ``text`` replaces the sentences (a trace no cache holds)."""
    at.session_state["clsviz.sentences"] = text
    seconds = timed(at.run)
    _check(at)
    return seconds


def _moves(settings: Settings, num_layers: int, num_heads: int) -> list[tuple[str, int]]:
    """Alternating control moves: block slider, then head (a head not shown before, so its two
    per-head figures are built, as a person's first look at it)."""
    moves = []
    for i in range(settings.pick(12, 4)):
        if i % 2 == 0:
            moves.append(("attention.layer", 1 + (i // 2) % num_layers))
        else:
            moves.append(("attention.head", (i // 2) % num_heads))
    return moves


def _slider_ms(settings: Settings, tokens: int) -> tuple[list[float], int]:
    at = attention_apptest(sentence_of(tokens, seed=tokens), tokens)
    layers = at.slider(key="attention.layer").max
    heads = len(at.selectbox(key="attention.head").options) - 1
    times = []
    for key, value in _moves(settings, layers, heads):
        widget = at.slider(key=key) if key == "attention.layer" else at.selectbox(key=key)
        if widget.value == value:  # a move must change something
            value = value % layers + 1 if key == "attention.layer" else (value + 1) % heads
        widget.set_value(value)
        times.append(timed(at.run) * 1000)
        _check(at)
    return times, len(times)


def measure_page(settings: Settings, out: Collector) -> None:
    """Slider/head reruns at 128 and 512 tokens; a new 512-token text; the bytes it sends."""
    for tokens in (128, 512):
        times, moves = _slider_ms(settings, tokens)
        out.add(f"slider_rerun_{tokens}_tokens_ms", times,
                f"{moves} control moves on one {tokens}-token sentence (trace cached), alternating the block slider "
                "and the head (a head not shown before each time); AppTest script-run time")
    at = attention_apptest(sentence_of(512, seed=1), 512)
    seconds, payloads = [], []
    for i in range(settings.runs):
        seconds.append(new_text_seconds(at, sentence_of(512, seed=100 + i)))
        payloads.append(payload_bytes(at))
    out.add("page_512_tokens_s", seconds, "a new 512-token text each run (trace, summaries, figures); AppTest "
                                          "script-run time, model already loaded")
    out.add("payload_512_tokens_bytes", payloads, "UTF-8 bytes of the JSON specs of every plotly chart the page "
                                                  "sends for a 512-token text")
