"""The clsviz command line, end to end: `python -m clsviz ...` in a subprocess on the bundled model."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clsviz import cli, pool, trace
from clsviz.corpus import demo_corpus
from clsviz.vectors_io import load_vectors

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

ANIMALS = ["cat", "dog", "horse", "bird", "fish", "cow", "goat", "sheep"]
FOOD = ["bread", "soup", "rice", "cake", "pasta", "salad", "cheese", "apples"]


def run(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clsviz", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def corpus_csv(tmp_path_factory) -> Path:
    """16 sentences about animals or food, with a topic label and a comma inside a quoted text."""
    path = tmp_path_factory.mktemp("corpus") / "small.csv"
    rows = [(f"The {w} was seen near the old barn, again.", "animal") for w in ANIMALS]
    rows += [(f"We had {w} for dinner last night.", "food") for w in FOOD]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "topic"])
        writer.writerows(rows)
    return path


def _error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines, "expected a reason on stderr"
    assert "Traceback" not in result.stderr
    return lines[-1]


# --- help and entry points ---------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["inspect"], ["embed"], ["probe"], ["app"]])
def test_help_on_every_command(command):
    result = run(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: clsviz{' ' + command[0] if command else ''}")


def test_entry_point_is_declared_and_runs():
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "clsviz"]
    assert ep.value == "clsviz.cli:main"
    assert ep.load() is cli.main
    script = Path(sys.executable).parent / "clsviz"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("clsviz ")


# --- inspect -------------------------------------------------------------------------------


def test_inspect_prints_tokens_and_writes_the_report(tmp_path, encoder):
    text = "Why is the [CLS] token <b>always</b> first?"
    out = tmp_path / "report.html"
    result = run("inspect", text, "--html", str(out))
    assert result.returncode == 0, result.stderr
    t = trace(encoder, text)
    # Tokens as the tokenizer makes them; "[CLS]" typed in the text stays ordinary word pieces.
    assert "  " + " ".join(t.tokens) in result.stdout.splitlines()
    assert t.tokens.count("[CLS]") == 1
    # The [CLS] norm per layer, against the Trace computed here.
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "cls_norm"])
    for layer in range(t.num_layers + 1):
        fields = lines[header + 1 + layer].split()
        assert int(fields[0]) == layer
        assert float(fields[1]) == pytest.approx(float(np.linalg.norm(t.cls(layer))), abs=2e-4)
    doc = out.read_text(encoding="utf-8")
    assert "<b>always</b>" not in doc and "&lt;b&gt;always&lt;/b&gt;" in doc
    assert doc.count("Plotly.newPlot(") >= 7
    # The mixing section: what flows into [CLS], attributions and the faithfulness scoreboard.
    for key in (
        "mixing.cls_row",
        "mixing.rollout",
        "mixing.block",
        "mixing.compare",
        "attribution.tokens",
        "faithfulness.ranking",
        "faithfulness.curves",
    ):
        assert f"id='sec-{key}'" in doc, key
    assert "[CLS] layer by layer" in result.stdout and "Findings:" in result.stdout
    assert f"Report: {out}" in result.stdout
    assert "Figures [" in result.stderr  # progress line


def test_inspect_without_html_and_from_stdin(monkeypatch, capsys):
    # In process (the subprocess path is covered above): the text comes from standard input.
    monkeypatch.setattr(sys, "stdin", io.StringIO("The cat sat."))
    assert cli.main(["inspect", "-", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "[CLS] the cat sat . [SEP]" in captured.out
    assert "Report:" not in captured.out and captured.err == ""


# --- embed ---------------------------------------------------------------------------------


def test_embed_csv_round_trips_to_the_same_vectors(tmp_path, corpus_csv, encoder):
    out = tmp_path / "vectors.npz"
    result = run(
        "embed", str(corpus_csv), "--out", str(out), "--poolings", "cls,mean,max", "--batch-size", "5"
    )
    assert result.returncode == 0, result.stderr
    assert "Embedding [" in result.stderr
    pv = load_vectors(out)
    frame = pd.read_csv(corpus_csv)
    assert pv.texts == tuple(frame["text"])
    assert pv.labels == {"topic": tuple(frame["topic"])}
    assert pv.poolings == ("cls", "mean", "max")
    assert pv.model_name == encoder.name
    assert pv.vectors.shape == (16, encoder.info.num_layers + 1, 3, encoder.info.hidden_size)
    # Each vector again from a single-text Trace: an independent path through the model.
    for i in (0, 9, 15):
        t = trace(encoder, pv.texts[i])
        for s_i, pooling in enumerate(pv.poolings):
            for layer in (0, 3, encoder.info.num_layers):
                assert np.allclose(pv.vectors[i, layer, s_i], pool(t, pooling, layer), atol=2e-4)


def test_embed_demo_corpus_to_parquet(tmp_path, capsys):
    out = tmp_path / "demo.parquet"
    assert (
        cli.main(["embed", "demo", "--max-rows", "12", "--poolings", "mean", "--out", str(out), "--quiet"])
        == 0
    )
    pv = load_vectors(out)
    demo = demo_corpus()
    assert pv.texts == demo.texts[:12]
    assert pv.labels == {k: tuple(v[:12]) for k, v in demo.labels.items()}
    assert pv.poolings == ("mean",) and pv.vectors.shape[0] == 12
    captured = capsys.readouterr()
    assert "Saved:" in captured.out and "Embedded 12 texts" in captured.out


# --- probe ---------------------------------------------------------------------------------


def test_probe_prints_and_saves_the_table(tmp_path, corpus_csv, encoder):
    from sklearn.model_selection import StratifiedKFold

    from clsviz import extract
    from clsviz.experiments.probe import make_probe

    out = tmp_path / "probe.csv"
    result = run(
        "probe",
        str(corpus_csv),
        "--label",
        "topic",
        "--poolings",
        "cls,mean",
        "--layers",
        "0,6",
        "--folds",
        "4",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert sorted(zip(table["layer"], table["pooling"])) == [(0, "cls"), (0, "mean"), (6, "cls"), (6, "mean")]
    assert set(table["chance"]) == {0.5} and set(table["majority"]) == {0.5}
    assert "Probe accuracy for 'topic'" in result.stdout and "Chance 0.500" in result.stdout
    # One cell recomputed here with scikit-learn on freshly extracted vectors.
    frame = pd.read_csv(corpus_csv)
    pv = extract(encoder, list(frame["text"]), poolings=("mean",))
    y = (frame["topic"] == "food").to_numpy().astype(int)
    x = pv.get("mean", 6).astype(np.float64)
    splits = StratifiedKFold(4, shuffle=True, random_state=0).split(x, y)
    scores = [
        np.mean(make_probe(random_state=0).fit(x[tr], y[tr]).predict(x[te]) == y[te]) for tr, te in splits
    ]
    row = table[(table["layer"] == 6) & (table["pooling"] == "mean")].iloc[0]
    assert row["accuracy_mean"] == pytest.approx(np.mean(scores), abs=1e-9)


# --- bad arguments and input: exit 2 with a one-line reason --------------------------------


@pytest.mark.parametrize(
    "args, reason",
    [
        ([], "required: COMMAND"),
        (["frobnicate"], "invalid choice"),
        (["inspect"], "required: text"),
        (["inspect", "   "], "the text is empty"),
        (["inspect", "hi", "--html", "report.txt"], "must end in .html"),
        (["inspect", "hi", "--html", "no-such-folder/report.html"], "does not exist"),
        (["inspect", "hi", "--max-tokens", "0"], "at least 1"),
        (["inspect", "hi", "--model", "../etc"], "neither an existing local folder"),
        (["embed", "{csv}"], "required: --out"),
        (["embed", "missing.csv", "--out", "v.npz"], "no corpus file"),
        (["embed", "{csv}", "--out", "v.csv"], "must end in .npz or .parquet"),
        (["embed", "{csv}", "--out", "v.npz", "--poolings", "cls,bogus"], "Unknown pooling 'bogus'"),
        (["embed", "{csv}", "--out", "v.npz", "--batch-size", "x"], "expected a whole number"),
        (["embed", "{binary}", "--out", "v.npz"], "binary"),
        (["embed", "{csv}", "--out", "v.npz", "--text-column", "nope"], "no column 'nope'"),
        (["probe", "{csv}"], "required: --label"),
        (["probe", "{csv}", "--label", "nope"], "nope"),
        (["probe", "demo", "--label", "topic", "--folds", "1"], "at least 2 folds"),
        (["probe", "{csv}", "--label", "topic", "--layers", "a,b"], "--layers takes"),
        (["app", "--port", "-3"], "at least 1"),
    ],
)
def test_bad_arguments_exit_2_with_a_reason(tmp_path, corpus_csv, args, reason, monkeypatch, capsys):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x00\x01\x02\x03 not text \xff\xfe")
    args = [a.format(csv=corpus_csv, binary=binary) for a in args]
    # In process to keep the suite quick; the same path runs as a subprocess in the test below.
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    assert code == 2, (captured.out, captured.err)
    line = _error_line(subprocess.CompletedProcess(args, code, captured.out, captured.err))
    assert line.startswith("clsviz") and "error:" in line
    assert reason in line
    assert not list(tmp_path.glob("v.*"))  # nothing half-written


@pytest.mark.parametrize(
    "args, reason",
    [
        ([], "required: COMMAND"),
        (["embed", "missing.csv", "--out", "v.npz"], "no corpus file"),
        (["probe", "{csv}", "--label", "nope"], "nope"),
    ],
)
def test_bad_arguments_exit_2_from_the_command_line(tmp_path, corpus_csv, args, reason):
    result = run(*[a.format(csv=corpus_csv) for a in args], cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = _error_line(result)
    assert line.startswith("clsviz") and "error:" in line and reason in line


def test_model_that_cannot_be_loaded_exits_2(tmp_path):
    result = run("inspect", "hi", "--model", "no-such-owner/no-such-model", cwd=tmp_path)
    assert result.returncode == 2
    assert "not in the local model cache" in _error_line(result)


# --- other failures: exit 1, one line, no traceback ----------------------------------------


def test_other_failures_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert cli.main(["app"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs Streamlit" in err[0] and "pip install" in err[0]

    monkeypatch.undo()
    monkeypatch.setattr(cli.app_command, "find_app", lambda: None)
    assert cli.main(["app"]) == 1
    assert "app.py was not found" in capsys.readouterr().err


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(cli.app_command, "find_app", lambda: None)
    with pytest.raises(RuntimeError, match="app.py was not found"):
        cli.main(["app", "--debug"])


# --- app -------------------------------------------------------------------------------------


def test_find_app_is_the_repository_entry_file():
    app = cli.find_app()
    assert app == Path(cli.__file__).resolve().parents[2] / "app.py"
    assert app.is_file()


def test_app_starts_streamlit(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clsviz",
            "app",
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--headless",
            "--",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        env=ENV,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a failed test can stop the server too
    )
    try:
        deadline = time.monotonic() + 120
        healthy = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    healthy = resp.status == 200 and resp.read().strip() == b"ok"
                    break
            except OSError:
                time.sleep(0.5)
        assert healthy, "the app did not answer its health check"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert b"<title>Streamlit</title>" in resp.read()
    finally:
        process.terminate()  # `clsviz app` passes SIGTERM on to streamlit
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail("the streamlit server outlived `clsviz app` after SIGTERM")
    assert process.returncode == 0
    assert "Starting the app on http://127.0.0.1:" in output


# --- progress --------------------------------------------------------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_line():
    logged = _Stream(tty=False)
    bar = cli.Progress("Work", stream=logged, width=10)
    for done in range(1, 5):
        bar(done, 4)
    lines = logged.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Work [##########] 4/4")

    terminal = _Stream(tty=True)
    bar = cli.Progress("Work", stream=terminal, width=10)
    bar(1, 4)
    bar(4, 4)
    value = terminal.getvalue()
    assert value.startswith("\rWork [##........] 1/4") and "\rWork [##########] 4/4" in value
    assert value.endswith("\n") and value.count("\n") == 1

    silent = _Stream(tty=True)
    cli.Progress("Work", enabled=False, stream=silent)(4, 4)
    assert silent.getvalue() == ""


def test_local_corpus_files_have_no_upload_limits(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("text,kind\n" + "".join(f"sentence number {i} here,{i % 3}\n" for i in range(6000)))
    args = cli.build_parser().parse_args(["embed", str(path), "--out", "v.npz"])
    corpus = cli.read_corpus(args)
    assert len(corpus.texts) == 6000 and corpus.texts[5999] == "sentence number 5999 here"
    assert corpus.labels["kind"][:4] == ("0", "1", "2", "0")
    args = cli.build_parser().parse_args(["embed", str(path), "--out", "v.npz", "--max-rows", "10"])
    assert cli.read_corpus(args).texts == tuple(f"sentence number {i} here" for i in range(10))
    args = cli.build_parser().parse_args(["embed", "demo", "--out", "v.npz", "--max-rows", "7"])
    demo = cli.read_corpus(args)
    assert demo.texts == demo_corpus().texts[:7] and "the first 7 of" in demo.messages[-1]


def test_inspect_with_the_baseline(tmp_path, tiny_model_dirs, capsys):
    out = tmp_path / "report.html"
    args = [
        "inspect",
        "the cat chased a dog",
        "--model",
        str(tiny_model_dirs["bert"]),
        "--baseline",
        "--html",
        str(out),
    ]
    assert cli.main(args) == 0
    assert "Measuring the anisotropy baseline" in capsys.readouterr().err
    doc = out.read_text(encoding="utf-8")
    assert "id='sec-similarity.baseline'" in doc and "id='sec-similarity.summary'" in doc
