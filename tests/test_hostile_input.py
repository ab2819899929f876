"""Hostile input: whatever a person types, uploads or names as a model, they get a clear
message, the app keeps serving, no traceback reaches the page, other sessions are unaffected.

Every case is one row of ``CASES``. The library half of each case calls clsviz directly
(trace / load_corpus / load_encoder / the causal tests; mixing / attribution for the "What flows
into [CLS]?" cases); the app half runs the Overview page (or the Causal tests or "What flows into
[CLS]?" page for their input) under AppTest.
Typed HTML in a real browser (no dialog fires, the text shows as text) is in
tests/browser/test_hostile_browser.py; uploads through the page are in tests/browser/.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from clsviz import DEFAULT_MODEL, ModelLoadError, PooledVectors, load_encoder, trace
from clsviz.artifacts import INCOMPLETE_MARKER
from clsviz.corpus import Corpus
from clsviz.extraction import save_shards
from clsviz.readers import DEFAULT_MAX_BYTES, DEFAULT_MAX_CHARS, DEFAULT_MAX_ROWS, CorpusError, load_corpus
from clsviz.shards import MANIFEST
from clsviz.vectors_io import load_vectors, save_vectors, vectors_mismatch
from tests.test_attention import tiny_mpnet_dir  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
OTHER_MODEL = "Other (hub id or local folder)…"
MAX_TOKENS = 128


@dataclass(frozen=True)
class Case:
    """One hostile input.

    kind: "text" (typed in the sentence box), "upload" (a corpus file), "model" (a model id),
        "causal" (input to the causal tests on [CLS]: library calls and the Causal tests page) or
        "mixing" (an input to the "What flows into [CLS]?" page).
    payload: the text; for uploads a function returning (filename, bytes); for models the id,
        or "dir:<name>" for a folder built by the ``hostile_model_dirs`` fixture; for causal
        input the name of the scenario in ``CAUSAL_CALLS`` / ``CAUSAL_PAGE_STEPS``; for mixing a
        dict: ``text``, optional ``other`` (the sentence to compare with), ``max_tokens``,
        ``model`` ("dir:mpnet": a model without the block structure the measures need).
    outcome: text "traced" | "empty" (prompt to type) | "skipped" (warned, nothing traced);
        upload "loaded" | "refused"; model "refused"; causal "refused"; mixing "drawn" (every
        map drawn) | "refused" (the measure says why it cannot run; the page still draws what it can);
        vectors "refused" (not loaded) | "mismatch" (loaded, but not placed beside the selected
        model's own vectors). For vectors the payload is a function of a temporary folder returning
        the file or shard folder it wrote there.
    message: a regex that the message shown to the person must match ("" = no message needed).
    """

    id: str
    kind: str
    payload: object
    outcome: str
    message: str = ""


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


SENTENCES = [f"Sentence number {i} talks about topic {i % 3}." for i in range(12)]
HTML_CELL = '<script>alert("cell")</script><img src=x onerror=alert(1)> plain words'
HTML_HEADER = "<b onmouseover=alert(1)>text</b>"

CASES = [
    # --- typed text -------------------------------------------------------------------------
    Case("text-empty", "text", "", "empty", r"Type a sentence"),
    Case("text-whitespace-only", "text", "  \t   \n   \n\t", "empty", r"Type a sentence"),
    Case("text-100k-characters", "text", "the long sentence goes on " * 4000, "traced", r"was cut"),
    Case("text-100k-characters-one-word", "text", "x" * 100_000, "traced"),  # one [UNK] for BERT
    Case("text-control-characters", "text", "tab\there bell\x07 esc\x1b[31m red \x00nul\x7f end", "traced"),
    Case(
        "text-only-control-and-format-chars", "text", "\x00\x01\x02\u200b\u200e\u2066", "skipped", r"skipped"
    ),
    Case("text-zero-width", "text", "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom words", "traced"),
    Case("text-combining-marks", "text", "Z\u0351\u0352a\u0353l\u0354g\u0355o cafe\u0301 n\u0303", "traced"),
    Case("text-emoji-sequences", "text", "family 👨‍👩‍👧‍👦 flag 🇺🇳 thumbs 👍🏽 keycap 1️⃣", "traced"),
    Case("text-cjk", "text", "我喜欢自然语言处理。日本語のテキストです。한국어 문장입니다.", "traced"),
    Case(
        "text-rtl-with-overrides",
        "text",
        "abc \u202eevil.exe\u202c def \u2067שלום\u2069 مرحبا بالعالم",
        "traced",
    ),
    Case("text-literal-cls", "text", "[CLS] is not really first here [CLS]", "traced"),
    Case("text-literal-sep", "text", "one half [SEP] other half [SEP]", "traced"),
    Case("text-literal-mask", "text", "the [MASK] sat on the [MASK]", "traced"),
    Case("text-literal-pad-unk", "text", "[PAD] [PAD] [UNK] padded", "traced"),
    Case("text-literal-roberta-markers", "text", "</s><s> roberta <pad> markers <mask>", "traced"),
    Case("text-html-script", "text", "<script>alert(1)</script> after the script", "traced"),
    Case("text-html-img-onerror", "text", "<img src=x onerror=alert(1)> image", "traced"),
    Case(
        "text-markdown-javascript-link",
        "text",
        "[click me](javascript:alert(1)) **bold** `code` $x^2$",
        "traced",
    ),
    Case("text-html-entities-svg", "text", "&lt;b&gt; &amp; <svg onload=alert(1)> entities", "traced"),
    Case("text-format-string", "text", "{0} %s %(name)s {__class__} ${HOME} $(whoami)", "traced"),
    Case(
        "text-many-lines",
        "text",
        "\n".join(f"Line {i} is its own sentence." for i in range(60)),
        "traced",
        r"the first 50 are used",
    ),
    # --- uploads ----------------------------------------------------------------------------
    Case(
        "upload-malformed-csv",
        "upload",
        lambda: ("bad.csv", b'text,label\n"an unclosed quote,a\nnext,b\n'),
        "refused",
        r"not a well-formed CSV",
    ),
    Case(
        "upload-ragged-csv",
        "upload",
        lambda: ("ragged.csv", b"text,label\none,a\ntwo,b,extra,fields\nthree\n"),
        "refused",
        r"not a well-formed CSV.*lines? 3",
    ),
    Case(
        "upload-binary-renamed-csv",
        "upload",
        lambda: ("random.csv", bytes(range(256)) * 64),
        "refused",
        r"binary",
    ),
    Case(
        "upload-png-renamed-csv",
        "upload",
        lambda: ("picture.csv", b"\x89PNG\r\n\x1a\n" + bytes(200)),
        "refused",
        r"PNG image",
    ),
    Case(
        "upload-zip-renamed-csv",
        "upload",
        lambda: ("sheet.csv", b"PK\x03\x04" + bytes(100)),
        "refused",
        r"ZIP archive",
    ),
    Case(
        "upload-utf16",
        "upload",
        lambda: (
            "utf16.csv",
            "text,topic\n".encode("utf-16")
            + _csv([[s, "t"] for s in SENTENCES]).decode().encode("utf-16")[2:],
        ),
        "loaded",
    ),
    Case("upload-empty-file", "upload", lambda: ("empty.csv", b""), "refused", r"empty"),
    Case("upload-only-blank-lines", "upload", lambda: ("blank.txt", b"\n \n\t\n"), "refused", r"empty"),
    Case(
        "upload-no-text-column",
        "upload",
        lambda: ("numbers.csv", _csv([["a", "b"], *[[str(i), str(i * 2.5)] for i in range(10)]])),
        "refused",
        r"no text column",
    ),
    Case("upload-header-only", "upload", lambda: ("header.csv", b"text,label\n"), "refused", r"no rows"),
    Case(
        "upload-one-row",
        "upload",
        lambda: ("one.csv", _csv([["text", "label"], ["Only one sentence here.", "a"]])),
        "loaded",
    ),
    Case(
        "upload-one-class",
        "upload",
        lambda: ("oneclass.csv", _csv([["text", "label"], *[[s, "same"] for s in SENTENCES]])),
        "loaded",
    ),
    Case(
        "upload-50000-rows",
        "upload",
        lambda: (
            "big.csv",
            _csv([["text", "label"], *[[f"row {i} says something", str(i % 4)] for i in range(50_000)]]),
        ),
        "loaded",
        r"50,000 rows; the first 5,000 are used",
    ),
    Case(
        "upload-html-in-cells-and-header",
        "upload",
        lambda: (
            "html.csv",
            _csv(
                [
                    [HTML_HEADER, "<i>label</i>"],
                    *[[f"{HTML_CELL} {i}", "<u>x</u>" if i % 2 else "y"] for i in range(6)],
                ]
            ),
        ),
        "loaded",
    ),
    Case(
        "upload-huge-single-cell",
        "upload",
        lambda: ("hugecell.csv", _csv([["text", "label"], ["word " * 1_000_000, "a"], ["a short one", "b"]])),
        "loaded",
        r"cut to that length",
    ),
    Case(
        "upload-over-the-size-limit",
        "upload",
        lambda: ("huge.txt", b"a line of text\n" * (DEFAULT_MAX_BYTES // 15 + 2)),
        "refused",
        r"the limit is",
    ),
    Case("upload-wrong-extension", "upload", lambda: ("book.xlsx", b"PK\x03\x04"), "refused", r"not read"),
    # --- models -----------------------------------------------------------------------------
    Case(
        "model-nonexistent-id",
        "model",
        "clsviz-tests/no-such-model-anywhere",
        "refused",
        r"not in the local model cache",
    ),
    Case(
        "model-dotdot-path",
        "model",
        "../../../../etc/passwd",
        "refused",
        r"neither an existing local folder nor a valid",
    ),
    Case(
        "model-dotdot-inside-id",
        "model",
        "owner/../../secrets",
        "refused",
        r"neither an existing local folder nor a valid",
    ),
    Case(
        "model-backslash-path",
        "model",
        "..\\..\\windows\\system32",
        "refused",
        r"neither an existing local folder nor a valid",
    ),
    Case(
        "model-url",
        "model",
        "https://evil.example/model.bin",
        "refused",
        r"neither an existing local folder nor a valid",
    ),
    Case(
        "model-shell-characters",
        "model",
        "bert-base-uncased; rm -rf ~",
        "refused",
        r"neither an existing local folder nor a valid",
    ),
    Case(
        "model-name-too-long", "model", "m" * 400, "refused", r"neither an existing local folder nor a valid"
    ),
    Case("model-folder-without-config", "model", "dir:no_config", "refused", r"has no config\.json"),
    Case(
        "model-needs-remote-code", "model", "dir:remote_code", "refused", r"trust_remote_code.*never allows"
    ),
    Case(
        "model-unknown-architecture",
        "model",
        "dir:unknown_arch",
        "refused",
        r"configuration clsviz cannot read",
    ),
    Case("model-without-cls-token", "model", "dir:gpt2_no_cls", "refused", r"no \[CLS\]-like token"),
    Case("model-pickle-only-weights", "model", "dir:pickle_only", "refused", r"only has pickle weights"),
    Case(
        "model-oversized-config",
        "model",
        "dir:oversized",
        "refused",
        r"too large for this server: its config describes [\d.]+ trillion parameters.*allows 3\.00 GB per model",
    ),
    Case(
        "model-truncated-safetensors",
        "model",
        "dir:truncated",
        "refused",
        r"model\.safetensors is truncated: its header places tensor",
    ),
    Case(
        "model-tokenizer-larger-than-embeddings",
        "model",
        "dir:small_vocab",
        "refused",
        r"tokenizer gives token ids up to 30,521, but the model's embedding table has 1,000 rows",
    ),
    Case(
        "model-config-not-json",
        "model",
        "dir:config_not_json",
        "refused",
        r"has a config\.json clsviz cannot read",
    ),
    Case(
        "model-config-negative-size",
        "model",
        "dir:negative_size",
        "refused",
        r"describes no real model: intermediate_size is -64",
    ),
    Case(
        "model-config-heads-do-not-divide",
        "model",
        "dir:heads_indivisible",
        "refused",
        r"hidden size 16 does not split into 3 attention heads",
    ),
    Case(
        "model-half-written-folder",
        "model",
        "dir:unfinished",
        "refused",
        r"started saving but never finished",
    ),
    # --- saved vectors and shard folders (library: load_vectors / vectors_mismatch; app: Embeddings)
    Case(
        "vectors-npz-header-claims-a-huge-array",
        "vectors",
        lambda tmp: _npz_huge_header(tmp),
        "refused",
        r"vectors\.npy says it holds an array of shape \[10000000, 7, 2, 384\] .* but it holds 0\.0 MB",
    ),
    Case(
        "vectors-npz-rows-do-not-match-the-texts",
        "vectors",
        lambda tmp: _npz_doubled_rows(tmp),
        "refused",
        r"does not hold together \(vectors: expected 12 texts on axis 0, got 24\)",
    ),
    Case(
        "vectors-parquet-metadata-claims-a-huge-shape",
        "vectors",
        lambda tmp: _parquet_claiming(tmp, 10**9),
        "refused",
        r"these vectors take [\d,]+ MB unpacked; the limit is 2,048 MB",
    ),
    Case(
        "vectors-parquet-metadata-wrong-shape",
        "vectors",
        lambda tmp: _parquet_claiming(tmp, 13),
        "refused",
        r"the file holds \d+ values, its metadata says shape \[13, 7, 2, 384\]",
    ),
    Case(
        "vectors-parquet-footer-claims-a-huge-size",
        "vectors",
        lambda tmp: _parquet_huge_footer(tmp),
        "refused",
        r"could not be read: Parquet file size is \d+ bytes, smaller than",
    ),
    Case(
        "vectors-from-another-model",
        "vectors",
        lambda tmp: _npz(tmp, _saved(model="bert-base-uncased")),
        "mismatch",
        r"These vectors come from bert-base-uncased, but the selected model is all-MiniLM-L6-v2",
    ),
    Case(
        "vectors-wrong-shape-for-their-model",
        "vectors",
        lambda tmp: _npz(tmp, _saved(layers=12, dim=48)),
        "mismatch",
        r"they hold 12 layers of 48 dimensions, and all-MiniLM-L6-v2 \(bundled\) has 6 layers of 384",
    ),
    Case(
        "shards-manifest-claims-a-huge-row-count",
        "vectors",
        lambda tmp: _shards_claiming(tmp, 10**12),
        "refused",
        r"the manifest lists 12 rows in its shards but says 1,000,000,000,000",
    ),
    Case(
        "shards-from-another-model",
        "vectors",
        lambda tmp: _shards(tmp, _saved(model="roberta-base")),
        "mismatch",
        r"These vectors come from roberta-base, but the selected model is all-MiniLM-L6-v2",
    ),
    # --- causal tests on [CLS] (library: clsviz.experiments.interventions; app: page 8) -----
    Case("causal-too-few-labelled-rows", "causal", "too_few", "refused", r"Only \d+ labelled text\(s\)"),
    Case("causal-label-with-one-class", "causal", "one_class", "refused", r"has a single class"),
    Case("causal-same-source-and-target", "causal", "same_pair", "refused", r"are the same sentence"),
    Case(
        "causal-registers-beyond-the-length-limit",
        "causal",
        "registers",
        "refused",
        r"register\(s\) after \[CLS\] make \d+ tokens, more than this model's limit",
    ),
    # --- "What flows into [CLS]?": context mixing and attributions ---------------------------
    Case("mixing-single-token-sentence", "mixing", {"text": "Hi"}, "drawn"),
    Case(
        "mixing-512-token-sentence",
        "mixing",
        {"text": "the cat chased a dog " * 130, "max_tokens": 512},
        "drawn",
        r"has 512 tokens: press the button to attribute it",
    ),
    Case(
        "mixing-model-without-block-structure",
        "mixing",
        {"text": "the cat sat", "model": "dir:mpnet"},
        "refused",
        r"runs the model's blocks from their weights, and .*'mpnet'",
    ),
    Case(
        "mixing-empty-target-sentence",
        "mixing",
        {"text": "The cat sat.", "other": "   "},
        "refused",
        r"sentence to compare with is empty",
    ),
]

TEXT = [c for c in CASES if c.kind == "text"]
UPLOADS = [c for c in CASES if c.kind == "upload"]
MODELS = [c for c in CASES if c.kind == "model"]
CAUSAL = [c for c in CASES if c.kind == "causal"]
MIXING = [c for c in CASES if c.kind == "mixing"]
VECTORS = [c for c in CASES if c.kind == "vectors"]


def _ids(cases):
    return [c.id for c in cases]


def test_the_table_covers_every_kind_of_hostile_input():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert {c.kind for c in CASES} == {"text", "upload", "model", "causal", "mixing", "vectors"}
    allowed = {"text": {"traced", "empty", "skipped"}, "upload": {"loaded", "refused"}, "model": {"refused"},
               "causal": {"refused"}, "mixing": {"drawn", "refused"}, "vectors": {"refused", "mismatch"}}  # fmt: skip
    for c in CASES:
        assert c.outcome in allowed[c.kind], c
        if c.outcome in ("refused", "empty", "skipped"):
            assert c.message, f"{c.id}: a refusal must name the message the person sees"
    # The kinds of input the issue lists, each present at least once.
    for needed in (
        "empty",
        "whitespace",
        "100k",
        "control",
        "zero-width",
        "combining",
        "emoji",
        "cjk",
        "rtl",
        "literal-cls",
        "literal-sep",
        "literal-mask",
        "pad",
        "roberta-markers",
        "script",
        "img-onerror",
        "malformed-csv",
        "binary",
        "utf16",
        "empty-file",
        "no-text-column",
        "one-row",
        "one-class",
        "50000-rows",
        "html-in-cells",
        "huge-single-cell",
        "nonexistent",
        "dotdot",
        "remote-code",
        "without-cls",
        "pickle",
        "oversized",
        "truncated",
        "tokenizer-larger",
        "not-json",
        "negative-size",
        "half-written",
        "causal-too-few",
        "causal-label-with-one-class",
        "causal-same-source",
        "causal-registers-beyond",
        "single-token",
        "512-token",
        "without-block-structure",
        "empty-target",
        "npz-header-claims",
        "rows-do-not-match",
        "parquet-metadata-claims",
        "footer-claims",
        "another-model",
        "wrong-shape",
        "manifest-claims-a-huge-row-count",
    ):
        assert any(needed in c.id for c in CASES), f"no case for {needed!r}"


# ------------------------------------------------------------------------------------------
# typed text
# ------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """What the sidebar makes of the box: non-empty stripped lines (the app's rule, restated)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("case", TEXT, ids=_ids(TEXT))
def test_typed_text_in_the_library(case, encoder):
    tok = encoder.tokenizer
    lines = _lines(case.payload)
    if case.outcome == "empty":
        assert lines == []
        with pytest.raises(ValueError, match="empty"):
            trace(encoder, case.payload)
        return
    if case.outcome == "skipped":
        with pytest.raises(ValueError, match="empty|no readable tokens"):
            trace(encoder, lines[0])
        return
    for text in lines[:3]:
        t = trace(encoder, text, max_tokens=MAX_TOKENS)
        assert t.text == text
        ids = t.input_ids
        # Exactly one real [CLS] (first) and one [SEP] (last); literal "[CLS]" text never becomes one.
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert int((ids == tok.cls_token_id).sum()) == 1 and int((ids == tok.sep_token_id).sum()) == 1
        assert t.special_mask.tolist() == [True] + [False] * (len(ids) - 2) + [True]
        forbidden = set(tok.all_special_ids) - {tok.unk_token_id}
        assert not forbidden & set(ids[1:-1].tolist())
        assert len(ids) <= MAX_TOKENS
        # Truncation is reported exactly when the text has more tokens than fit.
        n_text = len(tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
        assert t.truncated == (n_text + 2 > MAX_TOKENS)
        if re.search(r"\[(CLS|SEP|MASK|PAD|UNK)\]", text):
            # The brackets of a literal special token are ordinary characters to the model.
            assert "[" in t.tokens[1:-1] and "]" in t.tokens[1:-1]
        assert np.isfinite(t.hidden_states).all() and np.isfinite(t.attentions).all()
        assert np.allclose(t.attentions.sum(-1), 1.0, atol=1e-4)


def _app(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in state.items():
        at.session_state[k] = v
    return at


def _shown(at: AppTest) -> str:
    """Every message, caption and text on the page, joined (to look for the expected message)."""
    parts = []
    for kind in ("error", "warning", "info", "caption", "text", "markdown"):
        parts += [str(el.value) for el in getattr(at, kind)]
    return "\n".join(parts)


@pytest.mark.parametrize("case", TEXT, ids=_ids(TEXT))
def test_typed_text_in_the_app(case):
    at = _app()
    at.run()
    at.sidebar.text_area(key="sidebar.sentences").input(case.payload).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    if case.message:
        assert re.search(case.message, _shown(at)), f"{case.id}: expected a message matching {case.message!r}"
    charts = at.get("plotly_chart")
    lines = _lines(case.payload)
    if case.outcome in ("empty", "skipped"):
        assert not charts
        return
    shown = lines[:50]
    assert len(charts) == len(shown)
    # The sentence is shown as plain text (st.text), never as Markdown or HTML.
    assert [t.value for t in at.text][: len(shown)] == [f"{i + 1}. {s}" for i, s in enumerate(shown)]
    for md in at.markdown:
        assert lines[0][:40] not in md.value


def test_all_hostile_lines_at_once_then_a_fresh_session_is_unaffected():
    traced = [
        line
        for c in TEXT
        if c.outcome == "traced" and c.id != "text-many-lines"
        for line in _lines(c.payload)
    ]
    at = _app()
    at.run()
    at.sidebar.text_area(key="sidebar.sentences").input("\n".join(traced)).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == len(traced)
    other = _app()
    other.run()
    assert not other.exception and not other.warning
    assert [t.value for t in other.text][0] == "1. The film was not bad at all."


# ------------------------------------------------------------------------------------------
# uploads
# ------------------------------------------------------------------------------------------


def _expected_texts(data: bytes) -> list[str]:
    """The first column's texts, read here with the csv module (every loaded case puts the
    text first): what a well-behaved reader should produce."""
    text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("utf-8")
    body = list(csv.reader(io.StringIO(text)))[1:]
    return [r[0].strip() for r in body if r and r[0].strip()]


@pytest.mark.parametrize("case", UPLOADS, ids=_ids(UPLOADS))
def test_upload_in_the_library(case):
    filename, data = case.payload()
    if case.outcome == "refused":
        with pytest.raises(CorpusError, match=case.message) as info:
            load_corpus(data, filename)
        message = str(info.value)
        assert "Traceback" not in message and len(message) < 600
        return
    corpus = load_corpus(data, filename)
    assert isinstance(corpus, Corpus) and len(corpus) >= 1
    if case.message:
        assert any(re.search(case.message, m) for m in corpus.messages), corpus.messages
    expected = _expected_texts(data)
    kept = [t[:DEFAULT_MAX_CHARS].rstrip() for t in expected[:DEFAULT_MAX_ROWS]]
    assert list(corpus.texts) == kept
    for column, values in corpus.labels.items():
        assert len(values) == len(corpus)
        assert len(set(values)) >= 2, f"label column {column!r} with a single value is no label"


def test_html_in_an_upload_stays_literal():
    case = next(c for c in UPLOADS if c.id == "upload-html-in-cells-and-header")
    filename, data = case.payload()
    corpus = load_corpus(data, filename)
    assert corpus.text_column == HTML_HEADER
    assert all(t.startswith(HTML_CELL) for t in corpus.texts)
    assert set(corpus.labels.get("<i>label</i>", ())) == {"<u>x</u>", "y"}


# ------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------


def _tiny_bert(
    folder: Path, *, pickle_only: bool = False, vocab_size: int | None = None, **config_changes
) -> Path:
    """A real tiny BERT with the bundled tokenizer; ``config_changes`` are written into its
    config.json afterwards (the weights keep their tiny sizes)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from clsviz.encoder import bundled_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    model = BertModel(
        BertConfig(
            vocab_size=vocab_size or tokenizer.vocab_size,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        )
    )
    folder.mkdir(parents=True)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if pickle_only:
        # transformers 5 always writes safetensors, so the pickle checkpoint is written by hand.
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    if config_changes:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


def _tiny_gpt2(folder: Path) -> Path:
    """A tiny GPT-2 with a byte-level BPE tokenizer trained here: no cls_token at all."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ["the cat sat on the mat and the dog ran"] * 8,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<|endoftext|>"],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    GPT2Model(
        GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_head=2, n_embd=16, n_positions=64)
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hostile_model_dirs(tmp_path_factory):
    """Folders that look like models but must be refused, plus a sentinel for remote code."""
    root = tmp_path_factory.mktemp("hostile-models")
    dirs = {}
    dirs["no_config"] = root / "no_config"
    dirs["no_config"].mkdir()
    (dirs["no_config"] / "model.safetensors").write_bytes(b"not really weights")

    remote = root / "remote_code"
    remote.mkdir()
    sentinel = root / "REMOTE_CODE_RAN"
    (remote / "config.json").write_text(
        json.dumps(
            {
                "model_type": "clsviz_custom_arch",
                "auto_map": {
                    "AutoConfig": "configuration_custom.CustomConfig",
                    "AutoModel": "modeling_custom.CustomModel",
                },
            }
        )
    )
    for name in ("configuration_custom.py", "modeling_custom.py"):
        (remote / name).write_text(f"from pathlib import Path\nPath({str(sentinel)!r}).write_text('ran')\n")
    dirs["remote_code"] = remote
    dirs["remote_sentinel"] = sentinel

    dirs["unknown_arch"] = root / "unknown_arch"
    dirs["unknown_arch"].mkdir()
    (dirs["unknown_arch"] / "config.json").write_text(json.dumps({"model_type": "clsviz_unknown_arch"}))

    dirs["gpt2_no_cls"] = _tiny_gpt2(root / "gpt2_no_cls")
    dirs["pickle_only"] = _tiny_bert(root / "pickle_only", pickle_only=True)
    # Real tiny weights under a config of 10,000 layers x 65,536 dims.
    dirs["oversized"] = _tiny_bert(
        root / "oversized", num_hidden_layers=10_000, hidden_size=65_536, num_attention_heads=16
    )
    dirs["truncated"] = _tiny_bert(root / "truncated")
    weights = dirs["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    # The bundled tokenizer (30,522 ids) over an embedding table of 1,000 rows.
    dirs["small_vocab"] = _tiny_bert(root / "small_vocab", vocab_size=1000)
    dirs["config_not_json"] = _tiny_bert(root / "config_not_json")
    (dirs["config_not_json"] / "config.json").write_text("{'model_type': 'bert', this is not JSON")
    dirs["negative_size"] = _tiny_bert(root / "negative_size", intermediate_size=-64)
    dirs["heads_indivisible"] = _tiny_bert(root / "heads_indivisible", num_attention_heads=3)
    # What a save killed midway leaves: the staging folder, with its marker.
    dirs["unfinished"] = _tiny_bert(root / ".my-model.partial-999999-0badf00d")
    (dirs["unfinished"] / INCOMPLETE_MARKER).write_text("")
    return dirs


def _model_id(case: Case, dirs) -> str:
    payload = str(case.payload)
    return str(dirs[payload[4:]]) if payload.startswith("dir:") else payload


@pytest.mark.parametrize("case", MODELS, ids=_ids(MODELS))
def test_model_in_the_library(case, hostile_model_dirs):
    with pytest.raises(ModelLoadError, match=case.message) as info:
        load_encoder(_model_id(case, hostile_model_dirs))
    assert "Traceback" not in str(info.value)
    assert not hostile_model_dirs["remote_sentinel"].exists(), "a model's own Python code was run"


def test_pickle_weights_load_only_when_explicitly_allowed(hostile_model_dirs):
    """The refusal is about the file format, not a broken folder: opting in loads it."""
    enc = load_encoder(str(hostile_model_dirs["pickle_only"]), allow_pickle=True)
    assert enc.info.num_layers == 1 and enc.info.cls_token == "[CLS]"


APP_MODEL_CASES = [
    c
    for c in MODELS
    if c.id
    in {
        "model-nonexistent-id",
        "model-dotdot-path",
        "model-needs-remote-code",
        "model-without-cls-token",
        "model-pickle-only-weights",
        "model-name-too-long",
        "model-oversized-config",
        "model-truncated-safetensors",
        "model-tokenizer-larger-than-embeddings",
    }
]


@pytest.mark.parametrize("case", APP_MODEL_CASES, ids=_ids(APP_MODEL_CASES))
def test_model_in_the_app(case, hostile_model_dirs):
    at = _app()
    at.run()
    at.sidebar.selectbox(key="sidebar.model").set_value(OTHER_MODEL).run()
    at.sidebar.text_input(key="sidebar.custom_model").input(_model_id(case, hostile_model_dirs)).run()
    assert not at.exception, at.exception
    # st.error reads Markdown, so the message arrives with Markdown characters escaped.
    errors = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]
    assert len(errors) == 1 and re.search(case.message, errors[0]), errors
    assert "Showing the bundled default model instead" in errors[0]
    # The default model keeps working for this person...
    assert "all-MiniLM-L6-v2 (bundled)" in _shown(at)
    assert len(at.get("plotly_chart")) == 3
    # ...and a later rerun of the same session does not try (and fail) again.
    at.run()
    assert not at.exception and len(at.error) == 1
    assert not hostile_model_dirs["remote_sentinel"].exists()


def test_a_failed_model_in_one_session_leaves_others_alone(hostile_model_dirs):
    bad = _app()
    bad.run()
    bad.sidebar.selectbox(key="sidebar.model").set_value(OTHER_MODEL).run()
    bad.sidebar.text_input(key="sidebar.custom_model").input(str(hostile_model_dirs["gpt2_no_cls"])).run()
    assert bad.error
    good = _app()
    good.run()
    assert not good.exception and not good.error
    assert good.sidebar.selectbox(key="sidebar.model").value == "all-MiniLM-L6-v2 (bundled)"
    assert len(good.get("plotly_chart")) == 3


# ------------------------------------------------------------------------------------------
# saved vectors and shard folders
# ------------------------------------------------------------------------------------------


def _saved(model: str = DEFAULT_MODEL, layers: int = 6, dim: int = 384, rows: int = 12) -> PooledVectors:
    rng = np.random.default_rng(0)
    return PooledVectors(
        vectors=rng.normal(size=(rows, layers + 1, 2, dim)).astype(np.float32),
        poolings=("cls", "mean"),
        texts=tuple(SENTENCES[:rows]),
        model_name=model,
        truncated=np.zeros(rows, dtype=bool),
        labels={"topic": tuple(str(i % 3) for i in range(rows))},
    )


def _npz(tmp: Path, pv: PooledVectors) -> Path:
    return save_vectors(pv, tmp / "vectors.npz")


def _rewrite_npz_member(tmp: Path, member: str, body) -> Path:
    """The vectors file with one member's bytes replaced by ``body(old_bytes)``."""
    import zipfile

    path = _npz(tmp, _saved())
    with zipfile.ZipFile(path) as old:
        members = {info.filename: old.read(info.filename) for info in old.infolist()}
    members[member] = body(members[member])
    with zipfile.ZipFile(path, "w") as new:
        for name, data in members.items():
            new.writestr(name, data)
    return path


def _npz_huge_header(tmp: Path) -> Path:
    """The array's header claims [10,000,000, 7, 2, 384] float32 (200 GB); the member holds the header only."""
    fmt = np.lib.format
    header = io.BytesIO()
    fmt.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10_000_000, 7, 2, 384)}
    )
    return _rewrite_npz_member(tmp, "vectors.npy", lambda _: header.getvalue())


def _npz_doubled_rows(tmp: Path) -> Path:
    def doubled(data: bytes) -> bytes:
        out = io.BytesIO()
        array = np.load(io.BytesIO(data))
        np.save(out, np.concatenate([array, array]))
        return out.getvalue()

    return _rewrite_npz_member(tmp, "vectors.npy", doubled)


def _parquet_claiming(tmp: Path, rows: int) -> Path:
    import pyarrow.parquet as pq

    path = save_vectors(_saved(), tmp / "vectors.parquet")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"clsviz"])
    meta["shape"][0] = rows
    pq.write_table(table.replace_schema_metadata({"clsviz": json.dumps(meta)}), path)
    return path


def _parquet_huge_footer(tmp: Path) -> Path:
    path = save_vectors(_saved(), tmp / "vectors.parquet")
    data = path.read_bytes()
    path.write_bytes(data[:-8] + (2**31 - 1).to_bytes(4, "little") + b"PAR1")  # footer length: 2 GB
    return path


def _shards(tmp: Path, pv: PooledVectors) -> Path:
    save_shards([pv], tmp / "shards", rows=len(pv.texts))
    return tmp / "shards"


def _shards_claiming(tmp: Path, rows: int) -> Path:
    folder = _shards(tmp, _saved())
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "rows": rows}))
    return folder


@pytest.mark.parametrize("case", VECTORS, ids=_ids(VECTORS))
def test_saved_vectors_in_the_library(case, tmp_path):
    from clsviz.encoder import EncoderInfo
    from ui.vectors import MAX_UNPACKED_BYTES

    path = case.payload(tmp_path)
    source = path if path.is_dir() else path.read_bytes()  # the app reads an uploaded file's bytes
    if case.outcome == "refused":
        with pytest.raises(ValueError, match=case.message) as info:
            load_vectors(source, max_bytes=MAX_UNPACKED_BYTES)
        assert "Traceback" not in str(info.value) and len(str(info.value)) < 600
        return
    vectors = load_vectors(source, max_bytes=MAX_UNPACKED_BYTES)
    bundled = EncoderInfo(
        name=DEFAULT_MODEL,
        source="",
        model_type="bert",
        num_layers=6,
        num_heads=12,
        hidden_size=384,
        cls_token="[CLS]",
        cls_token_id=101,
        sep_token="[SEP]",
        sep_token_id=102,
        max_tokens=512,
        position_embedding_type="absolute",
        has_pooler=True,
        device="cpu",
    )
    assert re.search(case.message, vectors_mismatch(vectors, bundled))
    assert vectors_mismatch(_saved(), bundled) is None  # the bundled model's own shape, under its name


@pytest.mark.parametrize("case", VECTORS, ids=_ids(VECTORS))
def test_saved_vectors_in_the_app(case, tmp_path, monkeypatch):
    """The Embeddings page given the file (uploaded) or the shard folder (under the data directory):
    the message, no exception; vectors from another model are drawn without the typed sentences."""
    from unittest import mock

    import streamlit as st

    from ui.embeddings import SAVED
    from ui.vectors import DATA_DIR_ENV, FILE, FOLDER_PATH

    path = case.payload(tmp_path)
    state = {"embeddings.corpus.source": SAVED, "embeddings.method": "PCA"}
    real = st.file_uploader

    class Upload:
        name = path.name

        def getvalue(self) -> bytes:
            return path.read_bytes()

    def uploader(*args, **kwargs):  # AppTest cannot upload: the uploader hands back the file
        real(*args, **kwargs)
        return Upload()

    if path.is_dir():
        monkeypatch.setenv(DATA_DIR_ENV, str(path.parent))
        state |= {"embeddings.corpus.vectors.kind": FOLDER_PATH, "embeddings.corpus.vectors.path": path.name}
    else:
        state |= {"embeddings.corpus.vectors.kind": FILE}
    at = AppTest.from_file(APP, default_timeout=240)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page("pages/3_Embeddings.py")
    with mock.patch.object(st, "file_uploader", uploader):
        at.run()
    assert not at.exception, at.exception
    shown = re.sub(r"\\(.)", r"\1", _shown(at))  # Markdown escapes undone
    assert re.search(case.message, shown), shown[:2000]
    if case.outcome == "refused":
        assert not at.get("plotly_chart")
    else:  # the saved corpus is drawn; the typed sentences are not placed among another model's vectors
        names = {
            t.get("name") for chart in at.get("plotly_chart") for t in json.loads(chart.proto.spec)["data"]
        }
        assert names and "your sentences" not in names


# ------------------------------------------------------------------------------------------
# "What flows into [CLS]?": context mixing and attributions
# ------------------------------------------------------------------------------------------

MIXING_PAGE = "pages/7_What_flows_in.py"


@pytest.fixture(scope="module")
def mixing_model_dirs(tiny_mpnet_dir):  # noqa: F811
    return {"mpnet": tiny_mpnet_dir}


def _mixing_model(case: Case, dirs) -> str | None:
    model = case.payload.get("model")
    return str(dirs[model[4:]]) if model else None


@pytest.mark.parametrize("case", MIXING, ids=_ids(MIXING))
def test_mixing_input_in_the_library(case, encoder, mixing_model_dirs):
    from clsviz import attribution, mixing

    p = case.payload
    model = _mixing_model(case, mixing_model_dirs)
    enc = load_encoder(model) if model else encoder
    t = trace(enc, p["text"], max_tokens=p.get("max_tokens", MAX_TOKENS))
    # Raw attention is always there: the mean over heads of the trace's own weights.
    np.testing.assert_allclose(
        mixing.contributions(enc, t, "attention"), t.attentions.mean(axis=1), atol=1e-6
    )
    if "other" in p:
        with pytest.raises(attribution.AttributionError, match=case.message) as info:
            attribution.attribute(enc, p["text"], other=p["other"])
        assert "Traceback" not in str(info.value) and len(str(info.value)) < 600
        return
    if case.outcome == "refused":
        for method in mixing.METHODS[1:]:
            with pytest.raises(mixing.MixingError, match=case.message):
                mixing.contributions(enc, t, method)
        with pytest.raises(attribution.AttributionError, match=case.message):
            attribution.attribute(enc, p["text"], other="a dog barked")
        return
    # Long inputs: the decomposition in chunks of receiving tokens inside a 64 MiB budget.
    methods = mixing.METHODS if t.seq_len <= 64 else ("alti",)
    for method in methods:
        m = mixing.contributions(enc, t, method, budget=64 * 2**20)
        assert m.shape == (t.num_layers, t.seq_len, t.seq_len) and m.dtype == np.float32, method
        assert np.isfinite(m).all() and (m >= 0).all(), method
        np.testing.assert_allclose(m.sum(axis=-1), 1.0, atol=1e-5, err_msg=method)
    a = attribution.attribute(
        enc, p["text"], other="A dog barked.", method="grad_x_input", max_tokens=t.seq_len
    )
    assert a.scores.shape == (t.seq_len,) and np.isfinite(a.scores).all()


@pytest.mark.parametrize("case", MIXING, ids=_ids(MIXING))
def test_mixing_input_in_the_app(case, mixing_model_dirs):
    p = case.payload
    state = {"clsviz.sentences": p["text"]}
    if "max_tokens" in p:
        state["clsviz.max_tokens"] = p["max_tokens"]
    if "other" in p:
        state["mixing.other"] = p["other"]
    model = _mixing_model(case, mixing_model_dirs)
    if model:
        state.update({"clsviz.model": OTHER_MODEL, "clsviz.custom_model": model})
    at = AppTest.from_file(APP, default_timeout=400)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(MIXING_PAGE)
    at.run()
    assert not at.exception, at.exception
    shown = re.sub(r"\\(.)", r"\1", _shown(at))  # st.error / st.warning escape Markdown characters
    assert "Traceback" not in shown
    if case.message:
        assert re.search(case.message, shown), f"{case.id}: expected a message matching {case.message!r}"
    # The page still draws: the [CLS] row and its rollout beside raw attention, and the block map.
    titles = [
        json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")
    ]
    for title in ("What [CLS] takes in, block by block", "What has reached [CLS] through the blocks"):
        assert title in titles, (case.id, titles)
    assert any(t.startswith("Block ") and t.endswith("token by token") for t in titles), titles
    if case.outcome == "drawn":
        assert not at.error and not at.warning, [m.value for m in (*at.error, *at.warning)]
    at.run()  # the person moves on: the next run is fine too
    assert not at.exception, at.exception


# Pages whose first run needs no corpus, with their sentence picker's key.
LIGHT_PAGES = {
    "pages/1_Attention.py": "attention.sentence",
    "pages/2_Similarity.py": "similarity.sentence",
    "pages/5_Why_first.py": "why_first.sentence",
}


@pytest.mark.parametrize("page_file", list(LIGHT_PAGES), ids=[Path(p).stem for p in LIGHT_PAGES])
def test_all_hostile_lines_on_other_pages(page_file):
    """Every hostile line at once on a page; then the picker walks through them."""
    traced = [
        line
        for c in TEXT
        if c.outcome == "traced" and c.id != "text-many-lines"
        for line in _lines(c.payload)
    ]
    at = _app(**{"clsviz.sentences": "\n".join(traced)})
    at.switch_page(page_file)  # pages run from the entry file, as in the app
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.get("plotly_chart"), "the page drew nothing"
    picker = at.selectbox(key=LIGHT_PAGES[page_file])
    assert len(picker.options) == len(traced)
    for option in picker.options[1::8]:
        picker.set_value(option).run()
        assert not at.exception, (option, at.exception)
        assert not at.error, (option, [e.value for e in at.error])


# ------------------------------------------------------------------------------------------
# causal tests on [CLS]: too few labelled rows, one class, same source and target, registers
# past the length limit (the tiny random BERT: 2 blocks, a 64-token limit)
# ------------------------------------------------------------------------------------------

CAUSAL_PAGE = "pages/8_Causal_tests.py"
CAUSAL_SENTENCE = "The film was not bad at all."
LABELLED = [
    (f"Sentence {i} is about {'rain' if i % 2 else 'sun'}.", "rain" if i % 2 else "sun") for i in range(12)
]
ONE_CLASS = [
    (f"Every sentence {i} says the same kind of thing.", "" if i % 5 == 0 else "same") for i in range(15)
]


def _causal_calls(enc):
    """scenario -> the library calls that must each refuse it (name, callable)."""
    from clsviz.experiments.interventions import (
        add_registers,
        head_sweep,
        knockout_sweep,
        patch_cls,
        patch_profile,
        patching_sweep,
    )

    few_texts, few_labels = [t for t, _ in LABELLED[:4]], [y for _, y in LABELLED[:4]]
    one_texts, one_labels = [t for t, _ in ONE_CLASS], [y for _, y in ONE_CLASS]
    same = f"  {CAUSAL_SENTENCE}   "  # other characters, the same tokens
    return {
        "too_few": [(f.__name__, lambda f=f: f(enc, few_texts, few_labels)) for f in (knockout_sweep, head_sweep, patching_sweep)],
        "one_class": [(f.__name__, lambda f=f: f(enc, one_texts, one_labels)) for f in (knockout_sweep, head_sweep, patching_sweep)],
        "same_pair": [("patch_cls", lambda: patch_cls(enc, same, CAUSAL_SENTENCE, 1)),
                      ("patch_profile", lambda: patch_profile(enc, CAUSAL_SENTENCE, same))],
        "registers": [("add_registers", lambda: add_registers(enc, "word " * 100, 1))],
    }  # fmt: skip


@pytest.mark.parametrize("case", CAUSAL, ids=_ids(CAUSAL))
def test_causal_input_in_the_library(case, tiny_encoder):
    from clsviz.blocks import InterventionError
    from clsviz.experiments.probe import ProbeError

    calls = _causal_calls(tiny_encoder)[case.payload]
    for name, call in calls:
        with pytest.raises((ProbeError, InterventionError), match=case.message) as info:
            call()
        message = str(info.value)
        assert isinstance(info.value, ValueError), name
        assert "Traceback" not in message and len(message) < 600, (name, message)


def _causal_page(tiny_model_dirs, sentences: str = CAUSAL_SENTENCE) -> AppTest:
    from tests.conftest import open_page
    from ui.state import OTHER

    return open_page(
        CAUSAL_PAGE, sentences, **{"clsviz.model": OTHER, "clsviz.custom_model": str(tiny_model_dirs["bert"])}
    )


def _start_corpus_run(at: AppTest, label: str, texts: int) -> None:
    at.selectbox(key="causal.kind").set_value("knockout").run()
    at.selectbox(key="causal.label.knockout").set_value(label)
    at.number_input(key="causal.texts").set_value(texts).run()
    at.button(key="analysis.causal.knockout.start").click().run()  # the runner's start button of the knockout run


def _upload_one_class(at: AppTest) -> None:
    from ui.corpus import UPLOAD

    at.radio(key="causal.corpus.source").set_value(UPLOAD).run()
    data = _csv([["text", "label"], *[[t, y] for t, y in ONE_CLASS]])
    at.file_uploader(key="causal.corpus.file").set_value(("one_class.csv", data, "text/csv")).run()
    assert not at.exception, at.exception
    _start_corpus_run(at, "label", len(ONE_CLASS))


CAUSAL_PAGE_STEPS = {
    # The demo corpus, three texts for the probe: refused before anything starts.
    "too_few": (CAUSAL_SENTENCE, lambda at: _start_corpus_run(at, "topic", 3)),
    # An upload whose labelled rows all share one label (the blank ones are left out).
    "one_class": (CAUSAL_SENTENCE, _upload_one_class),
    # One typed sentence; the patching source typed as the same sentence with extra spaces.
    "same_pair": (
        CAUSAL_SENTENCE,
        lambda at: at.text_input(key="causal.source_text").set_value(f"  {CAUSAL_SENTENCE} ").run(),
    ),
    # A typed sentence at the tiny model's 64-token limit: no room left for a register.
    "registers": (" ".join(["word"] * 120), lambda at: None),
}


@pytest.mark.parametrize("case", CAUSAL, ids=_ids(CAUSAL))
def test_causal_input_in_the_app(case, tiny_model_dirs):
    sentences, steps = CAUSAL_PAGE_STEPS[case.payload]
    at = _causal_page(tiny_model_dirs, sentences)
    steps(at)
    assert not at.exception, at.exception
    # st.error reads Markdown, so the message arrives with Markdown characters escaped.
    errors = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]
    assert [e for e in errors if re.search(case.message, e)], errors
    assert "Traceback" not in "\n".join(errors)
    # Nothing ran in the background, and the page still draws the other tests on the sentence.
    started = at.session_state["clsviz.jobs"] if "clsviz.jobs" in at.session_state else {}
    assert not [k for k in started if k.startswith("analysis.causal.")], list(started)
    assert len(at.get("plotly_chart")) >= 4
