"""clsviz.attribution: integrated gradients' completeness, occlusion against explicit masked reruns,
gradient x input against autograd through the model itself, probe and classifier targets, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsviz import load_encoder, pool, trace
from clsviz.attribution import AttributionError, attribute, attribution_table, make_target, occlusion_id
from tests.test_attention import tiny_mpnet_dir  # noqa: F401 (fixture)

TEXT = "The film was not bad at all."
OTHER = "I liked the movie."


def _cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _cls_by_model(enc, ids) -> np.ndarray:
    """[B, D] last-layer [CLS] vectors from the model's own (eager) forward pass."""
    batch = torch.as_tensor(np.atleast_2d(ids))
    with torch.inference_mode():
        out = enc.eager_model(input_ids=batch, attention_mask=torch.ones_like(batch))
    return out.last_hidden_state[:, 0].double().numpy()


# --- integrated gradients: completeness on the bundled model ---------------------------------------


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_integrated_gradients_are_complete_at_64_steps(encoder, pooling):
    a = attribute(encoder, TEXT, target="similarity", other=OTHER, pooling=pooling, steps=64)
    t = trace(encoder, TEXT)
    assert a.scores.shape == (t.seq_len,) and a.scores.dtype == np.float32
    # value and baseline_value are the target itself: the cosine of the two pooled vectors.
    assert a.value == pytest.approx(_cosine(pool(t, pooling), pool(trace(encoder, OTHER), pooling)), abs=1e-4)
    assert abs(a.value - a.baseline_value) > 0.05
    assert abs(a.completeness_gap) <= 0.05 * abs(a.value - a.baseline_value)
    assert a.completeness_gap == pytest.approx(a.scores.sum(dtype=np.float64) - (a.value - a.baseline_value))
    # Special tokens keep their embeddings in the baseline, so nothing is attributed to them.
    assert np.all(a.scores[t.special_mask] == 0)


def test_the_baseline_is_pad_at_content_positions(encoder):
    a = attribute(encoder, TEXT, target="similarity", other=OTHER, method="grad_x_input")
    t = trace(encoder, TEXT)
    ids = t.input_ids.copy()
    ids[t.content_mask] = encoder.tokenizer.pad_token_id
    want = _cosine(_cls_by_model(encoder, ids)[0], pool(trace(encoder, OTHER), "cls"))
    assert a.baseline_value == pytest.approx(want, abs=1e-4)


# --- occlusion and gradient x input against independent computations -------------------------------


def test_occlusion_equals_explicit_masked_reruns(encoder):
    a = attribute(encoder, TEXT, target="similarity", other=OTHER, method="occlusion")
    t = trace(encoder, TEXT)
    ref = pool(trace(encoder, OTHER), "cls")
    full = _cosine(_cls_by_model(encoder, t.input_ids)[0], ref)
    mask_id = encoder.tokenizer.mask_token_id
    assert occlusion_id(encoder) == mask_id
    for position in range(t.seq_len):
        if t.special_mask[position]:
            assert a.scores[position] == 0
            continue
        ids = t.input_ids.copy()
        ids[position] = mask_id
        want = full - _cosine(_cls_by_model(encoder, ids)[0], ref)
        assert a.scores[position] == pytest.approx(want, abs=2e-5), t.tokens[position]
    assert a.value == pytest.approx(full, abs=2e-5)


def test_grad_x_input_equals_autograd_through_the_model(encoder):
    a = attribute(encoder, TEXT, target="similarity", other=OTHER, method="grad_x_input")
    t = trace(encoder, TEXT)
    ref = torch.as_tensor(pool(trace(encoder, OTHER), "cls"))
    ids = torch.as_tensor(t.input_ids)[None]
    emb = encoder.model.embeddings.word_embeddings.weight[ids].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = encoder.eager_model(inputs_embeds=emb, attention_mask=torch.ones_like(ids)).last_hidden_state[
            0, 0
        ]
        f = torch.nn.functional.cosine_similarity(out, ref, dim=0)
        (grad,) = torch.autograd.grad(f, emb)
    want = (emb * grad).sum(-1)[0].detach().numpy()
    np.testing.assert_allclose(a.scores, want, atol=2e-5)


# --- probe and classifier targets ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_probe(encoder):
    from clsviz.experiments.probe import make_probe

    texts = [
        "I loved it",
        "What a great film",
        "Wonderful acting",
        "I hated it",
        "What a dull film",
        "Awful acting",
    ]
    X = np.stack([pool(trace(encoder, x), "cls") for x in texts])
    return make_probe().fit(X, [1, 1, 1, 0, 0, 0])


def test_probe_target_reads_the_probe_logit(encoder, fitted_probe):
    a = attribute(encoder, TEXT, target="probe", probe=fitted_probe, class_index=1, steps=64)
    x = pool(trace(encoder, TEXT), "cls")[None]
    z = float(fitted_probe.decision_function(x)[0])  # the binary log-odds of class 1
    assert a.value == pytest.approx(z, abs=1e-3)
    assert abs(a.completeness_gap) <= 0.05 * abs(a.value - a.baseline_value)
    # The same probe as (weight, bias) arrays, scaler folded in by hand: the same scores.
    scaler, lr = fitted_probe[0], fitted_probe[-1]
    w = lr.coef_[0] / scaler.scale_
    b = lr.intercept_[0] - w @ scaler.mean_
    same = attribute(encoder, TEXT, target="probe", probe=(w, b), class_index=1, steps=64)
    np.testing.assert_allclose(same.scores, a.scores, atol=1e-5)
    negative = attribute(encoder, TEXT, target="probe", probe=(w, b), class_index=0, method="occlusion")
    assert negative.value == pytest.approx(-z, abs=1e-3)


def test_classifier_target_reads_the_models_own_head(bundled_classifier_dir):
    enc = load_encoder(str(bundled_classifier_dir))
    a = attribute(enc, TEXT, target="classifier", steps=64)
    from clsviz.heads import predict

    prediction = predict(enc, trace(enc, TEXT))
    best = int(np.argmax(prediction.logits))
    assert a.value == pytest.approx(prediction.logits[best], abs=1e-3)  # the predicted class by default
    assert abs(a.completeness_gap) <= 0.05 * abs(a.value - a.baseline_value)
    other = attribute(enc, TEXT, target="classifier", class_index=(best + 1) % 3, method="occlusion")
    assert other.value == pytest.approx(prediction.logits[(best + 1) % 3], abs=1e-3)


def test_custom_target_and_the_table(encoder):
    t = trace(encoder, TEXT)
    k = 2

    def signal(hidden):  # depends on the embedding output of token k only
        return hidden[0][:, k, :].sum(-1)

    for method in ("integrated_gradients", "grad_x_input", "occlusion"):
        a = attribute(encoder, TEXT, target=signal, method=method)
        others = np.delete(np.arange(t.seq_len), k)
        assert np.all(a.scores[others] == 0) and a.scores[k] != 0, method
    table = attribution_table([a, attribute(encoder, TEXT, other=OTHER, method="occlusion", pooling="mean")])
    assert list(table["pooling"].unique()) == ["cls", "mean"] and len(table) == 2 * t.seq_len


# --- bad input ---------------------------------------------------------------------------------------


def test_bad_input_gets_clear_messages(encoder, tiny_encoder, fitted_probe):
    with pytest.raises(AttributionError, match="sentence to compare with is empty"):
        attribute(encoder, TEXT, other="   ")
    with pytest.raises(AttributionError, match="text is empty"):
        attribute(encoder, "  \n")
    with pytest.raises(AttributionError, match="choose one of similarity, probe, classifier"):
        attribute(encoder, TEXT, target="sentiment")
    with pytest.raises(AttributionError, match="integrated_gradients, grad_x_input, occlusion"):
        attribute(encoder, TEXT, method="saliency")
    with pytest.raises(AttributionError, match="steps must be a whole number"):
        attribute(encoder, TEXT, steps=0)
    with pytest.raises(AttributionError, match="outside 0..6"):
        attribute(encoder, TEXT, layer=9)
    with pytest.raises(AttributionError, match="Unknown pooling"):
        attribute(encoder, TEXT, pooling="median")
    with pytest.raises(AttributionError, match="has none"):
        attribute(encoder, TEXT, target="classifier")
    with pytest.raises(AttributionError, match="needs probe="):
        attribute(encoder, TEXT, target="probe")
    with pytest.raises(AttributionError, match="384-dimensional"):
        attribute(tiny_encoder, "the cat", target="probe", probe=fitted_probe)
    with pytest.raises(AttributionError, match="class_index must be 0..1"):
        attribute(encoder, TEXT, target="probe", probe=fitted_probe, class_index=5)
    from clsviz.experiments.probe import make_probe

    with pytest.raises(AttributionError, match="fit it first"):
        attribute(encoder, TEXT, target="probe", probe=make_probe())


def test_a_single_token_sentence(encoder):
    for method in ("integrated_gradients", "grad_x_input", "occlusion"):
        a = attribute(encoder, "Hi", other="Hello", method=method)
        assert a.scores.shape == (3,) and np.isfinite(a.scores).all()
    a = attribute(encoder, "Hi", other="Hello", steps=64)
    assert abs(a.completeness_gap) <= 0.05 * abs(a.value - a.baseline_value)


def test_a_512_token_sentence_is_batched(encoder):
    text = " ".join(["the cat chased a dog"] * 130)
    a = attribute(encoder, text, steps=2, budget=256 * 2**20)  # the model's limit, path points in batches
    assert a.scores.shape == (512,) and np.isfinite(a.scores).all()


def test_families_without_the_block_structure(tiny_mpnet_dir):  # noqa: F811
    mpnet = load_encoder(str(tiny_mpnet_dir))
    with pytest.raises(AttributionError, match=r"integrated gradients runs the model's blocks.*'mpnet'"):
        attribute(mpnet, "the cat sat", other="a dog")
    a = attribute(mpnet, "the cat sat", other="a dog", method="occlusion")  # forward passes only
    assert a.scores.shape == (trace(mpnet, "the cat sat").seq_len,)


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "electra", "albert"])
def test_other_families_are_complete(tiny_model_dirs, kind):
    enc = load_encoder(str(tiny_model_dirs[kind]))
    a = attribute(enc, "the cat chased a dog", other="why is it first", pooling="mean", steps=64)
    assert abs(a.completeness_gap) <= 0.05 * abs(a.value - a.baseline_value) + 1e-6


def test_the_shared_model_is_never_changed(encoder):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in encoder.model.modules())
    attribute(encoder, TEXT, other=OTHER, steps=8)
    attribute(encoder, TEXT, other=OTHER, method="grad_x_input")
    assert not encoder.model.training
    assert hooks == sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in encoder.model.modules())
    assert all(not p.requires_grad and p.grad is None for p in encoder.model.parameters())


def test_make_target_checks_the_layer_and_text(encoder):
    with pytest.raises(AttributionError, match="outside"):
        make_target(encoder, TEXT, layer=-8)
    goal = make_target(encoder, TEXT, other=None)
    assert goal.description == "cosine of the [CLS] vector at layer 6 to its unperturbed self"
