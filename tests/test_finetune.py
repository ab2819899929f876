"""Fine-tuning per pooling: trains a copy (the shared model is untouched), curves, cancel, bad input."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from clsviz import figures
from clsviz.experiments import FINETUNE_POOLINGS, Cancelled, FinetuneError, run_finetune

WORDS = "cat dog bird fish horse mouse lion tiger bear wolf".split()
TEXTS = [f"The {WORDS[i % 10]} {'ran' if i % 2 else 'slept'} near house {i}." for i in range(40)]
LABELS = ["ran" if i % 2 else "slept" for i in range(40)]


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def finetuned(tiny_encoder):
    before = _snapshot(tiny_encoder.model)
    seen = []
    result = run_finetune(
        tiny_encoder,
        TEXTS,
        LABELS,
        epochs=1,
        batch_size=8,
        evals_per_epoch=2,
        head_init="probe",
        progress=lambda d, t, m: seen.append((d, t, m)),
    )
    return result, before, seen


def test_shared_model_is_unchanged(tiny_encoder, finetuned):
    _, before, _ = finetuned
    after = tiny_encoder.model.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch_equal(tensor, after[name]), name
    assert not any(p.requires_grad for p in tiny_encoder.model.parameters())
    assert not tiny_encoder.model.training


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_table_and_curves(finetuned):
    result, _, seen = finetuned
    table = result.table.set_index("pooling")
    assert list(table.index) == list(FINETUNE_POOLINGS)
    assert (table["train_n"] + table["heldout_n"] == 40).all()
    heldout = int(table["heldout_n"].iloc[0])
    assert heldout == 8
    steps = math.ceil(32 / 8)
    assert (table["steps"] == steps).all()
    assert table["heldout_accuracy"].between(0, 1).all()
    np.testing.assert_allclose(table["gain"], table["heldout_accuracy"] - table["frozen_accuracy"])
    # Accuracies are multiples of 1 / heldout.
    np.testing.assert_allclose((table["heldout_accuracy"] * heldout) % 1, 0, atol=1e-9)

    curves = result.curves
    assert list(curves.columns) == ["pooling", "step", "epoch", "metric", "value"]
    for pooling in FINETUNE_POOLINGS:
        mine = curves[curves["pooling"] == pooling]
        loss = mine[mine["metric"] == "train_loss"]
        assert loss["step"].tolist() == list(range(1, steps + 1))
        assert np.isfinite(loss["value"]).all() and (loss["value"] > 0).all()
        acc = mine[mine["metric"] == "heldout_accuracy"]
        assert acc["step"].iloc[0] == 0 and acc["step"].iloc[-1] == steps
        # The head starts from the frozen-model probe, so step 0 scores what the probe scores.
        assert acc["value"].iloc[0] == pytest.approx(table.loc[pooling, "frozen_accuracy"])
        # The table's number is the last held-out evaluation.
        assert acc["value"].iloc[-1] == pytest.approx(table.loc[pooling, "heldout_accuracy"])
    assert result.chance == 0.5
    assert seen[-1][0] == seen[-1][1] == steps * len(FINETUNE_POOLINGS)


def test_summary_and_figure(finetuned):
    result, _, _ = finetuned
    best = result.table.loc[result.table["heldout_accuracy"].idxmax()]
    assert f"{best['pooling']} reaches {best['heldout_accuracy']:.1%}" in result.summary()
    fig = figures.finetune_figure(result).to_dict()
    assert len(fig["data"]) == 2 * len(FINETUNE_POOLINGS)
    loss_cls = result.curves.query("pooling == 'cls' and metric == 'train_loss'")["value"].to_numpy()
    np.testing.assert_allclose(fig["data"][0]["y"], loss_cls, atol=1e-4)


def test_cancel_stops_between_steps(tiny_encoder):
    before = _snapshot(tiny_encoder.model)
    stop = threading.Event()
    calls = []

    def progress(done, total, message):
        calls.append(done)
        if done >= 1:
            stop.set()

    with pytest.raises(Cancelled):
        run_finetune(
            tiny_encoder, TEXTS, LABELS, poolings=("mean",), epochs=3, batch_size=4, progress=progress, cancel=stop
        )
    assert max(calls) == 1  # stopped right after the step that set the event
    for name, tensor in tiny_encoder.model.state_dict().items():
        assert torch_equal(tensor, before[name]), name


def test_subsample_is_stratified_and_said(tiny_encoder):
    result = run_finetune(tiny_encoder, TEXTS, LABELS, poolings=("cls",), epochs=1, max_texts=20, batch_size=8)
    row = result.table.iloc[0]
    assert row["train_n"] + row["heldout_n"] == 20
    assert any("sample of 20" in m for m in result.messages)
    assert result.summary().startswith(f"After fine-tuning on 'label', cls reaches {row['heldout_accuracy']:.1%} held-out")


@pytest.mark.parametrize(
    "texts, labels, kwargs, fragment",
    [
        (TEXTS, ["one"] * 40, {}, "single class"),
        (TEXTS, LABELS[:39] + ["lonely"], {}, "'lonely' (1)"),
        (TEXTS[:6], LABELS[:6], {}, "at least 10"),
        (["same"] * 20, LABELS[:20], {}, "same sentence"),
        (TEXTS, LABELS, {"poolings": ("max",)}, "choose from"),
        (TEXTS, LABELS, {"head_init": "zeros"}, "'probe' or 'random'"),
        (TEXTS, LABELS[:10], {}, "one label per text"),
    ],
)
def test_bad_input_gives_a_message(tiny_encoder, texts, labels, kwargs, fragment):
    with pytest.raises(FinetuneError) as info:
        run_finetune(tiny_encoder, texts, labels, epochs=1, **kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)
