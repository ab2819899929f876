"""The Compare page (AppTest): a second model picked, compared, refused, and released."""

from __future__ import annotations

import gc
import json
import re
import weakref

import numpy as np
import pytest

from clsviz import DEFAULT_MODEL, load_encoder, trace
from tests.conftest import open_page
from tests.test_attention import _arr
from ui import holds, jobs
from ui import state as ui_state
from ui.compare import NONE
from ui.state import OTHER

PAGE = "pages/11_Compare.py"
SENTENCE = "the cat chased a dog"
CKA_JOB, CURVES_JOB = "analysis.compare.cka", "analysis.compare.curves"  # the runner's job keys (analysis.<slot>)


def _unescaped(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _open(model_a: str | None = None, **state):
    if model_a is not None:
        state.update({"clsviz.model": OTHER, "clsviz.custom_model": model_a})
    return open_page(PAGE, sentences=SENTENCE, **state)


def _pick_b(at, name: str):
    """Choose ``name`` as the second model: a listed one, or a folder / id typed under Other."""
    box = at.selectbox(key="compare.model_b")
    if name in box.options:
        box.set_value(name).run()
    else:
        box.set_value(OTHER).run()
        at.text_input(key="compare.custom_b").input(name).run()
    assert not at.exception, at.exception
    return at


def _run_job(at, key: str, button: str):
    next(b for b in at.button if b.label == button).click()
    at.run()
    assert not at.exception, at.exception
    job = at.session_state["clsviz.jobs"].get(key)
    if job is not None:  # else it finished at once and the rerun has already read it
        assert job.wait(240)
        assert job.status == jobs.DONE, job.error
        at.run()
        assert not at.exception, at.exception
    assert key not in at.session_state["clsviz.jobs"]  # the finished job let the models go
    _, result, problem = at.session_state[f"{key}.result"]
    assert problem is None, problem
    return result


def _held_as_second(name: str) -> bool:
    return any(role == holds.SECOND for _, role in holds.USES.users(name))


def _spec(chart) -> dict:
    return json.loads(chart.proto.spec)


@pytest.fixture(scope="module")
def perturbed_bert(tiny_model_dirs, tmp_path_factory):
    """The tiny BERT with its second block's query weights changed: same tokenizer and shape."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path_factory.mktemp("perturbed") / "bert"
    model = AutoModel.from_pretrained(str(tiny_model_dirs["bert"]))
    torch.manual_seed(5)
    with torch.no_grad():
        query = model.encoder.layer[1].attention.self.query.weight
        query.add_(torch.randn_like(query))
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_model_dirs["bert"])).save_pretrained(str(folder))
    return folder


def test_no_second_model_at_first():
    at = _open()
    assert any("Pick a second model" in i.value for i in at.info)
    assert not at.error and not at.get("plotly_chart")
    assert at.selectbox(key="compare.model_b").value == NONE


def test_cka_against_a_classifier_over_the_same_encoder(tiny_model_dirs, tiny_classifier_dirs):
    # The tiny classifier was built on the tiny BERT's encoder weights: every layer is the same.
    at = _pick_b(_open(str(tiny_model_dirs["bert"])), str(tiny_classifier_dirs["bert"]))
    assert not at.error, [e.value for e in at.error]
    at.number_input(key="compare.texts").set_value(40).run()
    comparison = _run_job(at, CKA_JOB, "Compare the layers").comparison
    assert comparison.num_texts == 40
    charts = at.get("plotly_chart")
    assert len(charts) == 4  # three heatmaps and the diagonal
    diagonal = _spec(charts[3])["data"]
    assert {tr["name"] for tr in diagonal} == {"token vectors", "[CLS] vectors", "mean vectors"}
    for tr in diagonal:
        # CKA of identical representations is 1 (the [CLS] embedding at layer 0 is undefined).
        values = [v for v in tr["y"] if v is not None]
        assert values and np.allclose(values, 1.0, atol=1e-4), (tr["name"], tr["y"])
    assert any("the same way at every layer" in i.value for i in at.info)
    assert len(at.get("download_button")) == 2
    # A second run with the same settings is read from the shared cache, without a job.
    at.run()
    assert CKA_JOB not in at.session_state["clsviz.jobs"]
    assert len(at.get("plotly_chart")) == 4


def test_attention_change_per_block_and_head(tiny_model_dirs, perturbed_bert):
    at = _pick_b(_open(str(tiny_model_dirs["bert"])), str(perturbed_bert))
    at.session_state["compare.section"] = "Attention around [CLS]"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [chart] = at.get("plotly_chart")
    z = _arr(_spec(chart)["data"][0]["z"]).astype(np.float64)
    # Attention paid to [CLS] by the other tokens, recomputed from the two models' traces.
    a, b = (trace(load_encoder(str(f)), SENTENCE) for f in (tiny_model_dirs["bert"], perturbed_bert))
    expected = b.attentions[:, :, 1:, 0].mean(axis=-1) - a.attentions[:, :, 1:, 0].mean(axis=-1)
    assert z.shape == expected.shape == (2, 4)
    np.testing.assert_allclose(z, expected, atol=1e-4)
    assert np.abs(z[0]).max() < 1e-5 < np.abs(z[1]).max()  # block 1 is untouched, block 2 changed


def test_different_tokenizers_say_so_instead_of_drawing(tiny_model_dirs):
    at = _pick_b(_open(str(tiny_model_dirs["bert"])), str(tiny_model_dirs["roberta"]))
    at.session_state["compare.section"] = "Attention around [CLS]"
    at.run()
    assert not at.exception and not at.error
    assert not at.get("plotly_chart")
    assert any("split this text differently" in _unescaped(i.value) for i in at.info)
    # CKA still compares [CLS] and mean vectors; the token map says why it is missing.
    at.session_state["compare.section"] = "Layer × layer CKA"
    at.run()
    at.number_input(key="compare.texts").set_value(30).run()
    comparison = _run_job(at, CKA_JOB, "Compare the layers").comparison
    assert set(comparison.cka) == {"cls", "mean"} and "tokens" in comparison.skipped
    assert any("No tokens map" in _unescaped(i.value) for i in at.info)
    assert len(at.get("plotly_chart")) == 3


@pytest.mark.parametrize(
    "second, message",
    [
        ("no-such-owner/no-such-model-xyz", r"not in the local model cache|Could not find"),
        ("../../etc/passwd", r"neither an existing local folder nor a valid Hugging Face model id"),
        ("gpt2-like", r"no \[CLS\]-like token"),
    ],
    ids=["unknown-id", "path-traversal", "no-cls-token"],
)
def test_a_second_model_that_fails_leaves_the_first_working(second, message, tmp_path):
    if second == "gpt2-like":
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

        folder = tmp_path / "gpt2"
        GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32)).save_pretrained(
            str(folder)
        )
        raw = Tokenizer(models.WordLevel(vocab={"<|endoftext|>": 0, "the": 1}, unk_token="<|endoftext|>"))
        raw.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>").save_pretrained(str(folder))
        second = str(folder)
    at = _pick_b(_open(), second)
    [error] = [_unescaped(e.value) for e in at.error]
    assert "The second model could not be loaded" in error and re.search(message, error), error
    assert "The sidebar's model keeps working" in error
    assert not _held_as_second(second)  # nothing is held
    at.run()  # a rerun does not try again, and says it once
    assert len(at.error) == 1
    # The first model keeps working on every page.
    at.switch_page("pages/1_Attention.py")
    at.run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) >= 1


def test_the_second_model_is_released_when_deselected(tiny_model_dirs, monkeypatch):
    loads: list[str] = []
    real = ui_state.load_encoder

    def counting(name=None, **kwargs):
        loads.append(name)
        return real(name, **kwargs)

    monkeypatch.setattr(ui_state, "load_encoder", counting)
    name = str(tiny_model_dirs["electra"])
    ui_state.cached_encoder.clear(name)
    at = _pick_b(_open(), name)
    assert not at.error and loads.count(name) == 1
    held = weakref.ref(ui_state.cached_encoder(name))  # a cache hit: no new load
    assert loads.count(name) == 1
    assert _held_as_second(name)
    # Both models stay loaded at once: the sidebar's model is still a cache hit.
    defaults = loads.count(None)
    ui_state.cached_encoder(DEFAULT_MODEL)
    assert loads.count(None) == defaults

    _pick_b(at, NONE)
    assert not _held_as_second(name)
    gc.collect()
    assert held() is None, "the released model is still in memory"
    ui_state.cached_encoder(name)  # evicted, so it loads again
    assert loads.count(name) == 2
    ui_state.cached_encoder.clear(name)


def test_a_model_another_session_uses_is_kept(tiny_model_dirs, monkeypatch):
    loads: list[str] = []
    real = ui_state.load_encoder
    monkeypatch.setattr(
        ui_state, "load_encoder", lambda name=None, **kw: loads.append(name) or real(name, **kw)
    )
    name = str(tiny_model_dirs["albert"])
    ui_state.cached_encoder.clear(name)
    holds.USES.set("another-session", holds.MAIN, name)
    try:
        at = _pick_b(_open(), name)
        assert not at.error and loads.count(name) == 1
        _pick_b(at, NONE)
        ui_state.cached_encoder(name)  # still cached: the other session uses it
        assert loads.count(name) == 1
    finally:
        holds.USES.set("another-session", holds.MAIN, None)
        ui_state.cached_encoder.clear(name)


def test_probe_and_similarity_curves_of_both_models(tiny_model_dirs, tiny_classifier_dirs):
    # Same encoder weights in A and B: the two models' curves must coincide.
    at = _pick_b(_open(str(tiny_model_dirs["bert"])), str(tiny_classifier_dirs["bert"]))
    at.session_state["compare.section"] = "Probe and similarity"
    at.run()
    at.selectbox(key="compare.label").set_value("sentiment").run()
    at.number_input(key="compare.curve_texts").set_value(40).run()
    result = _run_job(at, CURVES_JOB, "Run the probe and the pairs on both").result
    assert not at.error, [e.value for e in at.error]
    assert result.n == 40 and result.pairs > 0
    probe = result.probe.pivot_table(index=["layer", "pooling"], columns="side", values="accuracy_mean")
    np.testing.assert_allclose(probe["A"], probe["B"])
    sts = result.sts.pivot_table(index=["layer", "pooling"], columns="side", values="spearman")
    np.testing.assert_allclose(sts["A"], sts["B"], atol=1e-6)
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    names = [tr["name"] for tr in _spec(charts[0])["data"]]
    assert names == ["A: cls", "A: mean", "B: cls", "B: mean"]


def test_a_probe_that_cannot_run_says_why(tiny_model_dirs):
    at = _pick_b(_open(), str(tiny_model_dirs["bert"]))
    at.session_state["compare.section"] = "Probe and similarity"
    at.run()
    at.selectbox(key="compare.label").set_value("topic").run()
    at.number_input(key="compare.curve_texts").set_value(10).run()  # 7 topics in 10 texts: too few per class
    next(b for b in at.button if b.label == "Run the probe and the pairs on both").click()
    at.run()
    job = at.session_state["clsviz.jobs"].get(CURVES_JOB)
    if job is not None:  # else it failed at once and the rerun has already read it
        assert job.wait(60) and job.status == jobs.FAILED
        at.run()
    assert not at.exception
    [error] = [_unescaped(e.value) for e in at.error]
    assert error.startswith("The computation failed:") and "fewer examples than the 5 folds" in error
    assert CURVES_JOB not in at.session_state["clsviz.jobs"]  # the finished job let the models go
    assert not at.get("plotly_chart")
