"""The standalone HTML report: content, escaping, optional sections, and a real offline browser."""

from __future__ import annotations

import html
import re
import shutil
import threading

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from clsviz import report, trace
from clsviz.analyses import Drawn, NotApplicable, analysis
from clsviz.report import build_report, layer_stats, report_sections, write_report

HOSTILE = 'The cat <script>alert(1)</script> sat & "purred" <b>loudly</b>.'


@pytest.fixture(scope="module")
def real_trace(encoder):
    return trace(encoder, HOSTILE)


@pytest.fixture(scope="module")
def real_sections(real_trace, encoder):
    return report_sections(real_trace, encoder)


@pytest.fixture(scope="module")
def real_report(real_trace, encoder, real_sections, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(real_trace, path, encoder, sections=real_sections)
    return path


def test_layer_stats_match_a_direct_computation(tiny_encoder):
    t = trace(tiny_encoder, "the cat chased a dog")
    stats = layer_stats(t)
    assert list(stats["layer"]) == list(range(t.num_layers + 1))
    cls = t.cls_index
    words = [i for i in range(t.seq_len) if not t.special_mask[i]]
    for layer in range(t.num_layers + 1):
        h = t.hidden_states[layer].astype(np.float64)
        mean = h[words].sum(axis=0) / len(words)
        cos = h[cls] @ mean / np.sqrt((h[cls] @ h[cls]) * (mean @ mean))
        row = stats.iloc[layer]
        assert row["cls_norm"] == pytest.approx(np.sqrt(h[cls] @ h[cls]), rel=1e-5)
        assert row["cos_cls_mean"] == pytest.approx(cos, abs=1e-5)
        if layer == 0:
            assert np.isnan(row["attention_to_cls"]) and np.isnan(row["cls_entropy"])
            continue
        a = t.attentions[layer - 1].astype(np.float64)  # [H, T, T]
        received = [a[h_, q, cls] for h_ in range(t.num_heads) for q in range(t.seq_len) if q != cls]
        assert row["attention_to_cls"] == pytest.approx(sum(received) / len(received), rel=1e-5)
        entropies = [-sum(p * np.log(p) for p in a[h_, cls] if p > 0) for h_ in range(t.num_heads)]
        assert row["cls_entropy"] == pytest.approx(np.mean(entropies), rel=1e-4, abs=1e-6)


def test_report_is_self_contained_and_escaped(real_report, real_sections, real_trace):
    doc = real_report.read_text(encoding="utf-8")
    # The user's text never appears as markup, only escaped.
    assert "<script>alert(1)</script>" not in doc
    assert "<b>loudly</b>" not in doc
    assert html.escape(HOSTILE, quote=True) in doc
    # plotly.js is inline exactly once, and nothing is loaded from elsewhere.
    assert not re.search(r"<script[^>]*\bsrc\s*=", doc, re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*['\"]?(https?:)?//", doc, re.I)
    assert len(re.findall(r"/\*\*\s*\* plotly\.js v\d", doc)) == 1
    drawn = [s for s in real_sections if s.figure is not None]
    assert len(drawn) >= 14 and all(s.error is None for s in real_sections)
    assert doc.count("Plotly.newPlot(") == len(drawn)
    for section in real_sections:
        assert f"id='sec-{section.key}'" in doc
    for i in range(len(drawn)):
        assert f'id="clsviz-figure-{i}"' in doc
    # The bundled model has no masked-LM head: that section says so instead of drawing noise.
    (mlm,) = [s for s in real_sections if s.key == "inversion.mlm"]
    assert mlm.figure is None and "no trained masked-LM head" in mlm.note
    assert f"<p class='note'>{html.escape(mlm.note, quote=True)}</p>" in doc
    # Every token is listed (escaped), in order.
    listed = re.findall(r"<span class='tok[^']*' title='position \d+'>(.*?)</span>", doc)
    assert listed == [html.escape(tok, quote=True) for tok in real_trace.tokens]


def test_sections_cover_the_attention_figures_and_need_the_encoder_for_value_norms(real_trace, real_sections):
    keys = [s.key for s in real_sections]
    for key in (
        "overview.tokens",
        "attention.to_cls",
        "attention.entropy",
        "attention.breakdown",
        "attention.cls_row",
        "attention.rollout",
        "attention.matrix",
        "similarity.cls_tokens",
        "similarity.summary",
        "similarity.norms",
        "similarity.massive",
        "similarity.dimension",
    ):
        assert key in keys
    assert len(set(keys)) == len(keys)
    assert all(isinstance(s.figure, go.Figure) for s in real_sections if s.note is None)
    needs_model = {
        "attention.breakdown_value_norm",
        "position.tokens",
        "position.lines",
        "inversion.mlm",
        "mixing.cls_row",
        "mixing.rollout",
        "mixing.block",
        "mixing.compare",
        "attribution.tokens",
        "faithfulness.ranking",
        "faithfulness.curves",
        "interventions.knockout",
        "interventions.patch_profile",
        "interventions.heads",
        "interventions.massive",
        "interventions.registers",
        "dynamics.gradient_flow",
    }
    assert needs_model <= set(keys)
    without_encoder = [s.key for s in report_sections(real_trace)]
    assert set(without_encoder) == set(keys) - needs_model


def test_figures_match_the_trace(real_trace, real_sections):
    by_key = {s.key: s.figure for s in real_sections}
    # The token x token map of the last layer is the mean over heads of the trace's attention.
    z = np.asarray(by_key["attention.matrix"].data[0].z, dtype=np.float64)
    assert np.allclose(z, real_trace.attentions[-1].mean(axis=0), atol=1e-4)
    # The [CLS]-to-token cosines are those of the hidden states.
    h = real_trace.hidden_states.astype(np.float64)
    cls = h[:, real_trace.cls_index, :]
    cos = (h @ cls[:, :, None])[..., 0] / (np.linalg.norm(h, axis=-1) * np.linalg.norm(cls, axis=-1)[:, None])
    assert np.allclose(
        np.asarray(by_key["similarity.cls_tokens"].data[0].z, dtype=np.float64), cos, atol=2e-3
    )
    # The massive dimension is the one of largest |value| relative to its layer's median on [CLS]/[SEP].
    h = real_trace.hidden_states.astype(np.float64)
    medians = np.median(np.abs(h), axis=(1, 2))
    roles = [real_trace.cls_index, real_trace.sep_index]
    ratio = np.abs(h[:, roles, :]) / medians[:, None, None]  # [L + 1, 2, D]
    dim = int(np.unravel_index(np.argmax(ratio), ratio.shape)[2])
    assert np.allclose(
        np.asarray(by_key["similarity.dimension"].data[0].z, dtype=np.float64), h[:, :, dim], atol=2e-3
    )
    # Plotly renders a subset of HTML in labels: the tokens reach it escaped.
    expected = [html.escape(f"{i} {tok}", quote=False) for i, tok in enumerate(real_trace.tokens)]
    assert list(by_key["attention.matrix"].data[0].x) == expected
    assert "<" in "".join(real_trace.tokens) and "&lt;" in "".join(expected)


def test_gradient_flow_section_draws_the_norms(real_trace, real_sections, encoder):
    from clsviz.experiments.dynamics import gradient_flow

    figure = {s.key: s.figure for s in real_sections}["dynamics.gradient_flow"]
    assert [d.type for d in figure.data] == ["heatmap", "heatmap"]
    for panel, pooling in zip(figure.data, ("cls", "mean")):
        norms = gradient_flow(encoder, real_trace.text, pooling, max_tokens=real_trace.seq_len)
        np.testing.assert_allclose(np.asarray(panel.customdata, dtype=np.float64), norms, atol=1e-6)
        z = np.array([[np.nan if v is None else v for v in row] for row in panel.z], dtype=np.float64)
        np.testing.assert_allclose(
            z, np.where(norms > 0, np.log10(np.where(norms > 0, norms, 1)), np.nan), atol=1e-4
        )
    cls_last_row = figure.data[0].z[-1]
    assert cls_last_row[real_trace.cls_index] is not None
    assert all(
        v is None for i, v in enumerate(cls_last_row) if i != real_trace.cls_index
    )  # exact zeros: blank


def test_every_section_and_every_page_figure_is_registered_once():
    """Titles and captions are written once, in the registry: the report's sections and every
    figure a page draws with ui.widgets.show or ui.runner.draw name a registered key."""
    from pathlib import Path

    from clsviz.figures import figure_spec, figure_specs

    keys = [s.key for s in figure_specs()]
    assert len(keys) == len(set(keys)) >= 30
    assert all(s.title and len(s.caption) > 40 for s in figure_specs())
    for key in report.section_keys():
        figure_spec(key)  # raises KeyError when missing
    root = Path(__file__).resolve().parent.parent
    shown = set()
    for page in [root / "app.py", *sorted((root / "pages").glob("*.py"))]:
        text = page.read_text(encoding="utf-8")
        shown |= set(re.findall(r'show\(\s*"([a-z_]+\.[a-z_]+)"', text))
        shown |= set(re.findall(r'runner\.draw\(\s*\w+,\s*"([a-z_]+\.[a-z_]+)"', text))
    assert len(shown) >= 25
    for key in shown:
        figure_spec(key)
    with pytest.raises(KeyError, match="attention.to_cls"):
        figure_spec("attention.nope")


def test_registering_a_key_twice_is_refused():
    from clsviz.figures.registry import register

    with pytest.raises(ValueError, match="registered twice"):
        register("attention.to_cls", lambda: None)


def _declared(monkeypatch, *declarations):
    """Stand-in report analyses (declared for this test only) in place of the real ones."""
    from clsviz.analyses import ANALYSES

    made = []
    for name, inputs, figure_key, function in declarations:
        made.append(analysis(name, title=name, inputs=inputs, figures=(figure_key,), report=True)(function))
    for a in made:
        del ANALYSES[a.name]  # declared only to be handed to the report below
    monkeypatch.setattr(report, "report_analyses", lambda: made)


def test_sections_need_their_inputs(monkeypatch, tiny_encoder):
    t = trace(tiny_encoder, "the cat")
    _declared(
        monkeypatch,
        (
            "test.tokens",
            ("trace",),
            "overview.tokens",
            lambda trace: Drawn({"overview.tokens": (trace,)}, pd.DataFrame()),
        ),
        (
            "test.matrix",
            ("encoder", "trace"),
            "attention.matrix",
            lambda encoder, trace: Drawn(
                {"attention.matrix": (trace.attention(-1), trace.tokens, 2)}, pd.DataFrame()
            ),
        ),
        (
            "test.baseline",
            ("baseline",),
            "similarity.baseline",
            lambda baseline: Drawn({"similarity.baseline": (baseline,)}, pd.DataFrame()),
        ),
    )
    assert [s.key for s in report_sections(t)] == ["overview.tokens"]
    assert [s.key for s in report_sections(t, tiny_encoder)] == ["overview.tokens", "attention.matrix"]
    assert report.section_keys(with_encoder=False, with_baseline=False) == ["overview.tokens"]
    # Titles and captions come from the registry.
    (tokens,) = report_sections(t, only=["overview.tokens"])
    from clsviz.figures import figure_spec

    assert (tokens.title, tokens.caption) == (
        figure_spec("overview.tokens").title,
        figure_spec("overview.tokens").caption,
    )
    doc = build_report(t)
    assert doc.count("Plotly.newPlot(") == 1 and "sec-attention.matrix" not in doc


def test_failing_figures_raise_or_become_notes(monkeypatch, tiny_encoder):
    t = trace(tiny_encoder, "the cat")

    def fail(trace):
        raise ValueError("no luck")

    _declared(monkeypatch, ("test.fail", ("trace",), "overview.tokens", fail))
    with pytest.raises(ValueError, match="no luck"):
        report_sections(t)
    (section,) = report_sections(t, strict=False)
    assert section.figure is None and section.error == "ValueError: no luck"
    doc = build_report(t, strict=False)
    assert "could not be drawn for this text: ValueError: no luck" in doc
    assert "Plotly.newPlot(" not in doc


def test_an_analysis_that_does_not_apply_becomes_a_note(monkeypatch, tiny_encoder):
    t = trace(tiny_encoder, "the cat")

    def not_here(trace):
        raise NotApplicable("no masked-LM head here")

    _declared(monkeypatch, ("test.na", ("trace",), "overview.tokens", not_here))
    (section,) = report_sections(t)  # strict, yet not an error
    assert section.figure is None and section.note == "no masked-LM head here" and section.error is None


def test_only_and_bad_names(tiny_encoder, tmp_path):
    t = trace(tiny_encoder, "the cat")
    assert [s.key for s in report_sections(t, only=["overview.tokens"])] == ["overview.tokens"]
    with pytest.raises(ValueError, match="unknown report section"):
        report_sections(t, only=["nope"])
    with pytest.raises(ValueError, match=r"\.html"):
        write_report(t, tmp_path / "report.pdf")


def test_report_download_button(tiny_model_dirs):
    from streamlit.testing.v1 import AppTest

    def page(model_dir: str) -> None:
        from clsviz import load_encoder, trace
        from ui.report import report_download

        enc = load_encoder(model_dir)
        report_download(trace(enc, "the cat <b>sat</b>"), enc, key="test.report")
        # Without an encoder, the app's cached encoder of the trace's model is used.
        report_download(trace(enc, "the dog"), key="test.report2")

    at = AppTest.from_function(page, args=(str(tiny_model_dirs["bert"]),), default_timeout=120)
    at.run()
    assert not at.exception
    assert len(at.get("download_button")) == 2
    from clsviz import load_encoder
    from ui.report import report_bytes, report_file_name

    enc = load_encoder(str(tiny_model_dirs["bert"]))
    data = report_bytes(trace(enc, "the cat <b>sat</b>"), enc).decode("utf-8")
    assert data.startswith("<!DOCTYPE html>") and "the cat &lt;b&gt;sat&lt;/b&gt;" in data
    assert "id='sec-attention.breakdown_value_norm'" in data and "could not be drawn" not in data

    class _T:
        text = "The cat <b>sat</b> / ../../etc"

    assert report_file_name(_T()) == "clsviz-report-the-cat-b-sat-b-etc.html"


def _render(chromium, report, drawn, attempted, errors, dialogs):
    """Open the report in headless Chromium with every non-file request blocked."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
            ],
        )
        try:
            page = browser.new_page()

            def route(r):
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    attempted.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(report.as_uri())
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {drawn}", timeout=90_000
            )
            plots = page.evaluate(
                "Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => ({id: d.id, "
                "traces: (d.data || []).length, svg: d.querySelectorAll('.main-svg').length, "
                "w: d.getBoundingClientRect().width, h: d.getBoundingClientRect().height}))"
            )
            shown_text = page.locator("blockquote").inner_text()
        finally:
            browser.close()
    return plots, shown_text


@pytest.mark.browser
def test_report_renders_offline_in_chromium(real_report, real_sections, real_trace):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip(
            "chromium not installed (Debian package 'chromium'; scripts/ensure-chromium.sh installs it)"
        )
    shown = [s for s in real_sections if s.figure is not None]
    drawn = len(shown)
    attempted, errors, dialogs = [], [], []
    out: dict = {}

    def look() -> None:
        # Own thread: the browser tests' session-wide Playwright keeps an asyncio loop in the
        # main thread, and the sync API refuses to start inside a running loop.
        try:
            out["plots"], out["text"] = _render(chromium, real_report, drawn, attempted, errors, dialogs)
        except BaseException as exc:  # re-raised in the test thread below
            out["error"] = exc

    worker = threading.Thread(target=look)
    worker.start()
    worker.join(300)
    assert not worker.is_alive(), "the report did not render within 5 minutes"
    if "error" in out:
        raise out["error"]
    plots, shown_text = out["plots"], out["text"]
    assert [p_["id"] for p_ in plots] == [f"clsviz-figure-{i}" for i in range(drawn)]
    for plot, section in zip(plots, shown):
        assert plot["traces"] == len(section.figure.data) > 0
        assert plot["svg"] > 0 and plot["w"] > 100 and plot["h"] > 100
    assert shown_text == HOSTILE  # shown literally, not run
    assert dialogs == []
    assert attempted == [], f"the report tried to load {attempted}"
    assert errors == []


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "electra", "albert"])
def test_every_section_draws_for_other_families(tiny_model_dirs, kind):
    from clsviz import load_encoder

    enc = load_encoder(str(tiny_model_dirs[kind]))
    t = trace(enc, "the cat chased a dog")
    sections = report_sections(t, enc)  # strict: any failure raises
    keys = {s.key for s in sections}
    assert {
        "overview.tokens",
        "attention.to_cls",
        "attention.rollout",
        "attention.breakdown_value_norm",
        "position.lines",
    } <= keys
    doc = build_report(t, enc, sections=sections)
    assert doc.count("Plotly.newPlot(") == sum(s.figure is not None for s in sections) >= len(sections) - 1
    assert f"<code>{html.escape(enc.info.cls_token)}</code>" in doc


def test_baseline_adds_the_anisotropy_reference(tiny_encoder):
    from clsviz.baseline import measure_baseline

    texts = [
        "the cat chased a dog",
        "why is the token always first",
        "a model of attention",
        "the dog is first",
        "sentence layer model",
        "a cat and a dog",
    ]
    baseline = measure_baseline(tiny_encoder, texts=texts, sample=len(texts))
    t = trace(tiny_encoder, "the cat chased a dog")
    plain = {s.key: s for s in report_sections(t, tiny_encoder)}
    with_baseline = {s.key: s for s in report_sections(t, tiny_encoder, baseline)}
    assert "similarity.baseline" not in plain
    assert set(with_baseline) == set(plain) | {"similarity.baseline"}
    assert len(with_baseline["similarity.summary"].figure.data) > len(plain["similarity.summary"].figure.data)
    reference = baseline.reference("cls_mean_content")[0]
    drawn = [
        np.asarray(tr.y, dtype=float)
        for tr in with_baseline["similarity.summary"].figure.data
        if tr.y is not None
    ]
    assert any(len(y) == len(reference) and np.allclose(y, reference, atol=1e-3) for y in drawn)


def test_mlm_head_reading_matches_the_head(tmp_path):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from clsviz import load_encoder
    from clsviz.encoder import bundled_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertForMaskedLM(config).save_pretrained(str(tmp_path))
    tokenizer.save_pretrained(str(tmp_path))
    saved = BertForMaskedLM.from_pretrained(str(tmp_path)).eval()

    enc = load_encoder(str(tmp_path))
    t = trace(enc, "the cat chased a dog")
    (section,) = report_sections(t, enc, only=["inversion.mlm"])
    assert section.note is None and isinstance(section.figure, go.Figure)
    with torch.no_grad():
        logits = saved.cls(torch.as_tensor(t.hidden_states[:, t.cls_index]))
    best = tokenizer.convert_ids_to_tokens(logits.argmax(dim=-1).tolist())
    heat = section.figure.data[0]
    assert [row[0] for row in heat.text] == [html.escape(tok, quote=False) for tok in best]


def test_result_sections_carry_figures_and_sentences(tiny_encoder):
    """A corpus analysis (the tuned lens) drawn as report sections: its figure, its summary
    sentences under it, escaped in the HTML."""
    from clsviz.analyses import run
    from clsviz.corpus import demo_corpus

    result = run("lens.tuned", tiny_encoder, list(demo_corpus().texts[:30]))
    sections = report.result_sections(result, title="Lens <b>title</b>")
    assert [s.key for s in sections] == ["lens.tuned"]
    assert sections[0].sentences == tuple(result.summary()) and sections[0].figure is not None
    page = report.build_report(trace(tiny_encoder, "the cat"), sections=sections)
    assert "Lens &lt;b&gt;title&lt;/b&gt;" in page
    assert all(html.escape(s, quote=True) in page for s in result.summary())
