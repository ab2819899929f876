"""Hostile control values: widget values a page did not produce itself (set in the session state
by a crafted request or left over from another corpus or model, or put in the URL) and bad
command-line arguments. Each row: a clear message or a quiet correction, no traceback, the page
still serves. Together with tests/test_hostile_input.py's table this is the hostile-input table."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from streamlit.testing.v1 import AppTest

from tests.test_hostile_input import CASES as INPUT_CASES

PAGES = {
    "overview": "app.py",
    "attention": "pages/1_Attention.py",
    "similarity": "pages/2_Similarity.py",
    "embeddings": "pages/3_Embeddings.py",
    "any_token": "pages/4_Any_token.py",
    "why_first": "pages/5_Why_first.py",
    "inversion": "pages/6_Inversion.py",
    "what_flows_in": "pages/7_What_flows_in.py",
    "causal": "pages/8_Causal_tests.py",
    "how_it_learns": "pages/9_How_it_learns.py",
    "classifier": "pages/10_Classifier.py",
    "compare": "pages/11_Compare.py",
    "findings": "pages/12_Findings.py",
}


@dataclass(frozen=True)
class Control:
    """A control value a page receives without having produced it."""

    id: str
    page: str
    state: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)


HOSTILE_HTML = "<img src=x onerror=alert(1)><script>alert(2)</script>"

CONTROLS = [
    Control("layer-above-range", "attention", {"attention.layer": 99}),
    Control("layer-below-range", "attention", {"attention.layer": -4}),
    Control("head-above-range", "attention", {"attention.head": 500}),
    Control("head-is-markup", "attention", {"attention.head": HOSTILE_HTML}),
    Control("toggle-is-text", "attention", {"attention.value_norm": "yes please"}),
    Control("view-unknown", "similarity", {"similarity.view": "bogus"}),
    Control("tab-unknown", "similarity", {"similarity.section": "Nonexistent tab"}),
    Control(
        "massive-layer-above-range",
        "similarity",
        {"similarity.section": "Norms & massive activations", "similarity.massive.layer": 1000},
    ),
    Control(
        "massive-k-negative",
        "similarity",
        {"similarity.section": "Norms & massive activations", "similarity.massive.k": -5},
    ),
    Control("embedding-layer-huge", "embeddings", {"embeddings.layer": 10**9}),
    Control("projection-unknown", "embeddings", {"embeddings.method": "TSNE"}),
    Control("third-panel-bad-token", "embeddings", {"embeddings.third": "token:-1"}),
    Control("token-k-negative", "embeddings", {"embeddings.third": "token:K", "embeddings.k": -3}),
    Control("label-not-a-column", "embeddings", {"embeddings.label": "no such label"}),
    Control("folds-one", "any_token", {"any_token.folds": 1}),
    Control("folds-huge", "any_token", {"any_token.folds": 99}),
    Control("probe-k-negative", "any_token", {"any_token.k": -1}),
    Control("probe-label-markup", "any_token", {"any_token.label": HOSTILE_HTML}),
    Control("probe-texts-zero", "any_token", {"any_token.max_texts": 0}),
    Control("finetune-epochs-huge", "how_it_learns", {"how_it_learns.epochs": 10**6}),
    Control("finetune-poolings-unknown", "how_it_learns", {"how_it_learns.poolings": ["cls", HOSTILE_HTML]}),
    Control("finetune-label-unknown", "how_it_learns", {"how_it_learns.label": "no such label"}),
    Control("finetune-texts-negative", "how_it_learns", {"how_it_learns.texts": -100}),
    Control("finetune-checkpoints-zero", "how_it_learns", {"how_it_learns.checkpoints": 0}),
    Control(
        "finetune-flow-sentence-gone",
        "how_it_learns",
        {"how_it_learns.flow_text": "a sentence no longer typed"},
    ),
    Control(
        "finetune-jobs-url-garbage", "how_it_learns", query={"jobs": "analysis.how_it_learns.finetune:" + HOSTILE_HTML}
    ),
    Control("shift-negative", "why_first", {"why_first.shift": -5}),
    Control("shift-huge", "why_first", {"why_first.shift": 10**9}),
    Control("replacement-markup", "why_first", {"why_first.word": HOSTILE_HTML}),
    Control("replacement-empty", "why_first", {"why_first.word": ""}),
    Control("variants-unknown", "why_first", {"why_first.variants": ["bogus", "standard"]}),
    Control("inversion-layer-above-range", "inversion", {"inversion.layer": 42}),
    Control("neighbours-k-zero", "inversion", {"inversion.k": 0}),
    Control("vocabulary-huge", "inversion", {"inversion.section": "Bag of words", "inversion.vocab": 10**6}),
    Control("ladder-steps-negative", "inversion", {"inversion.section": "Trained inverter", "inversion.ladder.steps": -5}),
    Control("ladder-layers-unknown", "inversion", {"inversion.section": "Trained inverter",
                                                   "inversion.ladder.layers": "most"}),
    Control("ladder-corrections-huge", "inversion", {"inversion.section": "Trained inverter",
                                                     "inversion.ladder.corrections": 10**9}),
    Control("mixing-measure-unknown", "what_flows_in", {"mixing.method": "bogus"}),
    Control("mixing-block-above-range", "what_flows_in", {"mixing.block": 99}),
    Control("mixing-block-not-a-number", "what_flows_in", {"mixing.block": HOSTILE_HTML}),
    Control(
        "attribution-steps-negative",
        "what_flows_in",
        {"mixing.attr_method": "integrated_gradients", "mixing.steps": -8},
    ),
    Control("attribution-target-unknown", "what_flows_in", {"mixing.target": "classifier"}),
    Control(
        "attribution-other-markup",
        "what_flows_in",
        {"mixing.target": "similarity", "mixing.other": HOSTILE_HTML},
    ),
    Control("scoreboard-measures-unknown", "what_flows_in", {"mixing.measures": ["alti", HOSTILE_HTML]}),
    Control("scoreboard-measures-not-a-list", "what_flows_in", {"mixing.measures": "alti"}),
    Control("scoreboard-pooling-unknown", "what_flows_in", {"mixing.pooling": "median"}),
    Control("scoreboard-target-without-a-classifier", "what_flows_in", {"mixing.board_target": "classifier"}),
    Control("causal-source-unknown", "causal", {"causal.source": HOSTILE_HTML}),
    Control(
        "causal-source-text-too-long",
        "causal",
        {"causal.source": "Type another…", "causal.source_text": "x " * 5000},
    ),
    Control("causal-head-mode-unknown", "causal", {"causal.head_mode": "median"}),
    Control("causal-registers-k-huge", "causal", {"causal.registers_k": 10**6}),
    Control("causal-test-unknown", "causal", {"causal.kind": "teleport"}),
    Control("causal-texts-text", "causal", {"causal.texts": "all of them"}),
    Control("causal-folds-one", "causal", {"causal.folds": 1}),
    Control("causal-pairs-negative", "causal", {"causal.kind": "patching", "causal.pairs": -3}),
    Control(
        "classifier-sentence-gone", "classifier", {"classifier.sentence": "9. a sentence no longer typed"}
    ),
    Control("compare-model-markup", "compare", {"compare.model_b": HOSTILE_HTML}),
    Control("compare-texts-huge", "compare", {"compare.texts": 10**9}),
    Control("compare-readings-unknown", "compare", {"compare.readings": ["cls", "everything"]}),
    Control("compare-tab-unknown", "compare", {"compare.section": HOSTILE_HTML}),
    Control("findings-jobs-url-garbage", "findings", query={"jobs": "findings.check:" + HOSTILE_HTML}),
    Control("max-tokens-zero", "overview", {"clsviz.max_tokens": 0}),
    Control("max-tokens-huge", "attention", {"clsviz.max_tokens": 10**6}),
    Control("max-tokens-text", "overview", {"clsviz.max_tokens": "lots"}),
    Control("sentences-not-text", "overview", {"clsviz.sentences": 12345}),
    Control("model-markup", "overview", {"clsviz.model": HOSTILE_HTML}),
    Control("jobs-url-path", "any_token", query={"jobs": "any_token.finetune:../../etc/passwd"}),
    Control("jobs-url-garbage", "any_token", query={"jobs": "::,,:" + HOSTILE_HTML}),
    Control("jobs-url-unknown-id", "any_token", query={"jobs": "any_token.finetune:0123456789ab"}),
]


def test_the_hostile_table_has_at_least_eighty_cases():
    assert len({c.id for c in CONTROLS}) == len(CONTROLS)
    assert len(INPUT_CASES) + len(CONTROLS) >= 80


def _shown(at: AppTest) -> str:
    return "\n".join(
        str(el.value)
        for kind in ("error", "warning", "info", "caption", "markdown")
        for el in getattr(at, kind)
    )


@pytest.mark.parametrize("case", CONTROLS, ids=[c.id for c in CONTROLS])
def test_a_page_given_a_hostile_control_value_keeps_serving(case):
    at = AppTest.from_file("../app.py", default_timeout=240)
    for key, value in case.state.items():
        at.session_state[key] = value
    for key, value in case.query.items():
        at.query_params[key] = value
    if case.page != "overview":
        at.switch_page(PAGES[case.page])
    at.run()
    assert not at.exception, f"{case.id}: {at.exception}"
    shown = _shown(at)
    assert "Traceback" not in shown
    assert "<script>" not in "".join(m.value for m in at.markdown)
    # The page still serves: it drew something, or told the person what to do.
    assert at.get("plotly_chart") or at.info or at.warning or at.error, f"{case.id}: the page is blank"
    # And the next run (the person moves on) is fine too.
    at.run()
    assert not at.exception, f"{case.id} (second run): {at.exception}"
