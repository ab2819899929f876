"""The demo classifier end to end on a tiny random model (the API, the analysis, the command line),
and the app's one model list: the demo classifier and a lab model appear in it and load by folder."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from clsviz import cli, demo_corpus, load_encoder, trace
from clsviz.analyses import run
from clsviz.catalog import MODELS_DIR_ENV, saved_models
from clsviz.encoder import ALLOWED_MODELS_ENV
from clsviz.experiments.demo_classifier import (
    DEMO_LABEL,
    demo_classifier,
    demo_classifier_folder,
    saved_demo_classifier,
)
from clsviz.lab import pretrain
from clsviz.lab.run import LAB_DIR_ENV
from clsviz.progress import Cancelled
from clsviz.provenance import text_digest
from ui import models

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(max_texts=40, epochs=1)
"""A run of seconds on the tiny model: 32 texts trained on, 8 held out."""
TINY_LAB = dict(layers=2, hidden=32, heads=2, intermediate=64, max_tokens=40, vocab_size=600, batch_size=8)


def _weights(encoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}


@pytest.fixture(scope="module")
def made(tiny_encoder, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    before = _weights(tiny_encoder)
    calls = []
    result = demo_classifier(tiny_encoder, root=root, progress=lambda *a: calls.append(a), **SMALL)
    return result, root, before, calls


def test_the_demo_classifier_is_saved_and_loads_with_its_head(made, tiny_encoder):
    result, root, before, calls = made
    assert not result.reused and result.folder == demo_classifier_folder(tiny_encoder.name, root)
    assert saved_demo_classifier(tiny_encoder.name, root) == result.folder
    # Nothing half-written beside it (the save goes through a hidden staging folder, renamed at the end).
    assert [p.name for p in root.iterdir()] == [result.folder.name]
    assert calls, "no progress was reported"
    loaded = load_encoder(str(result.folder))
    assert loaded.classifier is not None
    assert loaded.info.labels == tuple(sorted(set(demo_corpus().labels[DEMO_LABEL])))
    # Its prediction is the checkpoint's own forward pass (loaded here by transformers).
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    text = "The film was not bad at all."
    reference = AutoModelForSequenceClassification.from_pretrained(str(result.folder)).eval()
    batch = AutoTokenizer.from_pretrained(str(result.folder))(text, return_tensors="pt")
    with torch.no_grad():
        logits = reference(**batch).logits[0].numpy()
    from clsviz.heads import classifier_lens

    np.testing.assert_allclose(classifier_lens(loaded, trace(loaded, text))[-1], logits, atol=1e-4)
    # The note says how it was made and which texts it saw (as digests), so probes leave them out.
    note = json.loads((result.folder / "clsviz.json").read_text(encoding="utf-8"))
    assert note["base_model"] == tiny_encoder.name and note["label"] == DEMO_LABEL
    trained = int(result.run.table["train_n"].iloc[0])
    corpus = demo_corpus()
    assert 0 < len(note["training_texts_sha256"]) <= trained
    assert set(note["training_texts_sha256"]) <= {text_digest(t) for t in corpus.texts}
    # The held-out accuracy is said with its 95% interval.
    assert "95% interval" in result.summary()[1]


def test_the_shared_model_is_never_changed(made, tiny_encoder):
    _, _, before, _ = made
    after = _weights(tiny_encoder)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_saved_demo_classifier_is_reused(made, tiny_encoder):
    result, root, _, _ = made
    stamp = (result.folder / "model.safetensors").stat().st_mtime_ns
    again = demo_classifier(tiny_encoder, root=root, **SMALL)
    assert again.reused and again.run is None and again.folder == result.folder
    assert (result.folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert "already there" in again.summary()[0]


def test_a_cancelled_run_leaves_no_folder(tiny_encoder, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        demo_classifier(tiny_encoder, root=tmp_path, cancel=cancel, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_two_folders_of_the_same_name_get_two_demo_classifiers(tmp_path):
    a, b = demo_classifier_folder("/one/place/model", tmp_path), demo_classifier_folder("/another/place/model", tmp_path)
    assert a != b and a.parent == b.parent == tmp_path
    assert a.name.startswith("model-") and a.name.endswith(f"-demo-{DEMO_LABEL}")


def test_the_analysis_gives_the_experiments_numbers(tiny_encoder, tmp_path, monkeypatch, made):
    direct, _, _, _ = made
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    result = run("demo_classifier", tiny_encoder, **SMALL)
    table = result.table()
    assert table["folder"].iloc[0] == str(demo_classifier_folder(tiny_encoder.name, tmp_path))
    np.testing.assert_allclose(table["heldout_accuracy"], direct.run.table["heldout_accuracy"])
    np.testing.assert_allclose(table["frozen_accuracy"], direct.run.table["frozen_accuracy"])
    assert result.figure_keys() == ("finetune.curves",) and result.figures()["finetune.curves"].data
    # Run again: the saved one is reported, nothing is trained.
    again = run("demo_classifier", tiny_encoder, **SMALL)
    assert bool(again.table()["reused"].iloc[0]) and again.figure_keys() == ()


def test_the_command_line_makes_and_then_reuses_it(tiny_model_dirs, tmp_path, capsys):
    args = ["demo-classifier", "--model", str(tiny_model_dirs["bert"]), "--models-dir", str(tmp_path),
            "--max-texts", "40", "--epochs", "1", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    folder = demo_classifier_folder(load_encoder(str(tiny_model_dirs["bert"])).name, tmp_path)
    assert f"Saved:  {folder}" in out and "95% interval" in out
    assert load_encoder(str(folder)).classifier is not None
    assert cli.main(args) == 0
    assert f"Reused: {folder}" in capsys.readouterr().out
    assert cli.main(["demo-classifier", "--models-dir", str(tmp_path / "missing"), "--quiet"]) == 2


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(LAB_DIR_ENV, str(tmp_path / "lab"))
    monkeypatch.delenv(ALLOWED_MODELS_ENV, raising=False)
    (tmp_path / "models").mkdir()
    (tmp_path / "lab").mkdir()
    return tmp_path


def test_the_model_lists_offer_the_demo_classifier(homes, tiny_encoder):
    made = demo_classifier(tiny_encoder, **SMALL)
    folder = str(made.folder)
    assert saved_models() == [made.folder]
    choices = models.model_choices()
    assert folder in choices and choices[-1] == models.OTHER
    assert folder in models.second_model_choices("none")[1:]
    assert models.classifier_choices() == [folder]
    assert models.copies_of(tiny_encoder.name) == [folder]  # the Findings page's fine-tuned copies
    assert f"from {tiny_encoder.name} on '{DEMO_LABEL}'" in models.describe_saved(folder)


def test_the_model_lists_offer_a_lab_model(homes):
    texts = [f"Sentence number {i} is here. It has a second part." for i in range(40)]
    lab_run = pretrain(texts, summary="first", sentence_objective="nsp", config=TINY_LAB, steps=3, seed=0,
                       out=homes / "lab" / "first-nsp", checkpoints=0, threads=1)  # fmt: skip
    folder = str(lab_run.folder)
    assert folder in models.model_choices() and folder in models.second_model_choices("none")
    # Its NSP head is a head to read through the layers: the Classifier page offers it too.
    assert models.classifier_choices() == [folder]
    assert "[CLS] lab" in models.describe_saved(folder) and "NSP" in models.describe_saved(folder)
    # Loading it works as any folder.
    assert load_encoder(folder).info.num_layers == TINY_LAB["layers"]
