"""clsviz.compare: linear CKA, layer-by-layer CKA of two encoders, attention change around [CLS]."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from clsviz import load_encoder, trace
from clsviz.compare import (
    ATTENTION_MEASURES,
    TokenizationMismatch,
    attention_change,
    cka,
    compare_encoders,
    layer_cka,
)

TEXTS = [
    "The cat chased a dog across the yard.",
    "Why is the token always first?",
    "A sentence model reads every word.",
    "The dog slept in the sun all afternoon.",
    "Attention in the last layer looks broad.",
    "We had soup and bread for dinner.",
    "The first token of a sentence is special.",
    "She read the long report twice.",
]


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from its definition: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XX^T, L = YY^T."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n

    def hsic(k, m):
        return np.trace(k @ h @ m @ h) / (n - 1) ** 2

    k, m = x @ x.T, y @ y.T
    return hsic(k, m) / np.sqrt(hsic(k, k) * hsic(m, m))


def _rotation(dim: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("shape", [(60, 8, 12), (10, 40, 30)])  # feature form / Gram form
def test_cka_equals_the_hsic_formula(shape):
    n, d1, d2 = shape
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d1))
    y = x[:, :1] @ rng.normal(size=(1, d2)) + rng.normal(size=(n, d2))  # related, not equal
    expected = _hsic_cka(x, y)
    assert 0.05 < expected < 0.95
    assert cka(x, y) == pytest.approx(expected, rel=1e-10)
    assert cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_rotation_and_isotropic_scaling_only():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 16)), rng.normal(size=(40, 24))
    y[:, :16] += x
    base = cka(x, y)
    assert cka(x @ _rotation(16, rng), y) == pytest.approx(base, rel=1e-10)
    assert cka(x, y @ _rotation(24, rng)) == pytest.approx(base, rel=1e-10)
    assert cka(37.5 * x, y) == pytest.approx(base, rel=1e-10)
    assert cka(x, 1e-3 * y + 4.0) == pytest.approx(base, rel=1e-10)  # a shift is centred away
    # A non-isotropic scaling does change it: the invariances above are not trivial.
    assert abs(cka(x * np.linspace(0.1, 10, 16), y) - base) > 1e-3


def test_cka_degenerate_and_bad_input():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(5, 3))
    assert np.isnan(cka(np.tile(rng.normal(size=(1, 4)), (5, 1)), y))  # every row the same
    x = rng.normal(size=(5, 4))
    x[:, 1] = 3.0  # one constant column is fine
    assert np.isfinite(cka(x, y))
    with pytest.raises(ValueError, match="same rows"):
        cka(rng.normal(size=(5, 2)), rng.normal(size=(6, 2)))
    with pytest.raises(ValueError, match=r"matrix \[N, D\]"):
        cka(np.zeros(5), y)
    with pytest.raises(ValueError, match="at least 2 rows"):
        cka(np.ones((1, 3)), np.ones((1, 3)))
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cka(bad, y)


@pytest.mark.parametrize("n", [12, 300])  # the Gram path and the feature path of layer_cka
def test_layer_cka_equals_pairwise_cka(n):
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, n, 10))
    b = rng.normal(size=(3, n, 6))
    b[1] += a[2, :, :6]
    b[2] = 5.0  # a layer where every row is the same vector
    m = layer_cka(a, b)
    assert m.shape == (4, 3) and m.dtype == np.float64
    for i in range(4):
        for j in range(2):
            assert m[i, j] == pytest.approx(_hsic_cka(a[i], b[j]), rel=1e-9)
    assert np.isnan(m[:, 2]).all()
    np.testing.assert_allclose(np.diagonal(layer_cka(a, a)), 1.0, atol=1e-12)


@pytest.fixture(scope="module")
def perturbed_bert(tiny_model_dirs, tmp_path_factory):
    """The tiny BERT with its blocks' attention output weights nudged: a stand-in for fine-tuning
    that leaves the embeddings and the tokenizer as they were."""
    from transformers import AutoTokenizer, BertModel

    model = BertModel.from_pretrained(str(tiny_model_dirs["bert"]))
    torch.manual_seed(5)
    with torch.no_grad():
        for layer in model.encoder.layer:
            for w in (layer.attention.output.dense.weight, layer.output.dense.weight):
                w.add_(torch.randn_like(w))
    folder = tmp_path_factory.mktemp("perturbed-bert")
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_model_dirs["bert"])).save_pretrained(str(folder))
    return load_encoder(str(folder))


def test_a_model_against_itself_has_a_unit_diagonal(tiny_encoder):
    result = compare_encoders(tiny_encoder, tiny_encoder, TEXTS)
    assert result.same_tokenization and not result.skipped
    assert set(result.cka) == {"tokens", "cls", "mean"}
    n = tiny_encoder.info.num_layers + 1
    for reading in ("tokens", "mean"):
        assert result.cka[reading].shape == (n, n)
        np.testing.assert_allclose(result.diagonal(reading), 1.0, atol=1e-6)
    # The [CLS] embedding (layer 0) is the same vector for every text: CKA is undefined there.
    assert np.isnan(result.diagonal("cls")[0])
    np.testing.assert_allclose(result.diagonal("cls")[1:], 1.0, atol=1e-6)
    assert any("layer 0" in m for m in result.messages)
    assert result.num_tokens == sum(len(trace(tiny_encoder, t).tokens) - 2 for t in TEXTS)


def test_cka_matches_traces_computed_one_by_one(encoder):
    # The real model: its [CLS] vectors vary between texts far beyond float32 rounding, so the
    # batched, padded pass and one trace per text must give the same CKA.
    result = compare_encoders(encoder, encoder, TEXTS, readings=("cls", "mean"), batch_size=3)
    traces = [trace(encoder, t) for t in TEXTS]
    stacks = {
        "cls": np.stack([t.hidden_states[:, t.cls_index] for t in traces], axis=1),  # [L+1, N, D]
        "mean": np.stack([t.hidden_states.mean(axis=1) for t in traces], axis=1),
    }
    for reading, vectors in stacks.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.array([[_hsic_cka(x, y) for y in vectors] for x in vectors])
        if reading == "cls":  # the same [CLS] embedding for every text: undefined
            expected[0, :] = expected[:, 0] = np.nan
        np.testing.assert_allclose(result.cka[reading], expected, atol=1e-4)
        assert np.nanmin(expected) < 0.95  # layers do differ, so the match is not all ones


def test_changed_blocks_show_on_the_diagonal(tiny_encoder, perturbed_bert):
    result = compare_encoders(tiny_encoder, perturbed_bert, TEXTS, readings=("tokens", "mean"))
    # The fine-tuning stand-in left the embeddings alone and changed every block.
    for reading in ("tokens", "mean"):
        assert result.diagonal(reading)[0] == pytest.approx(1.0, abs=1e-6)
        assert result.diagonal(reading)[-1] < 0.99


def test_comparison_table_is_tidy(tiny_encoder, perturbed_bert):
    result = compare_encoders(tiny_encoder, perturbed_bert, TEXTS, readings=("tokens", "mean"), token_sample=20)
    assert result.num_tokens == 20
    table = result.table()
    assert list(table.columns) == ["model_a", "model_b", "reading", "layer_a", "layer_b", "cka"]
    n = tiny_encoder.info.num_layers + 1
    assert len(table) == 2 * n * n
    tokens = (
        table[table.reading == "tokens"].pivot(index="layer_a", columns="layer_b", values="cka").to_numpy()
    )
    np.testing.assert_array_equal(tokens, result.cka["tokens"])
    assert np.all((table.cka >= 0) & (table.cka <= 1))


def test_models_of_different_sizes_compare(encoder, tiny_encoder):
    result = compare_encoders(encoder, tiny_encoder, TEXTS, readings=("tokens", "mean"))
    assert result.cka["tokens"].shape == (encoder.info.num_layers + 1, tiny_encoder.info.num_layers + 1)
    with pytest.raises(ValueError, match="different depths"):
        result.diagonal("mean")


def test_different_tokenizers_compare_cls_and_mean_but_not_tokens(tiny_model_dirs, tiny_encoder):
    roberta = load_encoder(str(tiny_model_dirs["roberta"]))
    result = compare_encoders(tiny_encoder, roberta, TEXTS)
    assert not result.same_tokenization
    assert set(result.cka) == {"cls", "mean"}
    assert "split this text differently" in result.skipped["tokens"]
    with pytest.raises(ValueError, match="split this text differently"):
        result.diagonal("tokens")


def test_compare_encoders_bad_input(tiny_encoder):
    with pytest.raises(ValueError, match="at least 2 texts"):
        compare_encoders(tiny_encoder, tiny_encoder, ["one text"])
    with pytest.raises(ValueError, match="Unknown CKA reading"):
        compare_encoders(tiny_encoder, tiny_encoder, TEXTS, readings=("pooler",))
    with pytest.raises(ValueError, match="empty"):
        compare_encoders(tiny_encoder, tiny_encoder, ["a text", "   "])


def _measures_by_hand(tr) -> dict[str, np.ndarray]:
    a = tr.attentions.astype(np.float64)
    c = tr.cls_index
    others = [i for i in range(tr.seq_len) if i != c]
    row = a[:, :, c, :]
    return {
        "to_cls": a[:, :, others, c].mean(axis=-1),
        "cls_to_content": row[:, :, ~tr.special_mask].sum(axis=-1),
        "cls_entropy": -(row * np.log(np.where(row > 0, row, 1.0))).sum(axis=-1),
    }


def test_attention_change_per_layer_and_head(tiny_encoder, perturbed_bert):
    text = TEXTS[0]
    ta, tb = trace(tiny_encoder, text), trace(perturbed_bert, text)
    change = attention_change(ta, tb)
    hand_a, hand_b = _measures_by_hand(ta), _measures_by_hand(tb)
    for measure in ATTENTION_MEASURES:
        np.testing.assert_allclose(change.a[measure], hand_a[measure], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            change.change(measure), hand_b[measure] - hand_a[measure], rtol=1e-4, atol=1e-5
        )
    # Block 1 reads the untouched embeddings; block 2 reads what the changed block 1 wrote.
    assert np.all(change.change("to_cls")[0] == 0)
    assert np.abs(change.change("to_cls")[1]).max() > 1e-5
    table = change.table()
    shape = (tiny_encoder.info.num_layers, tiny_encoder.info.num_heads)
    assert len(table) == len(ATTENTION_MEASURES) * shape[0] * shape[1]
    assert table["layer"].min() == 1 and table["head"].min() == 1
    same = attention_change(ta, trace(tiny_encoder, text))
    assert all(np.abs(same.change(m)).max() == 0 for m in ATTENTION_MEASURES)


def test_attention_change_refuses_different_tokenizers(tiny_model_dirs, tiny_encoder):
    roberta = load_encoder(str(tiny_model_dirs["roberta"]))
    text = "the cat chased a dog"
    with pytest.raises(TokenizationMismatch, match="split this text differently") as caught:
        attention_change(trace(tiny_encoder, text), trace(roberta, text))
    assert isinstance(caught.value, ValueError) and "CKA" in str(caught.value)


def test_attention_change_pairs_special_tokens_by_place_not_name(tiny_encoder):
    # MPNet-style "<s> … </s>" against BERT's "[CLS] … [SEP]": the same pieces in the same places.
    ta = trace(tiny_encoder, TEXTS[1])
    renamed = dataclasses.replace(ta, tokens=("<s>", *ta.tokens[1:-1], "</s>"))
    assert attention_change(ta, renamed).tokens == ta.tokens
    other = dataclasses.replace(ta, tokens=(*ta.tokens[:1], "how", *ta.tokens[2:]))
    with pytest.raises(TokenizationMismatch):
        attention_change(ta, other)


def test_attention_change_refuses_different_shapes_and_texts(encoder, tiny_encoder):
    with pytest.raises(ValueError, match="same shape"):
        attention_change(trace(encoder, TEXTS[0]), trace(tiny_encoder, TEXTS[0]))
    with pytest.raises(ValueError, match="different texts"):
        attention_change(trace(tiny_encoder, TEXTS[0]), trace(tiny_encoder, TEXTS[1]))


def test_cancel_stops_the_comparison(tiny_encoder):
    import threading

    from clsviz.progress import Cancelled

    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        cancel.set()  # asked to stop after the first batch

    with pytest.raises(Cancelled, match="comparison was cancelled"):
        compare_encoders(
            tiny_encoder, tiny_encoder, TEXTS * 4, batch_size=4, progress=progress, cancel=cancel
        )
    assert seen == [4]


# --- the bundled model against its own fine-tuned copy ------------------------------------------
FINETUNE_STEPS, FINETUNE_BATCH, FINETUNE_LR = 16, 16, 1e-4


@pytest.fixture(scope="module")
def finetuned_copy(encoder, tmp_path_factory):
    """A real fine-tune of a deep copy of the bundled model: a BERT sequence classifier for the
    demo corpus's topic (7 labels), trained for a few dozen steps and saved with save_pretrained."""
    import copy

    from transformers import BertForSequenceClassification

    from clsviz import demo_corpus

    corpus = demo_corpus()
    topics = sorted(set(corpus.labels["topic"]))
    y = torch.tensor([topics.index(v) for v in corpus.labels["topic"]])
    config = copy.deepcopy(encoder.model.config)
    config.num_labels = len(topics)
    config.id2label = dict(enumerate(topics))
    config.label2id = {t: i for i, t in enumerate(topics)}
    shared_before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
        model.bert = copy.deepcopy(encoder.model)  # a private copy: the shared model is never trained
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=FINETUNE_LR)
        order = np.random.default_rng(0).permutation(len(corpus))
        losses = []
        for step in range(FINETUNE_STEPS):
            rows = order[step * FINETUNE_BATCH : (step + 1) * FINETUNE_BATCH]
            batch = encoder.tokenizer(
                [corpus.texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_tokens=32,
                return_tensors="pt",
            )
            loss = model(**batch, labels=y[rows]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.1, losses  # it did learn the topics
    for name, value in encoder.model.state_dict().items():  # the shared model was not touched
        assert torch.equal(value, shared_before[name]), name
    folder = tmp_path_factory.mktemp("finetuned-bundled")
    model.save_pretrained(str(folder))
    encoder.tokenizer.save_pretrained(str(folder))
    return load_encoder(str(folder))


def test_fine_tuning_rewrites_the_top_layers_most(encoder, finetuned_copy):
    from clsviz import demo_corpus
    from clsviz.corpus import stratified_rows

    assert finetuned_copy.classifier is not None and len(finetuned_copy.info.labels) == 7
    corpus = demo_corpus()
    rows = stratified_rows(corpus.labels["topic"], 200, seed=1)
    result = compare_encoders(encoder, finetuned_copy, [corpus.texts[i] for i in rows])
    assert set(result.cka) == {"tokens", "cls", "mean"}
    depth = encoder.info.num_layers
    for reading in ("tokens", "cls", "mean"):
        change = 1.0 - result.diagonal(reading).astype(np.float64)  # [L+1]
        # The largest change is in the top two blocks, and clearly above the first two.
        assert int(np.nanargmax(change[1:])) + 1 >= depth - 1, (reading, change)
        assert np.nanmean(change[depth - 1 :]) > np.nanmean(change[1:3]) + 0.1, (reading, change)
    # The shared bundled model is still frozen and in eval mode.
    assert not encoder.model.training and all(not p.requires_grad for p in encoder.model.parameters())
