"""Refuse before building: a model's size is estimated from its config and its safetensors headers,
and one that would not fit the deployment's limit is refused by load_encoder (so the app and
the command line) before any weight is read (clsviz.footprint)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import transformers

from clsviz import ModelLoadError, load_encoder
from clsviz.encoder import bundled_model_path
from clsviz.footprint import (
    GB,
    MODEL_MAX_GB_ENV,
    check_footprint,
    estimate_parameters,
    model_footprint,
    safetensors_header,
    weight_file_parameters,
)
from tests.conftest import TINY_KINDS

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(vocab_size=100, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=40)
FAMILIES = {
    "Bert": lambda: transformers.BertConfig(**SMALL),
    "Roberta": lambda: transformers.RobertaConfig(**SMALL),
    "XLMRoberta": lambda: transformers.XLMRobertaConfig(**SMALL),
    "Electra": lambda: transformers.ElectraConfig(embedding_size=32, **SMALL),
    "Albert": lambda: transformers.AlbertConfig(embedding_size=32, **SMALL),
    "DebertaV2": lambda: transformers.DebertaV2Config(relative_attention=True, position_buckets=16,
                                                      position_biased_input=False, norm_rel_ebd="layer_norm", **SMALL),
    "MPNet": lambda: transformers.MPNetConfig(**SMALL),
    "DistilBert": lambda: transformers.DistilBertConfig(vocab_size=100, dim=64, n_layers=3, n_heads=4, hidden_dim=128,
                                                        max_position_embeddings=40),
}


def _numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("head", ["Model", "ForSequenceClassification"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_estimate_counts_what_transformers_builds(family, head):
    """A small vocabulary, so the layers' share of the count is large and a wrong layer formula shows."""
    config = FAMILIES[family]()
    config.architectures, config.num_labels = [f"{family}{head}"], 3
    built = getattr(transformers, f"{family}{head}")(config)
    assert estimate_parameters(config) == pytest.approx(_numel(built), rel=0.01)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_the_estimate_matches_the_tiny_models_loaded(tiny_model_dirs, kind):
    folder = tiny_model_dirs[kind]
    enc = load_encoder(str(folder))
    config = transformers.AutoConfig.from_pretrained(str(folder))
    footprint = model_footprint(config, str(folder))
    # What transformers builds from the folder (a pooler the weights lack is built too, then
    # load_encoder drops it as untrained) and what load_encoder keeps, which the files hold.
    built = _numel(transformers.AutoModel.from_pretrained(str(folder)))
    real = _numel(enc.model)
    assert footprint.parameters == pytest.approx(built, rel=0.03)
    assert footprint.weight_parameters == pytest.approx(real, rel=0.03)
    assert footprint.nbytes == pytest.approx(4 * built, rel=0.03)  # float32 weights


def test_the_estimate_matches_the_bundled_model(encoder):
    source = str(bundled_model_path())
    footprint = model_footprint(transformers.AutoConfig.from_pretrained(source), source)
    real = _numel(encoder.model)
    assert real > 20_000_000
    assert footprint.parameters == pytest.approx(real, rel=0.02)
    assert footprint.weight_parameters == pytest.approx(real, rel=0.02)
    # The header count, read independently: the tensors' shapes in the file.
    header = safetensors_header(bundled_model_path() / "model.safetensors")
    counted = sum(math.prod(e["shape"]) for k, e in header.items() if k != "__metadata__")
    assert weight_file_parameters(source) == (counted, 4)


# -- refusing ----------------------------------------------------------------------------------


def _tiny_bert(folder: Path, **config_changes) -> Path:
    """A real tiny BERT saved with safetensors weights; ``config_changes`` are written into its
    config.json afterwards (the weights stay tiny)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    if config_changes:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **config_changes}))
    return folder


@pytest.fixture(scope="module")
def huge_config_dir(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("huge") / "m", num_hidden_layers=10_000, hidden_size=65_536,
                      num_attention_heads=16)


@pytest.fixture
def no_building(monkeypatch):
    """Fail the test if any model is built or any weight is read."""
    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained ran: the model was built before it was refused")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(refuse))
    for auto in (transformers.AutoModel, transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(auto, "from_pretrained", classmethod(refuse))


def test_a_huge_config_over_tiny_weights_is_refused_before_anything_is_built(huge_config_dir, no_building):
    with pytest.raises(ModelLoadError) as info:
        load_encoder(str(huge_config_dir))
    message = str(info.value)
    assert message.startswith(f"'{huge_config_dir}' is too large for this server")
    # What was asked, the estimate (config and weight files), the limit and what to do.
    attention = 10_000 * 4 * 65_536**2  # the attention weights alone: 1.7e14 parameters, most of the model
    stated = float(re.search(r"config describes ([\d.,]+) trillion parameters", message).group(1).replace(",", ""))
    assert stated * 1e12 == pytest.approx(attention, rel=0.01)
    assert "its weight files hold" in message
    assert "allows 3.00 GB per model" in message and MODEL_MAX_GB_ENV in message
    assert "Pick a smaller model" in message


def test_the_limit_is_a_setting_and_a_model_just_under_it_loads(tmp_path, monkeypatch):
    folder = _tiny_bert(tmp_path / "m")
    real_bytes = 4 * _numel(load_encoder(str(folder)).model)
    just_under, just_over = 1.02 * real_bytes / GB, 0.98 * real_bytes / GB
    assert load_encoder(str(folder), max_gb=just_under).info.num_layers == 1
    with pytest.raises(ModelLoadError, match=rf"too large for this server.*\(max_gb={just_over:g}\)"):
        load_encoder(str(folder), max_gb=just_over)
    monkeypatch.setenv(MODEL_MAX_GB_ENV, f"{just_over!r}")
    with pytest.raises(ModelLoadError, match=rf"allows .* per model \({MODEL_MAX_GB_ENV}\)"):
        load_encoder(str(folder))
    monkeypatch.setenv(MODEL_MAX_GB_ENV, f"{just_under!r}")
    assert load_encoder(str(folder)).info.hidden_size == 16
    monkeypatch.setenv(MODEL_MAX_GB_ENV, "lots")
    with pytest.raises(ModelLoadError, match=rf"{MODEL_MAX_GB_ENV} must be a number of GB.*'lots'"):
        load_encoder(str(folder))


def test_the_allow_list_is_checked_first(huge_config_dir, monkeypatch, no_building):
    monkeypatch.setenv("CLSVIZ_ALLOWED_MODELS", "bert-base-uncased")
    with pytest.raises(ModelLoadError, match="only allows these models"):
        load_encoder(str(huge_config_dir))


def test_the_bundled_model_is_within_the_default_limit():
    source = str(bundled_model_path())
    footprint = check_footprint("bundled", transformers.AutoConfig.from_pretrained(source), source)
    assert footprint.nbytes < 0.1 * GB


def test_the_command_line_refuses_with_one_line_and_exit_2(huge_config_dir, tmp_path):
    result = subprocess.run([sys.executable, "-m", "clsviz", "inspect", "hi", "--model", str(huge_config_dir)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("clsviz inspect: error: ")  # (a progress line may precede it)
    assert "is too large for this server" in lines[0] and "Traceback" not in result.stderr


def test_a_sharded_folder_is_counted_from_every_shard_and_a_missing_shard_is_named(tmp_path):
    folder = _tiny_bert(tmp_path / "m")
    config = transformers.AutoConfig.from_pretrained(str(folder))
    whole = weight_file_parameters(str(folder))
    model = transformers.BertModel.from_pretrained(str(folder))
    sharded = tmp_path / "sharded"
    model.save_pretrained(str(sharded), max_shard_size="300KB")
    shutil.copy(folder / "config.json", sharded / "config.json")
    shards = sorted(sharded.glob("model-*.safetensors"))
    assert len(shards) > 1 and (sharded / "model.safetensors.index.json").is_file()
    assert weight_file_parameters(str(sharded)) == whole
    assert model_footprint(config, str(sharded)).weight_parameters == whole[0]
    shards[-1].unlink()
    with pytest.raises(ModelLoadError, match=rf"{shards[-1].name} named in model\.safetensors\.index\.json is missing"):
        check_footprint("sharded", config, str(sharded))
