"""`clsviz compare` and the classifier lines of `clsviz inspect` (in process, tiny models)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from clsviz import cli


def _main(args, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _diagonal_rows(out: str) -> dict[int, list[float]]:
    """The printed diagonal: layer -> the values of each reading column."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^\s+(\d+)\s+(\d+)\s+((?:\S+\s*)+)$", line)
        if m and m.group(1) == m.group(2):
            rows[int(m.group(1))] = [float(x) for x in m.group(3).split()]
    return rows


def test_compare_prints_the_diagonal_and_saves_the_table(
    tmp_path, tiny_model_dirs, tiny_classifier_dirs, capsys
):
    # The tiny classifier sits on the tiny BERT's own encoder weights: every layer is unchanged.
    out_csv = tmp_path / "cka.csv"
    code, out, err = _main(
        [
            "compare",
            tiny_model_dirs["bert"],
            tiny_classifier_dirs["bert"],
            "demo",
            "--sample",
            30,
            "--out",
            out_csv,
        ],
        capsys,
    )
    assert code == 0, err
    assert re.search(r"reading\s+tokens\s+cls\s+mean", out)
    rows = _diagonal_rows(out)
    assert sorted(rows) == [0, 1, 2]
    for layer, values in rows.items():
        defined = [v for v in values if not np.isnan(v)]
        assert np.allclose(defined, 1.0, atol=1e-4), (layer, values)
    assert np.isnan(rows[0][1])  # the [CLS] embedding is the same for every text: undefined
    assert "the same way at every layer" in out and f"Saved:  {out_csv}" in out
    table = pd.read_csv(out_csv)
    assert list(table.columns) == ["model_a", "model_b", "reading", "layer_a", "layer_b", "cka"]
    assert len(table) == 3 * 3 * 3  # readings x layers of A x layers of B
    diag = table[table["layer_a"] == table["layer_b"]].dropna()
    np.testing.assert_allclose(diag["cka"], 1.0, atol=1e-4)
    assert "Comparing [" in err  # the progress line


def test_compare_models_of_different_depth_and_tokenizer(tiny_model_dirs, capsys):
    # The bundled model (6 layers) against the tiny RoBERTa (2 layers, another tokenizer).
    code, out, err = _main(
        [
            "compare",
            "bundled",
            tiny_model_dirs["roberta"],
            "demo",
            "--sample",
            20,
            "--readings",
            "tokens,cls",
        ],
        capsys,
    )
    assert code == 0, err
    assert "the layer at the same relative depth" in out
    assert "Note: no 'tokens' reading: Text 1: The two tokenizers split this text differently" in err
    # Layer l of A pairs with round(l * 2 / 6) of B.
    pairs = re.findall(r"^\s+(\d+)\s+(\d+)\s+\S+$", out, flags=re.M)
    assert [(int(a), int(b)) for a, b in pairs] == [(a, round(a * 2 / 6)) for a in range(7)]


@pytest.mark.parametrize(
    "args, reason",
    [
        (["compare", "bundled", "bundled", "demo", "--readings", "cls,words"], "--readings takes"),
        (["compare", "bundled", "bundled", "demo", "--out", "cka.txt"], "--out must end in .csv"),
        (
            ["compare", "bundled", "no-such-owner/no-such-model", "demo", "--sample", "5"],
            "not in the local model cache",
        ),
        (["compare", "bundled", "../../etc", "demo", "--sample", "5"], "neither an existing local folder"),
        (["compare", "bundled", "bundled", "missing.csv"], "no corpus file"),
        (["compare", "bundled", "bundled", "demo", "--sample", "1"], "at least 2 texts"),
        (["compare", "bundled"], "required: MODEL_B"),
    ],
)
def test_bad_input_exits_2_with_a_reason(tmp_path, monkeypatch, capsys, args, reason):
    monkeypatch.chdir(tmp_path)
    code, out, err = _main(args, capsys)
    assert code == 2, (out, err)
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "error:" in last and reason in last, last
    assert not list(tmp_path.glob("cka.*"))


def test_inspect_prints_the_prediction_and_the_lens(tiny_classifier_dirs, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tiny_classifier_dirs["electra"]
    text = "the cat chased a dog"
    code, out, err = _main(["inspect", text, "--model", folder, "--quiet"], capsys)
    assert code == 0, err
    # The probabilities printed are the checkpoint's own softmax (its forward pass, loaded here).
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = AutoTokenizer.from_pretrained(str(folder))(text, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits[0].double(), dim=-1).numpy()
    labels = [model.config.id2label[i] for i in range(3)]
    shown = dict(re.findall(r"(\w+) (\d+)%", re.search(r"^Prediction: (.*)$", out, flags=re.M).group(1)))
    assert set(shown) == set(labels)
    for i, label in enumerate(labels):
        assert int(shown[label]) == pytest.approx(100 * probs[i], abs=0.51)
    # The lens's last row (layer 2) is the same softmax, to four decimals.
    last = re.search(r"^\s+2\s+(\S+)\s+(\S+)\s+(\S+)\s+(\w+)$", out, flags=re.M)
    np.testing.assert_allclose([float(x) for x in last.groups()[:3]], probs, atol=1e-4)
    assert last.group(4) == labels[int(np.argmax(probs))]
    assert re.search(r"^Head: \[CLS\] → dense \+ gelu → out_proj$", out, flags=re.M)
    assert "The prediction" in out or "picks" in out


def test_inspect_on_a_plain_encoder_prints_no_prediction(tiny_model_dirs, capsys):
    code, out, err = _main(["inspect", "the cat", "--model", tiny_model_dirs["bert"], "--quiet"], capsys)
    assert code == 0, err
    assert "Prediction:" not in out and "Findings:" in out


def test_compare_is_listed_and_has_help(capsys):
    code, out, _ = _main(["compare", "--help"], capsys)
    assert code == 0 and out.startswith("usage: clsviz compare")
    assert "MODEL_A" in out and "--readings" in out and "--out" in out
    code, out, _ = _main(["--help"], capsys)
    assert code == 0 and re.search(r"^\s+compare\s+compare two models", out, flags=re.M)
