"""``clsviz intervene``: each causal test over a corpus file, its CSV, and its refusals."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from clsviz import cli, load_encoder
from clsviz.experiments.interventions import knockout_sweep, register_sweep

ROWS = [(f"The {w} was seen near the old barn.", "animal") for w in ("cat", "dog", "horse", "bird", "goat")]
ROWS += [(f"We had {w} for dinner last night.", "food") for w in ("bread", "soup", "rice", "cake", "pasta")]


@pytest.fixture(scope="module")
def corpus_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("intervene") / "small.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "topic", "same"])
        writer.writerows([(text, topic, "x") for text, topic in ROWS])
    return path


def test_knockout_prints_and_saves_what_the_api_computes(tmp_path, corpus_csv, tiny_model_dirs, capsys):
    out = tmp_path / "knockout.csv"
    model = str(tiny_model_dirs["bert"])
    args = ["intervene", "knockout", str(corpus_csv), "--label", "topic", "--model", model, "--folds", "2",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    want = knockout_sweep(
        load_encoder(model), [t for t, _ in ROWS], [y for _, y in ROWS], folds=2, label_name="topic"
    )
    saved = pd.read_csv(out)
    np.testing.assert_allclose(saved["cosine"], want.table["cosine"], atol=1e-6)
    np.testing.assert_allclose(saved["accuracy"], want.table["accuracy"], atol=1e-9)
    assert want.finding in printed and "knockout on 10 texts" in printed
    assert set(saved["label"]) == {"topic"}


def test_registers_save_the_attention_table_beside(tmp_path, corpus_csv, tiny_model_dirs, capsys):
    out = tmp_path / "regs.csv"
    model = str(tiny_model_dirs["bert"])
    assert cli.main(["intervene", "registers", str(corpus_csv), "--model", model, "--registers", "0,2",
                     "--out", str(out), "--quiet"]) == 0  # fmt: skip
    want = register_sweep(load_encoder(model), [t for t, _ in ROWS], ks=(0, 2))
    attention = pd.read_csv(tmp_path / "regs_attention.csv")
    np.testing.assert_allclose(attention["share"], want.attention["share"], atol=1e-6)
    assert list(pd.read_csv(out)["k"]) == [0, 2]
    assert "regs_attention.csv" in capsys.readouterr().out


@pytest.mark.parametrize("experiment", ("patch", "heads", "massive"))
def test_the_other_experiments_run(corpus_csv, tiny_model_dirs, capsys, experiment):
    args = ["intervene", experiment, str(corpus_csv), "--label", "topic", "--model", str(tiny_model_dirs["bert"]),
            "--folds", "2", "--pairs", "5", "--dims", "0,3", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    assert "texts with" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["patch"], "needs --label"),
        (["knockout", "--label", "nope"], "no column(s) 'nope'"),
        (["knockout", "--label", "same"], "single class"),
        (["registers", "--registers", "0,x"], "--registers takes"),
        (["registers", "--registers", "0,70"], "do not fit"),
        (["massive", "--dims", "a"], "--dims takes"),
        (["knockout", "--out", "result.txt"], "must end in .csv"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(corpus_csv, tiny_model_dirs, capsys, args, reason):
    experiment, *rest = args
    code = cli.main(
        ["intervene", experiment, str(corpus_csv), "--model", str(tiny_model_dirs["bert"]), *rest, "--quiet"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err


def test_help_lists_the_experiments(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["intervene", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: clsviz intervene")
    for name in ("knockout", "patch", "heads", "massive", "registers"):
        assert name in out
