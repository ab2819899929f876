"""The tuned lens: identity at the last layer, no worse than identity held out, numbers recomputed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsviz import load_encoder, trace
from clsviz.analyses import run
from clsviz.corpus import demo_corpus
from clsviz.experiments.lens import ALPHAS, compare_lens, tuned_lens
from clsviz.heads import NoClassifierError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def texts():
    return list(demo_corpus().texts[:48])


@pytest.fixture(scope="module")
def lens(encoder, texts):
    return compare_lens(encoder, texts, ("cls", "mean"), seed=3, held_out=0.25)


def _cos(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def _hidden(encoder, text):
    """float64 [L+1, T, D]: one text run through the model alone (no batching, no padding)."""
    ids = encoder.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = encoder.model(**ids, output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].double().numpy()


def test_contract_columns_and_last_layer_identity(lens, encoder):
    t = lens.table
    assert {"layer", "method", "score", "low", "high"} <= set(t.columns)
    assert set(t["method"]) == {"identity", "tuned"}
    assert sorted(t["layer"].unique()) == list(range(encoder.info.num_layers + 1))
    last = t[t["layer"] == encoder.info.num_layers]
    # The last layer read as it is is the target itself; the tuned map shrinks to the identity there.
    np.testing.assert_allclose(last["score"], 1.0, atol=1e-6)
    assert (t["low"] <= t["score"] + 1e-12).all() and (t["score"] <= t["high"] + 1e-12).all()
    tuned = t[t["method"] == "tuned"]
    assert tuned["alpha_relative"].apply(lambda a: any(np.isclose(a, g) for g in ALPHAS)).all()
    assert t.loc[t["method"] == "identity", "alpha"].isna().all()
    assert (t["n_test"] == len(lens.test_texts)).all() and len(lens.test_texts) == round(48 * 0.25)
    assert not set(lens.train_texts) & set(lens.test_texts)


def test_tuned_no_worse_than_identity_on_held_out_texts(lens):
    t = lens.table
    for pooling in ("cls", "mean"):
        rows = t[t["pooling"] == pooling]
        tuned = rows[rows["method"] == "tuned"]["score"].mean()
        identity = rows[rows["method"] == "identity"]["score"].mean()
        assert tuned >= identity, (pooling, tuned, identity)


def test_numbers_match_an_independent_computation(lens, encoder):
    """Identity: each held-out text run on its own; tuned: ridge solved in closed form with the
    chosen penalty on vectors of texts run one by one."""
    L = encoder.info.num_layers
    traces_train = [_hidden(encoder, s) for s in lens.train_texts]
    traces_test = [_hidden(encoder, s) for s in lens.test_texts]

    def vec(h, layer, pooling):  # [CLS] is the first token of a BERT input
        return h[layer, 0] if pooling == "cls" else h[layer].mean(axis=0)

    for pooling in ("cls", "mean"):
        for layer in (0, 2, L - 1):
            rows = lens.table[(lens.table["pooling"] == pooling) & (lens.table["layer"] == layer)].set_index("method")
            Xtr = np.array([vec(tr, layer, pooling) for tr in traces_train])
            Ytr = np.array([vec(tr, L, pooling) for tr in traces_train])
            Xte = np.array([vec(tr, layer, pooling) for tr in traces_test])
            Yte = np.array([vec(tr, L, pooling) for tr in traces_test])
            identity = np.mean([_cos(x, y) for x, y in zip(Xte, Yte)])
            assert rows.loc["identity", "score"] == pytest.approx(identity, abs=1e-4)
            alpha = rows.loc["tuned", "alpha"]
            if pooling == "mean":  # the grid is relative to the inputs' mean Gram eigenvalue
                scale = ((Xtr - Xtr.mean(axis=0)) ** 2).sum() / Xtr.shape[1]
                assert alpha == pytest.approx(rows.loc["tuned", "alpha_relative"] * scale, rel=1e-3)
            xm, rm = Xtr.mean(axis=0), (Ytr - Xtr).mean(axis=0)
            Xc, Rc = Xtr - xm, (Ytr - Xtr) - rm
            W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(Xc.shape[1]), Xc.T @ Rc)
            mapped = Xte + (Xte - xm) @ W + rm
            tuned = np.mean([_cos(m, y) for m, y in zip(mapped, Yte)])
            assert rows.loc["tuned", "score"] == pytest.approx(tuned, abs=2e-3)
            floor = np.mean([_cos(Ytr.mean(axis=0), y) for y in Yte])
            assert rows.loc["tuned", "floor"] == pytest.approx(floor, abs=1e-4)


def test_single_pooling_contract_and_figure(encoder, texts):
    r = tuned_lens(encoder, texts[:24], pooling="mean", seed=1)
    assert set(r.table["pooling"]) == {"mean"} and len(r.table) == 2 * (encoder.info.num_layers + 1)
    assert r.table() is r.table  # a Table: read as an attribute or called
    fig = run("lens.tuned", encoder, texts[:24], pooling="mean", seed=1).figures()["lens.tuned"]
    names = [tr.name for tr in fig.data]
    assert "mean · identity" in names and "mean · tuned" in names
    tuned = next(tr for tr in fig.data if tr.name == "mean · tuned")
    np.testing.assert_allclose(tuned.y, r.table[r.table["method"] == "tuned"].sort_values("layer")["score"], atol=1e-4)
    assert any("mean" in line and "layer" in line for line in r.summary())
    # Deterministic for a seed; another seed holds out other texts.
    again = tuned_lens(encoder, texts[:24], pooling="mean", seed=1)
    np.testing.assert_allclose(again.table["score"], r.table["score"])
    assert tuned_lens(encoder, texts[:24], pooling="mean", seed=2).test_texts != r.test_texts


def test_logits_target_with_a_classifier(tiny_classifier_dirs, texts):
    enc = load_encoder(str(tiny_classifier_dirs["bert"]))
    r = tuned_lens(enc, texts[:60], pooling="cls", target="logits", seed=0)
    t = r.table
    L = enc.info.num_layers
    last = t[(t["layer"] == L) & (t["method"] == "identity")].iloc[0]
    assert last["score"] == 1.0 and last["kl"] == pytest.approx(0.0, abs=1e-9)
    # Layer 0 read as it is: the head on each held-out text's layer-0 [CLS] against the model's own answer.
    agree = []
    for s in r.test_texts:
        tr = trace(enc, s)
        lens0 = enc.classifier.logits(tr.hidden_states[0][tr.cls_index][None]).numpy()[0]
        final = enc.classifier.logits(tr.hidden_states[L][tr.cls_index][None]).numpy()[0]
        agree.append(float(lens0.argmax() == final.argmax()))
    row0 = t[(t["layer"] == 0) & (t["method"] == "identity")].iloc[0]
    assert row0["score"] == pytest.approx(np.mean(agree))
    assert t["score"].between(0, 1).all() and (t["kl"] >= 0).all()


def test_bad_input_is_explained(encoder, tiny_encoder, texts):
    with pytest.raises(NoClassifierError, match="no classification head"):
        tuned_lens(tiny_encoder, texts[:20], target="logits")
    with pytest.raises(ValueError, match="Valid: final, logits"):
        tuned_lens(tiny_encoder, texts[:20], target="probs")
    with pytest.raises(ValueError, match="Unknown pooling"):
        tuned_lens(tiny_encoder, texts[:20], pooling="avg")
    with pytest.raises(ValueError, match="at least"):
        tuned_lens(tiny_encoder, texts[:4])
    with pytest.raises(ValueError, match="between 0 and 1"):
        tuned_lens(tiny_encoder, texts[:20], held_out=1.5)
    with pytest.raises(ValueError, match="different sentences"):
        tuned_lens(tiny_encoder, ["same words"] * 20)
