"""clsviz.batched_forward: every hidden state of padded batches, block by block into reused
buffers, against the model's own forward (every family, padded batches, position ids)."""

from __future__ import annotations

import pytest
import torch

from clsviz.batched_forward import BlockRunner
from clsviz.vectors import hidden_batches, padded_batches, tokenize_texts
from tests.test_attention import tiny_mpnet_dir  # noqa: F401 (fixture)
from tests.test_blocks import (
    KINDS,
    encoders,  # noqa: F401 (fixture: one encoder per family and the bundled one)
)

TEXTS = [
    "The cat chased the dog across the yard and then sat down.",
    "Why is it first?",
    "A much longer sentence about the weather, the sea, and the people who watch both all day.",
    "Short.",
    "Batches are sorted by length, so the first one is the longest.",
]


def _model_hidden(enc, ids, mask, positions=None) -> torch.Tensor:
    kwargs = dict(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
    if positions is not None:
        kwargs["position_ids"] = positions
    return torch.stack(enc.model(**kwargs).hidden_states, dim=1)


@pytest.mark.parametrize("kind", KINDS)
def test_every_hidden_state_matches_the_model_on_padded_batches(encoders, kind):  # noqa: F811
    enc = encoders[kind]
    tok = tokenize_texts(enc, TEXTS)
    runner = BlockRunner(enc)
    with torch.inference_mode():
        batches = list(padded_batches(enc, tok.input_ids, tok.special_masks, 2))
        assert len({ids.shape[1] for _, ids, *_ in batches}) > 1  # batches of different widths share buffers
        for _rows, ids, mask, _special, _positions in batches:
            want = _model_hidden(enc, ids, mask)
            got = runner(ids, mask)
            assert got.shape == want.shape
            real = mask[:, None, :, None]  # padding positions carry no meaning on either side
            torch.testing.assert_close(got * real, want * real, rtol=1e-5, atol=2e-5)


def test_position_ids_are_used_as_given(encoders):  # noqa: F811
    enc = encoders["bert"]
    tok = tokenize_texts(enc, TEXTS[:2])
    _rows, ids, mask, _special, _ = next(iter(padded_batches(enc, tok.input_ids, tok.special_masks, 2)))
    positions = torch.arange(ids.shape[1])[None].expand_as(ids).flip(1).contiguous()  # reversed order
    with torch.inference_mode():
        want = _model_hidden(enc, ids, mask, positions)
        got = BlockRunner(enc)(ids, mask, positions)
    real = mask[:, None, :, None]
    torch.testing.assert_close(got * real, want * real, rtol=1e-5, atol=2e-5)


def test_hidden_batches_falls_back_to_the_model_for_other_families(tiny_mpnet_dir):  # noqa: F811
    from clsviz import load_encoder

    mpnet = load_encoder(str(tiny_mpnet_dir))
    tok = tokenize_texts(mpnet, TEXTS[:3])
    with torch.inference_mode():
        for rows, hidden, ids, mask, _ in hidden_batches(mpnet, tok.input_ids, tok.special_masks, 2):
            torch.testing.assert_close(hidden, _model_hidden(mpnet, ids, mask))
            assert len(rows) == ids.shape[0]
