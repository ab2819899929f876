"""A person uploads a corpus CSV on the Embeddings page and sees it projected; a broken
file gives a message and the page keeps working."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest

from devtools.browser import page_problems, plot_traces, wait_for_app, wait_for_plots

pytestmark = pytest.mark.browser

ANIMALS = [
    "The cat sleeps on the warm windowsill.",
    "A dog barks at the mail carrier.",
    "Horses gallop across the open field.",
    "The parrot repeats every word it hears.",
    "Rabbits dig burrows under the hedge.",
    "An owl hunts mice at night.",
    "The goldfish circles its small bowl.",
    "Cows graze quietly in the meadow.",
    "A fox slips through the tall grass.",
    "Ducks paddle across the village pond.",
    "<img src=x onerror=alert('cell')> birds sing at dawn.",
    "The hamster runs on its wheel all night.",
]
WEATHER = [
    "Heavy rain is expected this afternoon.",
    "The forecast promises a sunny weekend.",
    "Thick fog covered the harbour at dawn.",
    "Snow fell steadily through the night.",
    "A cold wind blows from the north.",
    "Thunderstorms will roll in by evening.",
    "The humidity made the air feel heavy.",
    "Frost coated the car windows this morning.",
    "A heatwave settled over the valley.",
    "Light drizzle continued until noon.",
    "Clouds gathered over the distant hills.",
    "The temperature dropped below freezing.",
]


def _csv_bytes(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sentence", "group"])
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _open_upload(page, server) -> None:
    """Open the Embeddings page and pick 'Upload a file' straight away (no need to wait for the
    demo corpus to be embedded first: the new choice interrupts that run)."""
    page.goto(f"{server}/Embeddings")
    page.get_by_test_id("stMain").get_by_text("Upload a file", exact=True).click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').wait_for(state="attached")
    wait_for_app(page)


def _upload(page, name: str, data: bytes) -> None:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": data}]
    )


def test_upload_a_corpus_and_see_its_projection(page, server):
    _open_upload(page, server)
    rows = [(s, "animals") for s in ANIMALS] + [(s, "weather") for s in WEATHER]
    _upload(page, "my_corpus.csv", _csv_bytes(rows))
    page.wait_for_function(
        """() => [...document.querySelectorAll('.js-plotly-plot')].some(g => (g.data || []).some(
                t => t.name === 'animals' && t.type && t.type.startsWith('scatter')))"""
    )
    wait_for_app(page)
    assert "my_corpus.csv: 24 texts" in page.get_by_test_id("stMain").inner_text()

    panels = [
        tr
        for chart in plot_traces(page)
        for tr in chart
        if tr["name"] in ("animals", "weather") and tr["type"].startswith("scatter")
    ]
    # Every uploaded sentence is one point in each of the three panels, coloured by its group.
    assert sum(len(tr["x"]) for tr in panels if tr["name"] == "animals") == 3 * len(ANIMALS)
    assert sum(len(tr["x"]) for tr in panels if tr["name"] == "weather") == 3 * len(WEATHER)
    hovers = [h for tr in panels for h in (tr["hovertext"] or [])]
    assert len(hovers) == 3 * (len(ANIMALS) + len(WEATHER))
    shown = html.unescape(" ".join(hovers).replace("<br>", " "))
    for sentence in ANIMALS + WEATHER:
        assert sentence.split()[-2] in shown
    # The HTML in a cell is hover text, escaped for plotly: never markup, never run.
    assert not any("<img" in h for h in hovers)
    assert page.evaluate("() => document.querySelector('img[src=\"x\"]') === null")
    assert page_problems(page) == []


def test_a_broken_upload_gives_a_message_and_the_page_keeps_working(page, server):
    _open_upload(page, server)
    _upload(page, "broken.csv", bytes(range(256)) * 64)
    error = page.get_by_test_id("stAlertContentError").first
    error.wait_for()
    wait_for_app(page)
    assert "broken.csv" in error.inner_text() and "binary" in error.inner_text()
    assert page_problems(page) == []
    # A good file right after works in the same session.
    _upload(
        page,
        "fine.csv",
        _csv_bytes([(s, "animals") for s in ANIMALS[:6]] + [(s, "weather") for s in WEATHER[:6]]),
    )
    page.get_by_text("fine.csv: 12 texts").wait_for()
    wait_for_app(page)
    wait_for_plots(page)
    assert page.get_by_test_id("stAlertContentError").count() == 0
    assert page_problems(page) == []


def test_hostile_uploads_one_after_another_then_a_fresh_session(new_page, server):
    """The upload rows of the hostile-input table, through the page: each refused file names
    itself in an error, each accepted one is described; a new session afterwards is fine."""
    from tests.test_hostile_input import UPLOADS

    # Left out: files the uploader itself refuses by extension, and the large ones (their
    # limits are checked in tests/test_hostile_input.py without a browser).
    large = {"upload-50000-rows", "upload-over-the-size-limit", "upload-huge-single-cell"}
    cases = [c for c in UPLOADS if c.id not in large and c.payload()[0].endswith((".csv", ".txt"))]
    assert len(cases) >= 10
    page = new_page()
    _open_upload(page, server)
    for case in cases:
        filename, data = case.payload()
        _upload(page, filename, data)
        main = page.get_by_test_id("stMain")
        if case.outcome == "refused":
            error = main.get_by_test_id("stAlertContentError").filter(has_text=filename)
            error.wait_for()
            assert re.search(case.message, error.inner_text()), (case.id, error.inner_text())
        else:
            main.get_by_text(f"{filename}: ").wait_for()
        wait_for_app(page)
        assert page_problems(page) == [], case.id
    other = new_page()
    other.goto(server)
    wait_for_app(other)
    wait_for_plots(other, count=3)  # the Overview's token strips for the default sentences
    assert page_problems(other) == []
