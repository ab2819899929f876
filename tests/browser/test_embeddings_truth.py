"""What the Embeddings page draws is what the vectors are: as many distinct positions as there
are distinct vectors (no lattice made by rounding), read from the plotted data in the browser."""

from __future__ import annotations

import numpy as np
import pytest

from clsviz import demo_corpus, extract
from clsviz.projection import Projector
from devtools.browser import wait_for_app

pytestmark = pytest.mark.browser
LAYER = 3  # the PCA of [CLS] at a middle layer spans about 0.002 on the bundled model


def _panel_points(traces: list[dict], panel: int) -> np.ndarray:
    """The corpus points of one panel (the first has no axis suffix), from what plotly drew."""
    per_panel = [t for t in traces if t["name"] not in ("your sentences",)]
    # Traces are added panel by panel, the same number per panel (one per class).
    size = len(per_panel) // 3
    chosen = per_panel[panel * size : (panel + 1) * size]
    return np.concatenate(
        [np.c_[np.asarray(t["x"], dtype=float), np.asarray(t["y"], dtype=float)] for t in chosen]
    )


def test_every_distinct_vector_is_drawn_at_its_own_position(page, server, encoder):
    page.goto(f"{server}/Embeddings")
    wait_for_app(page)
    page.get_by_role("radiogroup", name="Projection", exact=True).get_by_text("PCA").click()
    wait_for_app(page)
    slider = page.get_by_test_id("stSlider").first.get_by_role("slider")
    slider.focus()
    for _ in range(6 - LAYER):  # one step at a time: each step is a page run
        slider.focus()
        page.keyboard.press("ArrowLeft")
        page.wait_for_timeout(300)
        wait_for_app(page)
    title = f"PCA of {len(demo_corpus()):,} texts after layer {LAYER}"
    page.wait_for_function(
        """(title) => [...document.querySelectorAll('.js-plotly-plot')].some(
            g => g._fullData && g.layout && JSON.stringify(g.layout.title || '').includes(title))""",
        arg=title,
        timeout=240_000,
    )
    panels = page.evaluate(
        """(title) => {
            const list = v => (v && typeof v === 'object' && 'length' in v) ? Array.from(v) : (v ?? null);
            const g = [...document.querySelectorAll('.js-plotly-plot')].find(
                g => g.layout && JSON.stringify(g.layout.title || '').includes(title));
            return g._fullData.map(t => ({x: list(t.x), y: list(t.y), name: t.name ?? null}));
        }""",
        title,
    )
    corpus = demo_corpus()
    vectors = extract(encoder, corpus.texts, ("cls", "mean"))
    for panel, pooling in enumerate(("cls", "mean")):
        drawn = _panel_points(panels, panel)
        assert len(drawn) == len(corpus)
        distinct_vectors = len(np.unique(vectors.get(pooling, LAYER), axis=0))
        distinct_drawn = len(np.unique(drawn, axis=0))
        assert distinct_drawn == distinct_vectors, (
            f"{pooling}: {distinct_drawn} positions for {distinct_vectors} vectors"
        )
        # And the positions are the PCA of those vectors (up to the rounding the page applies).
        expected = Projector("pca").fit(vectors.get(pooling, LAYER)).embedding_
        spread = np.ptp(expected, axis=0).max()
        got = np.sort(drawn[:, 0])
        assert np.allclose(got, np.sort(expected[:, 0]), atol=spread * 1e-3)
