"""`clsviz findings` and `clsviz inspect --findings` (in process, tiny models), and their bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from clsviz import cli
from clsviz.cli import COMMAND_MODULES
from clsviz.literature import COLUMNS, VERDICTS, load_claims

QUICK = ["--sample", 130, "--attention-sample", 4]


def _main(args, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_findings_prints_every_claim_and_saves_the_table(tmp_path, tiny_model_dirs, capsys):
    out_csv = tmp_path / "findings.csv"
    code, out, err = _main(["findings", "--model", tiny_model_dirs["bert"], *QUICK, "--out", out_csv], capsys)
    assert code == 0, err
    table = pd.read_csv(out_csv, keep_default_na=False)
    assert list(table.columns) == list(COLUMNS)
    assert list(table["key"]) == [c.key for c in load_claims()]
    assert set(table["verdict"]) <= set(VERDICTS)
    for row in table.itertuples():  # every claim printed with its verdict
        assert f"{row.source} — {row.verdict.upper()}" in out
        if row.verdict in ("reproduces", "differs", "inconclusive"):  # decided on an interval, with its caveat
            assert row.low != "" and row.high != "" and row.threshold != "" and row.caveat, row.key
    assert "95% interval of the deciding number" in out and "caveat" in out
    assert f"{len(table)} findings on {tiny_model_dirs['bert']}: " in out and f"Saved: {out_csv}" in err
    assert "Checking [" in err  # the progress line


def test_findings_uses_a_fine_tuned_copy_given_as_a_folder(tmp_path, tiny_model_dirs, capsys):
    out_csv = tmp_path / "findings.csv"
    code, _, err = _main(["findings", "--model", tiny_model_dirs["bert"], "--finetuned", tiny_model_dirs["bert"],
                          *QUICK, "--out", out_csv, "-q"], capsys)  # fmt: skip
    assert code == 0, err
    row = pd.read_csv(out_csv, keep_default_na=False).set_index("key").loc["finetuning_top_layers"]
    # The same weights on both sides: no layer changed, so the upper layers did not change more.
    assert row["verdict"] == "differs"
    assert "1.000" in row["this_model"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--out", "table.txt"], "--out must end in .csv"),
        (["--finetuned", "no/such/folder"], "--finetuned takes the folder"),
        (["--pairs", "no-such-pairs.csv"], "no pairs file at 'no-such-pairs.csv'"),
        (["--sample", "0"], "expected a number of at least 1"),
    ],
)
def test_findings_refuses_bad_arguments_with_a_reason(extra, message, capsys):
    code, _, err = _main(["findings", *extra], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_findings_refuses_bad_corpora_and_pairs(tmp_path, capsys):
    small = tmp_path / "five.txt"
    small.write_text("\n".join(f"Sentence number {i}." for i in range(5)), encoding="utf-8")
    code, _, err = _main(["findings", "--corpus", small], capsys)
    assert code == 2 and "the corpus has 5 texts; the checks need at least 20" in err
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("sentence1,sentence2,score\nA cat.,A dog.,not a number\n", encoding="utf-8")
    code, _, err = _main(["findings", "--pairs", pairs], capsys)
    assert code == 2 and "pairs.csv" in err and "Traceback" not in err


def test_inspect_adds_the_findings_to_the_report(tmp_path, tiny_model_dirs, capsys):
    report = tmp_path / "report.html"
    code, out, err = _main(["inspect", "the cat chased a dog", "--model", tiny_model_dirs["bert"], "--findings",
                            "--html", report, "--sections", "overview.tokens", "-q"], capsys)  # fmt: skip
    assert code == 0, err
    assert "Published findings on this model:" in out
    html = report.read_text(encoding="utf-8")
    assert "id='published-findings'" in html
    assert all(c.source.replace("&", "&amp;") in html for c in load_claims())
    # Without --findings the report stays quick: no findings section.
    code, _, err = _main(["inspect", "the cat chased a dog", "--model", tiny_model_dirs["bert"], "--html", report,
                          "--sections", "overview.tokens", "-q"], capsys)  # fmt: skip
    assert code == 0, err
    assert "published-findings" not in report.read_text(encoding="utf-8")


def test_findings_is_a_listed_command(capsys):
    assert "literature_commands" in COMMAND_MODULES
    code, out, _ = _main(["findings", "--help"], capsys)
    assert code == 0 and "--finetuned" in out
    assert "reproduces, differs, inconclusive" in " ".join(out.split()) and "not measured yet" in " ".join(out.split())
