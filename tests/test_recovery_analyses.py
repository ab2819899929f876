"""The lens, the ladder and the inverter pair as declared analyses: parameters, results that show
themselves, results that pickle without the encoder (a worker process's job)."""

from __future__ import annotations

import pickle

import pytest

from clsviz.analyses import NotApplicable, ParamError, get, run
from clsviz.corpus import demo_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def texts():
    return list(demo_corpus().texts[:40])


def test_declarations():
    lens, ladder, pair = get("lens.tuned"), get("inversion.ladder"), get("inversion.inverter")
    assert lens.long and ladder.long and pair.long
    assert lens.inputs == ladder.inputs == pair.inputs == ("encoder", "texts")
    assert lens.param("target").choices == ("final", "logits")
    assert ladder.param("layers").choices == ("all", "every_other", "last")
    assert lens.figures == ("lens.tuned",) and ladder.figures == ("inversion.ladder",)
    with pytest.raises(ParamError, match="one of"):
        ladder.check(layers="most")


def test_lens_analysis(tiny_encoder, texts):
    result = run("lens.tuned", tiny_encoder, texts, pooling="cls+mean")
    assert set(result.table()["pooling"]) == {"cls", "mean"}
    assert list(result.figures()) == ["lens.tuned"] and result.summary()
    assert pickle.loads(pickle.dumps(result)).table().equals(result.table())
    with pytest.raises(NotApplicable, match="classification head"):
        run("lens.tuned", tiny_encoder, texts, target="logits")


def test_ladder_analysis(tiny_encoder, texts):
    result = run("inversion.ladder", tiny_encoder, texts, layers="last", steps=3)
    assert set(result.table()["layer"]) == {tiny_encoder.info.num_layers}
    assert list(result.figures()) == ["inversion.ladder"]
    assert len(pickle.dumps(result)) < 5_000_000


def test_inverter_pair_recovers_typed_sentences(tiny_encoder, texts):
    pair = run("inversion.inverter", tiny_encoder, texts[:12], layer=1, steps=4)
    assert set(pair.states) == {"cls", "mean"} and pair.layer == 1
    again = pickle.loads(pickle.dumps(pair))  # what a worker process sends back
    typed = ["A typed sentence that is not in the corpus.", texts[0]]
    table = again.recover(tiny_encoder, typed, corrections=1)
    assert table["pooling"].tolist() == ["cls", "cls", "mean", "mean"]
    assert table["text"].tolist() == typed * 2
    assert table.equals(pair.recover(tiny_encoder, typed, corrections=1))
    assert set(pair.table()["pooling"]) == {"cls", "mean"} and pair.summary()
    with pytest.raises(ValueError, match="Type a sentence"):
        pair.recover(tiny_encoder, ["  "])
