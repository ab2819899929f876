"""A person types a sentence in the sidebar and sees that sentence's tokens in the plots.

The first interaction after a page loads must take effect: Streamlit 1.67 drops it when an
entry file calling st.navigation sits beside a pages/ folder, which the app avoids by using
plain multipage with st.page_link. These tests type exactly once after a fresh load.
"""

from __future__ import annotations

import pytest

from devtools.browser import (
    expected_tokens,
    heatmap_token_axes,
    open_app,
    page_problems,
    plot_traces,
    sentences_box,
    type_sentences,
    wait_for_app,
    wait_for_heatmap_tokens,
    wait_for_plots,
)

pytestmark = pytest.mark.browser


def _bar_token_lists(page) -> list[list[str]]:
    import html

    return [
        [html.unescape(str(v)) for v in tr["text"]]
        for chart in plot_traces(page)
        for tr in chart
        if tr["type"] == "bar" and isinstance(tr["text"], list)
    ]


def test_first_sentence_typed_on_the_overview_takes_effect(page, server):
    open_app(page, server)
    wait_for_plots(page, count=3)  # one token strip per default sentence
    sentence = "Quiet otters negotiate with a lighthouse."
    expected = expected_tokens(sentence)
    before = _bar_token_lists(page)
    assert before and expected not in before, "the default sentences should be shown before typing"

    type_sentences(page, sentence)  # the first interaction since the page loaded
    page.wait_for_function(
        """(tokens) => [...document.querySelectorAll('.js-plotly-plot')].some(g => (g.data || []).some(t =>
            t.type === 'bar' && Array.isArray(t.text) && t.text.join('\\u0001') === tokens.join('\\u0001')))""",
        arg=expected,
    )
    wait_for_app(page)
    assert _bar_token_lists(page) == [expected], "only the typed sentence should be shown"
    assert sentences_box(page).input_value() == sentence
    assert page_problems(page) == []


def test_first_sentence_typed_on_attention_page_shows_in_heatmap(page, server):
    open_app(page, server, "Attention")
    wait_for_plots(page)
    page.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot')].some(g => (g._fullData || []).some(
                t => t.type === 'heatmap'))"""
    )
    sentence = "Zebras juggle violet umbrellas."
    expected = expected_tokens(sentence)
    before = heatmap_token_axes(page)
    assert before, "the Attention page shows no token heatmap for the default sentences"
    assert expected not in before

    type_sentences(page, sentence)  # the first interaction since the page loaded
    wait_for_heatmap_tokens(page, expected)
    assert all(axis == expected for axis in heatmap_token_axes(page) if len(axis) == len(expected))
    # What plotly drew, not only its data: the tick labels carry "<position> <token>".
    ticks = page.locator(".js-plotly-plot .xtick text, .js-plotly-plot .ytick text").all_text_contents()
    drawn = {t.split(" ", 1)[1] for t in ticks if " " in t}
    content = [t for t in expected if t not in ("[CLS]", "[SEP]")]
    assert set(content) <= drawn, f"tokens missing from the drawn axes: {set(content) - drawn}"
    assert page_problems(page) == []
