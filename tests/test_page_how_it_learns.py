"""The "How does [CLS] learn?" page (AppTest): gradient flow of a typed sentence, fine-tuning in the
background with its checkpoints, the moved tokens and saving the classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clsviz import load_encoder
from clsviz.catalog import MODELS_DIR_ENV
from clsviz.experiments.dynamics import gradient_flow
from tests.conftest import open_page
from tests.test_attention import _arr
from ui import jobs
from ui.state import OTHER

PAGE = "pages/9_How_it_learns.py"
SENTENCE = "The film was not bad at all."
JOB = "analysis.how_it_learns.finetune"  # the runner's job key (analysis.<slot>)


def _specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_gradient_flow_of_the_typed_sentence(encoder):
    at = open_page(PAGE, sentences=SENTENCE, timeout=180)
    assert at.title[0].value == "How does [CLS] learn?"
    spec = _specs(at)[0]
    panels = [d for d in spec["data"] if d["type"] == "heatmap"]
    assert len(panels) == 2
    for panel, pooling in zip(panels, ("cls", "mean")):
        expected = gradient_flow(encoder, SENTENCE, pooling, max_tokens=128)
        np.testing.assert_allclose(_arr(panel["customdata"]).astype(float), expected, atol=1e-6)
    assert any("zero everywhere except at [CLS]" in c.value for c in at.caption)
    assert any(b.label == "Start fine-tuning" for b in at.button)


def test_hostile_sentence_is_shown_as_text():
    at = open_page(PAGE, sentences="<b>bold</b> **stars** [link](http://x)", timeout=180)
    spec = _specs(at)[0]
    ticks = spec["data"][0]["x"]
    assert any("&lt;" in t for t in ticks) and not any("<b>" in t for t in ticks)


@pytest.fixture(scope="module")
def finished(tiny_model_dirs, tmp_path_factory):
    at = open_page(PAGE, sentences=SENTENCE, timeout=240,
                   **{"clsviz.model": OTHER, "clsviz.custom_model": str(tiny_model_dirs["bert"])})  # fmt: skip
    next(s for s in at.selectbox if s.label == "Label to learn").set_value("sentiment")
    next(m for m in at.multiselect if m.label == "Poolings").set_value(
        ["cls", "mean", "cls_head", "cls_last", "fresh_middle"]
    )
    next(s for s in at.slider if s.label == "Epochs").set_value(1)
    next(s for s in at.slider if s.label == "Checkpoints").set_value(2)
    next(n for n in at.number_input if n.label == "Texts").set_value(30)
    at.run()
    _button(at, "Start fine-tuning").click()
    at.run()
    assert not at.exception, at.exception
    job = at.session_state["clsviz.jobs"][JOB]
    assert job.wait(300)
    at.run()
    assert not at.exception, at.exception
    assert job.status == jobs.DONE, job.error
    return at, job.result.run  # the finetune.watch result holds the experiment's run


def test_finetune_runs_and_shows_every_view(finished):
    at, result = finished
    assert list(result.table["pooling"]) == ["cls", "mean", "cls_head", "cls_last", "fresh_middle"]
    assert int(result.table["train_n"].iloc[0] + result.table["heldout_n"].iloc[0]) == 30
    assert result.flow_text == SENTENCE
    infos = " ".join(i.value.replace("\\", "") for i in at.info)
    assert "After fine-tuning on 'sentiment'" in infos and "Training on cls for" in infos
    assert "Trained with the same seed, split and budget" in infos
    titles = [s["layout"]["title"]["text"] for s in _specs(at)]
    assert any("What the model state shows at step" in t for t in titles)
    assert any("Gradient flow at step" in t for t in titles)
    assert any("checkpoint by checkpoint" in t for t in titles)
    assert any("Held-out accuracy per pooling" in t for t in titles)


def test_the_checkpoint_slider_redraws_for_that_step(finished):
    at, result = finished
    slider = next(s for s in at.select_slider if s.label == "Checkpoint (training step)")
    steps = sorted(int(s) for s in result.checkpoints["step"].unique())
    assert list(slider.options) == [str(s) for s in steps] and steps[0] == 0
    slider.set_value(0)
    at.run()
    assert not at.exception
    spec = next(
        s for s in _specs(at) if "What the model state shows at step 0" in s["layout"]["title"]["text"]
    )
    cka = [d for d in spec["data"] if d.get("xaxis") == "x4"]
    assert cka and all(np.allclose(_arr(d["y"]), 1.0) for d in cka)  # step 0: every layer equals itself
    flow = next(s for s in _specs(at) if s["layout"]["title"]["text"].startswith("Gradient flow at step 0"))
    assert len([d for d in flow["data"] if d["type"] == "heatmap"]) == 5


def test_saving_the_classifier(finished, tmp_path, monkeypatch):
    at, result = finished
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    box = next(t for t in at.text_input if t.label == "Folder name (in the models folder)")
    box.set_value("../outside")
    _button(at, "Save").click()
    at.run()
    assert not at.exception
    assert any("cannot be a folder name" in e.value for e in at.error)
    assert not (tmp_path.parent / "outside").exists()
    box = next(t for t in at.text_input if t.label == "Folder name (in the models folder)")
    box.set_value("tiny-sentiment")
    _button(at, "Save").click()
    at.run()
    assert not at.exception
    assert any("Saved to" in s.value for s in at.success)
    loaded = load_encoder(str(tmp_path / "tiny-sentiment"))
    assert loaded.classifier is not None and loaded.info.labels == result.classes


def test_unusable_settings_fail_with_a_message(tiny_model_dirs):
    at = open_page(PAGE, sentences=SENTENCE, timeout=240,
                   **{"clsviz.model": OTHER, "clsviz.custom_model": str(tiny_model_dirs["bert"])})  # fmt: skip
    next(s for s in at.selectbox if s.label == "Label to learn").set_value("topic")
    next(n for n in at.number_input if n.label == "Texts").set_value(10)
    at.run()
    _button(at, "Start fine-tuning").click()
    at.run()
    job = at.session_state["clsviz.jobs"][JOB]
    assert job.wait(120)
    at.run()
    assert not at.exception, at.exception
    assert job.status == jobs.FAILED
    errors = [e.value.replace("\\", "") for e in at.error]  # the page escapes Markdown in messages
    assert (
        errors
        and errors[0].startswith("Fine-tuning failed: Only 10 texts for")
        and "Traceback" not in errors[0]
    )
    assert "Add texts or use a label with fewer classes" in errors[0]


def test_a_session_at_its_job_limit_is_told_so_on_the_page(monkeypatch):
    monkeypatch.setattr(jobs, "session_limit", lambda: 0)
    at = open_page(PAGE, sentences=SENTENCE, timeout=180)
    _button(at, "Start fine-tuning").click().run()
    assert not at.exception
    assert any("a session may run 0 at once" in e.value for e in at.error)
    assert JOB not in at.session_state["clsviz.jobs"]
