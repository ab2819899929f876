"""ui.corpus: the corpus picker (AppTest of a small script) and cached corpus_vectors."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

import ui.corpus as ui_corpus
from clsviz.corpus import Corpus, demo_corpus
from ui.cache import shared_cache

DATA = Path(__file__).resolve().parent.parent / "clsviz" / "data"

# The script under test. AppTest cannot upload files, so the uploader is wrapped to hand back
# the bytes the test put in session_state (the real widget is still drawn).
SCRIPT = """
from unittest import mock

import streamlit as st

from ui.corpus import corpus_picker


class Upload:
    def __init__(self, name, data):
        self.name, self._data = name, data

    def getvalue(self):
        return self._data


real_uploader = st.file_uploader
fake = st.session_state.get("fake_upload")


def uploader(*args, **kwargs):
    real_uploader(*args, **kwargs)
    return Upload(*fake) if fake else None


with mock.patch.object(st, "file_uploader", uploader):
    corpus = corpus_picker("t")
st.session_state["result"] = None if corpus is None else {
    "texts": corpus.texts, "labels": corpus.labels, "text_column": corpus.text_column,
    "messages": corpus.messages,
}
"""


def _app(upload: tuple[str, bytes] | None = None) -> AppTest:
    at = AppTest.from_string(SCRIPT, default_timeout=60)
    if upload is not None:
        at.session_state["fake_upload"] = upload
    at.run()
    assert not at.exception
    if upload is not None:
        at.radio(key="t.source").set_value(ui_corpus.UPLOAD).run()
        assert not at.exception
    return at


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


REVIEWS = [["id", "review", "lang", "stars"]] + [
    [
        str(i),
        f"Review {i}: the {'room' if i % 2 else 'view'} was {'fine' if i % 3 else 'lovely'}.",
        "en" if i % 2 else "fr",
        str(i % 3),
    ]
    for i in range(12)
]


def test_picker_demo_corpus():
    at = _app()
    with (DATA / "demo_corpus.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    result = at.session_state["result"]
    assert result["texts"] == tuple(r["text"] for r in rows)
    assert result["labels"]["topic"] == tuple(r["topic"] for r in rows)
    assert f"{len(rows):,} texts" in at.caption[0].value
    assert not at.error


def test_picker_asks_for_a_file():
    at = AppTest.from_string(SCRIPT, default_timeout=60)
    at.run()
    at.radio(key="t.source").set_value(ui_corpus.UPLOAD).run()
    assert not at.exception
    assert at.session_state["result"] is None
    assert any("Upload a CSV" in info.value for info in at.info)


def test_picker_upload_detects_and_lets_the_person_choose_columns():
    at = _app(("reviews.csv", _csv(REVIEWS)))
    result = at.session_state["result"]
    assert result["text_column"] == "review"
    assert result["texts"] == tuple(r[1] for r in REVIEWS[1:])
    assert set(result["labels"]) == {"lang", "stars"}
    text_box = next(s for s in at.selectbox if s.label == "Text column")
    assert text_box.value == "review"
    text_box.set_value("lang").run()
    assert not at.exception
    assert at.session_state["result"]["texts"] == tuple(r[2] for r in REVIEWS[1:])
    labels_box = next(m for m in at.multiselect if m.label == "Label columns")
    assert "lang" not in labels_box.options
    labels_box.set_value(["stars"]).run()
    assert not at.exception
    result = at.session_state["result"]
    assert result["labels"] == {"stars": tuple(r[3] for r in REVIEWS[1:])}


@pytest.mark.parametrize(
    "name,data,words",
    [
        ("blob.csv", bytes(range(256)) * 8, "binary"),
        ("empty.txt", b"", "empty"),
        ("bad.csv", b"text,label\nfine,a\ntoo,many,fields\n", "line 3 has 3"),
        ("numbers.csv", b"a,b\n1,2\n3,4\n", "no text column"),
    ],
)
def test_picker_bad_files_show_an_error(name, data, words):
    at = _app((name, data))
    assert at.session_state["result"] is None
    assert len(at.error) == 1
    shown = at.error[0].value.replace("\\", "")  # markdown escapes removed: the text a person reads
    assert words in shown and name in shown


def test_picker_shows_limits_as_warnings(monkeypatch):
    monkeypatch.setenv("CLSVIZ_MAX_ROWS", "5")
    lines = [f"Sentence number {i}." for i in range(9)] + ["", "  "]
    at = _app(("many.txt", "\n".join(lines).encode("utf-16")))
    result = at.session_state["result"]
    assert result["texts"] == tuple(lines[:5])
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any("9 lines; the first 5 are used" in w for w in warnings)


def test_picker_keeps_html_as_text():
    name = "<img src=x onerror=alert(1)> *x*.txt"
    at = _app((name, b"<i>one</i>\n<script>alert(1)</script>\n"))
    assert at.session_state["result"]["texts"] == ("<i>one</i>", "<script>alert(1)</script>")
    caption = at.caption[0].value
    # Every Markdown / HTML character is escaped, and the reader still sees the name as written.
    assert re.search(r"(?<!\\)[<>*]", caption) is None
    assert name in caption.replace("\\", "")
    # The preview table holds the cells as text.
    assert at.dataframe[0].value["text"].tolist() == ["<i>one</i>", "<script>alert(1)</script>"]


def test_plain_escapes_markdown():
    text = "a *b* _c_ [d](e) <f> `g` $h$ :smile: # | ~ \\"
    escaped = ui_corpus.plain(text)
    assert "*b*" not in escaped and "<f>" not in escaped
    # Removing one backslash before each escaped character gives the text back.
    assert escaped.replace("\\\\", "\0").replace("\\", "").replace("\0", "\\") == text


# --- corpus_vectors --------------------------------------------------------------------------


class _Bar:
    def __init__(self, log):
        self.log = log

    def progress(self, value, text=None):
        self.log.append(value)

    def empty(self):
        self.log.append("empty")


@pytest.fixture
def counted(monkeypatch):
    """Count extract() calls made by ui.corpus and record the progress bar."""
    calls, bars = [], []
    real = ui_corpus.extract

    def extract(*args, **kwargs):
        calls.append(kwargs.get("poolings"))
        return real(*args, **kwargs)

    def progress(value, text=None):
        log = [value]
        bars.append(log)
        return _Bar(log)

    monkeypatch.setattr(ui_corpus, "extract", extract)
    monkeypatch.setattr(st, "progress", progress)
    shared_cache().clear()
    yield calls, bars
    shared_cache().clear()


def test_corpus_vectors_extracts_once_per_key(tiny_encoder, counted):
    calls, bars = counted
    corpus = demo_corpus().subset(range(20))
    first = ui_corpus.corpus_vectors(tiny_encoder, corpus, ("cls", "mean"), batch_size=8)
    assert len(calls) == 1
    assert bars and bars[0][-1] == "empty" and bars[0][-2] == pytest.approx(1.0)
    assert first.vectors.shape == (20, tiny_encoder.info.num_layers + 1, 2, tiny_encoder.info.hidden_size)
    assert first.labels == corpus.labels and first.texts == corpus.texts

    again = ui_corpus.corpus_vectors(tiny_encoder, corpus, ("cls", "mean"), batch_size=8)
    same_content = Corpus(texts=list(corpus.texts), labels=dict(corpus.labels), name="copy")
    copy = ui_corpus.corpus_vectors(tiny_encoder, same_content, ("cls", "mean"))
    assert len(calls) == 1 and again is first and copy is first
    assert len(bars) == 1, "a cache hit draws no progress bar"

    ui_corpus.corpus_vectors(tiny_encoder, corpus, ("cls", "mean", "max"))
    ui_corpus.corpus_vectors(tiny_encoder, corpus, ("cls", "mean"), max_tokens=8)
    ui_corpus.corpus_vectors(tiny_encoder, corpus.subset(range(10)), ("cls", "mean"))
    assert len(calls) == 4


def test_corpus_vectors_match_the_model(tiny_encoder, counted):
    corpus = demo_corpus().subset(range(6))
    vectors = ui_corpus.corpus_vectors(tiny_encoder, corpus, ("cls", "mean"))
    tok = tiny_encoder.tokenizer
    for i, text in enumerate(corpus.texts):
        batch = tok(text, return_tensors="pt")
        with torch.inference_mode():
            out = tiny_encoder.model(**batch.to(tiny_encoder.device), output_hidden_states=True)
        hidden = torch.stack(out.hidden_states)[:, 0].float().cpu().numpy()  # [L+1, T, D]
        np.testing.assert_allclose(vectors.get("cls", -1)[i], hidden[-1, 0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(vectors.get("cls", 0)[i], hidden[0, 0], rtol=1e-4, atol=1e-5)


def test_corpus_vectors_reports_errors(tiny_encoder, counted, monkeypatch):
    shown = []
    monkeypatch.setattr(st, "error", lambda body, **kwargs: shown.append(body))
    result = ui_corpus.corpus_vectors(tiny_encoder, demo_corpus().subset(range(3)), ("cls", "nonsense"))
    assert result is None
    assert len(shown) == 1 and "nonsense" in shown[0]
    assert not [k for k in shared_cache().keys() if k[0] == "corpus.vectors"]


VECTORS_SCRIPT = """
import streamlit as st

from ui.corpus import corpus_picker, corpus_vectors
from ui.state import cached_encoder

encoder = cached_encoder(st.session_state["model_dir"])
corpus = corpus_picker("v")
if corpus is not None:
    vectors = corpus_vectors(encoder, corpus.subset(range(16)), ("cls", "mean"))
    st.session_state["shape"] = vectors.vectors.shape
    st.session_state["labels"] = vectors.labels
"""


def test_corpus_vectors_in_a_running_app_extract_once(tiny_model_dirs, monkeypatch):
    calls = []
    real = ui_corpus.extract

    def extract(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ui_corpus, "extract", extract)
    shared_cache().clear()
    at = AppTest.from_string(VECTORS_SCRIPT, default_timeout=120)
    at.session_state["model_dir"] = str(tiny_model_dirs["bert"])
    at.run()
    assert not at.exception and not at.error
    assert at.session_state["shape"][:3] == (16, 3, 2)
    assert at.session_state["labels"]["topic"] == demo_corpus().labels["topic"][:16]
    at.run()  # a rerun (any widget change) reuses the vectors
    assert not at.exception
    assert len(calls) == 1
    shared_cache().clear()
