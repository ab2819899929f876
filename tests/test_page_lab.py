"""The lab page (AppTest): start a pretraining run as a background job, watch it finish, compare the
saved variants side by side; lab models in the model list; pages that need [CLS] on a model
without one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clsviz.lab import excerpt_texts, open_run, pretrain
from tests.conftest import open_page
from tests.test_attention import _arr
from ui import jobs
from ui.state import OTHER

PAGE = "pages/13_Lab.py"
TINY_LAB = dict(layers=2, hidden=32, heads=2, intermediate=64, max_tokens=40, vocab_size=600, batch_size=8)


@pytest.fixture(scope="module")
def lab_home(tmp_path_factory):
    """An empty lab folder and no installed corpus (the shipped excerpt is used), for this module."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("lab-home")
    mp.setenv("CLSVIZ_LAB_DIR", str(home / "lab"))
    mp.setenv("CLSVIZ_CORPORA_DIR", str(home / "corpora"))
    from ui.lab import corpus

    corpus.clear()
    yield home / "lab"
    corpus.clear()
    mp.undo()


def _specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_an_empty_lab_says_how_to_start(lab_home):
    at = open_page(PAGE)
    assert at.title[0].value == "The [CLS] lab: pretrain, then watch [CLS] form"
    assert any("Pride and Prejudice" in c.value for c in at.caption)  # the excerpt, said so
    assert any("No lab model yet" in i.value for i in at.info)
    assert any(b.label == "Start pretraining" for b in at.button)


@pytest.fixture(scope="module")
def finished(lab_home):
    at = open_page(PAGE, timeout=300)
    next(m for m in at.multiselect if m.label == "Variants").set_value(["last+nsp"])
    next(s for s in at.selectbox if s.label == "Model size").set_value("tiny")
    next(n for n in at.number_input if n.label == "Steps per variant").set_value(10)
    next(s for s in at.slider if s.label == "Checkpoints").set_value(2)
    at.run()
    next(b for b in at.button if b.label == "Start pretraining").click()
    at.run()
    assert not at.exception, at.exception
    job = at.session_state["clsviz.jobs"]["analysis.lab.pretrain"]
    assert job.wait(600)
    assert job.status == jobs.DONE, job.error
    at.run()
    assert not at.exception, at.exception
    return at, job


def test_a_run_started_on_the_page_finishes_and_is_shown(finished, lab_home):
    at, job = finished
    (run,) = job.result.runs
    assert run.variant == "last+nsp" and run.folder.parent.parent == lab_home
    assert run.layout["config"]["hidden"] == 32  # the size picked on the page
    saved = open_run(run.folder)  # what the page read back from the folder
    markdown = " ".join(m.value for m in at.markdown)
    assert "last+nsp: 10 steps" in markdown.replace("\\", "")
    titles = {
        s["layout"]["xaxis"]["title"]["text"] for s in _specs(at) if s["layout"].get("xaxis", {}).get("title")
    }
    assert "step" in titles
    probe = next(s for s in _specs(at) if any(d.get("name") == "summary token ([CLS])" for d in s["data"]))
    line = next(d for d in probe["data"] if d.get("name") == "summary token ([CLS])")
    m = saved.metrics
    top = m[(m["metric"] == "probe_cls") & (m["layer"] == 2)].sort_values("step")
    np.testing.assert_allclose(_arr(line["y"]).astype(float), top["value"].round(4), atol=1e-9)
    # The finished model is offered in the sidebar's model list.
    assert str(run.folder) in next(s for s in at.selectbox if s.label == "Model").options


def test_variants_side_by_side(finished, lab_home):
    other = pretrain(excerpt_texts(), summary="none", sentence_objective=None, config=TINY_LAB, steps=3,
                     out=lab_home / "none-mlm", checkpoints=2, threads=1)  # fmt: skip
    at = open_page(PAGE)
    picker = next(m for m in at.multiselect if m.label == "Saved runs")
    assert str(other.folder) in picker.options
    picker.set_value([str(other.folder), str(finished[1].result.runs[0].folder)])
    at.run()
    assert not at.exception, at.exception
    sink = next(s for s in _specs(at) if any(d["type"] == "heatmap" for d in s["data"]))
    titles = [a["text"] for a in sink["layout"]["annotations"]]
    assert titles == ["none+mlm<br>[SEP] (no summary token)", "last+nsp<br>[CLS]"]
    assert any(b.label == "Download CSV" or "CSV" in b.label for b in at.get("download_button"))


def test_pages_that_need_cls_say_so_on_a_model_without_one(lab_home):
    run = pretrain(excerpt_texts(), summary="none", sentence_objective="nsp", config=TINY_LAB, steps=2,
                   out=lab_home / "none-nsp", checkpoints=0, threads=1)  # fmt: skip
    for page in ("pages/1_Attention.py", "pages/7_What_flows_in.py", "pages/9_How_it_learns.py"):
        at = open_page(
            page, sentences="She smiled.", **{"clsviz.model": OTHER, "clsviz.custom_model": str(run.folder)}
        )
        assert any("pretrained without one" in i.value for i in at.info), page
        assert not at.get("plotly_chart")
    at = open_page("app.py", sentences="She smiled.", **{"clsviz.model": str(run.folder)})
    assert any("no summary token" in m.value for m in at.markdown)
    assert any("pretrained without one" in i.value for i in at.info)
