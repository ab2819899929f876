"""The inversion ladder: its table, retrieval recomputed by brute force, the layer choices, and the
same numbers whether inverters train one or two at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsviz.corpus import demo_corpus
from clsviz.experiments.ladder import PUBLISHED, inversion_ladder, ladder_layers
from clsviz.experiments.text_match import token_f1
from clsviz.figures import ladder_figure
from tests.test_inversion import tiny_mlm_dir  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def texts():
    return list(demo_corpus().texts[:40])


@pytest.fixture(scope="module")
def ladder(tiny_encoder, texts):
    return inversion_ladder(tiny_encoder, texts, layers="every_other", poolings=("cls", "mean"), steps=6, workers=2)


def test_table_shape_and_intervals(ladder, tiny_encoder):
    t = ladder.table
    assert sorted(t["layer"].unique()) == [0, 2]  # every other layer of 2, ending at the last
    assert set(t["method"]) == {"inverter", "retrieval", "bag of words"}
    for method, metrics in (("inverter", {"token_f1", "bleu", "exact"}), ("retrieval", {"token_f1", "bleu", "exact"}),
                            ("bag of words", {"content_f1"})):
        assert set(t.loc[t["method"] == method, "metric"]) == metrics
    assert ((t["low"] <= t["estimate"] + 1e-9) & (t["estimate"] <= t["high"] + 1e-9)).all()
    assert (t["n_test"] == 8).all() and (t["n_train"] == 32).all()
    assert not set(ladder.train_texts) & set(ladder.test_texts)
    assert ladder.settings["n_test"] == 8 and 0 <= ladder.settings["unseen_pieces"] <= 1
    fig = ladder_figure(ladder.table, PUBLISHED)
    assert any(tr.name == "cls · inverter" for tr in fig.data)
    assert ladder.summary() and "vec2text" in ladder.summary()[0]


def test_retrieval_recomputed_by_brute_force(ladder, tiny_encoder):
    """Each held-out text run alone; its nearest training text by cosine of the last layer's [CLS]."""
    def cls(text):
        ids = tiny_encoder.tokenizer(text, return_tensors="pt")
        with torch.inference_mode():
            return tiny_encoder.model(**ids).last_hidden_state[0, 0].double().numpy()

    ex = ladder.examples
    rows = ex[(ex["method"] == "retrieval") & (ex["pooling"] == "cls") & (ex["layer"] == 2)]
    tok = tiny_encoder.tokenizer  # the references: each text's pieces written back by the tokenizer
    train_refs = [tok.decode(tok(t, add_special_tokens=False)["input_ids"][:32]) for t in ladder.train_texts]
    train_vecs = np.array([cls(t) for t in train_refs])
    f1s = []
    for ref, output in zip(rows["reference"], rows["output"]):
        q = cls(ref)
        sims = train_vecs @ q / np.linalg.norm(train_vecs, axis=1) / np.linalg.norm(q)
        assert output.split() == train_refs[int(np.argmax(sims))].split()
        f1s.append(token_f1(output, ref))
    t = ladder.table
    est = t[(t["method"] == "retrieval") & (t["pooling"] == "cls") & (t["layer"] == 2) & (t["metric"] == "token_f1")]
    assert est["estimate"].iloc[0] == pytest.approx(np.mean(f1s))


def test_same_numbers_one_or_two_at_a_time(ladder, tiny_encoder, texts):
    one = inversion_ladder(tiny_encoder, texts, layers="every_other", poolings=("cls", "mean"), steps=6, workers=1)
    np.testing.assert_allclose(one.table["estimate"], ladder.table["estimate"])


def test_layer_choices_and_bad_input(tiny_encoder):
    assert ladder_layers("all", 6) == (0, 1, 2, 3, 4, 5, 6)
    assert ladder_layers("every_other", 5) == (0, 2, 4, 5)
    assert ladder_layers("last", 6) == (6,)
    assert ladder_layers([-1, 0, 6], 6) == (6, 0)
    with pytest.raises(ValueError, match="Valid: all, every_other, last"):
        ladder_layers("some", 6)
    with pytest.raises(IndexError):
        ladder_layers([9], 6)
    with pytest.raises(ValueError, match="at least 20"):
        inversion_ladder(tiny_encoder, ["a sentence", "another one"] * 30)


def test_published_figures_carry_their_setup():
    rows = PUBLISHED.set_index("correction_steps")
    assert rows.loc[50, "exact"] == 0.92 and rows.loc[50, "model"] == "GTR-base" and rows.loc[0, "bleu"] == 30.0
    assert (PUBLISHED["max_tokens"] == 32).all() and PUBLISHED["source"].str.contains("Morris").all()


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "mlm"])
def test_any_encoder_folder(kind, tiny_model_dirs, tiny_mlm_dir, texts):  # noqa: F811
    """Other families and a folder saved with its masked-LM head (as the pretraining lab saves
    them) run the ladder the same way."""
    from clsviz import load_encoder

    folder = tiny_mlm_dir if kind == "mlm" else tiny_model_dirs[kind]
    enc = load_encoder(str(folder))
    result = inversion_ladder(enc, texts, layers="last", poolings=("cls", "mean"), steps=3)
    assert set(result.table["layer"]) == {enc.info.num_layers}
    assert result.examples["output"].map(type).eq(str).all()
