"""Pictures read right: subplot titles that do not run into each other, log axes with one label
per power of ten, the findings figure drawing each interval against its threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clsviz import figures, trace
from clsviz.mixing import measure

CHAR_WIDTH = 7  # px: plotly's default 12 px title font averages about this per character


def _overlapping_titles(fig, width: int = 1000) -> list[tuple[str, str]]:
    """Pairs of subplot titles on the same line whose estimated extents overlap."""
    notes = [a for a in fig.to_dict()["layout"].get("annotations", []) if a.get("xref") == "paper"]
    clashes = []
    for i, a in enumerate(notes):
        for b in notes[i + 1:]:
            if abs(a["y"] - b["y"]) > 0.02:
                continue
            half = (len(a["text"]) + len(b["text"])) * CHAR_WIDTH / 2 / width
            if abs(a["x"] - b["x"]) < half:
                clashes.append((a["text"], b["text"]))
    return clashes


def test_every_measure_checkpoint_by_checkpoint_has_room_for_its_titles():
    steps = range(0, 40, 10)
    layers = pd.DataFrame([dict(pooling=p, step=s, epoch=0.0, layer=6, metric=m, value=0.5)
                           for p in ("cls", "mean") for s in steps
                           for m in ("probe_cls", "probe_mean", "cos_cls_mean", "cka_to_start")])  # fmt: skip
    blocks = pd.DataFrame([dict(pooling=p, step=s, epoch=0.0, block=6, metric=m, value=0.5)
                           for p in ("cls", "mean") for s in steps for m in ("cls_entropy", "attention_to_cls")])  # fmt: skip
    checkpoints = pd.DataFrame([dict(pooling=p, step=s, epoch=0.0, heldout_accuracy=0.7, heldout_loss=0.5)
                                for p in ("cls", "mean") for s in steps])  # fmt: skip
    result = type("Run", (), dict(layer_metrics=layers, block_metrics=blocks, checkpoints=checkpoints, majority=0.5,
                                  table=pd.DataFrame({"pooling": ["cls", "mean"]})))  # fmt: skip
    fig = figures.steps_figure(result)
    assert len([a for a in fig.to_dict()["layout"]["annotations"]]) >= 7
    assert _overlapping_titles(fig) == []


def test_the_raw_mixing_log_axis_labels_powers_of_ten(encoder):
    fig = figures.mixing_raw_figure(measure(encoder, trace(encoder, "The film was not bad at all."), "alti")).to_dict()
    axis = fig["layout"]["yaxis"]
    assert axis["type"] == "log" and axis["dtick"] == 1 and axis["exponentformat"] == "power"


def test_the_findings_figure_draws_each_interval_against_its_threshold():
    table = pd.DataFrame({
        "source": ["A et al.", "B et al.", "C et al."], "verdict": ["reproduces", "inconclusive", "not measured yet"],
        "low": [0.6, -0.2, ""], "high": [0.7, 0.3, ""], "threshold": [0.5, 0.0, ""],
    })  # fmt: skip
    fig = figures.findings_intervals_figure(table)
    data = fig.to_dict()["data"]
    bars = [t for t in data if t.get("line", {}).get("width") == 8]
    ticks = [t for t in data if t.get("line", {}).get("color") == "black"]
    assert [list(np.round(b["x"], 3)) for b in bars] == [[0.6, 0.7], [-0.2, 0.3]]
    assert [t["x"][0] for t in ticks] == [0.5, 0.0]
    assert _overlapping_titles(fig) == []
