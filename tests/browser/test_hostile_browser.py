"""Hostile text in a real browser: HTML and JavaScript typed by a person never run.

Each payload would open a dialog (alert) or set ``window.__pwned`` if the browser ever
treated it as markup; the tests record dialogs (page.on("dialog")), look for the elements
the payloads would create, and check the text is shown literally.
"""

from __future__ import annotations

import pytest

from devtools.browser import (
    expected_tokens,
    open_app,
    page_problems,
    plot_traces,
    type_sentences,
    wait_for_app,
    wait_for_heatmap_tokens,
)

pytestmark = pytest.mark.browser

PAYLOADS = [
    "<script>alert('script tag')</script> after the script",
    "<img src=x onerror=\"alert('img onerror');window.__pwned=1\"> an image",
    "\"><svg onload=alert('svg onload')> a broken quote",
    "[click me](javascript:alert('markdown link')) **not bold**",
    "<iframe src=\"javascript:alert('iframe')\"></iframe> a frame",
    "<b>bold?</b> &lt;escaped&gt; &amp; <a href=javascript:window.__pwned=1>link</a>",
]

# Elements the payloads would create if they were parsed as HTML or Markdown.
INJECTED = (
    'img[src="x"], svg[onload], iframe[src^="javascript"], a[href^="javascript"], '
    '[data-testid="stMain"] script, [data-testid="stMain"] iframe'
)


def _injected(page) -> list[str]:
    return page.evaluate(
        "(sel) => [...document.querySelectorAll(sel)].map(e => e.outerHTML.slice(0, 200))", INJECTED
    )


def _plot_strings(page) -> list[str]:
    out = []
    for chart in plot_traces(page):
        for tr in chart:
            for field in ("x", "y", "text", "name"):
                value = tr[field]
                if isinstance(value, list):
                    out += [v for v in value if isinstance(v, str)]
                elif isinstance(value, str):
                    out.append(value)
    return out


def test_typed_html_shows_as_text_on_the_overview(page, server):
    open_app(page, server)
    type_sentences(page, "\n".join(PAYLOADS))
    page.get_by_text(f"{len(PAYLOADS)}. {PAYLOADS[-1]}", exact=True).wait_for()
    wait_for_app(page)
    main = page.get_by_test_id("stMain").inner_text()
    for i, payload in enumerate(PAYLOADS, start=1):
        assert f"{i}. {payload}" in main, f"payload {i} is not shown literally"
    assert _injected(page) == []
    assert page.evaluate("() => window.__pwned === undefined")
    # Token labels in the plots are escaped for plotly, whose labels understand a little HTML.
    strings = _plot_strings(page)
    assert strings and not any("<script" in s or "<img" in s or "<b>" in s for s in strings)
    assert page_problems(page) == []  # includes: no dialog opened, no script error


def test_typed_html_on_the_attention_page(page, server):
    open_app(page, server, "Attention")
    type_sentences(page, "\n".join(PAYLOADS))
    # The first sentence is selected: its tokens appear on the heatmap axes.
    wait_for_heatmap_tokens(page, expected_tokens(PAYLOADS[0]))
    picker = page.get_by_test_id("stMain").get_by_test_id("stSelectbox").first
    assert picker.get_by_role("combobox").input_value() == f"1. {PAYLOADS[0]}"
    # Open the sentence list: every option is the literal text.
    picker.click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    assert [o.split(". ", 1)[1] for o in options] == [p[:79] + "…" if len(p) > 80 else p for p in PAYLOADS]
    assert _injected(page) == []
    assert page.evaluate("() => window.__pwned === undefined")
    assert page_problems(page) == []


def test_hostile_model_id_gives_a_message_not_markup(page, server):
    open_app(page, server)
    model = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first
    model.click()
    page.get_by_role("option", name="Other (hub id or local folder)…").click()
    wait_for_app(page)
    field = page.get_by_role("textbox", name="Hugging Face id or local folder")
    field.fill("<img src=x onerror=alert('model id')>")
    field.press("Enter")
    error = page.get_by_test_id("stAlertContentError").first
    error.wait_for()
    wait_for_app(page)
    assert "Showing the bundled default model instead" in error.inner_text()
    assert "onerror=alert('model id')" in error.inner_text()
    # The default model keeps serving this person: its token strips are still drawn.
    assert any(tr["type"] == "bar" for chart in plot_traces(page) for tr in chart)
    assert _injected(page) == []
    assert page_problems(page) == []
