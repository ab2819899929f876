"""``clsviz lens`` and ``clsviz invert`` on a tiny model: the tables they print and save, their figures,
and bad arguments answered with exit 2 and a reason."""

from __future__ import annotations

import pandas as pd
import pytest

from clsviz.cli import main
from clsviz.corpus import demo_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "short.csv"
    pd.DataFrame({"text": list(demo_corpus().texts[:30])}).to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return str(tiny_model_dirs["bert"])


def test_lens_prints_and_saves(tmp_path, corpus, model, capsys):
    out, page = tmp_path / "lens.csv", tmp_path / "lens.html"
    assert main(["lens", corpus, "--model", model, "--out", str(out), "--html", str(page), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "identity" in printed and "tuned" in printed and "cls:" in printed
    table = pd.read_csv(out)
    assert {"layer", "method", "score", "low", "high"} <= set(table.columns)
    assert set(table["pooling"]) == {"cls", "mean"}
    assert "plotly" in page.read_text(encoding="utf-8")


def test_invert_typed_sentences(tmp_path, corpus, model, capsys):
    out = tmp_path / "typed.csv"
    code = main(["invert", corpus, "--model", model, "--text", "A sentence typed here.", "--text", "Another one.",
                 "--steps", "3", "--out", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.count("->") == 2 and "A sentence typed here." in printed
    table = pd.read_csv(out, keep_default_na=False)
    assert table["text"].tolist() == ["A sentence typed here.", "Another one."]
    assert {"output", "token_f1", "bleu", "exact"} <= set(table.columns)


def test_invert_held_out_part(tmp_path, corpus, model, capsys):
    out = tmp_path / "held.csv"
    assert main(["invert", corpus, "--model", model, "--steps", "3", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "token_f1:" in printed and "over 6 held-out texts" in printed
    assert len(pd.read_csv(out)) == 6


def test_invert_ladder(tmp_path, corpus, model, capsys):
    out, page = tmp_path / "ladder.csv", tmp_path / "ladder.html"
    code = main(["invert", corpus, "--model", model, "--ladder", "--layers", "last", "--steps", "2",
                 "--out", str(out), "--html", str(page), "-q"])
    assert code == 0
    assert "vec2text" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert set(table["method"]) == {"inverter", "retrieval", "bag of words"}
    assert page.stat().st_size > 1000


@pytest.mark.parametrize("args, reason", [
    (["invert", "demo", "--html", "x.html"], "--html draws the ladder's figure"),
    (["invert", "demo", "--held-out", "2"], "between 0 and 1"),
    (["lens", "demo", "--held-out", "x"], "a fraction"),
    (["lens", "demo", "--out", "lens.txt"], "must end in .csv"),
])
def test_bad_arguments_exit_2(args, reason, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert reason in capsys.readouterr().err


def test_lens_logits_without_a_classifier(corpus, model, capsys):
    assert main(["lens", corpus, "--model", model, "--target", "logits", "-q"]) == 2
    assert "no classification head" in capsys.readouterr().err


def test_inspect_report_with_the_lens_and_the_ladder(tmp_path, corpus, model, capsys):
    out = tmp_path / "report.html"
    code = main(["inspect", "The cat sat on the mat.", "--model", model, "--html", str(out), "--sections",
                 "attention.to_cls", "--lens", corpus, "--ladder", corpus, "--ladder-steps", "2", "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Tuned lens" in printed and "Ladder" in printed
    page = out.read_text(encoding="utf-8")
    for key in ("attention.to_cls", "lens.tuned", "inversion.ladder"):
        assert f"id='sec-{key}'" in page
    assert "class='finding'" in page and "vec2text" in page
