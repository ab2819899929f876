"""clsviz.faithfulness: the scoreboard ranks a planted signal correctly, its curves are real
reruns, its metrics follow their definitions (AOPC as Samek et al.), every measure's AOPC has its
interval, a signal-free measure is left out (not ranked), the random reference is the mean of many
shuffles, and bad input gets a clear message."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clsviz import load_encoder, pool, trace
from clsviz.attribution import AttributionError, attribute
from clsviz.faithfulness import BINS, MEASURES, SHUFFLES, aopc, rank_measures, token_ranking, verdict
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


@pytest.fixture(scope="module")
def self_board(encoder):
    return rank_measures(encoder, [TEXT, "The cat chased the dog."], target="self_similarity", measures=FAST)


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
    # Removing token k is the whole effect: every D(k') for k' >= 1 is f(x) minus that drop, so
    # Samek et al.'s AOPC (k = 0..n, divided by n + 1) is n / (n + 1) times the drop.
    masked = t.input_ids.copy()
    masked[k] = encoder.tokenizer.mask_token_id
    h = _eager_hidden(encoder, np.stack([t.input_ids, masked]))[0, :, k]
    drop = float(h[0] @ u.numpy() - h[1] @ u.numpy())
    n = int(t.content_mask.sum())
    assert drop > 0
    assert table.loc["integrated_gradients", "aopc"] == pytest.approx(drop * n / (n + 1), rel=1e-4)


def test_curves_are_real_reruns_and_metrics_follow_their_definitions(encoder, self_board):
    board = self_board
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
    assert row["aopc"] == pytest.approx(np.sum(full - deleted) / (n + 1), abs=1e-4)
    assert row["comprehensiveness"] == pytest.approx(np.mean(full - deleted[ks]), abs=1e-4)
    assert row["sufficiency"] == pytest.approx(np.mean(full - kept[ks]), abs=1e-4)


def test_the_board_is_tidy_and_says_what_it_found(board):
    # The default target (a demo sentiment probe's logit on this model) gives every family a signal.
    assert "probe logit" in board.target and not board.notes
    assert set(board.table["measure"]) == set(MEASURES)
    assert len(board.table) == 2 * len(MEASURES)
    assert {"text_index", "measure", "family", "aopc", "comprehensiveness", "sufficiency"} <= set(board.table)
    ranking = board.ranking()
    assert list(ranking["rank"]) == list(range(1, len(MEASURES) + 1))
    assert ranking["aopc"].is_monotonic_decreasing
    # Each AOPC carries its bootstrap interval over the texts, computed here by hand.
    for row in ranking.itertuples():
        per_text = board.table[board.table["measure"] == row.measure].sort_values("text_index")["aopc"].to_numpy()
        draws = per_text[np.random.default_rng(0).integers(0, 2, size=(1000, 2))].mean(axis=1)
        assert (row.aopc_low, row.aopc_high) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
        assert row.perturbation.endswith("curve: tokens replaced by [MASK]")
    assert "the same perturbation as the curve (an advantage)" in ranking.set_index("measure").loc["occlusion", "perturbation"]
    sentence = verdict(board)
    assert sentence.startswith("On all-MiniLM-L6-v2") and ranking.iloc[0]["name"] in sentence
    assert "2 sentences" in sentence and f"mean of {SHUFFLES} shuffles" in sentence


def test_a_signal_free_measure_is_left_out_not_ranked(self_board, encoder):
    assert "grad_x_input" not in set(self_board.ranking()["measure"])
    assert "grad_x_input" not in set(self_board.table["measure"])
    assert any(note.startswith("gradient × input left out") and "float noise" in note for note in self_board.notes)
    # Integrated gradients walks from the baseline, where the gradient is not zero: it stays.
    assert "integrated_gradients" in set(self_board.ranking()["measure"])
    with pytest.raises(AttributionError, match="Give other="):
        attribute(encoder, TEXT, method="grad_x_input")
    flat = torch.zeros(1, dtype=torch.float64)
    with pytest.raises(AttributionError, match="no gradient at the input"):
        attribute(encoder, TEXT, target=lambda hidden: hidden[-1][:, 0, 0].double() * 0 + flat, method="grad_x_input")


def test_aopc_is_samek_and_random_is_the_mean_of_many_shuffles(encoder, self_board):
    assert aopc(1.0, np.array([0.5, 0.2])) == pytest.approx((0 + 0.5 + 0.8) / 3)
    t = trace(encoder, TEXT)
    rng = np.random.default_rng(0)  # the board's seed: the first text's shuffles come first
    orders = [token_ranking(rng.permutation(t.seq_len), t.special_mask) for _ in range(SHUFFLES)]
    mask_id = encoder.tokenizer.mask_token_id
    ref = pool(t, "cls").astype(np.float64)
    values = []
    for order in orders:
        rows = []
        for k in range(1, len(order) + 1):
            deleted = t.input_ids.copy()
            deleted[order[:k]] = mask_id
            rows.append(deleted)
        cls = _eager_hidden(encoder, np.stack(rows))[-1, :, t.cls_index]
        cos = cls @ ref / (np.linalg.norm(cls, axis=1) * np.linalg.norm(ref))
        values.append(aopc(1.0, cos))
    row = self_board.table[(self_board.table["text_index"] == 0) & (self_board.table["measure"] == "random")]
    assert float(row["aopc"].iloc[0]) == pytest.approx(np.mean(values), abs=1e-4)
    assert np.std(values) > 0  # many different orders, not one


def test_the_verdict_says_about_even_within_noise(encoder):
    one = rank_measures(encoder, [TEXT], target="self_similarity", measures=("attention", "rollout", "random"))
    sentence = verdict(one)
    assert "no measure is clearly best" in sentence and "about even" in sentence
    assert "0 of 2 measures beat the random order" in sentence


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
    partial = rank_measures(mpnet, ["the cat sat on the mat"], target="self_similarity", measures=FAST)
    assert set(partial.table["measure"]) == {"attention", "rollout", "occlusion", "random"}
    assert len(partial.notes) == 3 and all("'mpnet'" in note for note in partial.notes)
    with pytest.raises(ValueError, match="Unknown target 'loss'; choose one of auto, probe, classifier, self_similarity"):
        rank_measures(encoder, [TEXT], target="loss")


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
    # Occlusion removes first the token whose masking alone lowers the logit most (signed).
    content = np.flatnonzero(t.content_mask)
    single = np.repeat(t.input_ids[None], len(content), axis=0)
    single[np.arange(len(content)), content] = mask_id
    drops = full[c] - logits(single)[:, c]
    first = board.table.set_index("measure").loc["occlusion", "first_token"]
    assert first == t.tokens[content[np.argmax(drops)]]
