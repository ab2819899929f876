"""AppTest for the "Recover the sentence?" page: neighbours, paraphrase recall, bag of words,
the masked-LM head (present and absent), the published-work box, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import ui.corpus
from clsviz import extract, load_encoder, pool, trace
from clsviz.corpus import Corpus, demo_corpus
from clsviz.experiments.inversion import load_mlm_head, mlm_reading
from clsviz.figures import safe_text
from tests.conftest import open_page
from tests.test_attention import _arr
from tests.test_inversion import tiny_mlm_dir  # noqa: F401  (fixture)
from tests.test_page_why_first import chart_specs
from ui.similarity import UPLOAD_PAIRS
from ui.state import DEFAULT_MAX_TOKENS, OTHER

# The sample size is kept per corpus: the demo corpus's key.
SAMPLE_KEY = "inversion.sample." + demo_corpus().content_hash[:16]

PAGE = "pages/6_Inversion.py"
SENTENCE = "The weather was cold and rainy all week."


def _open(**state) -> AppTest:
    return open_page(PAGE, SENTENCE, **state)


def _tiny(folder, **state) -> AppTest:
    return _open(**{"clsviz.model": OTHER, "clsviz.custom_model": str(folder), SAMPLE_KEY: 150, **state})


def test_neighbours_on_the_bundled_model_match_brute_force(encoder):
    at = _open(**{SAMPLE_KEY: 120, "inversion.pairs.source": UPLOAD_PAIRS, "inversion.layer": 4})
    assert not at.error, [e.value for e in at.error]
    (spec,) = chart_specs(at)
    texts = demo_corpus().texts[:120]
    vectors = extract(encoder, texts, ("cls", "mean"))
    t = trace(encoder, SENTENCE, max_tokens=DEFAULT_MAX_TOKENS)
    for panel, pooling, query in ((0, "cls", t.cls(4)), (1, "mean", pool(t, "mean", 4))):
        corpus = vectors.get(pooling, 4)
        sims = corpus @ query / np.linalg.norm(corpus, axis=1) / np.linalg.norm(query)
        top = np.argsort(-sims)[:5]
        bars = spec["data"][panel]
        np.testing.assert_allclose(_arr(bars["x"]).astype(float), np.round(sims[top], 4), atol=2e-4)
        assert [label.split(". ", 1)[1][:20] for label in bars["y"]] == [
            safe_text(texts[i])[:20] for i in top
        ]
    summary = next(m.value for m in at.markdown if m.value.startswith("**For ")).replace("\\", "")
    assert "agree on" in summary
    # At layer 4 every [CLS] is almost one vector: the closest cosine is shown beside the unrelated one.
    assert (
        "two unrelated sentences have 0.99" in summary and "almost the same vector for every input" in summary
    )
    assert len(at.get("download_button")) == 1


def test_recall_bag_of_words_and_published_box_on_a_tiny_model(tiny_model_dirs):
    at = _tiny(tiny_model_dirs["bert"])
    specs = chart_specs(at)
    assert len(specs) == 2  # neighbours and recall@1
    recall = specs[1]
    assert {d["name"] for d in recall["data"]} == {"cls", "mean", "random pick"}
    assert any("queries among" in m.value for m in at.markdown)

    at.session_state["inversion.section"] = "Bag of words"
    at.run()
    assert not at.exception, at.exception
    specs = chart_specs(at)
    assert len(specs) == 3  # F1 per layer and one word chart per pooling
    assert {d["name"] for d in specs[0]["data"]} == {"cls", "mean", "frequent words, no vector"}
    assert any("held-out" in m.value for m in at.markdown)
    assert len(at.get("download_button")) == 2

    at.session_state["inversion.section"] = "What published work shows"
    at.run()
    text = " ".join(m.value for m in at.markdown)
    assert "92 %" in text and "lower bound" in text


def test_masked_lm_head_reading(tiny_mlm_dir):  # noqa: F811
    at = _tiny(tiny_mlm_dir, **{"inversion.section": "Masked-LM head", "inversion.mlm_k": 3})
    (spec,) = chart_specs(at)
    enc = load_encoder(str(tiny_mlm_dir))
    t = trace(enc, SENTENCE, max_tokens=DEFAULT_MAX_TOKENS)
    expected = mlm_reading(load_mlm_head(enc), t.hidden_states[:, t.cls_index], enc.tokenizer, k=3)
    grid = spec["data"][0]
    top = expected[expected["rank"] == 1].sort_values("layer")["token"].map(safe_text).tolist()
    assert [row[0] for row in grid["text"]] == top
    assert any("the head reads" in m.value for m in at.markdown)


def test_no_head_note_for_the_bundled_model():
    at = _open(
        **{SAMPLE_KEY: 60, "inversion.pairs.source": UPLOAD_PAIRS, "inversion.section": "Masked-LM head"}
    )
    assert any("no trained masked-LM head" in i.value for i in at.info)
    assert not chart_specs(at)


def test_identical_sentences_give_a_message(tiny_model_dirs, monkeypatch):
    monkeypatch.setattr(ui.corpus, "demo_corpus", lambda: Corpus(texts=("Same sentence.",) * 25))
    at = _tiny(tiny_model_dirs["bert"])
    assert any("same sentence" in e.value for e in at.error)
    assert not chart_specs(at)


def test_lower_bound_box_is_always_shown(tiny_model_dirs):
    at = _tiny(tiny_model_dirs["bert"], **{"inversion.pairs.source": UPLOAD_PAIRS})
    box = at.info[0].value
    assert "vec2text" in box and "92 %" in box and "lower bound" in box


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "electra", "albert"])
def test_every_tiny_family_runs(tiny_model_dirs, kind):
    at = _tiny(tiny_model_dirs[kind], **{SAMPLE_KEY: 60, "inversion.pairs.source": UPLOAD_PAIRS})
    assert not at.error, [e.value for e in at.error]
    assert len(chart_specs(at)) == 1
    at.session_state["inversion.section"] = "Masked-LM head"
    at.run()
    assert not at.exception, at.exception
    assert any("masked-LM" in i.value for i in at.info)


def test_a_new_corpus_uses_all_its_texts_not_the_last_corpus_sample(tiny_model_dirs):
    at = _tiny(tiny_model_dirs["bert"])
    assert at.number_input(key=SAMPLE_KEY).value == 150
    rows = [
        f"upload sentence number {i} about {'rain' if i % 2 else 'sun'} and {i % 7} boats"
        for i in range(1130)
    ]
    data = ("text\n" + "\n".join(rows) + "\n").encode()
    at.radio(key="inversion.corpus.source").set_value("Upload a file").run()
    at.file_uploader(key="inversion.corpus.file").set_value(("upload.csv", data, "text/csv")).run()
    assert not at.exception, at.exception
    from clsviz.readers import load_corpus

    key = "inversion.sample." + load_corpus(data, "upload.csv").content_hash[:16]
    assert at.number_input(key=key).value == 1130
    assert not [c for c in at.caption if "Using the first" in c.value]


def test_trained_inverter_tab_ladder_and_typed_sentence(tiny_model_dirs):
    """The ladder as a background job (its figure holds the numbers a direct run gives), then the
    two inverters for the chosen layer and what they write back from a typed sentence."""
    from clsviz.experiments.ladder import inversion_ladder
    from ui import jobs

    folder = tiny_model_dirs["bert"]
    at = _tiny(folder, **{SAMPLE_KEY: 60, "inversion.pairs.source": UPLOAD_PAIRS, "inversion.section": "Trained inverter",
                          "inversion.ladder.layers": "last", "inversion.ladder.steps": 50, "inversion.layer": 2})
    assert not chart_specs(at)
    at.button(key="analysis.inversion.ladder.start").click().run()
    job = at.session_state["clsviz.jobs"]["analysis.inversion.ladder"]
    assert job.wait(600)
    at.run()
    assert not at.exception and job.status == jobs.DONE, job.error
    (spec,) = chart_specs(at)
    enc = load_encoder(str(folder))
    direct = inversion_ladder(enc, demo_corpus().texts[:60], layers="last", steps=50).table
    want = direct[(direct["method"] == "inverter") & (direct["pooling"] == "cls") & (direct["metric"] == "token_f1")]
    line = next(d for d in spec["data"] if d["name"] == "cls · inverter" and d["xaxis"] in (None, "x"))
    assert _arr(line["y"]).astype(float).tolist() == pytest.approx(want["estimate"].round(4).tolist(), abs=1e-4)
    assert any("vec2text" in m.value for m in at.markdown)
    frames = [df.value for df in at.dataframe]
    assert any("GTR-base" in set(f.get("model", [])) for f in frames)
    assert any("[CLS]" in f.columns and "reference" in f.columns for f in frames)

    at.button(key="analysis.inversion.inverter.start").click().run()
    pair_job = at.session_state["clsviz.jobs"]["analysis.inversion.inverter"]
    assert pair_job.wait(600)
    at.run()
    at.text_input(key="inversion.typed").set_value("<b>A typed</b> sentence about rain.").run()
    assert not at.exception and pair_job.status == jobs.DONE, pair_job.error
    expected = pair_job.result.recover(enc, ["<b>A typed</b> sentence about rain."])
    shown = [t.value for t in at.text]
    for pooling in ("cls", "mean"):
        output = expected[expected["pooling"] == pooling]["output"].iloc[0]
        assert (output or "(nothing)") in shown
    assert any("token F1" in c.value and "cosine" in c.value for c in at.caption)
