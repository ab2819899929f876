"""Fine-tuning per pooling: trains a copy (the shared model is untouched), curves, cancel, bad input."""

from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest

from clsviz import figures
from clsviz.experiments import FINETUNE_POOLINGS, Cancelled, FinetuneError, run_finetune
from clsviz.experiments.finetune import FinetuneResult, accuracy_interval, loss_trend

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
        checkpoints=2,
        progress=lambda d, t, m: seen.append((d, t, m)),
    )
    return result, before, seen


def test_progress_says_which_run_of_how_many(finetuned):
    _, _, seen = finetuned
    runs = len(FINETUNE_POOLINGS)
    for run, pooling in enumerate(FINETUNE_POOLINGS, start=1):
        mine = [m for _, _, m in seen if m.startswith(f"run {run} of {runs}, {pooling}:")]
        assert mine and "copying the model" in mine[0]
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and done[-1] == seen[-1][1] == 4 * runs  # one total over every run


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
    summary = result.summary()
    for row in result.table.itertuples():  # every pooling: its accuracy and its frozen baseline
        assert f"{row.pooling} {row.heldout_accuracy:.1%} (" in summary
        assert f"{row.pooling} {row.frozen_accuracy:.1%} → {row.heldout_accuracy:.1%}" in summary
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
            tiny_encoder,
            TEXTS,
            LABELS,
            poolings=("mean",),
            epochs=3,
            batch_size=4,
            progress=progress,
            cancel=stop,
        )
    assert max(calls) == 1  # stopped right after the step that set the event
    for name, tensor in tiny_encoder.model.state_dict().items():
        assert torch_equal(tensor, before[name]), name


def test_subsample_is_stratified_and_said(tiny_encoder):
    result = run_finetune(
        tiny_encoder, TEXTS, LABELS, poolings=("cls",), epochs=1, max_texts=20, batch_size=8
    )
    row = result.table.iloc[0]
    assert row["train_n"] + row["heldout_n"] == 20
    assert any("sample of 20" in m for m in result.messages)
    summary = result.summary()
    assert f"After fine-tuning on 'label', cls reaches {row['heldout_accuracy']:.1%} held-out" in summary
    ceiling = result.ceiling_note()  # said first when the frozen model already reads the label
    assert summary.startswith(ceiling) if ceiling else summary.startswith("After fine-tuning")
    assert f"on {row['heldout_n']} held-out texts" in result.summary()


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


# --- checkpoints: what the run records while it trains -----------------------------------------


@pytest.fixture(scope="module")
def watched(encoder):
    from clsviz.corpus import demo_corpus

    corpus = demo_corpus()
    texts, labels = list(corpus.texts[:30]), list(corpus.labels["sentiment"][:30])
    before = _snapshot(encoder.model)
    result = run_finetune(encoder, texts, labels, poolings=("cls", "mean"), epochs=1, checkpoints=1, heldout=0.3,
                          label_name="sentiment")  # fmt: skip
    return result, dict(zip(texts, labels)), before


def test_step_zero_metrics_equal_the_untouched_model(encoder, watched):
    from clsviz import extract, trace
    from clsviz.experiments import gradient_flow, run_probe
    from clsviz.report import layer_stats

    result, label_of, _ = watched
    held = list(result.heldout_texts)
    # Independent: one eager trace per text on the shared model, averaged over the held-out texts.
    stats = sum(layer_stats(trace(encoder, t, max_tokens=64)).set_index("layer") for t in held) / len(held)
    probe = run_probe(extract(encoder, held, ("cls", "mean"), max_tokens=64), [label_of[t] for t in held],
                      folds=result.probe_folds, seed=0).table  # fmt: skip
    assert result.probe_folds >= 2
    for pooling in ("cls", "mean"):
        layers = result.layer_metrics.query("step == 0 and pooling == @pooling").pivot(
            index="layer", columns="metric", values="value"
        )
        blocks = result.block_metrics.query("step == 0 and pooling == @pooling").pivot(
            index="block", columns="metric", values="value"
        )
        np.testing.assert_allclose(layers["cos_cls_mean"], stats["cos_cls_mean"], atol=1e-6)
        np.testing.assert_allclose(blocks["cls_entropy"], stats["cls_entropy"].iloc[1:], atol=1e-6)
        np.testing.assert_allclose(blocks["attention_to_cls"], stats["attention_to_cls"].iloc[1:], atol=1e-6)
        for reading in ("cls", "mean"):
            expected = probe[probe["pooling"] == reading].sort_values("layer")["accuracy_mean"].to_numpy()
            np.testing.assert_array_equal(layers[f"probe_{reading}"].to_numpy(), expected)
        np.testing.assert_allclose(layers["cka_to_start"], 1.0, atol=1e-9)
        flow = (
            result.gradient_flow.query("step == 0 and pooling == @pooling")
            .pivot(index="layer", columns="position", values="value")
            .to_numpy()
        )
        np.testing.assert_array_equal(
            flow, gradient_flow(encoder, result.flow_text, pooling, seed=0, max_tokens=64)
        )
        start = result.checkpoints.query("step == 0 and pooling == @pooling")["heldout_accuracy"].iloc[0]
        curve = result.curves.query("step == 0 and pooling == @pooling and metric == 'heldout_accuracy'")
        assert start == curve["value"].iloc[0]


def test_checkpoint_tables_are_tidy_and_exportable(watched, encoder):
    import json

    from clsviz.experiments.training import checkpoint_steps

    result, _, before = watched
    steps = int(result.table["steps"].iloc[0])
    assert tuple(sorted(result.checkpoints["step"].unique())) == checkpoint_steps(steps, 1) == (0, steps)
    layers = encoder.info.num_layers
    assert len(result.layer_metrics) == 2 * 2 * (layers + 1) * 4  # poolings x steps x layers x metrics
    assert set(result.block_metrics["block"]) == set(range(1, layers + 1))
    assert result.layer_metrics.query("metric == 'cka_to_start'")["value"].between(0, 1 + 1e-9).all()
    assert result.block_metrics.query("metric == 'attention_to_cls'")["value"].between(0, 1).all()
    doc = json.loads(result.to_json())
    for name, table in result.tables().items():
        assert len(doc["tables"][name]) == len(table), name
        assert table.to_csv(index=False).count("\n") == len(table) + 1
    assert doc["summary"] == result.summary() and doc["label"] == "sentiment"
    assert "classifier" not in doc
    for name, tensor in encoder.model.state_dict().items():  # the shared model did not train
        assert torch_equal(tensor, before[name]), name


def test_run_sentences_state_the_numbers(watched):
    from clsviz.experiments.dynamics import summarize_moved, summarize_run

    result, _, _ = watched
    text = summarize_run(result)
    last = int(result.checkpoints["step"].max())
    end = result.layer_metrics.query(
        "pooling == 'cls' and step == @last and metric == 'probe_cls' and layer == 6"
    )
    assert f"at step {last}" in text and f"{end['value'].iloc[0]:.0%}" in text
    assert summarize_moved(result) == ""  # no moved token was trained


def test_checkpoint_settings_are_checked(tiny_encoder):
    with pytest.raises(FinetuneError, match="between 0"):
        run_finetune(tiny_encoder, TEXTS, LABELS, checkpoints=-1)
    with pytest.raises(FinetuneError, match="twice"):
        run_finetune(tiny_encoder, TEXTS, LABELS, poolings=("cls", "cls"))
    with pytest.raises(FinetuneError, match="gradient flow"):
        run_finetune(tiny_encoder, TEXTS, LABELS, poolings=("cls",), flow_text="   ")


def test_checkpoint_figures_draw_the_tables(watched):
    from tests.test_attention import _arr

    result, _, _ = watched
    last = int(result.checkpoints["step"].max())
    fig = figures.checkpoint_figure(result, last).to_dict()
    probe = result.layer_metrics.query(
        "pooling == 'mean' and step == @last and metric == 'probe_cls'"
    ).sort_values("layer")
    drawn = next(t for t in fig["data"] if t["name"] == "mean" and t.get("xaxis", "x") == "x")
    np.testing.assert_allclose(_arr(drawn["y"]), probe["value"].round(4))
    steps = figures.steps_figure(result).to_dict()
    acc = next(t for t in steps["data"] if t["name"] == "cls" and t.get("xaxis", "x") == "x")
    np.testing.assert_allclose(
        _arr(acc["y"]), result.checkpoints.query("pooling == 'cls'")["heldout_accuracy"].round(4)
    )
    flow = figures.checkpoint_flow_figure(result, 0).to_dict()
    assert [t["type"] for t in flow["data"]] == ["heatmap", "heatmap"]
    bars = figures.moved_token_figure(result).to_dict()["data"]
    np.testing.assert_allclose(_arr(bars[1]["y"]), result.table["heldout_accuracy"].round(4))
    with pytest.raises(ValueError, match="No gradient flow"):
        figures.checkpoint_flow_figure(result, 10_000)


def _result(rows, losses=None, n=80):
    table = pd.DataFrame([{"pooling": p, "frozen_accuracy": f, "heldout_accuracy": a, "gain": a - f, "heldout_n": n}
                          for p, f, a in rows])  # fmt: skip
    curves = pd.DataFrame([(p, i + 1, 0.0, "train_loss", v) for p, series in (losses or {}).items()
                           for i, v in enumerate(series)], columns=["pooling", "step", "epoch", "metric", "value"])  # fmt: skip
    return FinetuneResult(table=table, curves=curves, label="topic", classes=("a", "b", "c", "d"), chance=0.25,
                          majority=0.3, device="cpu", model_name="m")  # fmt: skip


def test_accuracy_interval_matches_the_binomial_spread():
    for accuracy, n in ((0.775, 80), (0.5, 40), (0.9, 200)):
        estimate, low, high = accuracy_interval(accuracy, n)
        assert estimate == pytest.approx(accuracy) and low < accuracy < high
        # A percentile bootstrap of a proportion is close to the normal approximation p +- 1.96 se.
        se = (accuracy * (1 - accuracy) / n) ** 0.5
        assert high - low == pytest.approx(2 * 1.96 * se, rel=0.25)
    assert accuracy_interval(1.0, 50)[1:] == (1.0, 1.0)  # every text right: no spread to resample


def test_loss_trend():
    steps = np.arange(50)
    assert loss_trend(_result([("cls", 0.5, 0.6)], {"cls": 2.0 - 0.03 * steps}).curves, "cls") == "falling"
    assert (
        loss_trend(_result([("cls", 0.5, 0.6)], {"cls": 0.4 + 0.01 * np.sin(steps)}).curves, "cls") == "flat"
    )
    assert loss_trend(_result([("cls", 0.5, 0.6)], {"cls": [1.0, 0.5, 0.2]}).curves, "cls") == "unknown"


def test_summary_crowns_only_when_the_intervals_clear():
    steps = np.arange(40)
    overlapping = _result(
        [("cls", 0.6, 0.775), ("mean", 0.8, 0.7375)], {"cls": 2 - 0.04 * steps, "mean": 1 + 0 * steps}
    )
    text = overlapping.summary()
    assert "does not say which is better" in text and "is ahead" not in text
    assert "mean 80.0% → 73.8% (below its frozen baseline)" in text
    assert "cls 60.0% → 77.5% (+17.5 points)" in text
    assert "still falling at the end for cls" in text and "mean:" not in text.split("still falling")[1]
    clear = _result(
        [("cls", 0.6, 0.95), ("mean", 0.5, 0.55)], {"cls": 1 + 0 * steps, "mean": 1 + 0 * steps}, n=400
    )
    assert "cls is ahead" in clear.summary() and "had flattened" in clear.summary()


def test_a_task_at_ceiling_before_training_is_inconclusive():
    from clsviz.experiments.dynamics import summarize_moved

    steps = np.arange(40)
    flat = {p: 1 + 0 * steps for p in ("cls", "mean", "cls_last")}
    solved = _result([("cls", 1.0, 1.0), ("mean", 1.0, 1.0), ("cls_last", 1.0, 1.0)], flat)
    assert solved.at_ceiling() == ["cls", "mean", "cls_last"]
    text = solved.summary()
    assert text.startswith("Before any training the task is at ceiling") and "inconclusive" in text
    assert "100.0% (95% interval 100.0%–100.0%)" in text and "'sentiment'" in text
    moved = summarize_moved(solved)
    assert "Inconclusive: before any training the task is at ceiling" in moved and "convention" not in moved
    # Room to learn (the upper end of the interval may reach 95%, the lower does not): no flag.
    room = _result([("cls", 0.775, 0.9), ("mean", 0.86, 0.9)], flat)
    assert room.at_ceiling() == [] and not room.ceiling_note()


def test_the_default_label_is_not_solved_before_training(encoder):
    from clsviz import extract
    from clsviz.corpus import demo_corpus
    from clsviz.experiments.finetune import CEILING, DEFAULT_LABEL
    from clsviz.experiments.probe import run_probe

    corpus = demo_corpus()
    vectors = extract(encoder, corpus.texts, ("cls", "mean"), labels=corpus.labels)
    last = encoder.info.num_layers
    for label, solved in ((DEFAULT_LABEL, False), ("topic", True)):
        table = run_probe(vectors, label, poolings=["cls", "mean"], layers=[last], n_jobs=1).table
        assert (table["accuracy_mean"] >= CEILING).all() == solved, (label, table)
