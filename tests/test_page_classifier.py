"""The Classifier page and the sidebar's prediction (AppTest), on tiny classifier checkpoints."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from clsviz import load_encoder, trace
from tests.conftest import open_page
from ui.state import OTHER

PAGE = "pages/10_Classifier.py"
SENTENCES = "The film was not bad at all.\nThe cat chased the dog."


def _unescaped(text: str) -> str:
    # Elements that read Markdown receive the text with Markdown characters backslash-escaped.
    return re.sub(r"\\(.)", r"\1", text)


def _open_with(folder, page: str = PAGE, sentences: str = SENTENCES):
    return open_page(page, sentences=sentences, **{"clsviz.model": OTHER, "clsviz.custom_model": str(folder)})


def _reference_probabilities(folder, text: str) -> np.ndarray:
    """Softmax of the checkpoint's own *ForSequenceClassification forward, loaded here."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = AutoTokenizer.from_pretrained(str(folder))(text, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**batch).logits[0].double(), dim=-1).numpy()


def _sidebar_lines(at) -> list[str]:
    return [_unescaped(c.value) for c in at.sidebar.caption if re.match(r"\d+\. ", _unescaped(c.value))]


def test_a_model_without_a_head_explains_how_to_get_one():
    at = open_page(PAGE)
    [info] = [_unescaped(i.value) for i in at.info]
    assert "has no classification head" in info
    assert "save_pretrained()" in info and "ForSequenceClassification" in info
    assert "Could any token do?" in info
    assert not at.error and not at.get("plotly_chart")
    # No prediction in the sidebar for a model without a head.
    assert not _sidebar_lines(at)


def test_the_lens_and_the_mean_lens_are_drawn(tiny_classifier_dirs):
    folder = tiny_classifier_dirs["bert"]
    at = _open_with(folder)
    assert not at.error, [e.value for e in at.error]
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    enc = load_encoder(str(folder))
    t = trace(enc, "The film was not bad at all.")
    expected = _reference_probabilities(folder, t.text)
    # The lens's last point for each label is the model's own probability (checked against the
    # checkpoint's forward pass loaded here).
    import json

    spec = json.loads(charts[0].proto.spec)
    last = {tr["name"]: tr["y"][-1] for tr in spec["data"]}
    labels = enc.info.labels
    assert set(last) == set(labels)
    for i, label in enumerate(labels):
        assert last[label] == pytest.approx(expected[i], abs=1e-3)
    # The settled-layer sentence: the first layer from which the top line stays the final
    # winner, read off the drawn lines here.
    curves = np.array([tr["y"] for tr in spec["data"]]).T  # [L+1, C]
    top = curves.argmax(axis=1)
    settled = len(top) - 1
    while settled > 0 and top[settled - 1] == top[-1]:
        settled -= 1
    winner = spec["data"][int(top[-1])]["name"]
    assert winner == labels[int(np.argmax(expected))]
    sentence = next(_unescaped(m.value) for m in at.markdown if f"'{winner}'" in _unescaped(m.value))
    if settled == 0:
        assert "at every layer" in sentence
    else:
        assert re.search(rf"at layer {settled} of|at the last layer \({settled}\)", sentence), sentence
    captions = " ".join(c.value for c in at.caption)
    assert "never does this" in captions  # the mean lens says the head was never trained on it
    assert "What flows into" in captions  # the pointer to the attribution page
    assert [d.proto.label for d in at.get("download_button")] == ["Download both lenses (CSV)"]


def test_the_sidebar_shows_the_prediction_for_each_sentence(tiny_classifier_dirs):
    folder = tiny_classifier_dirs["roberta"]
    at = _open_with(folder, page="pages/1_Attention.py")
    lines = _sidebar_lines(at)
    assert len(lines) == 2
    enc = load_encoder(str(folder))
    for line, text in zip(lines, SENTENCES.splitlines()):
        probs = _reference_probabilities(folder, text)
        order = np.argsort(-probs, kind="stable")
        shown = re.findall(r"(\w+) (\d+)%", line)
        assert [name for name, _ in shown] == [enc.info.labels[i] for i in order]
        for (_, pct), i in zip(shown, order):
            assert int(pct) == pytest.approx(100 * probs[i], abs=0.51)


def test_a_token_classification_checkpoint_says_what_is_supported(tmp_path, tiny_model_dirs):
    from transformers import AutoTokenizer, BertForTokenClassification

    folder = tmp_path / "ner"
    BertForTokenClassification.from_pretrained(str(tiny_model_dirs["bert"]), num_labels=5).save_pretrained(
        str(folder)
    )
    AutoTokenizer.from_pretrained(str(tiny_model_dirs["bert"])).save_pretrained(str(folder))
    at = _open_with(folder)
    assert not at.error, [e.value for e in at.error]  # the encoder itself loads and works
    [info] = [_unescaped(i.value) for i in at.info]
    assert "has no classification head" in info
    assert "token classification" in info and "ForSequenceClassification" in info
    assert not _sidebar_lines(at)


def test_hostile_labels_and_sentences_stay_text(tmp_path, tiny_model_dirs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.conftest import redraw_head

    labels = {0: "<script>alert(1)</script>", 1: "**bold** [link](http://x)"}
    folder = tmp_path / "hostile-labels"
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_model_dirs["bert"]),
        num_labels=2,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    redraw_head(model, seed=4)
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_model_dirs["bert"])).save_pretrained(str(folder))
    at = _open_with(folder, sentences="<b>bold</b> [CLS] text\n**stars**")
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 2
    lines = _sidebar_lines(at)
    assert len(lines) == 2 and all(labels[0] in line and labels[1] in line for line in lines)
    import json

    names = {tr["name"] for tr in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]}
    assert names == {"&lt;script&gt;alert(1)&lt;/script&gt;", "**bold** [link](http://x)"}


def test_a_regression_head_shows_a_score(tmp_path, tiny_model_dirs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.conftest import redraw_head

    folder = tmp_path / "regression"
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dirs["bert"]), num_labels=1)
    redraw_head(model, seed=6)
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_model_dirs["bert"])).save_pretrained(str(folder))
    at = _open_with(folder)
    assert not at.error, [e.value for e in at.error]
    # The sidebar shows the checkpoint's own score (its forward pass, loaded here).
    reference = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = AutoTokenizer.from_pretrained(str(folder))(SENTENCES.splitlines()[0], return_tensors="pt")
    with torch.no_grad():
        score = float(reference(**batch).logits[0, 0])
    assert _sidebar_lines(at)[0] == f"1. score {score:.3g}"
    [chart] = at.get("plotly_chart")[:1]
    import json

    spec = json.loads(chart.proto.spec)
    assert spec["layout"]["yaxis"]["title"]["text"] == "logit"
    assert spec["data"][0]["y"][-1] == pytest.approx(score, abs=1e-3)
    assert any("gives a score, not a label" in _unescaped(m.value) for m in at.markdown)


@pytest.fixture
def models_home(tmp_path, monkeypatch):
    """An empty models folder and lab folder for one test."""
    from clsviz.catalog import MODELS_DIR_ENV
    from clsviz.lab.run import LAB_DIR_ENV

    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(LAB_DIR_ENV, str(tmp_path / "lab"))
    (tmp_path / "models").mkdir()
    return tmp_path / "models"


def _lens_of(at, folder) -> None:
    """The page now reads ``folder``'s head: both lenses drawn, the last point the model's own probability."""
    import json

    assert not at.exception and not at.error, [e.value for e in at.error]
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    expected = _reference_probabilities(folder, "The film was not bad at all.")
    enc = load_encoder(str(folder))
    last = {tr["name"]: tr["y"][-1] for tr in json.loads(charts[0].proto.spec)["data"]}
    for i, label in enumerate(enc.info.labels):
        assert last[label] == pytest.approx(expected[i], abs=1e-3)


def test_a_saved_classifier_is_offered_and_opens(models_home, tiny_model_dirs, tiny_encoder):
    from clsviz.experiments.demo_classifier import demo_classifier

    made = demo_classifier(tiny_encoder, max_texts=40, epochs=1)
    at = _open_with(tiny_model_dirs["bert"])
    assert not at.exception
    box = next(s for s in at.selectbox if s.label == "Saved classifiers")
    assert list(box.options) == [made.folder.name] and box.value == str(made.folder)
    next(b for b in at.button if b.label == "Open it").click().run()
    _lens_of(at, made.folder)
    assert at.session_state["clsviz.model"] == str(made.folder)  # the sidebar's list offers it by folder


def test_the_demo_classifier_is_made_with_one_click(models_home, tiny_model_dirs):
    from clsviz.experiments.demo_classifier import saved_demo_classifier
    from ui import jobs

    at = _open_with(tiny_model_dirs["bert"])
    assert not any(s.label == "Saved classifiers" for s in at.selectbox)  # nothing saved yet
    next(b for b in at.button if b.label == "Make a demo classifier").click().run()
    assert not at.exception
    job = at.session_state["clsviz.jobs"]["analysis.classifier.demo"]
    assert job.wait(240) and job.status == jobs.DONE, job.error
    at.run()
    assert not at.exception and not at.error
    folder = saved_demo_classifier(load_encoder(str(tiny_model_dirs["bert"])).name)
    assert folder is not None and folder.parent == models_home
    assert any("95% interval" in _unescaped(c.value) for c in at.caption)  # its held-out accuracy, with its interval
    next(b for b in at.button if b.label == "Open the demo classifier").click().run()
    _lens_of(at, folder)
