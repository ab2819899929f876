"""``clsviz finetune`` and ``clsviz probe --control / --mdl`` from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clsviz import cli, load_encoder, trace
from clsviz.heads import classifier_lens
from tests.test_cli import run

WORDS = "cat dog bird fish horse mouse lion tiger bear wolf".split()


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "verbs.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "verb"])
        for i in range(24):
            writer.writerow([f"{WORDS[i % 10]} {'ran' if i % 2 else 'slept'} near house {i}", "ran" if i % 2 else "slept"])
    return path


def test_help():
    result = run("finetune", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: clsviz finetune")
    assert "--checkpoints" in result.stdout and "--save" in result.stdout


def test_finetune_writes_json_and_saves_the_classifier(tmp_path, small_csv, tiny_model_dirs, capsys):
    out, folder = tmp_path / "run.json", tmp_path / "clf"
    code = cli.main(["finetune", str(small_csv), "--label", "verb", "--model", str(tiny_model_dirs["bert"]),
                     "--poolings", "cls,cls_last", "--epochs", "1", "--checkpoints", "2", "--save", str(folder),
                     "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(out.read_text())
    assert [r["pooling"] for r in doc["tables"]["accuracy"]] == ["cls", "cls_last", "cls_head"]
    steps = sorted({r["step"] for r in doc["tables"]["checkpoints"]})
    assert steps[0] == 0 and len(steps) == 3
    assert doc["label"] == "verb" and doc["summary"] in captured.out
    assert "--save needs the 'cls_head' pooling" in captured.err
    loaded = load_encoder(str(folder))
    assert loaded.info.labels == ("ran", "slept")
    assert classifier_lens(loaded, trace(loaded, "the cat ran")).shape == (3, 2)


def test_probe_control_and_mdl_columns(tmp_path, small_csv, tiny_model_dirs, capsys):
    out = tmp_path / "probe.csv"
    code = cli.main(["probe", str(small_csv), "--label", "verb", "--model", str(tiny_model_dirs["bert"]),
                     "--poolings", "cls,mean", "--folds", "3", "--control", "--mdl", "--out", str(out), "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    table = pd.read_csv(out)
    assert {"control_accuracy", "selectivity", "codelength_bits", "compression"} <= set(table.columns)
    np.testing.assert_allclose(table["selectivity"], table["accuracy_mean"] - table["control_accuracy"])
    assert "Selectivity (accuracy - control-task accuracy" in captured.out and "Online codelength" in captured.out


@pytest.mark.parametrize(
    "args, reason",
    [
        (["finetune", "{csv}", "--out", "r.json"], "has no column(s) 'sentiment'"),  # the default label
        (["finetune", "{csv}", "--label", "verb"], "required: --out"),
        (["finetune", "{csv}", "--label", "verb", "--out", "r.csv"], "must end in .json"),
        (["finetune", "{csv}", "--label", "verb", "--out", "r.json", "--poolings", "cls,middle"], "unknown middle"),
        (["finetune", "{csv}", "--label", "nope", "--out", "r.json"], "no column(s) 'nope'"),
        (["finetune", "{csv}", "--label", "verb", "--out", "r.json", "--save", "{taken}"], "not an empty folder"),
        (["finetune", "{csv}", "--label", "verb", "--out", "r.json", "--save", "no/such/dir"], "does not exist"),
        (["finetune", "{csv}", "--label", "verb", "--out", "r.json", "--checkpoints", "500"], "between 0"),
        (["finetune", "{csv}", "--label", "verb", "--out", "r.json", "--epochs", "0"], "at least 1"),
        (["probe", "{same}", "--label", "verb", "--control"], "needs texts of several types"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(tmp_path, small_csv, tiny_model_dirs, args, reason, monkeypatch, capsys):
    same = tmp_path / "same.csv"
    same.write_text("text,verb\n" + "".join(f"the cat {v} {i}\n,{v}\n".replace("\n,", ",") for i, v in
                                              enumerate(["ran", "sat"] * 6)))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    args = [a.format(csv=small_csv, taken=taken, same=same) for a in args] + ["--model", str(tiny_model_dirs["bert"])]
    try:
        code = cli.main(args)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2, (captured.out, captured.err)
    line = captured.err.strip().splitlines()[-1]
    assert "Traceback" not in captured.err and reason in line
    assert not (tmp_path / "r.json").exists()
