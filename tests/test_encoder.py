"""load_encoder: the bundled default, local folders, and every way a model is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from clsviz import DEFAULT_MODEL, ModelLoadError, load_encoder
from clsviz.encoder import bundled_model_path


def test_bundled_default_metadata(encoder):
    info = encoder.info
    assert info.name == DEFAULT_MODEL
    assert (info.model_type, info.num_layers, info.num_heads, info.hidden_size) == ("bert", 6, 12, 384)
    assert (info.layers, info.heads, info.dims) == (6, 12, 384)
    assert info.cls_token == "[CLS]" and info.cls_token_id == encoder.tokenizer.cls_token_id
    assert info.sep_token == "[SEP]"
    assert info.has_pooler
    assert info.max_tokens == min(
        encoder.model.config.max_position_embeddings, encoder.tokenizer.model_max_length
    )


def test_eager_view_shares_weights_but_not_attention_kernel(encoder):
    fast, eager = encoder.model, encoder.eager_model
    assert fast is not eager
    for (name, p), (_, q) in zip(fast.named_parameters(), eager.named_parameters(), strict=True):
        assert p.data_ptr() == q.data_ptr(), name
    assert eager.config._attn_implementation == "eager"
    assert fast.config._attn_implementation != "eager"


def test_model_weights_frozen_and_in_eval(encoder):
    assert not encoder.model.training and not encoder.eager_model.training
    assert all(not p.requires_grad for p in encoder.model.parameters())


def test_bundled_model_is_loaded_from_safetensors():
    folder = bundled_model_path()
    assert (folder / "model.safetensors").is_file()


def test_local_folder_loads(tiny_model_dirs):
    enc = load_encoder(str(tiny_model_dirs["electra"]))
    assert enc.info.model_type == "electra"
    assert enc.info.num_layers == 2 and enc.info.hidden_size == 32


@pytest.mark.parametrize(
    "name",
    ["no-such-model-anywhere-123", "someone/does-not-exist"],
)
def test_uncached_hub_id_offline_fails_cleanly(name):
    with pytest.raises(ModelLoadError, match="not in the local model cache|Could not find|not reachable"):
        load_encoder(name)


@pytest.mark.parametrize("name", ["../../etc", "../secrets/model", "/does/not/exist", "a b c", "x/y/z"])
def test_path_tricks_and_malformed_ids_refused(name):
    # "../../etc" resolves to a real folder here: it is refused as "not a saved model" instead.
    with pytest.raises(ModelLoadError, match="neither an existing local folder nor a valid|no config.json"):
        load_encoder(name)


def test_folder_without_config_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_encoder(str(tmp_path))


def test_remote_code_model_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "my-custom-encoder", "auto_map": {"AutoModel": "modeling.MyModel"}})
    )
    (tmp_path / "modeling.py").write_text("raise SystemExit('remote code must never run')\n")
    with pytest.raises(ModelLoadError, match="trust_remote_code|configuration"):
        load_encoder(str(tmp_path))


def test_pickle_only_weights_refused_unless_opted_in(tmp_path, tiny_model_dirs):
    from transformers import AutoTokenizer, BertModel

    src = tiny_model_dirs["bert"]
    model = BertModel.from_pretrained(str(src))
    folder = tmp_path / "pickle-bert"
    model.save_pretrained(str(folder))
    # Replace the safetensors file by a pickle checkpoint, as older uploads ship them.
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(folder))
    assert (folder / "pytorch_model.bin").is_file() and not (folder / "model.safetensors").exists()
    with pytest.raises(ModelLoadError, match="pickle"):
        load_encoder(str(folder))
    enc = load_encoder(str(folder), allow_pickle=True)
    reference = model.embeddings.word_embeddings.weight
    assert torch.equal(enc.model.embeddings.word_embeddings.weight, reference)


def test_model_without_cls_token_refused(tmp_path, tiny_model_dirs):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    folder = tmp_path / "gpt2"
    GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32)).save_pretrained(
        str(folder)
    )
    vocab = {w: i for i, w in enumerate(["<|endoftext|>", "the", "cat", "sat"])}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>").save_pretrained(str(folder))
    with pytest.raises(ModelLoadError, match=r"no \[CLS\]-like token"):
        load_encoder(str(folder))


def test_allow_list_restricts_models(monkeypatch, tiny_model_dirs):
    monkeypatch.setenv("CLSVIZ_ALLOWED_MODELS", "bert-base-uncased")
    with pytest.raises(ModelLoadError, match="only allows"):
        load_encoder(str(tiny_model_dirs["bert"]))
    assert load_encoder().info.name == DEFAULT_MODEL


def test_untrained_pooler_is_dropped(tiny_model_dirs):
    # The tiny RoBERTa was saved without pooler weights: a random pooler must not appear.
    enc = load_encoder(str(tiny_model_dirs["roberta"]))
    assert enc.info.has_pooler is False


# --- fine-tuned heads --------------------------------------------------------------------------
def _with_other_head(kind: str, base_folder, folder):
    from transformers import AutoTokenizer, BertForQuestionAnswering, BertForTokenClassification

    cls = {"token": BertForTokenClassification, "qa": BertForQuestionAnswering}[kind]
    cls.from_pretrained(str(base_folder), num_labels=2).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(base_folder)).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("kind, words", [("token", "token classification"), ("qa", "question answering")])
def test_other_heads_load_as_plain_encoders_with_a_note(tmp_path, tiny_model_dirs, kind, words):
    from clsviz import trace
    from clsviz.heads import NoClassifierError, classifier_lens

    enc = load_encoder(str(_with_other_head(kind, tiny_model_dirs["bert"], tmp_path / kind)))
    assert enc.classifier is None and enc.info.labels == () and enc.info.head_pooling is None
    [note] = enc.info.notes
    assert words in note and "ForSequenceClassification" in note
    tr = trace(enc, "the cat chased a dog")  # the encoder itself works as before
    with pytest.raises(NoClassifierError, match=words):
        classifier_lens(enc, tr)


def test_classifier_without_trained_head_loads_its_encoder(tmp_path, tiny_model_dirs):
    # A config that names a classifier, over weights that hold only the encoder.
    folder = tmp_path / "untrained"
    shutil.copytree(tiny_model_dirs["bert"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BertForSequenceClassification"]
    (folder / "config.json").write_text(json.dumps(config))
    enc = load_encoder(str(folder))
    assert enc.classifier is None
    assert any("never fine-tuned" in n for n in enc.info.notes)
    assert enc.info.has_pooler  # the encoder's own trained pooler is kept


def test_classifier_without_cls_token_refused(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    folder = tmp_path / "gpt2-classifier"
    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32, num_labels=2, pad_token_id=0
    )
    GPT2ForSequenceClassification(config).save_pretrained(str(folder))
    raw = Tokenizer(
        models.WordLevel(vocab={"<|endoftext|>": 0, "good": 1, "bad": 2}, unk_token="<|endoftext|>")
    )
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>").save_pretrained(str(folder))
    with pytest.raises(ModelLoadError, match=r"no \[CLS\]-like token.*GPT2ForSequenceClassification.*BERT"):
        load_encoder(str(folder))


def test_classifier_shares_weights_with_the_encoder(bundled_classifier_dir):
    enc = load_encoder(str(bundled_classifier_dir))
    assert type(enc.model).__name__ == "BertModel"
    # The head's pooler is the encoder's own module, and the eager view shares its tensors.
    assert enc.classifier.first is enc.model
    assert enc.eager_model.pooler.dense.weight.data_ptr() == enc.model.pooler.dense.weight.data_ptr()
    assert all(not p.requires_grad for p in enc.classifier.classifier.parameters())
    assert not enc.classifier.classifier.training


def test_failed_second_model_leaves_the_first_working(bundled_classifier_dir, tmp_path):
    from clsviz import trace
    from clsviz.heads import classifier_lens

    enc = load_encoder(str(bundled_classifier_dir))
    before = classifier_lens(enc, trace(enc, "a fine film"))
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForSequenceClassification"]})
    )
    with pytest.raises(ModelLoadError):
        load_encoder(str(tmp_path))
    np.testing.assert_array_equal(classifier_lens(enc, trace(enc, "a fine film")), before)


def test_installed_models_listed_and_missing_ones_explained(monkeypatch, tmp_path):
    from clsviz.encoder import local_models

    monkeypatch.setenv("CLSVIZ_MODELS_DIR", str(tmp_path))
    assert local_models() == {}
    with pytest.raises(ModelLoadError, match="clsviz models fetch mpnet"):
        load_encoder("all-mpnet-base-v2 (installed)")
