"""What a model's files say about its training (clsviz.provenance), and the record a fine-tuned
copy keeps of its training texts so that no probe or score reads them."""

from __future__ import annotations

import json
import shutil

import pytest

from clsviz import load_encoder
from clsviz.corpus import demo_corpus
from clsviz.provenance import RECORD_FILE, held_out, model_profile, text_digest, training_texts


def test_the_bundled_model_is_sentence_tuned_with_mean_pooling(encoder):
    profile = model_profile(encoder)
    assert (profile.training, profile.pooling, profile.family, profile.num_layers) == ("sentence-tuned", "mean", "bert", 6)
    assert "sentence-transformers files" in profile.evidence[0]
    assert "sentence-tuned (mean pooling)" in profile.describe()


@pytest.mark.parametrize("kind, objective", [("bert", "nsp"), ("roberta", "none"), ("albert", "sop"), ("electra", "none")])
def test_a_bare_encoder_is_assumed_pre_trained_with_its_familys_objective(kind, objective, tiny_model_dirs):
    profile = model_profile(load_encoder(str(tiny_model_dirs[kind])))
    assert (profile.training, profile.sentence_objective, profile.summary_position) == ("pre-trained", objective, "first")
    assert "assumed" in profile.evidence[0]


def _copy_with_config(source, target, **changes):
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_the_lab_settings_and_the_pretraining_heads_are_read(tiny_model_dirs, tmp_path):
    lab = _copy_with_config(tiny_model_dirs["bert"], tmp_path / "lab",
                            clsviz_pretraining={"summary_position": "last", "sentence_objective": "none"})
    profile = model_profile(load_encoder(str(lab)))
    assert (profile.training, profile.sentence_objective, profile.summary_position) == ("pre-trained", "none", "last")
    assert "clsviz_pretraining" in profile.evidence[0]
    heads = _copy_with_config(tiny_model_dirs["bert"], tmp_path / "heads", architectures=["BertForPreTraining"])
    profile = model_profile(load_encoder(str(heads)))
    assert (profile.training, profile.sentence_objective) == ("pre-trained", "nsp")
    assert "pre-training heads" in profile.evidence[0]


def test_a_classifier_is_fine_tuned(tiny_classifier_dirs):
    profile = model_profile(load_encoder(str(tiny_classifier_dirs["bert"])))
    assert profile.training == "fine-tuned"


def test_a_fine_tuned_copy_remembers_its_training_texts(encoder, finetuned_classifier_dir):
    texts = demo_corpus().texts
    record = training_texts(load_encoder(str(finetuned_classifier_dir)))
    assert record is not None
    # The fixture fine-tunes on the first 20 demo texts with a 20% held-out split: 16 trained on.
    assert len(record) == 16 and record <= {text_digest(t) for t in texts[:20]}
    assert json.loads((finetuned_classifier_dir / RECORD_FILE).read_text())["training_texts_sha256"] == sorted(record)
    kept = held_out(texts[:40], load_encoder(str(finetuned_classifier_dir)))
    assert kept.removed == 16 and len(kept.texts) == 24 and kept.known
    assert all(text_digest(t) not in record for t in kept.texts)
    assert "16 of 40 texts were left out" in kept.note
    assert training_texts(encoder) is None  # the bundled model keeps no record: it is not fine-tuned
    assert held_out(texts[:5], encoder).note == ""


def test_a_fine_tuned_model_without_a_record_is_said_loudly(tiny_classifier_dirs):
    kept = held_out(["a b c", "d e f"], load_encoder(str(tiny_classifier_dirs["bert"])))
    assert kept.texts == ("a b c", "d e f") and not kept.known
    assert kept.note.startswith("WARNING:") and "keeps no record of its training texts" in kept.note
