"""The trained inverter: it memorises a small training set, its outputs follow the vector, correction
steps never lose cosine, training is deterministic, and the shared encoder is left as it was."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
import torch

from clsviz.corpus import demo_corpus
from clsviz.experiments import inverter as inv_mod
from clsviz.experiments.inverter import pick_device, prepare_texts, torch_threads, train_inverter
from clsviz.experiments.text_match import token_f1
from clsviz.progress import Cancelled

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _short_sentences(n: int, start: int = 0) -> list[str]:
    texts = [t for t in demo_corpus().texts if len(t.split()) <= 10]
    return texts[start : start + n]


def _weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def trained(encoder):
    """The bundled model's last-layer [CLS], 48 short sentences, 400 steps, every other default."""
    texts = _short_sentences(48)
    before = _weights_digest(encoder.model)
    calls = []
    inverter = train_inverter(encoder, texts, layer=-1, pooling="cls", steps=400, seed=0,
                              progress=lambda *a: calls.append(a))
    return inverter, texts, before, calls


def test_memorises_its_training_set(trained):
    inverter, texts, _, _ = trained
    frame = inverter.evaluate(texts)
    assert {"text", "output", "token_f1", "bleu", "exact"} <= set(frame.columns)
    assert frame["text"].tolist() == texts
    assert inverter.steps_run <= 400
    assert frame["token_f1"].mean() >= 0.8, frame[["reference", "output", "token_f1"]]
    # The per-row scores are those of the output against the reference, recomputed here.
    assert frame["token_f1"].tolist() == [token_f1(o, r) for o, r in zip(frame["output"], frame["reference"])]
    assert frame["exact"].tolist() == [o.split() == r.split() for o, r in zip(frame["output"], frame["reference"])]
    assert frame["bleu"].between(0, 100).all()


def test_outputs_follow_the_vector(trained, encoder):
    inverter, texts, _, _ = trained
    outputs = inverter.invert(texts)
    assert len(set(outputs)) >= 40  # not one fixed string for every input
    # A vector is conditioned on directly: the same outputs as from the texts.
    vectors = inverter.embed(texts[:6])
    assert inverter.invert(vectors) == outputs[:6]
    assert inverter.invert(vectors[2]) == [outputs[2]]
    # Unseen sentences get different outputs too (whatever their quality).
    unseen = inverter.invert(_short_sentences(12, start=200))
    assert len(set(unseen)) > 1
    # Swapping two vectors swaps the outputs.
    assert inverter.invert(vectors[[1, 0]]) == [outputs[1], outputs[0]]


def test_correction_steps_never_lower_the_cosine(trained):
    inverter, _, _, _ = trained
    unseen = _short_sentences(10, start=300)
    once = inverter.evaluate(unseen)
    corrected = inverter.evaluate(unseen, corrections=2)
    assert (corrected["cosine"].to_numpy() >= once["cosine"].to_numpy() - 1e-6).all()
    # cosine: the output re-embedded against the text's vector, recomputed here.
    i = int(np.flatnonzero(once["output"].str.strip().to_numpy() != "")[0])
    a = inverter.embed([once["output"].iloc[i]])[0]
    b = inverter.embed([unseen[i]])[0]
    assert once["cosine"].iloc[i] == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-5)


def test_shared_encoder_untouched_and_progress(trained, encoder):
    _, _, before, calls = trained
    assert _weights_digest(encoder.model) == before
    assert not encoder.model._forward_hooks and not encoder.model._forward_pre_hooks
    assert not any(p.requires_grad for p in encoder.model.parameters())
    assert calls and all(len(c) == 3 and c[0] <= c[1] == 400 for c in calls)


def test_deterministic_for_a_seed(tiny_encoder):
    texts = _short_sentences(16)
    a = train_inverter(tiny_encoder, texts, steps=30, seed=5, stop_loss=0.0)
    b = train_inverter(tiny_encoder, texts, steps=30, seed=5, stop_loss=0.0)
    c = train_inverter(tiny_encoder, texts, steps=30, seed=6, stop_loss=0.0)
    assert a.history["loss"].tolist() == b.history["loss"].tolist()
    assert a.history["loss"].tolist() != c.history["loss"].tolist()
    assert a.invert(texts) == b.invert(texts)


def test_deterministic_while_another_thread_draws_random_numbers(tiny_encoder):
    """Parameters and batches come from the seed alone, not torch's global generator."""
    texts = _short_sentences(16)
    a = train_inverter(tiny_encoder, texts, steps=20, seed=1, stop_loss=0.0)
    stop = threading.Event()

    def noise():
        while not stop.is_set():
            torch.rand(100)

    t = threading.Thread(target=noise)
    t.start()
    try:
        b = train_inverter(tiny_encoder, texts, steps=20, seed=1, stop_loss=0.0)
    finally:
        stop.set()
        t.join()
    assert a.history["loss"].tolist() == b.history["loss"].tolist()


def test_device_placement(tiny_encoder, monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    inverter = train_inverter(tiny_encoder, _short_sentences(8), steps=3)
    assert inverter.device == torch.device("cpu")
    assert all(p.device == inverter.device for p in inverter.net.parameters())


def test_cancel_and_bad_input(tiny_encoder):
    texts = _short_sentences(8)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        train_inverter(tiny_encoder, texts, steps=50, cancel=stop)
    with pytest.raises(ValueError, match="Unknown pooling"):
        train_inverter(tiny_encoder, texts, pooling="median")
    with pytest.raises(IndexError, match="outside"):
        train_inverter(tiny_encoder, texts, layer=9)
    with pytest.raises(ValueError, match="empty"):
        train_inverter(tiny_encoder, ["fine", "  "])
    with pytest.raises(ValueError, match="at least 2"):
        train_inverter(tiny_encoder, ["only one"])
    plain = train_inverter(tiny_encoder, texts, steps=3, correction=False)
    with pytest.raises(ValueError, match="without correction steps"):
        plain.invert(texts, corrections=1)
    with pytest.raises(ValueError, match="vectors of size 32"):
        plain.invert(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN"):
        plain.invert(np.full(32, np.nan))


def test_texts_are_cut_before_embedding(tiny_encoder):
    long = " ".join(["cat"] * 50)
    references, pieces = prepare_texts(tiny_encoder, [long, "A Dog!"], max_tokens=5)
    assert pieces[0] == tiny_encoder.tokenizer("cat " * 5, add_special_tokens=False)["input_ids"]
    assert references == ["cat cat cat cat cat", "a dog!"]
    inverter = train_inverter(tiny_encoder, [long, "a dog barked"], steps=2, max_tokens=5)
    np.testing.assert_allclose(inverter.embed([long]), inverter.embed(["cat cat cat cat cat"]), atol=1e-6)
    assert all(len(tiny_encoder.tokenizer(o, add_special_tokens=False)["input_ids"]) <= 5
               for o in inverter.invert([long, "a dog"]))


def test_vocabulary_is_the_training_pieces(tiny_encoder):
    texts = _short_sentences(8)
    inverter = train_inverter(tiny_encoder, texts, steps=2)
    expected = sorted({p for t in texts for p in tiny_encoder.tokenizer(t, add_special_tokens=False)["input_ids"]})
    assert list(inverter.vocabulary) == expected
    assert inv_mod.PAD != inv_mod.BOS != inv_mod.EOS


def test_torch_threads_restores_the_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_state_pickles_without_the_encoder_and_attaches_again(tiny_encoder, encoder):
    import pickle

    texts = _short_sentences(8)
    inverter = train_inverter(tiny_encoder, texts, steps=5)
    data = pickle.dumps(inverter.state())
    assert len(data) < 20_000_000  # the network only, not the encoder's weights
    again = pickle.loads(data).attach(tiny_encoder)
    assert again.invert(texts) == inverter.invert(texts)
    assert again.history["loss"].tolist() == inverter.history["loss"].tolist()
    with pytest.raises(ValueError, match="trained on"):
        pickle.loads(data).attach(encoder)
