"""No half-written artefacts: a saved classifier folder, an HTML report and a vectors file are
either wholly under their name or not there at all, even when the process writing them is killed
(SIGKILL) in the middle; what a killed save leaves is recognised and refused, and never blocks
the next save to the same name (clsviz.artifacts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from clsviz import ModelLoadError, load_encoder
from clsviz.artifacts import (
    INCOMPLETE_MARKER,
    ArtifactError,
    atomic_folder,
    atomic_path,
    is_partial,
    remove_stale,
    unfinished_reason,
    write_bytes_atomic,
)
from clsviz.vectors import PooledVectors
from clsviz.vectors_io import load_vectors, save_vectors

ROOT = Path(__file__).resolve().parent.parent


def _staged(folder: Path, name: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(f".{name}.partial-"))


# -- the mechanism ------------------------------------------------------------------------------


def test_atomic_path_puts_the_file_in_place_only_when_the_block_ends(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_path(target) as staging:
        staging.write_bytes(b"new contents")
        assert target.read_bytes() == b"old"  # the old file stands until the new one is complete
        assert is_partial(staging) and staging.parent == tmp_path
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_path_leaves_nothing_on_an_error(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as staging:
            staging.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArtifactError, match="nothing was written"):
        with atomic_path(target):
            pass
    assert write_bytes_atomic(target, b"x") == target and target.read_bytes() == b"x"


def test_atomic_folder_renames_a_complete_folder_and_removes_a_failed_one(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(ValueError):
        with atomic_folder(target) as staging:
            assert (staging / INCOMPLETE_MARKER).is_file()
            assert unfinished_reason(staging) is not None
            (staging / "config.json").write_text("{}")
            raise ValueError("stopped")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()  # an empty folder may be filled
    with atomic_folder(target) as staging:
        (staging / "config.json").write_text("{}")
        (staging / "sub").mkdir()
        (staging / "sub" / "w.bin").write_bytes(b"1234")
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "sub"]
    assert unfinished_reason(target) is None
    with pytest.raises(ArtifactError, match="already exists and is not empty"):
        with atomic_folder(target):
            pass
    with pytest.raises(ArtifactError, match="does not exist"):
        with atomic_folder(tmp_path / "missing" / "model"):
            pass


def test_stale_staging_copies_go_but_a_running_writers_stay(tmp_path):
    target = tmp_path / "model"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".model.partial-{dead_pid}-abcd1234"
    stale.mkdir()
    (stale / INCOMPLETE_MARKER).write_text("")
    live = tmp_path / f".model.partial-{os.getpid()}-feedbeef"
    live.mkdir()
    other = tmp_path / f".other.partial-{dead_pid}-abcd1234"
    other.write_bytes(b"")
    assert remove_stale(target) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


# -- killed mid-save ----------------------------------------------------------------------------


def _run_until_ready(script: str, ready: Path, timeout: float = 180.0) -> subprocess.Popen:
    """Start ``script`` in a Python subprocess and return once it created ``ready``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the writer exited before it was ready:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the writer never reached the slow step")
        time.sleep(0.05)
    return proc


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


SAVE_CLASSIFIER = """
import sys, time
from pathlib import Path
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification
from clsviz.encoder import bundled_model_path
from clsviz.experiments.learners import TrainedClassifier

dest, ready = Path(sys.argv[-2]), Path(sys.argv[-1])
torch.manual_seed(0)
tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=64, num_labels=2, id2label={0: "a", 1: "b"},
                    label2id={"a": 0, "b": 1})
model = BertForSequenceClassification(config).eval()
real = tokenizer.save_pretrained

def slow_save(folder, *args, **kwargs):  # the weights are written; the killer strikes before the end
    out = real(folder, *args, **kwargs)
    (ready.parent / "ready.tmp").write_text(str(folder))
    (ready.parent / "ready.tmp").replace(ready)  # named only once complete: the test reads it at once
    time.sleep(600)
    return out

tokenizer.save_pretrained = slow_save
TrainedClassifier(model=model, tokenizer=tokenizer, labels=("a", "b"), label_name="y", base_model="tiny",
                  steps=1).save(dest)
"""


def test_a_classifier_save_killed_midway_leaves_no_model_and_does_not_block_a_rerun(tmp_path):
    dest = tmp_path / "my-classifier"
    ready = tmp_path / "ready"
    proc = _run_until_ready(SAVE_CLASSIFIER.replace("sys.argv[-2]", repr(str(dest))).replace(
        "sys.argv[-1]", repr(str(ready))), ready)
    _kill(proc)
    assert not dest.exists(), "a save killed midway left a folder under the model's name"
    staged = _staged(tmp_path, dest.name)
    assert len(staged) == 1 and Path(ready.read_text()) == staged[0]
    # The kill really was midway: weights and config had been written to the staging copy.
    assert {"config.json", "model.safetensors", INCOMPLETE_MARKER} <= {p.name for p in staged[0].iterdir()}
    with pytest.raises(ModelLoadError, match="started saving but never finished"):
        load_encoder(str(staged[0]))
    # The same folder with its marker but another name is refused too.
    renamed = tmp_path / "copied-by-hand"
    staged[0].rename(renamed)
    with pytest.raises(ModelLoadError, match="never finished.*marker"):
        load_encoder(str(renamed))
    renamed.rename(staged[0])
    # A rerun to the same name succeeds and clears what the killed save left.
    ready.unlink()
    script = SAVE_CLASSIFIER.replace("time.sleep(600)", "pass").replace(
        "sys.argv[-2]", repr(str(dest))).replace("sys.argv[-1]", repr(str(ready)))
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _staged(tmp_path, dest.name) == []
    enc = load_encoder(str(dest))
    assert enc.classifier is not None and enc.info.labels == ("a", "b")
    assert not (dest / INCOMPLETE_MARKER).exists()
    assert json.loads((dest / "clsviz.json").read_text())["base_model"] == "tiny"


HALF_WRITE = """
import sys, time, pathlib
ready = pathlib.Path({ready!r})

def half(path, data):
    with open(path, "wb") as fh:  # half the bytes reach the disk, then the process is killed
        fh.write(data[: len(data) // 2])
        fh.flush()
    with open(str(ready) + ".tmp", "w") as fh:  # named only once complete: the test reads it at once
        fh.write(str(path))
    pathlib.os.replace(str(ready) + ".tmp", ready)
    time.sleep(600)
"""

KILL_VECTORS = HALF_WRITE + """
import io
import numpy as np
from clsviz.vectors import PooledVectors
from clsviz.vectors_io import save_vectors
real = np.savez_compressed

def slow(fh, **arrays):
    buffer = io.BytesIO()
    real(buffer, **arrays)
    half(fh.name, buffer.getvalue())

np.savez_compressed = slow
rng = np.random.default_rng(0)
pv = PooledVectors(vectors=rng.normal(size=(40, 3, 2, 16)).astype("float32"), poolings=("cls", "mean"),
                   texts=tuple(f"text {{i}}" for i in range(40)), model_name="m", truncated=np.zeros(40, bool))
save_vectors(pv, {dest!r})
"""

KILL_REPORT = HALF_WRITE + """
import pathlib
from clsviz import report
report.build_report = lambda *a, **k: "<html>" + "<p>figure</p>" * 200_000 + "</html>"
pathlib.Path.write_text = lambda self, text, encoding=None: half(self, text.encode())
report.write_report(None, {dest!r})
"""


@pytest.mark.parametrize("what", ["vectors", "report"])
def test_a_file_write_killed_midway_leaves_no_file_under_its_name(tmp_path, what):
    dest = tmp_path / ("vectors.npz" if what == "vectors" else "report.html")
    ready = tmp_path / "ready"
    script = (KILL_VECTORS if what == "vectors" else KILL_REPORT).format(dest=str(dest), ready=str(ready))
    _kill(_run_until_ready(script, ready))
    assert not dest.exists(), f"a {what} write killed midway left a file under its name"
    staged = _staged(tmp_path, dest.name)
    assert len(staged) == 1 and 0 < staged[0].stat().st_size and Path(ready.read_text()) == staged[0]
    if what == "vectors":
        with pytest.raises(FileNotFoundError):
            load_vectors(dest)
        # A rerun writes the whole file and clears the killed one's staging copy.
        rng = np.random.default_rng(1)
        pv = PooledVectors(vectors=rng.normal(size=(5, 3, 1, 8)).astype("float32"), poolings=("cls",),
                           texts=tuple("abcde"), model_name="m", truncated=np.zeros(5, bool))
        save_vectors(pv, dest)
        np.testing.assert_array_equal(load_vectors(dest).vectors, pv.vectors)
        assert _staged(tmp_path, dest.name) == []


def test_a_command_line_table_cut_short_leaves_no_csv(tmp_path, monkeypatch):
    import pandas as pd

    from clsviz.cli.common import write_csv

    table = pd.DataFrame({"layer": range(1000), "value": np.linspace(0, 1, 1000)})
    out = tmp_path / "table.csv"
    real = pd.DataFrame.to_csv

    def cut_short(self, path, **kwargs):
        Path(path).write_text("layer,value\n0,0.0\n")  # a few rows reach the disk...
        raise OSError("No space left on device")  # ...then the write fails

    monkeypatch.setattr(pd.DataFrame, "to_csv", cut_short)
    with pytest.raises(OSError, match="No space left"):
        write_csv(table, out)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)
    write_csv(table, out)
    pd.testing.assert_frame_equal(pd.read_csv(out), table)
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
