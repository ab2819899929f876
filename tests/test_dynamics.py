"""Gradient flow: the exact zero / equal-norm properties, a hand-written autograd check, every head
kind, bad input, and the shared model left as it was."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from clsviz import load_encoder
from clsviz.experiments import dynamics
from clsviz.experiments.dynamics import GradientFlowError, gradient_flow, probe_as_linear, random_head
from clsviz.tracing import special_positions, tokenize
from tests.conftest import TINY_KINDS

TEXT = "The cat chased the dog across the quiet garden."


def _positions(enc, text=TEXT):
    tt = tokenize(enc, text)
    return tt, special_positions(tt, enc.info)[0]


def _check_properties(enc, text=TEXT):
    tt, cls = _positions(enc, text)
    g = gradient_flow(enc, text, "cls")
    assert g.dtype == np.float32 and g.shape == (enc.info.num_layers + 1, len(tt.input_ids))
    last = g[-1]
    assert last[cls] > 0
    assert np.all(np.delete(last, cls) == 0.0)  # exactly zero: the loss reads [CLS] only
    # One block down, attention has spread the signal to every token.
    assert np.all(g[-2] > 0)
    m = gradient_flow(enc, text, "mean")
    assert np.all(m[-1] == m[-1][0]) and m[-1][0] > 0  # the same norm at every token, exactly
    assert np.all(m > 0)


def test_properties_on_the_bundled_model(encoder):
    _check_properties(encoder)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_properties_on_every_family(tiny_model_dirs, kind):
    _check_properties(load_encoder(str(tiny_model_dirs[kind])), "the cat chased a dog")


def _by_hand(enc, text, read, weight, bias, target=0) -> np.ndarray:
    """The same norms from the transformers forward of a private copy, with autograd on the
    hidden states it returns."""
    model = copy.deepcopy(enc.model)
    tt, cls = _positions(enc, text)
    ids = torch.as_tensor(tt.input_ids)[None]
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    out = model(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    last = out.hidden_states[-1][0]
    vector = last[cls] if read == "cls" else last.mean(dim=0)
    logits = vector @ torch.as_tensor(weight).T + torch.as_tensor(bias)
    loss = torch.nn.functional.cross_entropy(logits[None], torch.tensor([target]))
    grads = torch.autograd.grad(loss, out.hidden_states)
    return torch.stack([g[0].norm(dim=-1) for g in grads]).numpy()


@pytest.mark.parametrize("read", ["cls", "mean"])
def test_equals_a_hand_written_autograd_computation(encoder, read):
    rng = np.random.default_rng(7)
    weight = rng.normal(size=(3, encoder.info.hidden_size)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    mine = gradient_flow(encoder, TEXT, read, head=(weight, bias), target=2)
    np.testing.assert_allclose(
        mine, _by_hand(encoder, TEXT, read, weight, bias, target=2), rtol=1e-4, atol=1e-7
    )


def test_default_head_is_the_documented_seeded_random_head(encoder):
    d = encoder.info.hidden_size
    expected_weight = np.random.default_rng(3).standard_normal((2, d)) / np.sqrt(d)
    weight, bias = random_head(d, seed=3)
    np.testing.assert_allclose(weight, expected_weight, rtol=1e-6)
    assert np.all(bias == 0)
    by_hand = _by_hand(encoder, TEXT, "cls", expected_weight.astype(np.float32), bias)
    np.testing.assert_allclose(gradient_flow(encoder, TEXT, "cls", seed=3), by_hand, rtol=1e-4, atol=1e-7)
    assert not np.allclose(gradient_flow(encoder, TEXT, "cls", seed=4), by_hand)


def test_a_fitted_probe_and_a_torch_module_as_the_head(encoder):
    from clsviz.experiments.probe import make_probe

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, encoder.info.hidden_size)).astype(np.float32)
    y = rng.integers(0, 3, size=60)
    probe = make_probe().fit(X, y)
    weight, bias = probe_as_linear(probe)
    # The folded head gives the probe's own probabilities.
    logits = X @ weight.T + bias
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(axis=1, keepdims=True), probe.predict_proba(X), atol=1e-5)
    from_probe = gradient_flow(encoder, TEXT, "mean", head=probe, target=1)
    np.testing.assert_allclose(
        from_probe, _by_hand(encoder, TEXT, "mean", weight, bias, target=1), rtol=1e-4, atol=1e-7
    )
    linear = torch.nn.Linear(encoder.info.hidden_size, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight))
        linear.bias.copy_(torch.as_tensor(bias))
    np.testing.assert_allclose(
        gradient_flow(encoder, TEXT, "mean", head=linear, target=1), from_probe, rtol=1e-5
    )


def test_binary_probe_becomes_two_logits(encoder):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 5))
    lr = LogisticRegression().fit(X, rng.integers(0, 2, size=40))
    weight, bias = probe_as_linear(lr)
    assert weight.shape == (2, 5)
    z = X @ weight.T + bias
    np.testing.assert_allclose(1 / (1 + np.exp(z[:, 0] - z[:, 1])), lr.predict_proba(X)[:, 1], atol=1e-5)


def test_the_models_own_classifier_head(bundled_classifier_dir):
    from transformers import AutoModelForSequenceClassification

    enc = load_encoder(str(bundled_classifier_dir))
    mine = gradient_flow(enc, TEXT, "classifier", target=1)
    full = AutoModelForSequenceClassification.from_pretrained(str(bundled_classifier_dir)).eval()
    tt, _ = _positions(enc)
    ids = torch.as_tensor(tt.input_ids)[None]
    embeds = full.get_input_embeddings()(ids).detach().requires_grad_(True)
    out = full(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([1]))
    by_hand = torch.stack([g[0].norm(dim=-1) for g in torch.autograd.grad(loss, out.hidden_states)]).numpy()
    np.testing.assert_allclose(mine, by_hand, rtol=1e-4, atol=1e-7)
    assert np.all(mine[-1][1:] == 0) and mine[-1][0] > 0  # the head reads [CLS]: position 0


def _hooks(model) -> list:
    """Every hook on every module (transformers installs its own output-capturing hooks once)."""
    return [
        (
            name,
            tuple(m._forward_hooks.values()),
            tuple(m._forward_pre_hooks.values()),
            tuple(m._backward_hooks.values()),
        )
        for name, m in model.named_modules()
    ]


def test_the_shared_model_is_left_as_it_was(encoder):
    encoder.model(
        **encoder.tokenizer(TEXT, return_tensors="pt"), output_hidden_states=True, output_attentions=True
    )
    hooks_before = _hooks(encoder.model)
    before = {k: v.detach().clone() for k, v in encoder.model.state_dict().items()}
    gradient_flow(encoder, TEXT, "cls")
    gradient_flow(encoder, TEXT, "mean", head=torch.nn.Linear(encoder.info.hidden_size, 4), target=3)
    for name, tensor in encoder.model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert not any(p.grad is not None for p in encoder.model.parameters())
    assert not encoder.model.training
    assert _hooks(encoder.model) == hooks_before  # no hook of ours added, none left behind


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"pooling": "middle"}, "Unknown pooling"),
        ({"pooling": "pooler"}, "raw last layer"),
        ({"pooling": "classifier"}, "no fine-tuned classification head"),
        ({"target": 2}, "target 2 is not a class"),
        ({"head": (np.zeros((2, 7)), np.zeros(2))}, "needs weight [C, 384]"),
        ({"head": "a probe"}, "not a fitted linear classifier"),
    ],
)
def test_bad_input_gives_a_message(encoder, kwargs, fragment):
    with pytest.raises(GradientFlowError) as info:
        gradient_flow(encoder, TEXT, **{"pooling": "cls", **kwargs})
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_text_is_refused(encoder):
    with pytest.raises(ValueError, match="empty"):
        gradient_flow(encoder, "   ")


def test_the_module_is_reachable_as_named_in_the_api():
    assert dynamics.gradient_flow is gradient_flow


def test_concurrent_calls_on_the_shared_model_agree(encoder):
    from concurrent.futures import ThreadPoolExecutor

    from clsviz import trace

    texts = [TEXT, "Rain again, all week long.", "A quiet walk by the river made my day."] * 2
    serial = [gradient_flow(encoder, t, "cls" if i % 2 else "mean") for i, t in enumerate(texts)]
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(gradient_flow, encoder, t, "cls" if i % 2 else "mean") for i, t in enumerate(texts)
        ]
        # A plain trace runs on the shared model at the same time and is not disturbed.
        traced = pool.submit(trace, encoder, TEXT)
        parallel = [f.result() for f in futures]
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(traced.result().hidden_states, trace(encoder, TEXT).hidden_states, atol=1e-6)
