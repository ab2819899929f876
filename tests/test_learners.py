"""What each pooling trains: the moved summary tokens really are the positions the head reads, and
the cls_head copy saves as a checkpoint that load_encoder opens with its head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsviz import load_encoder, trace
from clsviz.catalog import MODELS_DIR_ENV, models_dir
from clsviz.corpus import demo_corpus
from clsviz.experiments import run_finetune
from clsviz.experiments.learners import FRESH_TOKEN, Learner, SaveError, check_folder_name
from clsviz.heads import classifier_lens
from clsviz.vectors import tokenize_texts
from tests.conftest import TINY_KINDS

TEXTS = [
    "The film was not bad at all.",
    "Rain again, all week long.",
    "A quiet walk by the river made my day.",
    "Why is the [CLS] token always first?",
]


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _learner(encoder, pooling):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return Learner(encoder, pooling, ("a", "b"), tokenize_texts(encoder, TEXTS))


def _read_by_gradient(learner, batch) -> list[np.ndarray]:
    """The positions whose last-layer vector the head's output depends on, per text."""
    ids, mask, _, _ = batch
    with torch.no_grad():
        hidden = learner.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    hidden = hidden.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(learner.logits(batch, hidden=hidden).sum(), hidden)
    return [np.flatnonzero(grad[i].abs().sum(dim=-1).numpy() > 0) for i in range(len(ids))]


def test_cls_last_reads_the_cls_token_at_the_last_position(encoder):
    learner = _learner(encoder, "cls_last")
    batch = learner.batch(np.arange(len(TEXTS)))
    ids, mask, special, _ = batch
    read = learner.read_positions(batch).numpy()
    last = mask.sum(dim=1).numpy() - 1
    np.testing.assert_array_equal(read, last)
    assert all(int(ids[i, read[i]]) == encoder.info.cls_token_id for i in range(len(TEXTS)))
    assert all(int(ids[i, 0]) != encoder.info.cls_token_id for i in range(len(TEXTS)))  # not first any more
    assert [list(r) for r in _read_by_gradient(learner, batch)] == [[int(r)] for r in read]


def test_fresh_middle_reads_a_new_token_in_the_middle(encoder):
    learner = _learner(encoder, "fresh_middle")
    vocab = encoder.model.get_input_embeddings().weight.shape[0]
    assert learner.fresh_id == vocab  # one new entry, in the private copy only
    assert learner.model.get_input_embeddings().weight.shape[0] == vocab + 1
    assert encoder.model.get_input_embeddings().weight.shape[0] == vocab
    batch = learner.batch(np.arange(len(TEXTS)))
    ids, mask, special, _ = batch
    read = learner.read_positions(batch).numpy()
    for i in range(len(TEXTS)):
        row = ids[i, : int(mask[i].sum())].numpy()
        assert row[read[i]] == learner.fresh_id
        assert encoder.info.cls_token_id not in row  # no [CLS] anywhere
        content = np.flatnonzero(~special[i, : len(row)].numpy())
        assert content[0] < read[i] < content[-1] + 1  # inside the text, after its first word
    # The new token starts at the mean word embedding.
    weight = learner.model.get_input_embeddings().weight
    torch.testing.assert_close(weight[vocab], encoder.model.get_input_embeddings().weight.mean(dim=0))
    assert [list(r) for r in _read_by_gradient(learner, batch)] == [[int(r)] for r in read]


def test_plain_cls_reads_position_zero(encoder):
    learner = _learner(encoder, "cls")
    batch = learner.batch(np.arange(len(TEXTS)))
    assert learner.read_positions(batch).tolist() == [0] * len(TEXTS)
    assert [list(r) for r in _read_by_gradient(learner, batch)] == [[0]] * len(TEXTS)


WORDS = "cat dog bird fish horse mouse lion tiger bear wolf".split()
TINY_TEXTS = [f"the {WORDS[i % 10]} {'ran' if i % 2 else 'slept'} near house {i}" for i in range(24)]
TINY_LABELS = ["ran" if i % 2 else "slept" for i in range(24)]


def test_moved_variants_train_with_the_same_budget(tiny_encoder):
    result = run_finetune(tiny_encoder, TINY_TEXTS, TINY_LABELS, poolings=("cls", "cls_last", "fresh_middle"),
                          epochs=1, batch_size=8, checkpoints=1)  # fmt: skip
    table = result.table.set_index("pooling")
    assert table["steps"].nunique() == 1 and table["train_n"].nunique() == 1
    flows = result.gradient_flow
    top = int(flows["layer"].max())
    for pooling, token in (("cls", "[CLS]"), ("cls_last", "[CLS]"), ("fresh_middle", FRESH_TOKEN)):
        last = flows[(flows["pooling"] == pooling) & (flows["step"] == 0) & (flows["layer"] == top)]
        nonzero = last[last["value"] > 0]
        assert nonzero["token"].tolist() == [token]  # the loss enters through the moved token only
        position = int(nonzero["position"].iloc[0])
        if pooling == "cls_last":
            assert position == int(last["position"].max())
        elif pooling == "fresh_middle":
            assert 0 < position < int(last["position"].max())


def _logits(model, tokenizer, text):
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits[0].numpy()


def test_cls_head_saves_a_classifier_that_load_encoder_opens(encoder, tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    corpus = demo_corpus()
    before = _snapshot(encoder.model)
    result = run_finetune(encoder, corpus.texts[:20], corpus.labels["sentiment"][:20], poolings=("cls_head",),
                          epochs=1, checkpoints=0, label_name="sentiment")  # fmt: skip
    folder = result.save_classifier(check_folder_name("minilm-sentiment", models_dir()))
    assert folder == tmp_path / "minilm-sentiment"
    assert {"config.json", "model.safetensors", "tokenizer.json", "clsviz.json"} <= {
        p.name for p in folder.iterdir()
    }
    loaded = load_encoder(str(folder))
    assert loaded.classifier is not None and loaded.info.labels == result.classes
    assert "pooler" in loaded.info.head_pooling
    text = "The food was wonderful and the staff were kind."
    lens = classifier_lens(loaded, trace(loaded, text))
    expected = _logits(result.classifier.model, encoder.tokenizer, text)
    np.testing.assert_allclose(lens[-1], expected, rtol=1e-4, atol=1e-5)
    # The copy trained; the shared model did not.
    for name, tensor in encoder.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert not any(p.requires_grad for p in encoder.model.parameters())
    moved = loaded.model.state_dict()["encoder.layer.5.output.dense.weight"]
    assert not torch.equal(moved, before["encoder.layer.5.output.dense.weight"])
    with pytest.raises(SaveError, match="already"):
        result.save_classifier(folder)


@pytest.mark.parametrize("kind", [k for k in TINY_KINDS if k != "bert"])
def test_cls_head_round_trip_on_other_families(tiny_model_dirs, tmp_path, kind):
    enc = load_encoder(str(tiny_model_dirs[kind]))
    result = run_finetune(
        enc, TINY_TEXTS, TINY_LABELS, poolings=("cls_head",), epochs=1, batch_size=8, checkpoints=0
    )
    folder = result.save_classifier(tmp_path / kind)
    loaded = load_encoder(str(folder))
    assert loaded.classifier is not None, loaded.info.notes
    text = "the cat chased a dog"
    np.testing.assert_allclose(classifier_lens(loaded, trace(loaded, text))[-1],
                               _logits(result.classifier.model, enc.tokenizer, text), rtol=1e-4, atol=1e-5)  # fmt: skip


def test_saving_needs_the_cls_head_run(tiny_encoder, tmp_path):
    result = run_finetune(tiny_encoder, TINY_TEXTS, TINY_LABELS, poolings=("cls",), epochs=1, checkpoints=0)
    assert result.classifier is None
    with pytest.raises(SaveError, match="cls_head"):
        result.save_classifier(tmp_path / "x")


@pytest.mark.parametrize("name", ["", "../up", "a/b", "/abs", ".hidden", "x" * 81, "name with space", "a..b"])
def test_folder_names_are_checked(tmp_path, name):
    with pytest.raises(SaveError) as info:
        check_folder_name(name, tmp_path)
    assert "folder name" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_an_existing_folder_is_never_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(SaveError, match="already exists"):
        check_folder_name("taken", tmp_path)
    assert check_folder_name("free-1.0_b", tmp_path) == tmp_path / "free-1.0_b"


def test_the_finetuned_classifier_fixture_loads_with_its_head(finetuned_classifier_dir):
    from clsviz.experiments.dynamics import gradient_flow

    enc = load_encoder(str(finetuned_classifier_dir))
    assert enc.info.labels == ("negative", "positive") and enc.classifier.kind == "pooler"
    flow = gradient_flow(enc, "The soup was cold.", "classifier")
    assert flow[-1][0] > 0 and np.all(flow[-1][1:] == 0)  # the head reads [CLS] only
