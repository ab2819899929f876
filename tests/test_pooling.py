"""pool(): every pooling against direct numpy, and mean pooling against sentence-transformers."""

from __future__ import annotations

import numpy as np
import pytest

from clsviz import POOLINGS, pool, trace
from clsviz.encoder import bundled_model_path

TEXTS = ["The film was not bad at all.", "Why is the CLS token always first?", "Short."]


@pytest.fixture(scope="module")
def traces(encoder):
    return [trace(encoder, t) for t in TEXTS]


def _expected(t, pooling, layer):
    h = t.hidden_states[layer]
    content = np.flatnonzero(~t.special_mask)
    if pooling == "cls":
        return h[t.cls_index]
    if pooling == "mean":
        return h.mean(0)
    if pooling == "mean_content":
        return h[content].mean(0)
    if pooling == "max":
        return h.max(0)
    if pooling == "sep":
        return h[t.sep_index]
    if pooling == "pooler":
        return t.pooler_states[layer]
    if pooling == "first":
        return h[content[0]]
    if pooling == "last":
        return h[content[-1]]
    k = int(pooling.split(":")[1])
    return h[min(k, t.seq_len - 1)]


@pytest.mark.parametrize("pooling", [*POOLINGS, "token:2", "token:99"])
@pytest.mark.parametrize("layer", [0, 3, 6])
def test_pool_matches_direct_numpy(traces, pooling, layer):
    for t in traces:
        np.testing.assert_allclose(pool(t, pooling, layer), _expected(t, pooling, layer), atol=1e-6)


def test_negative_layer_counts_from_the_end(traces):
    t = traces[0]
    np.testing.assert_array_equal(pool(t, "mean", -1), pool(t, "mean", t.num_layers))


def test_mean_pooling_equals_sentence_transformers(encoder, traces):
    from sentence_transformers import SentenceTransformer

    st_model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    reference = st_model.encode(TEXTS, normalize_embeddings=True)
    for t, ref in zip(traces, reference, strict=True):
        v = pool(t, "mean", layer=-1)
        np.testing.assert_allclose(v / np.linalg.norm(v), ref, atol=2e-5)


def test_unknown_pooling_lists_valid_names(traces):
    with pytest.raises(ValueError, match="Valid: cls, mean"):
        pool(traces[0], "average")
    with pytest.raises(ValueError, match="token:K"):
        pool(traces[0], "token:x")


def test_pooler_pooling_without_pooler(tiny_model_dirs):
    from clsviz import load_encoder

    enc = load_encoder(str(tiny_model_dirs["distilbert"]))
    t = trace(enc, "no pooler here")
    with pytest.raises(ValueError, match="no pooler head"):
        pool(t, "pooler")


@pytest.mark.parametrize("padded", [True, False, "gaps"])
@pytest.mark.parametrize("pooling", [p for p in POOLINGS if p != "pooler"] + ["token:3"])
def test_batched_torch_pooling_matches_numpy(pooling, padded):
    """The torch path (corpus extraction: a matrix product for mean; for max, no masked copy when
    a batch has no padding or pads only at the end) gives the numpy path's vectors, padding
    ignored; a mask with gaps takes the masked path."""
    import torch

    from clsviz.pooling import pool_hidden

    rng = np.random.default_rng(3)
    hidden = rng.normal(size=(4, 3, 9, 5)).astype(np.float32)
    lengths = [9, 6, 4, 9] if padded else [9] * 4
    mask = np.arange(9)[None, :] < np.array(lengths)[:, None]
    special = np.zeros_like(mask)
    special[:, 0] = True
    special[np.arange(4), np.array(lengths) - 1] = True
    if padded == "gaps":
        mask[1, 2] = False
    hidden[np.broadcast_to(~mask[:, None, :, None], hidden.shape)] = 1e3  # padding must not leak
    expected = pool_hidden(hidden, mask, special, pooling)
    got = pool_hidden(
        torch.from_numpy(hidden),
        torch.from_numpy(mask),
        torch.from_numpy(special),
        pooling,
        torch.zeros(4, dtype=torch.long),
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected).max() < 1e3
