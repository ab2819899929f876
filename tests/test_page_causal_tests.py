"""AppTest for the "Causal tests" page: the five tests on the typed sentence, the corpus runs
in the background (run, cancel), and bad input shown as messages."""

from __future__ import annotations

import threading

import pytest
from streamlit.testing.v1 import AppTest

from clsviz import load_encoder
from clsviz.experiments import interventions as iv
from clsviz.experiments.interventions import knockout_sweep, register_sweep
from tests.conftest import open_page
from ui import jobs
from ui.state import OTHER

PAGE = "pages/8_Causal_tests.py"
SENTENCES = "The film was not bad at all.\nI loved the music of that evening."


def _tiny(tiny_model_dirs, sentences=SENTENCES, **state) -> AppTest:
    return open_page(PAGE, sentences, **{"clsviz.model": OTHER, "clsviz.custom_model": str(tiny_model_dirs["bert"]),
                                         **state})  # fmt: skip


def _plain(text: str) -> str:
    return text.replace("\\", "")


def _job(kind: str) -> str:
    """The session's job key of the corpus run ``kind`` (the runner's ``causal.corpus`` job, one slot per test)."""
    return f"analysis.causal.{kind}"


def _start(kind: str) -> str:
    """The key of the button that starts the corpus run ``kind``."""
    return f"{_job(kind)}.start"


def test_the_five_tests_run_on_the_typed_sentence(encoder):
    at = open_page(PAGE, SENTENCES)
    assert at.title[0].value.startswith("Causal tests")
    assert len(at.get("plotly_chart")) == 5
    assert not at.error
    text = "The film was not bad at all."
    tokens = len(encoder.tokenizer(text)["input_ids"])
    findings = [_plain(i.value) for i in at.info]
    assert knockout_sweep(encoder, [text], max_tokens=tokens).finding in findings
    assert register_sweep(encoder, [text], max_tokens=tokens).finding in findings
    # One CSV per figure, and a second one (the attention table) for the massive and register tests.
    assert len(at.get("download_button")) == 7
    assert any("Rule: A head matters" in c.value for c in at.caption)


def test_same_source_and_target_is_a_message(tiny_model_dirs):
    at = _tiny(tiny_model_dirs, sentences="The film was not bad at all.")
    at.text_input(key="causal.source_text").set_value("The film was not bad at all.").run()
    assert not at.exception
    assert any("same sentence" in e.value for e in at.error)
    assert len(at.get("plotly_chart")) == 4  # the other tests still draw


def test_registers_beyond_the_length_limit_are_a_message(tiny_model_dirs):
    long = " ".join(["word"] * 120)
    at = _tiny(tiny_model_dirs, sentences=long)
    assert not at.exception
    assert any("more than this model's limit of 64" in e.value for e in at.error)
    assert len(at.get("plotly_chart")) == 4


def test_corpus_run_in_the_background_and_its_bad_input(tiny_model_dirs):
    at = _tiny(tiny_model_dirs)
    at.selectbox(key="causal.kind").set_value("knockout").run()
    at.selectbox(key="causal.label.knockout").set_value("topic")
    at.number_input(key="causal.texts").set_value(30).run()
    at.button(key=_start("knockout")).click().run()
    # 30 texts over the 7 topics leave a class with fewer texts than the 5 folds: said, nothing starts.
    assert any("fewer examples than the 5 folds" in e.value for e in at.error)
    assert _job("knockout") not in at.session_state["clsviz.jobs"]
    # The number is sent before the click, as a browser sends it when the field loses focus: the run the click
    # starts must read the label with 3 folds, and its result is shown for exactly those settings.
    at.number_input(key="causal.folds").set_value(3).run()
    at.button(key=_start("knockout")).click().run()
    assert not at.exception
    job = at.session_state["clsviz.jobs"][_job("knockout")]
    assert job.wait(300)
    at.run()
    assert not at.exception
    assert job.status == jobs.DONE, job.error
    assert job.result.sweep.n == 30 and job.result.sweep.label == "topic"
    assert _plain(job.result.finding) in [_plain(i.value) for i in at.info]
    assert len(at.get("plotly_chart")) == 6
    # Three texts cannot be probed with three folds: said before any run starts.
    at.number_input(key="causal.texts").set_value(3).run()
    at.button(key=_start("knockout")).click().run()
    assert any("Only 3 labelled text(s)" in e.value for e in at.error)


def test_cancel_stops_a_running_corpus_run(tiny_model_dirs, monkeypatch):
    real, started = iv.head_sweep, threading.Event()

    def held(*args, progress, cancel, **kwargs):  # the real sweep, once Cancel was pressed
        started.set()
        cancel.wait(60)
        return real(*args, progress=progress, cancel=cancel, **kwargs)

    monkeypatch.setattr(iv, "head_sweep", held)
    at = _tiny(tiny_model_dirs)
    at.selectbox(key="causal.kind").set_value("heads").run()
    at.button(key=_start("heads")).click().run()
    job = at.session_state["clsviz.jobs"][_job("heads")]
    assert started.wait(60) and job.status == jobs.RUNNING
    at.button(key=f"{_job('heads')}.cancel").click().run()
    assert job.wait(120)
    at.run()
    assert not at.exception
    assert job.status == jobs.CANCELLED
    assert any("cancelled" in w.value for w in at.warning)


@pytest.mark.parametrize("kind", ("patching", "massive", "registers"))
def test_other_corpus_runs(tiny_model_dirs, kind):
    at = _tiny(tiny_model_dirs)
    at.selectbox(key="causal.kind").set_value(kind).run()
    if kind == "patching":
        at.selectbox(key="causal.label.patching").set_value("topic")
        at.number_input(key="causal.pairs").set_value(20)
    at.number_input(key="causal.texts").set_value(40).run()
    at.button(key=_start(kind)).click().run()
    job = at.session_state["clsviz.jobs"][_job(kind)]
    assert job.wait(300)
    at.run()
    assert not at.exception and job.status == jobs.DONE, job.error
    assert job.result.sweep.kind == kind
    enc = load_encoder(str(tiny_model_dirs["bert"]))
    assert job.result.sweep.model_name == enc.name


def test_hostile_text_is_only_text(tiny_model_dirs):
    hostile = "<script>alert(1)</script> **[CLS]** [SEP] `x` $y$"
    at = _tiny(tiny_model_dirs, sentences=hostile)
    at.text_input(key="causal.source_text").set_value("<img src=x onerror=alert(2)> [unused0]").run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 5
    assert all("<script>" not in m.value for m in at.markdown)


def test_sentence_runs_show_their_progress(tiny_model_dirs, monkeypatch):
    real, seen = iv.knockout_sweep, []

    def watched(*args, progress=None, **kwargs):
        def report(done, total, message=""):
            seen.append((done, total))
            progress(done, total, message)

        return real(*args, progress=report, **kwargs)

    monkeypatch.setattr(iv, "knockout_sweep", watched)
    at = _tiny(tiny_model_dirs, sentences="A sentence that only this test types, so that it runs afresh.")
    assert not at.exception
    # The page handed the sweep a progress callback, which reached the end; the bar is gone after.
    assert seen and seen[-1][0] == seen[-1][1] and len(seen) > 2
    assert not at.get("progress")
    assert len(at.get("plotly_chart")) == 5
