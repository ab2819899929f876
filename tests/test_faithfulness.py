"""clsviz.faithfulness: the scoreboard ranks a planted signal correctly, its curves are real
reruns, its metrics follow their definitions, and bad input gets a clear message."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clsviz import load_encoder, pool, trace
from clsviz.faithfulness import BINS, MEASURES, rank_measures, token_ranking, verdict
from tests.test_attention import tiny_mpnet_dir  # noqa: F401 (fixture)

TEXT = "The film was not bad at all."
FAST = ("attention", "rollout", "alti", "integrated_gradients", "grad_x_input", "occlusion", "random")
GRADIENTS = ("integrated_gradients", "grad_x_input", "occlusion")


def _eager_hidden(enc, ids) -> np.ndarray:
    batch = torch.as_tensor(np.atleast_2d(ids))
    with torch.inference_mode():
        out = enc.eager_model(input_ids=batch, attention_mask=torch.ones_like(batch), output_hidden_states=True)
    return torch.stack(out.hidden_states).double().numpy()  # [L+1, B, T, D]


@pytest.fixture(scope="module")
def board(encoder):
    return rank_measures(encoder, [TEXT, "The cat chased the dog."], measures=MEASURES)


def test_a_planted_signal_is_ranked_first_by_every_gradient_method(encoder):
    t = trace(encoder, TEXT)
    k = 5  # "bad"
    u = torch.as_tensor(t.hidden_states[0][k], dtype=torch.float64)

    def planted(hidden):  # depends on token k's embedding output only
        return hidden[0][:, k, :].double() @ u.to(hidden.device)

    result = rank_measures(encoder, [TEXT], target=planted, measures=FAST)
    table = result.table.set_index("measure")
    for name in GRADIENTS:
        assert table.loc[name, "first_token"] == t.tokens[k], name
        assert table.loc[name, "aopc"] == pytest.approx(table["aopc"].max(), abs=1e-9), name
    # Removing token k is the whole effect: AOPC = f(x) - f(x without k), computed here by hand.
    masked = t.input_ids.copy()
    masked[k] = encoder.tokenizer.mask_token_id
    h = _eager_hidden(encoder, np.stack([t.input_ids, masked]))[0, :, k]
    drop = float(h[0] @ u.numpy() - h[1] @ u.numpy())
    assert drop > 0
    assert table.loc["integrated_gradients", "aopc"] == pytest.approx(drop, rel=1e-4)


def test_curves_are_real_reruns_and_metrics_follow_their_definitions(encoder, board):
    t = trace(encoder, TEXT)
    curves = board.curves[(board.curves["text_index"] == 0) & (board.curves["measure"] == "attention")]
    n = int(t.content_mask.sum())
    assert list(curves["k"]) == list(range(1, n + 1))
    # The attention measure's order: the last block's [CLS] row, mean over heads.
    order = token_ranking(t.attentions[-1].mean(axis=0)[t.cls_index], t.special_mask)
    mask_id = encoder.tokenizer.mask_token_id
    rows = []
    for k in range(1, n + 1):
        deleted = t.input_ids.copy()
        deleted[order[:k]] = mask_id
        kept = t.input_ids.copy()
        kept[np.setdiff1d(np.flatnonzero(t.content_mask), order[:k])] = mask_id
        rows += [deleted, kept]
    cls = _eager_hidden(encoder, np.stack(rows))[-1, :, t.cls_index]
    ref = pool(t, "cls").astype(np.float64)
    cos = cls @ ref / (np.linalg.norm(cls, axis=1) * np.linalg.norm(ref))
    np.testing.assert_allclose(curves["deleted"], cos[0::2], atol=1e-4)
    np.testing.assert_allclose(curves["kept"], cos[1::2], atol=1e-4)
    assert curves["full"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    row = board.table[(board.table["text_index"] == 0) & (board.table["measure"] == "attention")].iloc[0]
    full, deleted, kept = 1.0, cos[0::2], cos[1::2]
    ks = [max(1, math.ceil(q * n)) - 1 for q in BINS]
    assert row["aopc"] == pytest.approx(np.mean(full - deleted), abs=1e-4)
    assert row["comprehensiveness"] == pytest.approx(np.mean(full - deleted[ks]), abs=1e-4)
    assert row["sufficiency"] == pytest.approx(np.mean(full - kept[ks]), abs=1e-4)


def test_the_board_is_tidy_and_says_what_it_found(board):
    assert set(board.table["measure"]) == set(MEASURES)
    assert len(board.table) == 2 * len(MEASURES)
    assert {"text_index", "measure", "family", "aopc", "comprehensiveness", "sufficiency"} <= set(board.table)
    ranking = board.ranking()
    assert list(ranking["rank"]) == list(range(1, len(MEASURES) + 1))
    assert ranking["aopc"].is_monotonic_decreasing
    sentence = verdict(board)
    assert sentence.startswith("On all-MiniLM-L6-v2") and ranking.iloc[0]["name"] in sentence
    assert "2 sentences" in sentence and sentence.count(".") >= 1


def test_bad_input(encoder, tiny_mpnet_dir):  # noqa: F811
    with pytest.raises(ValueError, match="at least one text"):
        rank_measures(encoder, [])
    with pytest.raises(ValueError, match="Unknown measure"):
        rank_measures(encoder, [TEXT], measures=("attention", "lime"))
    with pytest.raises(ValueError, match="layer 0 is the embedding output"):
        rank_measures(encoder, [TEXT], layer=0)
    single = rank_measures(encoder, ["Hi"], measures=FAST)
    assert (single.table["n_tokens"] == 1).all() and np.isfinite(single.table["aopc"]).all()
    mpnet = load_encoder(str(tiny_mpnet_dir))
    partial = rank_measures(mpnet, ["the cat sat on the mat"], measures=FAST)
    assert set(partial.table["measure"]) == {"attention", "rollout", "occlusion", "random"}
    assert len(partial.notes) == 3 and all("'mpnet'" in note for note in partial.notes)


def test_the_classifier_target_reads_the_models_own_logits(bundled_classifier_dir):
    from transformers import AutoModelForSequenceClassification

    enc = load_encoder(str(bundled_classifier_dir))
    board = rank_measures(enc, [TEXT], target="classifier", measures=("attention", "occlusion", "random"))
    t = trace(enc, TEXT)
    model = AutoModelForSequenceClassification.from_pretrained(str(bundled_classifier_dir)).eval()

    def logits(ids):  # the checkpoint's own forward pass, loaded here apart from clsviz
        with torch.inference_mode():
            return model(input_ids=torch.as_tensor(np.atleast_2d(ids))).logits.double().numpy()

    full = logits(t.input_ids)[0]
    c = int(np.argmax(full))  # the predicted class is the default
    assert "classifier logit" in board.target
    curves = board.curves[board.curves["measure"] == "attention"]
    assert curves["full"].iloc[0] == pytest.approx(full[c], abs=1e-3)
    mask_id = enc.tokenizer.mask_token_id
    order = token_ranking(t.attentions[-1].mean(axis=0)[t.cls_index], t.special_mask)
    deleted = np.repeat(t.input_ids[None], len(order), axis=0)
    for k in range(len(order)):
        deleted[k, order[: k + 1]] = mask_id
    np.testing.assert_allclose(curves["deleted"], logits(deleted)[:, c], atol=1e-3)
    # Occlusion removes first the token whose masking alone moves the logit most.
    content = np.flatnonzero(t.content_mask)
    single = np.repeat(t.input_ids[None], len(content), axis=0)
    single[np.arange(len(content)), content] = mask_id
    drops = full[c] - logits(single)[:, c]
    first = board.table.set_index("measure").loc["occlusion", "first_token"]
    assert first == t.tokens[content[np.argmax(np.abs(drops))]]
