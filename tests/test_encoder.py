"""load_encoder: the bundled default, local folders, and every way a model is refused."""

from __future__ import annotations

import json

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
    assert info.max_length == min(encoder.model.config.max_position_embeddings, encoder.tokenizer.model_max_length)


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
    GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32)).save_pretrained(str(folder))
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
