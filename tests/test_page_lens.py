"""AppTest for the tuned-lens block below the Overview and on the Classifier page: a background job
whose figure holds the numbers of a direct run."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from clsviz import load_encoder
from clsviz.corpus import demo_corpus
from clsviz.experiments.lens import compare_lens
from tests.conftest import open_page
from tests.test_attention import _arr
from tests.test_page_why_first import chart_specs
from ui import jobs
from ui.state import OTHER

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lens_line(at, name: str) -> list[float]:
    spec = next(s for s in chart_specs(at) if any(d.get("name") == name for d in s["data"]))
    return _arr(next(d for d in spec["data"] if d["name"] == name)["y"]).astype(float).tolist()


@pytest.mark.parametrize(("page", "kind", "slot", "target"), [
    ("app.py", "model", "overview.lens", "final"),
    ("pages/10_Classifier.py", "classifier", "classifier.tuned_lens", "logits"),
])
def test_lens_block_runs_in_the_background(tiny_model_dirs, tiny_classifier_dirs, page, kind, slot, target):
    folder = (tiny_model_dirs if kind == "model" else tiny_classifier_dirs)["bert"]
    state = {"clsviz.model": OTHER, "clsviz.custom_model": str(folder), "clsviz.sentences": "The film was not bad."}
    if page == "app.py":  # the entry file itself
        at = AppTest.from_file("../app.py", default_timeout=240)
        for k, v in state.items():
            at.session_state[k] = v
        at.run()
        assert not at.exception, at.exception
    else:
        at = open_page(page, state.pop("clsviz.sentences"), **state)
    charts = len(chart_specs(at))
    assert any(s.value == "When is the sentence vector decided?" for s in at.subheader)
    at.button(key=f"analysis.{slot}.start").click().run()
    job = at.session_state["clsviz.jobs"][f"analysis.{slot}"]
    assert job.wait(600)
    at.run()
    assert not at.exception and job.status == jobs.DONE, job.error
    assert len(chart_specs(at)) == charts + 1
    direct = compare_lens(load_encoder(str(folder)), demo_corpus().texts, ("cls", "mean"), target).table
    for pooling in ("cls", "mean"):
        want = direct[(direct["pooling"] == pooling) & (direct["method"] == "tuned")].sort_values("layer")["score"]
        np.testing.assert_allclose(_lens_line(at, f"{pooling} · tuned"), want.round(4), atol=1e-4)
    assert any("tuned lens" in c.value for c in at.caption)
