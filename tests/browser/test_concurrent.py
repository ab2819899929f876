"""Eight people on one server, each applying a different sentence at the same moment: each
sees only their own tokens (no cross-talk through the shared model or the caches), no errors.

Timing (time to plot, one session vs eight) belongs in benchmarks/, not here: waits are
bounded but nothing is timed.
"""

from __future__ import annotations

import pytest

from devtools.browser import (
    expected_tokens,
    heatmap_token_axes,
    page_problems,
    sentences_box,
    type_sentences,
    wait_for_app,
    wait_for_heatmap_tokens,
)

pytestmark = pytest.mark.browser

SENTENCES = [
    "Giraffes paint murals before sunrise.",
    "Penguins audit the quarterly budget.",
    "A violin hums beneath the frozen bridge.",
    "Seven copper kettles whistle in harmony.",
    "The astronaut misplaced her favourite pencil.",
    "Volcanoes rarely apologise for their tempers.",
    "Marmalade drips slowly onto the chessboard.",
    "Lighthouses gossip about passing ships.",
]


def test_eight_sessions_typing_at_once_each_see_their_own_tokens(new_page, server):
    pages = [new_page() for _ in SENTENCES]
    for page in pages:  # all eight load the page at once...
        page.goto(f"{server}/Attention")
    for page in pages:  # ...and each waits for its own first run
        wait_for_app(page)
    # Everyone types first; then all apply within a moment of each other, so the eight
    # script runs overlap on the server.
    for page, sentence in zip(pages, SENTENCES):
        type_sentences(page, sentence, submit=False)
    for page in pages:
        sentences_box(page).press("ControlOrMeta+Enter")

    expected = [expected_tokens(s) for s in SENTENCES]
    assert len({tuple(e) for e in expected}) == len(SENTENCES)
    for page, own in zip(pages, expected):
        wait_for_heatmap_tokens(page, own)
    for page, sentence, own in zip(pages, SENTENCES, expected):
        axes = heatmap_token_axes(page)
        others = [e for e in expected if e != own]
        assert own in axes
        assert not any(e in axes for e in others), f"another session's tokens on the page of {sentence!r}"
        assert sentences_box(page).input_value() == sentence
        assert page_problems(page) == []
