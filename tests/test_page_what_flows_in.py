"""AppTest for "What flows into [CLS]?": the mixing maps, attributions as escaped text, value zeroing
and the scoreboard as background jobs, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from clsviz import load_encoder, mixing, trace
from clsviz.figures import safe_text
from tests.conftest import open_page
from tests.test_attention import _arr, tiny_mpnet_dir  # noqa: F401 (fixture)
from ui import jobs
from ui.state import DEFAULT_MAX_TOKENS, OTHER

PAGE = "pages/7_What_flows_in.py"
SENTENCES = "Why is the [CLS] token always first?\nThe <b>film</b> was not bad at all."
CHARTS = (
    "mixing.cls_row",
    "mixing.rollout",
    "mixing.raw",
    "mixing.block_figure",
    "mixing.compare",
    "mixing.attribution",
)


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _run_scoreboard(at: AppTest):
    """Press Run the scoreboard, wait for the background job, rerun the page; the finished job."""
    _button(at, "Run the scoreboard").click()
    at.run()
    job = at.session_state["clsviz.jobs"]["analysis.mixing.scoreboard"]
    assert job.wait(300)
    at.run()
    assert not at.exception and job.status == jobs.DONE, job.error
    return job


@pytest.fixture(scope="module")
def page() -> AppTest:
    return open_page(PAGE, SENTENCES, timeout=400)


def test_default_run_draws_every_map_beside_raw_attention(page, encoder):
    charts = _charts(page)
    assert len(charts) == len(CHARTS)
    labels = [b.proto.label for b in page.get("download_button")]
    assert labels.count("Download an HTML report") == 1 and labels.count("Download the numbers (CSV)") == 3
    # The [CLS] row of ALTI (the default measure) beside raw attention, for the first sentence.
    t = trace(encoder, SENTENCES.splitlines()[0], max_tokens=DEFAULT_MAX_TOKENS)
    alti = mixing.measure(encoder, t, "alti")
    left, right = charts[0]["data"][:2]
    np.testing.assert_allclose(
        _arr(left["z"]).astype(float), t.attentions.mean(axis=1)[:, t.cls_index], atol=1e-4
    )
    np.testing.assert_allclose(_arr(right["z"]).astype(float), alti.row(), atol=1e-4)
    assert left["x"] == [safe_text(f"{i} {tok}") for i, tok in enumerate(t.tokens)]
    assert not page.exception and not page.error


def test_attributions_are_escaped_text(page):
    page.selectbox(key="mixing.sentence").set_value(page.selectbox(key="mixing.sentence").options[1]).run()
    assert not page.exception and not page.error
    tokens = _charts(page)[-1]["data"][0]
    rows = tokens["text"]
    assert len(rows) == 2  # [CLS] and mean pooling, on the same target
    flat = [tok for row in rows for tok in row]
    assert "&lt;" in flat and "<" not in "".join(flat)  # the text's "<b>" shows as text, never as markup
    assert tokens["y"] == ["cls pooling", "mean pooling"]
    # Nothing on the page renders the sentence as markdown/HTML.
    assert all("<b>" not in m.value for m in page.markdown)


def test_value_zeroing_runs_in_the_background_and_says_when_cls_barely_mixes():
    at = open_page(
        PAGE, "Why is the [CLS] token always first?", timeout=400, **{"mixing.method": "value_zeroing"}
    )
    assert any("Value zeroing reruns every block" in i.value for i in at.info)
    assert len(_charts(at)) == 2  # only the side-by-side comparison and the attribution so far
    _button(at, "Compute value zeroing").click()
    at.run()
    job = at.session_state["clsviz.jobs"]["analysis.mixing.value_zeroing"]
    assert job.wait(300)
    at.run()
    assert not at.exception and not at.error and job.status == jobs.DONE, job.error
    assert any("barely mix anything into [CLS]" in i.value for i in at.info)
    raw = next(c for c in _charts(at) if "float32 resolution" in json.dumps(c["layout"]))
    shown = _arr(raw["data"][0]["y"]).astype(float)
    np.testing.assert_allclose(shown, job.result.mixing.raw_magnitude(), rtol=1e-6)


def test_the_scoreboard_runs_and_gives_a_verdict(tiny_model_dirs):
    at = open_page(PAGE, "the cat chased a dog\nwhy is it first", timeout=400,
                   **{"clsviz.model": OTHER, "clsviz.custom_model": str(tiny_model_dirs["bert"])})  # fmt: skip
    at.multiselect(key="mixing.measures").set_value(
        ["attention", "rollout", "alti", "occlusion", "random"]
    ).run()
    job = _run_scoreboard(at)
    # The verdict is decided on the intervals over the sentences, and quotes them.
    verdict = next(i.value for i in at.info if i.value.startswith("On "))
    assert "AOPC" in verdict and "beat the random order" in verdict
    assert ("best predicts" in verdict) == ("is ahead of" in verdict)
    ranking = job.result.figure_table("faithfulness.ranking")
    assert {"aopc_low", "aopc_high", "perturbation"} <= set(ranking.columns)
    titles = [json.dumps(c["layout"].get("title", "")) for c in _charts(at)]
    assert any("Faithfulness scoreboard" in t for t in titles) and any("Deletion curves" in t for t in titles)
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download the scores (CSV)" in labels and "Download the curves (CSV)" in labels


def test_an_empty_sentence_to_compare_with_is_a_message_not_a_traceback(page):
    page.text_input(key="mixing.other").set_value("   ").run()
    assert not page.exception
    assert any("sentence to compare with is empty" in e.value for e in page.error)
    page.text_input(key="mixing.other").set_value("A dog barked.").run()
    assert not page.exception and not page.error


def test_a_single_token_sentence_and_a_model_without_blocks(tiny_mpnet_dir):  # noqa: F811
    at = open_page(PAGE, "Hi", timeout=400)
    assert not at.exception and not at.error and len(_charts(at)) == len(CHARTS)
    at = open_page(PAGE, "the cat sat", timeout=400,
                   **{"clsviz.model": OTHER, "clsviz.custom_model": str(tiny_mpnet_dir)})  # fmt: skip
    assert not at.exception
    assert any("Showing raw attention instead" in w.value and "'mpnet'" in w.value for w in at.warning)
    assert any("'mpnet'" in e.value for e in at.error)  # the attribution says why it cannot run
    assert len(_charts(at)) >= 3
    assert load_encoder(str(tiny_mpnet_dir)).info.model_type == "mpnet"


def test_the_scoreboard_on_the_models_own_classifier(bundled_classifier_dir):
    at = open_page(PAGE, "The film was not bad at all.", timeout=400,
                   **{"clsviz.model": OTHER, "clsviz.custom_model": str(bundled_classifier_dir)})  # fmt: skip
    assert at.selectbox(key="mixing.board_target").options == [
        "a probe's or the classifier's logit",
        "classifier logit",
        "cosine to itself",
    ]
    at.selectbox(key="mixing.board_target").set_value("classifier")
    at.multiselect(key="mixing.measures").set_value(["attention", "occlusion", "random"]).run()
    job = _run_scoreboard(at)
    assert "classifier logit" in job.result.data.target
    assert any(i.value.startswith("On ") and "classifier logit" in i.value for i in at.info)
