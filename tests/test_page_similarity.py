"""AppTest for the Similarity page: default run, views, tabs, one/two sentences, pair uploads."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy import stats
from streamlit.testing.v1 import AppTest

from clsviz import extract, trace
from clsviz.baseline import VIEWS
from tests.conftest import open_page
from tests.test_attention import _arr
from ui.cache import shared_cache
from ui.similarity import BASELINE_SAMPLE_ENV, UPLOAD_PAIRS, read_pairs_upload
from ui.state import DEFAULT_SENTENCES

# A smaller baseline sample keeps the page tests quick; the numbers are checked in test_similarity.
os.environ.setdefault(BASELINE_SAMPLE_ENV, "40")

PAGE = "pages/2_Similarity.py"
PARAPHRASE = "A man is playing a guitar.\nSomeone plays the guitar.\nThe stock market fell sharply today."
SECTIONS = (
    "[CLS] and its tokens",
    "Compare sentences",
    "Benchmark",
    "Norms & massive activations",
    "Baseline",
)


def _open(sentences: str | None = None, **state) -> AppTest:
    return open_page(PAGE, sentences, **state)


def _section(at: AppTest, name: str) -> AppTest:
    at.session_state["similarity.section"] = name
    at.run()
    assert not at.exception, at.exception
    return at


def _specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _csv(rows: list[str]) -> bytes:
    return ("\n".join(["sentence1,sentence2,score", *rows]) + "\n").encode("utf-8")


@pytest.fixture(scope="module")
def page() -> AppTest:
    return _open()


def test_default_run_shows_the_cls_maps(page, encoder):
    assert [r.options for r in page.radio if r.key == "similarity.view"][0] == list(VIEWS)
    specs = _specs(page)
    assert len(specs) == 2
    # The heatmap is cosine([CLS], token) of the first sentence, recomputed here with numpy.
    t = trace(encoder, DEFAULT_SENTENCES.splitlines()[0], max_tokens=128)
    z = _arr(specs[0]["data"][0]["z"]).astype(float)
    h = t.hidden_states.astype(np.float64)
    expected = (h @ h[:, 0, :, None])[..., 0] / (
        np.linalg.norm(h, axis=-1) * np.linalg.norm(h[:, :1], axis=-1)
    )
    assert z == pytest.approx(expected, abs=2e-3)
    assert len(page.get("download_button")) == 2
    assert not page.error and not page.warning


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_and_section_runs(view):
    at = _open(PARAPHRASE)
    at.radio(key="similarity.view").set_value(view).run()
    assert not at.exception
    for name in ("[CLS] and its tokens", "Compare sentences", "Norms & massive activations", "Baseline"):
        _section(at, name)
        assert at.get("plotly_chart"), name
        assert at.get("download_button"), name
    assert not at.error


def test_massive_activations_section(encoder):
    at = _section(_open("The film was not bad at all."), "Norms & massive activations")
    assert len(at.get("plotly_chart")) == 3
    box = at.selectbox(key="similarity.massive.dimension")
    t = trace(encoder, "The film was not bad at all.", max_tokens=128)
    h = t.hidden_states[-1]
    # The first choice is the largest |value| on [CLS] or [SEP] at the last layer.
    candidates = [(abs(h[p, d]), d) for p in (t.cls_index, t.sep_index) for d in range(t.hidden_size)]
    assert box.options[0] == str(max(candidates)[1])
    at.number_input(key="similarity.massive.k").set_value(2).run()
    assert not at.exception and len(at.selectbox(key="similarity.massive.dimension").options) <= 4


def test_one_sentence_asks_for_a_second():
    at = _section(_open("The film was not bad at all."), "Compare sentences")
    assert any("at least two lines" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_two_sentences_are_compared(encoder):
    at = _section(_open("A man is playing a guitar.\nSomeone plays the guitar."), "Compare sentences")
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert len(table) == 1 and list(table.columns[-3:]) == ["cls", "mean", "max"]
    pv = extract(encoder, ["A man is playing a guitar.", "Someone plays the guitar."], ("cls", "mean", "max"))
    for s in ("cls", "mean", "max"):
        v = pv.get(s, -1)
        assert table[s].iloc[0] == pytest.approx(_cos(v[0], v[1]), abs=1e-4)


def test_demo_pairs_benchmark():
    at = _section(_open(), "Benchmark")
    summary = next(i.value for i in at.info if "170 pairs" in i.value).replace("\\", "")
    # Every headline comparison carries its interval; no winner is crowned when they overlap.
    assert "95% interval" in summary and "cls 0." in summary and "mean 0." in summary
    assert len(at.get("plotly_chart")) == 2
    assert len(at.get("download_button")) == 2


def _upload(data: bytes, name: str) -> AppTest:
    at = _section(_open(), "Benchmark")
    at.radio(key="similarity.pairs.source").set_value(UPLOAD_PAIRS).run()
    assert any("Upload a CSV" in i.value for i in at.info)
    at.file_uploader(key="similarity.pairs.file").set_value((name, data, "text/csv")).run()
    assert not at.exception, at.exception
    return at


def test_uploaded_pairs_are_scored(encoder):
    rows = [
        ("A dog runs in the park.", "A dog is running through a park.", 4.8),
        ("A dog runs in the park.", "The recipe needs two eggs.", 0.2),
        ("She sings on stage.", "A woman is singing at a concert.", 4.0),
        ("She sings on stage.", "The stock market fell.", 0.4),
        ("The child reads a book.", "A kid is reading.", 4.2),
        ("The child reads a book.", "Rain is expected tomorrow.", 0.1),
    ]
    at = _upload(_csv([f"{a},{b},{s}" for a, b, s in rows]), "mine.csv")
    summary = next(i.value for i in at.info if "6 pairs" in i.value)
    # The best ρ shown equals the best over layers x poolings, recomputed with scipy.
    texts = list(dict.fromkeys([r[0] for r in rows] + [r[1] for r in rows]))
    pv = extract(encoder, texts, ("cls", "mean", "max"))
    where = {t: i for i, t in enumerate(texts)}
    best = -2.0
    for s in ("cls", "mean", "max"):
        for layer in range(encoder.info.num_layers + 1):
            v = pv.get(s, layer)
            cos = [_cos(v[where[a]], v[where[b]]) for a, b, _ in rows]
            if np.ptp(cos) > 1e-6:  # [CLS] at layer 0 is one vector for all texts: no ranking
                best = max(best, stats.spearmanr(cos, [r[2] for r in rows]).statistic)
    assert f"(ρ = {best:.3f}," in summary
    assert len(at.get("plotly_chart")) == 2


def test_bad_pairs_file_names_the_rows():
    data = _csv(
        ["A cat sleeps.,A cat is asleep.,4.5", "A dog barks.,,3", "Rain falls.,It rains.,high", "x,y,1"]
    )
    at = _upload(data, "bad.csv")
    messages = [e.value for e in at.error]
    assert len(messages) == 1
    assert "3" in messages[0] and "4" in messages[0] and "not a number" in messages[0]
    assert not at.get("plotly_chart")
    # The helper behind the page says the same to a caller.
    pairs, problem = read_pairs_upload(data, "bad.csv")
    assert pairs is None and "not a number" in problem and "empty sentence" in problem


def test_too_few_pairs_is_explained():
    pairs, problem = read_pairs_upload(_csv(["a,b,1", "c,d,2"]), "two.csv")
    assert pairs is None and "at least 3" in problem


def test_page_works_without_a_baseline(monkeypatch):
    import ui.similarity as ui_similarity

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    shared_cache().clear()
    monkeypatch.setattr(ui_similarity, "measure_baseline", broken)
    try:
        at = _open(PARAPHRASE, **{"similarity.view": "centred"})
        assert any("out of memory" in w.value and "Only raw cosines" in w.value for w in at.warning)
        assert at.radio(key="similarity.view").options == ["raw"]
        assert len(at.get("plotly_chart")) == 2
        for name in ("Compare sentences", "Baseline"):
            _section(at, name)
        assert any("No baseline" in i.value for i in at.info)
    finally:
        shared_cache().clear()  # the next page run measures a real baseline again
