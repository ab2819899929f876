"""Shard folders: resumable writing (killed with SIGKILL, resumed, byte for byte), lazy reads that
touch only the columns asked for, float16 precision, and every damaged or mismatched folder refused."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clsviz import extract
from clsviz.cli import main
from clsviz.corpus import Corpus, demo_corpus
from clsviz.extraction import embed_to_shards
from clsviz.readers import load_corpus
from clsviz.shards import MANIFEST, ShardError, column_name, open_shards
from clsviz.vectors_io import load_vectors

ROOT = Path(__file__).resolve().parents[1]


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _small_corpus(n: int = 60) -> Corpus:
    demo = demo_corpus()
    return demo.subset(range(n))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_encoder):
    out = tmp_path_factory.mktemp("shards") / "tiny"
    return embed_to_shards(tiny_encoder, _small_corpus(), out, shard_rows=16, dtype="float32")


def test_shards_hold_what_extract_computes(tiny_folder, tiny_encoder):
    corpus = _small_corpus()
    assert len(tiny_folder.manifest["shards"]) == 4 and tiny_folder.rows == 60
    assert tiny_folder.texts == corpus.texts and tiny_folder.labels == corpus.labels
    for start in (0, 16, 32, 48):  # each shard is extract() of its own rows
        part = corpus.subset(range(start, min(start + 16, 60)))
        pv = extract(tiny_encoder, part.texts, poolings=("cls", "mean", "max"))
        for pooling in ("cls", "mean", "max"):
            for layer in range(3):
                got = tiny_folder.get(pooling, layer)[start : start + len(part)]
                assert np.array_equal(got, pv.get(pooling, layer))
    rows = [59, 3, 17, 17]
    assert np.array_equal(tiny_folder.get("mean", 1, rows), tiny_folder.get("mean", 1)[rows])


def test_lazy_reads_touch_only_the_requested_column(tiny_folder):
    shards = open_shards(tiny_folder.folder)
    x = shards.get("mean", 2)
    assert x.shape == (60, 32) and x.dtype == np.float32
    assert set(shards.stats.columns) == {"mean@2"} and shards.stats.shard_reads == 4
    # Independently: the column chunks of "mean@2" in the Parquet footers, and the whole files.
    expected, total = 0, 0
    for path in sorted(tiny_folder.folder.glob("shard-*.parquet")):
        meta = pq.ParquetFile(path).metadata
        total += path.stat().st_size
        for g in range(meta.num_row_groups):
            for i in range(meta.num_columns):
                if meta.schema.column(i).path.startswith("mean@2."):
                    expected += meta.row_group(g).column(i).total_compressed_size
    assert shards.stats.bytes_read == expected > 0
    assert expected < total / 9  # 9 vector columns besides texts and labels
    before = shards.stats.shard_reads
    shards.get("cls", 0, rows=[1, 2])  # rows of one shard: only that shard is opened
    assert shards.stats.shard_reads == before + 1
    assert shards.stats.columns["cls@0"] == 1


def test_float16_is_within_1e_3_relative_of_float32(tmp_path, encoder):
    corpus = _small_corpus(40)
    f32 = embed_to_shards(encoder, corpus, tmp_path / "f32", dtype="float32", shard_rows=20)
    f16 = embed_to_shards(encoder, corpus, tmp_path / "f16", dtype="float16", shard_rows=20)
    size32 = sum(s["bytes"] for s in f32.manifest["shards"])
    size16 = sum(s["bytes"] for s in f16.manifest["shards"])
    assert size16 < 0.6 * size32
    for pooling in f32.poolings:
        for layer in f32.layers:
            a, b = f16.get(pooling, layer).astype(np.float64), f32.get(pooling, layer).astype(np.float64)
            assert not np.array_equal(a, b)
            rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
            assert rel.max() <= 1e-3, (pooling, layer, rel.max())
            # elementwise too, wherever a value is not tiny next to its vector
            big = np.abs(b) > 1e-2 * np.abs(b).max(axis=1, keepdims=True)
            assert (np.abs(a - b)[big] <= 1e-3 * np.abs(b)[big]).all()


def _write_csv(path: Path, corpus: Corpus) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", *corpus.labels])
        for i, t in enumerate(corpus.texts):
            w.writerow([t, *(v[i] for v in corpus.labels.values())])


def test_killed_run_resumes_to_the_same_bytes(tmp_path, encoder):
    corpus = _small_corpus(60)
    source = tmp_path / "corpus.csv"
    _write_csv(source, corpus)
    args = [
        "embed",
        str(source),
        "--out",
        str(tmp_path / "resumed"),
        "--shard-rows",
        "6",
        "--max-tokens",
        "16",
        "--quiet",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clsviz", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = tmp_path / "resumed" / MANIFEST
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.is_file():
                try:
                    if len(json.loads(manifest.read_text())["shards"]) >= 4:
                        break
                except ValueError:
                    pass
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    half = tmp_path / "resumed"
    listed = json.loads(manifest.read_text())
    assert not listed["complete"] and 4 <= len(listed["shards"]) < 10
    with pytest.raises(ShardError, match="unfinished run"):
        open_shards(half)
    with pytest.raises(ShardError, match="unfinished run"):
        load_vectors(half)
    # Anything the manifest does not list (a renamed shard, a partial file) is unfinished work.
    (half / "shard-00009.parquet").write_bytes(b"PAR1 half written")
    (half / ".shard-00008.parquet.partial").write_bytes(b"PAR1")
    assert main(args) == 0
    # The uninterrupted run: the same corpus file, model and options, in this process.
    straight_corpus = load_corpus(source.read_bytes(), source.name, max_bytes=10**9)
    embed_to_shards(encoder, straight_corpus, tmp_path / "straight", shard_rows=6, max_tokens=16)
    resumed, straight = _folder_bytes(half), _folder_bytes(tmp_path / "straight")
    assert list(resumed) == list(straight) == [MANIFEST, *(f"shard-{i:05d}.parquet" for i in range(10))]
    assert resumed == straight
    done = load_vectors(half)
    assert done.rows == 60 and done.texts == corpus.texts


def test_resume_refuses_another_model_or_corpus(tmp_path, tiny_encoder, encoder):
    out = tmp_path / "run"
    corpus = _small_corpus(20)
    embed_to_shards(tiny_encoder, corpus, out, shard_rows=10)
    with pytest.raises(ShardError, match="another run.*model"):
        embed_to_shards(encoder, corpus, out, shard_rows=10)
    with pytest.raises(ShardError, match="another run"):
        embed_to_shards(tiny_encoder, _small_corpus(21), out, shard_rows=10)
    with pytest.raises(ShardError, match="another run.*dtype"):
        embed_to_shards(tiny_encoder, corpus, out, shard_rows=10, dtype="float32")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ShardError, match="not empty"):
        embed_to_shards(tiny_encoder, corpus, tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_damaged_folders_are_refused(tmp_path, tiny_folder, tiny_encoder):
    src = tiny_folder.folder
    bad = _copy(src, tmp_path / "flipped")
    data = bytearray((bad / "shard-00001.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "shard-00001.parquet").write_bytes(bytes(data))
    with pytest.raises(ShardError, match="checksum"):
        open_shards(bad)

    missing = _copy(src, tmp_path / "missing")
    (missing / "shard-00002.parquet").unlink()
    with pytest.raises(ShardError, match="lacks shard-00002"):
        open_shards(missing)

    rows = _copy(src, tmp_path / "rows")
    manifest = json.loads((rows / MANIFEST).read_text())
    manifest["rows"] = 61
    (rows / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="rows"):
        open_shards(rows)

    # A shard of another model, checksums updated so only the contents give it away.
    other = embed_to_shards(
        tiny_encoder, _small_corpus(), tmp_path / "other-run", shard_rows=16, dtype="float32"
    )
    swapped = _copy(src, tmp_path / "swapped")
    (swapped / "shard-00000.parquet").write_bytes((other.folder / "shard-00001.parquet").read_bytes())
    manifest = json.loads((swapped / MANIFEST).read_text())
    entry = json.loads((other.folder / MANIFEST).read_text())["shards"][1]
    manifest["shards"][0].update(bytes=entry["bytes"], sha256=entry["sha256"])
    (swapped / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="does not match its shards"):
        open_shards(swapped)

    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / MANIFEST).write_text("{not json")
    with pytest.raises(ShardError, match="damaged"):
        load_vectors(tmp_path / "junk")


def test_shard_reader_lists_what_it_lacks(tiny_folder):
    with pytest.raises(KeyError, match="not extracted"):
        tiny_folder.get("pooler", 1)
    assert column_name("token:3", 2) == "token:3@2"


def test_cli_shard_options(tmp_path, capsys, tiny_model_dirs):
    out = tmp_path / "v"
    code = main(
        [
            "embed",
            "demo",
            "--max-rows",
            "30",
            "--model",
            str(tiny_model_dirs["bert"]),
            "--out",
            str(out),
            "--layers",
            "0,2",
            "--dtype",
            "float32",
            "--quiet",
        ]
    )
    assert code == 0
    shards = load_vectors(out)
    assert shards.layers == (0, 2) and shards.dtype == "float32"
    with pytest.raises(KeyError, match="not saved"):
        shards.get("cls", 1)
    code = main(["embed", "demo", "--out", str(tmp_path / "v.npz"), "--dtype", "float16", "--quiet"])
    assert code == 2 and "shard folder" in capsys.readouterr().err
