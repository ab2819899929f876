"""Position experiments: variant inputs, per-layer measures, moved-[CLS] extraction and probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clsviz import extract, load_encoder, trace
from clsviz.experiments import moved_cls as PP
from clsviz.experiments import position as P
from clsviz.experiments.probe import run_probe
from clsviz.tracing import tokenize

TEXT = "The cat chased the dog across the garden."


@pytest.fixture(scope="module")
def tiny_encoders(tiny_model_dirs):
    return {kind: load_encoder(str(tiny_model_dirs[kind])) for kind in ("bert", "roberta", "distilbert")}


def _expected_tokens(encoder, text, replacement="the"):
    """The variant token sequences, written out from the standard tokens by hand."""
    tt = tokenize(encoder, text)
    toks = list(tt.tokens)
    cls = encoder.info.cls_token
    assert toks[0] == cls
    body = toks[1:]  # text tokens then the closing special token
    n_text = int((~tt.special_mask).sum())
    half = (n_text + 1) // 2
    word = encoder.tokenizer.convert_ids_to_tokens(
        encoder.tokenizer(replacement, add_special_tokens=False)["input_ids"][0]
    )
    return {
        "standard": toks,
        "cls_end": body + [cls],
        "cls_middle": body[:half] + [cls] + body[half:],
        "no_cls": body,
        "mask": [encoder.tokenizer.mask_token] + body,
        "other_token": [word] + body,
        "shifted": toks,
    }, {
        "standard": 0,
        "cls_end": len(toks) - 1,
        "cls_middle": half,
        "no_cls": 0,
        "mask": 0,
        "other_token": 0,
        "shifted": 0,
    }


@pytest.mark.parametrize("kind", ["bert", "roberta", "distilbert"])
def test_variant_tokens_and_positions(tiny_encoders, kind):
    enc = tiny_encoders[kind]
    variants = {v.name: v for v in P.build_variants(enc, TEXT, shift=5)}
    tokens, slots = _expected_tokens(enc, TEXT)
    offset = enc.model.config.pad_token_id + 1 if kind == "roberta" else 0
    assert set(variants) == set(P.POSITION_VARIANTS)
    for name, v in variants.items():
        assert list(v.tokens) == tokens[name], name
        assert v.slot == slots[name], name
        assert enc.tokenizer.convert_ids_to_tokens(v.input_ids.tolist()) == tokens[name]
        expected_pos = offset + np.arange(len(tokens[name])) + (5 if name == "shifted" else 0)
        np.testing.assert_array_equal(v.position_ids, expected_pos)
        # Only the text's own tokens count as content; the slot is content only without [CLS].
        assert v.content_mask.sum() == len(enc.tokenizer(TEXT, add_special_tokens=False)["input_ids"])
        assert v.content_mask[v.slot] == (name == "no_cls")


def test_variant_inputs_rejects_unknown():
    with pytest.raises(ValueError, match="Unknown position variant"):
        P.variant_inputs(np.array([1, 2, 3]), np.array([True, False, True]), 0, "sideways")


def test_standard_run_equals_trace(encoder, tiny_encoders):
    for enc in (encoder, *tiny_encoders.values()):
        result = P.position_experiment(enc, TEXT, variants=("standard", "cls_end"))
        t = trace(enc, TEXT)
        std = result.run("standard")
        np.testing.assert_allclose(std.hidden_states, t.hidden_states, atol=1e-5)
        np.testing.assert_allclose(std.attentions, t.attentions, atol=1e-6)
        rows = result.table[result.table["variant"] == "standard"]
        np.testing.assert_allclose(rows["cos_to_standard_cls"], 1.0, atol=1e-6)


def test_table_measures_match_numpy(encoder):
    result = P.position_experiment(encoder, TEXT)
    table = result.table
    ref = result.run("standard").hidden_states[:, 0]
    tokens = result.run("standard").hidden_states[:, 1:-1]
    for run in result.runs:
        rows = table[table["variant"] == run.variant.name].sort_values("layer")
        slot = run.variant.slot
        vec = run.hidden_states[:, slot].astype(np.float64)
        att = run.attentions[:, :, :, slot]
        expected_att = np.array([att[i].sum() / (att.shape[1] * att.shape[2]) for i in range(att.shape[0])])
        np.testing.assert_allclose(rows["attention_received"].to_numpy()[1:], expected_att, rtol=1e-5)
        assert np.isnan(rows["attention_received"].iloc[0])
        cos = [
            np.dot(vec[i], ref[i]) / np.linalg.norm(vec[i]) / np.linalg.norm(ref[i]) for i in range(len(vec))
        ]
        np.testing.assert_allclose(rows["cos_to_standard_cls"], cos, rtol=1e-5, atol=1e-6)
        text_rows = run.hidden_states[:, run.variant.content_mask].astype(np.float64).mean(axis=1)
        cos_mean = [
            np.dot(vec[i], text_rows[i]) / np.linalg.norm(vec[i]) / np.linalg.norm(text_rows[i])
            for i in range(len(vec))
        ]
        np.testing.assert_allclose(rows["cos_to_mean"], cos_mean, rtol=1e-5, atol=1e-6)
        yard = [
            np.mean([np.dot(tok, ref[i]) / np.linalg.norm(tok) / np.linalg.norm(ref[i]) for tok in tokens[i]])
            for i in range(len(ref))
        ]
        np.testing.assert_allclose(rows["standard_cls_to_tokens"], yard, rtol=1e-5, atol=1e-6)
    # Moving [CLS] changes its input, so at the embeddings it differs from the standard one ...
    moved = table[(table["variant"] == "cls_end") & (table["layer"] == 0)]["cos_to_standard_cls"].item()
    assert moved < 0.999
    sentence = P.summarize_position(table)
    assert (
        f"{table[(table.variant == 'cls_end') & (table.layer == 6)]['cos_to_standard_cls'].item():.2f}"
        in sentence
    )


def test_shifted_embeddings_use_shifted_positions(tiny_encoders):
    """The shifted run's layer-0 output equals word + shifted position + type embeddings, normalized."""
    enc = tiny_encoders["bert"]
    result = P.position_experiment(enc, TEXT, variants=("shifted",), shift=7)
    run = result.run("shifted")
    emb = enc.model.embeddings
    ids = torch.as_tensor(run.variant.input_ids)
    pos = torch.arange(len(ids)) + 7
    with torch.no_grad():
        x = (
            emb.word_embeddings.weight[ids]
            + emb.position_embeddings.weight[pos]
            + emb.token_type_embeddings.weight[0]
        )
        x = torch.nn.functional.layer_norm(
            x, x.shape[-1:], emb.LayerNorm.weight, emb.LayerNorm.bias, emb.LayerNorm.eps
        )
    np.testing.assert_allclose(run.hidden_states[0], x.numpy(), atol=1e-5)
    assert result.shift == 7


def test_shift_is_clamped_and_unsupported_models_explained(tiny_encoders, monkeypatch):
    enc = tiny_encoders["bert"]  # 64 positions
    n = len(tokenize(enc, TEXT).input_ids)
    result = P.position_experiment(enc, TEXT, variants=("shifted",), shift=1000)
    assert result.shift == 64 - n
    assert any("1000" in note for note in result.notes)
    assert int(result.run("shifted").variant.position_ids.max()) == 63

    monkeypatch.setattr(P, "accepts_position_ids", lambda model: False)
    result = P.position_experiment(enc, TEXT, variants=("shifted", "cls_end"))
    assert [r.variant.name for r in result.runs] == ["standard", "cls_end"]
    assert any("does not accept explicit position ids" in note for note in result.notes)


def test_accepts_position_ids(tiny_encoders):
    assert P.accepts_position_ids(tiny_encoders["bert"].eager_model)

    class NoPositions(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return input_ids

    assert not P.accepts_position_ids(NoPositions())


@pytest.mark.parametrize("variant", ["standard", "cls_end", "cls_middle", "no_cls", "mask", "shifted"])
def test_moved_cls_vectors_match_single_runs(tiny_encoders, variant):
    """Batched, padded, fast-kernel extraction reads the same slot vectors as one eager run per text."""
    enc = tiny_encoders["bert"]
    texts = ["A cat.", TEXT, "Why is the token always first in the sentence, and not last?", "Dogs bark."]
    batched = PP.moved_cls_vectors(enc, texts, variant, shift=3, batch_size=3)
    for i, text in enumerate(texts):
        v = {x.name: x for x in P.build_variants(enc, text, variants=(variant,), shift=3)}[variant]
        single = P.run_variant(enc, v)
        np.testing.assert_allclose(batched[i], single.slot_vectors(), atol=2e-5)


def test_standard_moved_vectors_equal_extract(encoder):
    texts = ["The film was not bad at all.", "Why is [CLS] first?", "It rained all day in the small town."]
    ours = PP.moved_cls_vectors(encoder, texts, "standard")
    theirs = extract(encoder, texts, ("cls",)).vectors[:, :, 0]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def _toy_corpus():
    animals = ["cat", "dog", "bird"]
    verbs = ["chased", "saw", "liked", "heard"]
    things = ["ball", "car", "tree", "river", "house"]
    texts = [f"The {a} {v} the {t}." for a in animals for v in verbs for t in things]
    labels = [t.split()[1] for t in texts]
    return texts, labels


def test_position_probe_matches_run_probe_on_extract(tiny_encoders):
    enc = tiny_encoders["bert"]
    texts, labels = _toy_corpus()
    table, notes = PP.position_probe(enc, texts, labels, variants=("standard", "cls_end"), folds=3)
    assert set(table["variant"]) == {"standard", "cls_end"}
    assert len(table) == 2 * (enc.info.num_layers + 1)
    # The standard variant is the ordinary [CLS] vector: the same probe on extract() agrees.
    pooled = extract(enc, texts, ("cls",))
    ref = run_probe({"cls": pooled.vectors[:, :, 0]}, labels, folds=3).table
    std = table[table["variant"] == "standard"].sort_values("layer")
    np.testing.assert_allclose(std["accuracy"], ref.sort_values("layer")["accuracy_mean"], atol=1e-9)
    counts = np.unique(labels, return_counts=True)[1]
    assert table["majority"].iloc[0] == pytest.approx(counts.max() / counts.sum())
    assert table["chance"].iloc[0] == pytest.approx(1 / 3)
    assert table["accuracy"].between(0, 1).all()
    assert "standard" in PP.summarize_probe(table) or "[CLS] first" in PP.summarize_probe(table)


def test_position_probe_bad_input(tiny_encoders):
    enc = tiny_encoders["bert"]
    texts, labels = _toy_corpus()
    with pytest.raises(ValueError, match="single class"):
        PP.position_probe(enc, texts, ["x"] * len(texts))
    with pytest.raises(ValueError, match="identical"):
        PP.position_probe(enc, ["Same words."] * 20, ["a", "b"] * 10)
    with pytest.raises(ValueError, match="fewer examples"):
        PP.position_probe(enc, texts, labels[:-1] + ["lonely"])
    with pytest.raises(ValueError, match="at least"):
        PP.position_probe(enc, texts[:3], labels[:3])


def test_figures_carry_the_table(tiny_encoders):
    from clsviz import figures
    from tests.test_attention import _arr

    enc = tiny_encoders["bert"]
    result = P.position_experiment(enc, "A <b>bold</b> cat.")
    fig = figures.position_figure(result.table).to_dict()
    variants = list(dict.fromkeys(result.table["variant"]))
    # Three panels per variant plus the dashed yardstick.
    assert len(fig["data"]) == 3 * len(variants) + 1
    for i, name in enumerate(variants):
        rows = result.table[result.table["variant"] == name].sort_values("layer")
        cos, att, mean = fig["data"][3 * i : 3 * i + 3]
        np.testing.assert_allclose(_arr(cos["y"]), np.round(rows["cos_to_standard_cls"], 4), atol=1e-4)
        np.testing.assert_allclose(
            _arr(att["y"]), np.round(rows["attention_received"].iloc[1:], 4), atol=1e-4
        )
        assert list(att["x"]) == list(range(1, enc.info.num_layers + 1))
        np.testing.assert_allclose(_arr(mean["y"]), np.round(rows["cos_to_mean"], 4), atol=1e-4)
    grid = figures.variant_tokens_figure([r.variant for r in result.runs]).to_dict()["data"][0]
    z = _arr(grid["z"]) if isinstance(grid["z"], dict) else np.asarray(grid["z"], dtype=float)
    for row, run in enumerate(result.runs):
        assert z[row][run.variant.slot] == 2  # the slot is highlighted
    assert all("<b>" not in cell for row in grid["text"] for cell in row)  # user text is escaped
