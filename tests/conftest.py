"""Shared fixtures: the bundled encoder and tiny random encoders built from configs."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No background numba compilation inside the test process (tests that need UMAP fit it).
os.environ.setdefault("CLSVIZ_UMAP_WARMUP", "0")
# Page tests run background jobs in threads (they monkeypatch what the jobs call); the worker
# process is tested on its own in tests/test_jobs.py. The job journal goes to a temporary folder.
os.environ.setdefault("CLSVIZ_JOB_PROCESS", "0")
os.environ.setdefault("CLSVIZ_STATE_DIR", tempfile.mkdtemp(prefix="clsviz-state-"))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from clsviz import load_encoder  # noqa: E402
from clsviz.encoder import bundled_model_path

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
                vocab_size=vocab,
                max_position_embeddings=66,
                pad_token_id=1,
                bos_token_id=0,
                eos_token_id=2,
                **TINY,
            ),
            add_pooling_layer=False,
        )
    elif kind == "distilbert":
        model = DistilBertModel(
            DistilBertConfig(
                vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64
            )
        )
    elif kind == "electra":
        model = ElectraModel(
            ElectraConfig(vocab_size=vocab, embedding_size=16, max_position_embeddings=64, **TINY)
        )
    elif kind == "albert":
        model = AlbertModel(
            AlbertConfig(vocab_size=vocab, embedding_size=16, max_position_embeddings=64, **TINY)
        )
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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures(...)``): on a
    machine shared with other work, two threads spin against each other (a short forward pass was
    measured 10x slower); results do not change."""
    from clsviz.experiments.inverter import torch_threads

    with torch_threads(1):
        yield


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


TINY_LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def redraw_head(model, seed: int) -> None:
    """Redraw a classifier's head weights (and its encoder's pooler) with std 0.5, so its logits
    differ clearly between inputs instead of hovering near zero as freshly initialised ones do."""
    import torch

    torch.manual_seed(seed)
    prefix = model.base_model_prefix + "."
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith(prefix) or ".pooler." in f".{name}":
                p.normal_(0.0, 0.5)


def build_tiny_classifier(kind: str, folder: Path, base_folder: Path | None = None) -> Path:
    """Save a tiny ``*ForSequenceClassification`` checkpoint of family ``kind`` with three named
    labels: the tiny random encoder (``base_folder``, built when None) plus a head whose weights
    are drawn large enough that its logits differ clearly between inputs."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if base_folder is None:
        base_folder = build_tiny_model(kind, folder.parent / f"{folder.name}-base")
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base_folder), num_labels=3, id2label=TINY_LABELS, label2id={v: k for k, v in TINY_LABELS.items()}
    )
    redraw_head(model, seed=1)
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(base_folder)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_classifier_dirs(tmp_path_factory, tiny_model_dirs):
    """Folders of tiny sequence classifiers (labels negative/neutral/positive), one per family."""
    root = tmp_path_factory.mktemp("tiny-classifiers")
    return {kind: build_tiny_classifier(kind, root / kind, tiny_model_dirs[kind]) for kind in TINY_KINDS}


@pytest.fixture(scope="session")
def bundled_classifier_dir(tmp_path_factory):
    """The bundled all-MiniLM-L6-v2 as a 3-label BertForSequenceClassification (trained pooler
    kept, classifier weights drawn at random), saved with save_pretrained."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("bundled-classifier")
    model = BertForSequenceClassification.from_pretrained(
        str(bundled_model_path()),
        num_labels=3,
        id2label=TINY_LABELS,
        label2id={v: k for k, v in TINY_LABELS.items()},
    )
    torch.manual_seed(2)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.5)
        model.classifier.bias.normal_(0.0, 0.1)
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(bundled_model_path())).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def finetuned_classifier_dir(tmp_path_factory, encoder):
    """The bundled model fine-tuned by clsviz itself (pooling ``cls_head``: BERT's pooler and
    classifier) on 20 demo texts' sentiment for one epoch, saved as a BertForSequenceClassification
    folder with labels negative/positive: the app's own path to a real fine-tuned classifier."""
    from clsviz.corpus import demo_corpus
    from clsviz.experiments import run_finetune

    corpus = demo_corpus()
    result = run_finetune(encoder, corpus.texts[:20], corpus.labels["sentiment"][:20], poolings=("cls_head",),
                          epochs=1, checkpoints=0, label_name="sentiment")  # fmt: skip
    return result.save_classifier(tmp_path_factory.mktemp("finetuned") / "minilm-sentiment")
