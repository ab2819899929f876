"""trace(): shapes, special tokens, truncation, bad input, several encoder families."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsviz import load_encoder, trace
from tests.conftest import TINY_KINDS


def test_trace_shapes_and_metadata(encoder):
    t = trace(encoder, "Why is the [CLS] token always first?")
    T = len(t.tokens)
    assert t.attentions.shape == (6, 12, T, T) and t.attentions.dtype == np.float32
    assert t.hidden_states.shape == (7, T, 384) and t.hidden_states.dtype == np.float32
    assert t.pooler_output.shape == (384,)
    assert t.input_ids.shape == (T,) and t.special_mask.shape == (T,)
    assert t.tokens[t.cls_index] == "[CLS]" and t.cls_index == 0
    assert t.tokens[t.sep_index] == "[SEP]" and t.sep_index == T - 1
    assert not t.truncated
    # Attention rows are probability distributions.
    np.testing.assert_allclose(t.attentions.sum(-1), 1.0, atol=1e-5)
    # Offsets point back into the text for content tokens.
    for (start, end), tok, special in zip(t.offsets, t.tokens, t.special_mask):
        if not special:
            assert t.text[start:end].lower().startswith(tok.replace("##", "")[:1])


def test_hidden_states_match_a_plain_forward_pass(encoder):
    text = "The cat chased the dog."
    t = trace(encoder, text)
    ids = encoder.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = encoder.model(**ids, output_hidden_states=True)
    ref = torch.stack(out.hidden_states)[:, 0].numpy()
    np.testing.assert_allclose(t.hidden_states, ref, atol=1e-4)


def test_attention_maps_match_a_plain_eager_pass_layer_by_layer(encoder):
    """The maps trace keeps are the eager model's own, in layer order; each layer's tensor is let
    go once copied, so the maps are never held twice."""
    from clsviz.tracing import _maps_to_numpy

    text = "The cat chased the dog."
    t = trace(encoder, text)
    ids = encoder.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        maps = list(encoder.eager_model(**ids, output_attentions=True).attentions)
    expected = [m[0].numpy().copy() for m in maps]
    for layer, ref in enumerate(expected):
        np.testing.assert_allclose(t.attentions[layer], ref, atol=1e-5)
    copied = _maps_to_numpy(maps)
    assert maps == [None] * len(expected)
    np.testing.assert_array_equal(copied, np.stack(expected))


def test_pooler_output_is_tanh_of_dense_on_cls(encoder):
    t = trace(encoder, "A sentence for the pooler.")
    dense = encoder.model.pooler.dense
    W, b = dense.weight.detach().numpy(), dense.bias.detach().numpy()
    for layer in range(t.num_layers + 1):
        expected = np.tanh(W @ t.cls(layer) + b)
        np.testing.assert_allclose(t.pooler_states[layer], expected, atol=1e-5)
    np.testing.assert_allclose(t.pooler_output, np.tanh(W @ t.cls(-1) + b), atol=1e-5)
    # And against the model's own pooler output.
    ids = encoder.tokenizer("A sentence for the pooler.", return_tensors="pt")
    with torch.no_grad():
        ref = encoder.model(**ids).pooler_output[0].numpy()
    np.testing.assert_allclose(t.pooler_output, ref, atol=1e-4)


@pytest.mark.parametrize("literal", ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "<s>", "</s>"])
def test_literal_special_token_text_stays_text(encoder, literal):
    t = trace(encoder, f"Is {literal} special here?")
    ids = t.input_ids.tolist()
    assert ids.count(encoder.tokenizer.cls_token_id) == 1
    assert ids.count(encoder.tokenizer.sep_token_id) == 1
    assert encoder.tokenizer.mask_token_id not in ids
    assert encoder.tokenizer.pad_token_id not in ids
    assert t.special_mask.sum() == 2


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\u200b\u200b", "\x00\x01"])
def test_empty_text_is_a_clear_value_error(encoder, text):
    with pytest.raises(ValueError, match="empty|no readable tokens"):
        trace(encoder, text)


def test_long_text_is_truncated_to_the_model_limit(encoder):
    t = trace(encoder, "word " * 2000)
    assert t.truncated
    assert t.seq_len == encoder.info.max_tokens == 512
    assert t.tokens[0] == "[CLS]" and t.tokens[-1] == "[SEP]"


def test_max_length_argument_truncates(encoder):
    t = trace(encoder, "one two three four five six seven eight nine ten", max_tokens=6)
    assert t.seq_len == 6 and t.truncated
    assert not trace(encoder, "one two", max_tokens=6).truncated


def test_exactly_at_limit_is_not_truncated(encoder):
    text = "a b c d"  # 4 content tokens + 2 specials = 6
    assert not trace(encoder, text, max_tokens=6).truncated
    assert trace(encoder, text, max_tokens=5).truncated


def test_trace_validates_shapes(encoder):
    t = trace(encoder, "shape check")
    from dataclasses import replace

    with pytest.raises(ValueError, match=r"attentions: expected \[6, 12, 4, 4\], got \[6, 12, 4, 5\]"):
        replace(t, attentions=np.zeros((6, 12, 4, 5), dtype=np.float32))


def test_accessors(encoder):
    t = trace(encoder, "Accessors are small.")
    np.testing.assert_array_equal(t.cls(3), t.hidden_states[3, t.cls_index])
    np.testing.assert_array_equal(t.hidden(-1), t.hidden_states[-1])
    # Blocks are numbered 1..L: block 3 is attentions[2] and writes hidden_states[3].
    np.testing.assert_allclose(t.attention(3), t.attentions[2].mean(0))
    np.testing.assert_array_equal(t.attention(3, 5), t.attentions[2, 5])
    np.testing.assert_array_equal(t.attention(-1, 5), t.attentions[-1, 5])
    np.testing.assert_allclose(t.attention_to(0), t.attentions[:, :, :, 0].mean(-1))
    np.testing.assert_allclose(t.attention_to(0, include_self=False), t.attentions[:, :, 1:, 0].mean(-1))
    np.testing.assert_array_equal(t.attention_from(0), t.attentions[:, :, 0, :])
    assert t.labels()[0] == "0:[CLS]"
    with pytest.raises(IndexError):
        t.hidden(7)
    with pytest.raises(IndexError):
        t.attention(1, 12)
    with pytest.raises(IndexError, match="embeddings"):
        t.attention(0)


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_tiny_encoder_families(kind, tiny_model_dirs):
    enc = load_encoder(str(tiny_model_dirs[kind]))
    t = trace(enc, "the cat chased the dog")
    T = t.seq_len
    assert t.attentions.shape == (2, 4, T, T)
    assert t.hidden_states.shape == (3, T, 32)
    expected_cls = "<s>" if kind == "roberta" else "[CLS]"
    assert enc.info.cls_token == expected_cls
    assert t.tokens[t.cls_index] == expected_cls and t.cls_index == 0
    assert t.special_mask[0] and t.special_mask[-1] and not t.special_mask[1:-1].any()
    np.testing.assert_allclose(t.attentions.sum(-1), 1.0, atol=1e-5)
    assert (t.pooler_output is not None) == enc.info.has_pooler
