"""AppTest for the Overview (home) page and the shared sidebar."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from clsviz import trace
from clsviz.narrative import findings


def _run(**state) -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=180)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    return at


def test_default_run_shows_tokens_and_findings():
    at = _run()
    assert not at.exception
    texts = [t.value for t in at.text]
    assert texts[0] == "1. The film was not bad at all."
    assert len(at.get("plotly_chart")) == 3  # one token strip per default sentence
    assert sum("**" in m.value and "?" in m.value for m in at.markdown) >= 4


def test_typing_a_sentence_updates_the_page():
    at = _run()
    at.sidebar.text_area[0].set_value("Paris is lovely in spring.").run()
    assert not at.exception
    assert [t.value for t in at.text][0] == "1. Paris is lovely in spring."
    assert len(at.get("plotly_chart")) == 1


def test_empty_sentence_box_prompts_instead_of_failing():
    at = _run()
    at.sidebar.text_area[0].set_value("   \n  ").run()
    assert not at.exception
    assert any("Type a sentence" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_unreadable_sentence_is_skipped_with_a_warning():
    at = _run()
    at.sidebar.text_area[0].set_value("\u200b\u200b\nA real sentence.").run()
    assert not at.exception
    assert any("Sentence 1 was skipped" in w.value for w in at.warning)
    assert [t.value for t in at.text][0] == "1. A real sentence."


def test_failed_model_shows_error_and_keeps_default():
    at = _run()
    at.sidebar.selectbox[0].set_value("Other (hub id or local folder)…").run()
    at.sidebar.text_input[0].set_value("../../not-a-model").run()
    assert not at.exception
    assert any("Showing the bundled default" in e.value for e in at.error)
    assert len(at.get("plotly_chart")) == 3


def test_html_in_sentences_is_shown_as_text():
    at = _run()
    at.sidebar.text_area[0].set_value("<script>alert(1)</script> <b>bold</b>").run()
    assert not at.exception
    assert [t.value for t in at.text][0] == "1. <script>alert(1)</script> <b>bold</b>"
    assert not any("<script>" in m.value for m in at.markdown)


def test_findings_numbers_are_right(encoder):
    t = trace(encoder, "The film was not bad at all.")
    f = {x.key: x for x in findings(t)}
    content = ~t.special_mask
    mean_last = t.hidden(-1)[content].mean(0)
    expected = mean_last @ t.cls(-1) / (np.linalg.norm(mean_last) * np.linalg.norm(t.cls(-1)))
    assert f["aggregate"].value == pytest.approx(float(expected), abs=1e-5)
    assert f["first"].value == pytest.approx(float(t.attentions[-1].mean(axis=(0, 1))[0]), abs=1e-6)
    p = t.attentions[-1, :, 0, :]
    assert f["learn"].value == pytest.approx(float((-(p * np.log(p))).sum(-1).mean()), abs=1e-4)


def test_offline_the_model_list_offers_only_models_that_can_load(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CLSVIZ_ALLOWED_MODELS", raising=False)
    at = _run()
    options = list(at.sidebar.selectbox(key="sidebar.model").options)
    assert options[0].startswith("all-MiniLM-L6-v2") and options[-1].startswith("Other")
    assert "bert-base-uncased" not in options and "roberta-base" not in options
    note = next(c.value for c in at.sidebar.caption if "Not offered on this machine" in c.value)
    assert "bert-base-uncased" in note and "HF_HUB_OFFLINE" in note
    # A model found in the local cache is offered again.
    import ui.models

    real = ui.models.model_unavailable
    monkeypatch.setattr(
        ui.models, "model_unavailable", lambda name: None if name == "roberta-base" else real(name)
    )
    at.run()
    assert "roberta-base" in list(at.sidebar.selectbox(key="sidebar.model").options)


def test_the_sidebar_describes_the_model_in_use_after_a_failed_switch():
    at = _run()
    at.sidebar.selectbox[0].set_value("Other (hub id or local folder)…").run()
    at.sidebar.text_input[0].set_value("owner/missing-model").run()
    assert any(
        "Could not load owner/missing-model; the bundled model is in use" in c.value
        for c in at.sidebar.caption
    )
    # The reason stays at the top of every page until another model is picked.
    at.switch_page("pages/1_Attention.py").run()
    assert any("owner/missing-model" in e.value for e in at.error)
    at.sidebar.selectbox[0].set_value(at.sidebar.selectbox[0].options[0]).run()
    assert not at.error


def test_the_overview_draws_before_the_baseline_and_then_uses_it(monkeypatch):
    """The first run does not wait for the unrelated-sentence baseline: the findings come with a
    note, the baseline is measured in the background, and the next run sets them against it."""
    import ui.warmup
    from clsviz import load_encoder
    from ui.cache import shared_cache

    encoder = load_encoder()
    assert ui.warmup.wait(encoder, timeout=300)  # work an earlier test's run started has ended
    monkeypatch.setenv("CLSVIZ_WARM_DELAY_S", "0")
    monkeypatch.setenv("CLSVIZ_BASELINE_SAMPLE", "16")
    shared_cache().clear()
    import ui.embeddings

    warmups = []  # UMAP's compilation starts after the baseline, never with the first page
    monkeypatch.setattr(
        ui.embeddings,
        "start_umap_warmup",
        lambda: warmups.append(ui.warmup.ready_baseline(encoder) is not None),
    )
    at = _run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 3
    answers = [t.value for t in at.text]
    assert any("Compare it with the unrelated-sentence baseline" in a for a in answers)
    assert any("Measuring how similar unrelated sentences look" in c.value for c in at.caption)

    assert ui.warmup.wait(encoder, timeout=300)
    assert warmups == [True]
    at.run()
    assert not at.exception
    answers = [t.value for t in at.text]
    assert any("With an unrelated sentence's tokens" in a for a in answers)
    assert not any("Measuring how similar unrelated sentences look" in c.value for c in at.caption)
