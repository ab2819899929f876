"""Inversion: nearest neighbours, paraphrase recall@1, bag-of-words decoding, MLM-head reading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clsviz import load_encoder, trace
from clsviz.experiments import inversion as I
from clsviz.experiments import neighbours as N
from clsviz.vectors import PooledVectors


def _pooled(vectors_by_pooling: dict, texts) -> PooledVectors:
    """PooledVectors from {pooling: [N, L+1, D]}."""
    names = tuple(vectors_by_pooling)
    stacked = np.stack([vectors_by_pooling[s] for s in names], axis=2).astype(np.float32)
    return PooledVectors(stacked, names, tuple(texts), "synthetic", np.zeros(len(texts), dtype=bool))


def test_nearest_neighbours_brute_force():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 16))
    texts = [f"sentence {i}" for i in range(50)]
    query = rng.normal(size=16)
    got = N.nearest_neighbours(query, vectors, texts, k=7)
    sims = [float(np.dot(query, v) / np.linalg.norm(query) / np.linalg.norm(v)) for v in vectors]
    expected = sorted(range(50), key=lambda i: -sims[i])[:7]
    assert got["index"].tolist() == expected
    np.testing.assert_allclose(got["cosine"], [sims[i] for i in expected])
    assert got["text"].tolist() == [texts[i] for i in expected]
    assert got["rank"].tolist() == list(range(1, 8))
    # The query's own sentence is skipped when asked.
    got = N.nearest_neighbours(vectors[3], vectors, texts, k=3, exclude_text="sentence 3")
    assert 3 not in got["index"].tolist()
    with pytest.raises(ValueError, match="other than the query"):
        N.nearest_neighbours(vectors[0], vectors[:1], texts[:1], exclude_text="sentence 0")


def test_recall_at_1_known_answer():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(20, 32))
    # Sentences 0..9 have partners 10..19 that are tiny perturbations: every query finds its partner.
    vectors = np.concatenate(
        [base[:10], base[:10] + 0.01 * rng.normal(size=(10, 32)), rng.normal(size=(5, 32))]
    )
    pairs = np.array([[i, i + 10] for i in range(10)])
    recall, queries, chance = N.recall_at_1(vectors, pairs)
    assert (recall, queries) == (1.0, 20)
    assert chance == pytest.approx(1 / 24)
    # Move the partners of the first 4 queries far away: brute force says which queries still hit.
    vectors2 = vectors.copy()
    vectors2[10:14] = rng.normal(size=(4, 32))
    hits = 0
    for a, b in [*pairs, *pairs[:, ::-1]]:
        sims = [
            -np.inf
            if j == a
            else np.dot(vectors2[a], vectors2[j]) / np.linalg.norm(vectors2[a]) / np.linalg.norm(vectors2[j])
            for j in range(len(vectors2))
        ]
        hits += int(np.argmax(sims) == b)
    recall2, _, _ = N.recall_at_1(vectors2, pairs)
    assert recall2 == pytest.approx(hits / 20)
    assert recall2 < 1.0


def test_pair_set_and_paraphrase_recall():
    frame = pd.DataFrame(
        {
            "sentence1": ["a cat sat", "a dog ran", "it rained", "same", "x"],
            "sentence2": ["the cat was sitting", "the dog was running", "sun shone", "same", "y"],
            "score": [4.5, 4.6, 1.0, 5.0, 0.0],
            "kind": ["paraphrase", "paraphrase", "related", "paraphrase", "unrelated"],
        }
    )
    ps = N.pair_set(frame)
    assert len(ps.texts) == len(set(ps.texts)) == 9
    assert [(ps.texts[a], ps.texts[b]) for a, b in ps.pairs] == [
        ("a cat sat", "the cat was sitting"),
        ("a dog ran", "the dog was running"),
    ]
    assert any("identical" in n for n in ps.notes)
    rng = np.random.default_rng(2)
    vec = rng.normal(size=(len(ps.texts), 3, 8))
    for a, b in ps.pairs:
        vec[b, 2] = vec[a, 2] + 0.01  # partners coincide at the last layer only
    table = N.paraphrase_recall(_pooled({"cls": vec, "mean": vec[:, ::-1]}, ps.texts), ps.pairs)
    assert len(table) == 6
    for _, row in table.iterrows():
        layer_vecs = vec[:, row["layer"]] if row["pooling"] == "cls" else vec[:, ::-1][:, row["layer"]]
        assert row["recall_at_1"] == pytest.approx(N.recall_at_1(layer_vecs, ps.pairs)[0])
    assert table.query("pooling == 'cls' and layer == 2")["recall_at_1"].item() == 1.0
    assert "random" in I.summarize_recall(table)
    with pytest.raises(ValueError, match="No usable"):
        N.pair_set(frame[frame["kind"] != "paraphrase"])


def test_ridge_decoder_matches_closed_form_in_sklearn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 12)) * rng.uniform(0.5, 3, size=12)
    Y = (rng.random(size=(80, 5)) > 0.6).astype(float)
    dec = I.BagOfWordsDecoder(alpha=4.0).fit(X, Y)
    Z = (X - X.mean(0)) / X.std(0)
    ref = Ridge(alpha=4.0).fit(Z, Y)
    Xt = rng.normal(size=(10, 12))
    np.testing.assert_allclose(dec.scores(Xt), ref.predict((Xt - X.mean(0)) / X.std(0)), atol=1e-8)


WORDS = (
    "apple",
    "river",
    "engine",
    "violin",
    "garden",
    "rocket",
    "winter",
    "castle",
    "pepper",
    "tunnel",
    "marble",
    "forest",
)


def _word_corpus(n=240, seed=4):
    """Sentences of 3 random words; the 'cls' vector is a linear code of the words, 'mean' is noise."""
    rng = np.random.default_rng(seed)
    code = rng.normal(size=(len(WORDS), 24))
    texts, cls, noise = [], [], []
    for _ in range(n):
        pick = rng.choice(len(WORDS), size=3, replace=False)
        texts.append(" ".join(WORDS[j] for j in pick))
        vec = code[pick].sum(axis=0) + 0.05 * rng.normal(size=24)
        cls.append(np.stack([rng.normal(size=24), vec]))  # layer 0: noise, layer 1: the code
        noise.append(rng.normal(size=(2, 24)))
    return texts, np.array(cls), np.array(noise), code


def test_bow_f1_recovers_linearly_encoded_words():
    texts, cls, noise, _ = _word_corpus()
    table, vocab = I.bow_f1(_pooled({"cls": cls, "mean": noise}, texts), vocab_size=50)
    assert set(vocab) == set(WORDS)
    coded = table.query("pooling == 'cls' and layer == 1").iloc[0]
    assert coded["f1"] > 0.95
    assert table.query("pooling == 'mean'")["f1"].max() < 0.6
    assert table.query("pooling == 'cls' and layer == 0")["f1"].item() < 0.6
    # Precision, recall and F1 agree with each other; the baseline ignores the vector.
    p, r = coded["precision"], coded["recall"]
    assert coded["f1"] == pytest.approx(2 * p * r / (p + r))
    assert table["baseline_f1"].nunique() == 1
    assert "F1" in I.summarize_bow(table)


def test_decode_words_precision_recall():
    texts, cls, _, code = _word_corpus()
    query_words = ("violin", "castle", "tunnel")
    query = sum(code[WORDS.index(w)] for w in query_words)
    text = "The violin in the castle tunnel, said Zyx."
    got = I.decode_words(query, text, cls[:, 1], texts, vocab_size=50, k=3)
    assert set(got.table["word"]) == set(query_words)
    assert got.table["in_sentence"].all()
    assert got.precision_at_k == 1.0 and got.recall_at_k == 1.0
    assert got.in_vocabulary == tuple(sorted(query_words))
    assert got.outside_vocabulary == ("said", "zyx")
    got = I.decode_words(query, text, cls[:, 1], texts, vocab_size=50, k=6)
    assert got.precision_at_k == pytest.approx(0.5)
    assert list(got.table["score"]) == sorted(got.table["score"], reverse=True)


def test_content_words_and_vocabulary():
    assert I.content_words("The cat's toys, and a DOG!") == ["cat's", "toys", "dog"]
    vocab = I.bow_vocabulary(["red apple", "red car", "blue car", "green tea"], size=10, min_docs=2)
    assert vocab == ("car", "red")
    m = I.bow_matrix(["red car red", "tea"], vocab)
    np.testing.assert_array_equal(m, [[1, 1], [0, 0]])


def test_bow_bad_input():
    same = ["the same sentence"] * 30
    with pytest.raises(ValueError, match="identical"):
        I.bow_f1(_pooled({"cls": np.zeros((30, 2, 4))}, same))
    with pytest.raises(ValueError, match="at least 20"):
        I.bow_f1(_pooled({"cls": np.zeros((5, 2, 4))}, [f"s {i}" for i in range(5)]))
    with pytest.raises(ValueError, match="no vocabulary"):
        I.bow_f1(_pooled({"cls": np.zeros((25, 2, 4))}, [f"word{i}" for i in range(25)]))


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory):
    """A tiny BertForMaskedLM with its head weights saved (and the bundled tokenizer)."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from clsviz.encoder import bundled_model_path

    folder = tmp_path_factory.mktemp("tiny-mlm")
    tok = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    torch.manual_seed(0)
    model = BertForMaskedLM(
        BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    with torch.no_grad():  # a non-zero bias so the head's every part matters
        model.cls.predictions.bias.normal_()
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def test_mlm_head_reading_matches_the_model(tiny_mlm_dir):
    from transformers import BertForMaskedLM

    enc = load_encoder(str(tiny_mlm_dir))
    head = I.load_mlm_head(enc)
    assert head.available, head.note
    t = trace(enc, "The cat chased the dog.")
    table = I.mlm_reading(head, t.hidden_states[:, t.cls_index], enc.tokenizer, k=4)
    assert len(table) == (enc.info.num_layers + 1) * 4
    # Independent: the full masked-LM forward pass scores the [CLS] position at the last layer.
    ref = BertForMaskedLM.from_pretrained(str(tiny_mlm_dir)).eval()
    with torch.no_grad():
        logits = ref(input_ids=torch.as_tensor(t.input_ids)[None]).logits[0, t.cls_index]
    probs = torch.softmax(logits, -1)
    top = torch.topk(probs, 4)
    last = table[table["layer"] == enc.info.num_layers].sort_values("rank")
    assert last["token_id"].tolist() == top.indices.tolist()
    np.testing.assert_allclose(last["probability"], top.values.numpy(), rtol=1e-4)
    assert last["token"].tolist() == enc.tokenizer.convert_ids_to_tokens(top.indices.tolist())


def test_bundled_model_has_no_mlm_head(encoder):
    head = I.load_mlm_head(encoder)
    assert not head.available
    assert "no trained masked-LM head" in head.note
    assert any(k.startswith("cls.predictions") for k in head.missing)
    with pytest.raises(ValueError, match="no trained masked-LM head"):
        I.mlm_reading(head, np.zeros((2, encoder.info.hidden_size)), encoder.tokenizer)


def test_encoder_without_mlm_weights_in_checkpoint(tiny_encoder):
    # The tiny BERT fixture was saved as a bare BertModel: no head weights at all.
    head = I.load_mlm_head(tiny_encoder)
    assert not head.available and head.missing


def test_pair_set_without_kind_uses_the_score():
    frame = pd.DataFrame(
        {"sentence1": ["a", "b", "c"], "sentence2": ["a2", "b2", "c2"], "score": [4.8, 2.0, 4.0]}
    )
    ps = N.pair_set(frame)
    assert [(ps.texts[a], ps.texts[b]) for a, b in ps.pairs] == [("a", "a2"), ("c", "c2")]
    assert ps.texts == ("a", "b", "c", "a2", "b2", "c2")
    assert any("scored 4 or more" in n for n in ps.notes)


def test_figures_carry_the_tables():
    from clsviz import figures
    from tests.test_attention import _arr

    texts, cls, noise, _ = _word_corpus(n=80)
    table, _ = I.bow_f1(_pooled({"cls": cls, "mean": noise}, texts), vocab_size=50)
    fig = figures.bow_f1_figure(table).to_dict()
    assert [d["name"] for d in fig["data"]] == ["cls", "mean", "frequent words, no vector"]
    np.testing.assert_allclose(
        _arr(fig["data"][0]["y"]), np.round(table[table.pooling == "cls"]["f1"], 4), atol=1e-4
    )
    nn = N.nearest_neighbours(cls[0, 1], cls[:, 1], ["<i>x</i> " + t for t in texts], k=3).assign(
        pooling="cls"
    )
    bars = figures.neighbours_figure(nn).to_dict()["data"][0]
    np.testing.assert_allclose(_arr(bars["x"]), np.round(nn["cosine"], 4), atol=1e-4)
    assert all("<i>" not in label for label in bars["y"])
    decoded = I.decode_words(cls[0, 1], texts[0], cls[1:, 1], texts[1:], vocab_size=50, k=4)
    words = figures.decoded_words_figure(decoded.table).to_dict()["data"][0]
    assert list(words["y"]) == decoded.table["word"].tolist()
    assert words["marker"]["color"].count("#2ca02c") == int(decoded.table["in_sentence"].sum())
