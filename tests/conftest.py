"""Shared fixtures: the bundled encoder and tiny random encoders built from configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No background numba compilation inside the test process (tests that need UMAP fit it).
os.environ.setdefault("CLSVIZ_UMAP_WARMUP", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from clsviz import load_encoder  # noqa: E402
from clsviz.encoder import bundled_model_path  # noqa: E402

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
TINY_KINDS = ("bert", "roberta", "distilbert", "electra", "albert")


def _bpe_tokenizer(folder: Path):
    """A small byte-level BPE tokenizer with RoBERTa's special tokens, trained here."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast

    words = "the cat chased a dog why is token always first sentence model attention layer".split()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [" ".join(words[i:] + words[:i]) for i in range(len(words))] * 4,
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<s>",
        cls_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=64,
    )


def build_tiny_model(kind: str, folder: Path) -> Path:
    """Save a randomly initialised encoder of family ``kind`` (and a tokenizer) to ``folder``."""
    import torch
    from transformers import (
        AlbertConfig,
        AlbertModel,
        AutoTokenizer,
        BertConfig,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        ElectraConfig,
        ElectraModel,
        RobertaConfig,
        RobertaModel,
    )

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "roberta":
        tokenizer = _bpe_tokenizer(folder)
        vocab = len(tokenizer)
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
        vocab = tokenizer.vocab_size
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=vocab, max_position_embeddings=64, **TINY))
    elif kind == "roberta":
        model = RobertaModel(
            RobertaConfig(
                vocab_size=vocab, max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2, **TINY
            ),
            add_pooling_layer=False,
        )
    elif kind == "distilbert":
        model = DistilBertModel(
            DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64)
        )
    elif kind == "electra":
        model = ElectraModel(ElectraConfig(vocab_size=vocab, embedding_size=16, max_position_embeddings=64, **TINY))
    elif kind == "albert":
        model = AlbertModel(AlbertConfig(vocab_size=vocab, embedding_size=16, max_position_embeddings=64, **TINY))
    else:
        raise ValueError(kind)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def open_page(page: str, sentences: str | None = None, timeout: float = 240, **state):
    """Run ``page`` inside the app (entry file app.py), as in the browser, with session state
    set (``sentences`` fills the sidebar's box); fails on any exception the page raised."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../app.py", default_timeout=timeout)
    if sentences is not None:
        at.session_state["clsviz.sentences"] = sentences
    for k, v in state.items():
        at.session_state[k] = v
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="session")
def encoder():
    """The bundled all-MiniLM-L6-v2 encoder (real weights, no network)."""
    return load_encoder()


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    """Folders of tiny random encoders, one per family in TINY_KINDS."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: build_tiny_model(kind, root / kind) for kind in TINY_KINDS}


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dirs):
    """A tiny random BERT encoder (2 layers, 4 heads, 32 dims): fast for page and metric tests."""
    return load_encoder(str(tiny_model_dirs["bert"]))
