"""extract(): the batched corpus path agrees with pool(trace(...)) everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from clsviz import POOLINGS, extract, load_encoder, pool, trace

TEXTS = [
    "Hi.",
    "Why is the [CLS] token always first in every BERT input sequence?",
    "The cat chased the dog.",
    "A much longer sentence with quite a few more words than the others, so padding matters a lot here.",
    "Not bad at all!",
    "Two words",
    "The dog chased the cat.",
]
ALL = (*POOLINGS, "token:3")


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_extract_agrees_with_pool_of_trace(encoder, batch_size):
    pv = extract(encoder, TEXTS, poolings=ALL, batch_size=batch_size)
    assert pv.vectors.shape == (len(TEXTS), 7, len(ALL), 384)
    assert pv.vectors.dtype == np.float32
    assert pv.texts == tuple(TEXTS) and pv.poolings == ALL
    for i, text in enumerate(TEXTS):
        t = trace(encoder, text)
        for s, pooling in enumerate(ALL):
            for layer in range(7):
                np.testing.assert_allclose(
                    pv.vectors[i, layer, s],
                    pool(t, pooling, layer),
                    atol=2e-4,
                    err_msg=f"{text!r} {pooling} {layer}",
                )


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "albert"])
def test_extract_agrees_on_other_families(kind, tiny_model_dirs):
    enc = load_encoder(str(tiny_model_dirs[kind]))
    poolings = ("cls", "mean", "mean_content", "max", "sep", "first", "last") + (
        ("pooler",) if enc.info.has_pooler else ()
    )
    texts = ["the cat", "the cat chased a dog why is token always first", "model"]
    pv = extract(enc, texts, poolings=poolings, batch_size=2)
    for i, text in enumerate(texts):
        t = trace(enc, text)
        for s, pooling in enumerate(poolings):
            for layer in range(3):
                np.testing.assert_allclose(pv.vectors[i, layer, s], pool(t, pooling, layer), atol=1e-4)


def test_progress_is_reported_per_batch(encoder):
    calls = []
    extract(encoder, TEXTS, batch_size=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 7), (6, 7), (7, 7)]


def test_get_and_truncation_flags(encoder):
    pv = extract(encoder, ["short one", "word " * 600], poolings=("cls", "mean"))
    assert pv.truncated.tolist() == [False, True]
    np.testing.assert_array_equal(pv.get("mean", -1), pv.vectors[:, -1, 1])
    with pytest.raises(KeyError, match="available: cls, mean"):
        pv.get("max")


def test_bad_input(encoder, tiny_model_dirs):
    with pytest.raises(ValueError, match="empty"):
        extract(encoder, [])
    with pytest.raises(ValueError, match="rows 2"):
        extract(encoder, ["fine", "   "])
    with pytest.raises(ValueError, match="Unknown pooling"):
        extract(encoder, ["fine"], poolings=("cls", "avg"))
    distil = load_encoder(str(tiny_model_dirs["distilbert"]))
    with pytest.raises(ValueError, match="no pooler"):
        extract(distil, ["fine"], poolings=("pooler",))
