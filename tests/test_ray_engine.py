"""The Ray engine: the same shard folder as the in-process engine, byte for byte, on an embedded
local Ray (2 CPUs, a small object store); an unreachable cluster refused with a clear message."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from clsviz.cli import main
from clsviz.corpus import demo_corpus
from clsviz.extraction import embed_to_shards
from clsviz.progress import Cancelled
from clsviz.ray_engine import (
    IN_FLIGHT,
    RayUnavailable,
    check_ray_address,
    object_store_floor_mb,
    shard_output_bytes,
)
from clsviz.vectors_io import load_vectors

pytest.importorskip("ray", reason="Ray is an optional extra (requirements-dev.txt installs it)")


def test_ray_and_in_process_shards_are_identical(tmp_path, tiny_encoder, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    corpus = demo_corpus().subset(range(90))
    local = embed_to_shards(tiny_encoder, corpus, tmp_path / "local", shard_rows=20)
    # Two shards in-process, then stopped; the rest on Ray: a Ray run resumes a folder like any other.
    stop = threading.Event()
    with pytest.raises(Cancelled):
        embed_to_shards(
            tiny_encoder,
            corpus,
            tmp_path / "ray",
            shard_rows=20,
            cancel=stop,
            progress=lambda done, total: stop.set() if done >= 40 else None,
        )
    embed_to_shards(
        tiny_encoder,
        corpus,
        tmp_path / "ray",
        shard_rows=20,
        engine="ray",
        engine_options={"num_cpus": 2, "object_store_mb": 80, "actors": 2},
    )
    files = sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert files == sorted(p.name for p in local.folder.iterdir()) and len(files) == 6
    for name in files:
        assert (tmp_path / "ray" / name).read_bytes() == (local.folder / name).read_bytes(), name


def test_the_object_store_has_room_for_the_shards_in_flight(tmp_path, tiny_encoder):
    # A shard's vectors, as the reader gets them back: every layer x pooling, 20 rows, stored in float16.
    folder = embed_to_shards(tiny_encoder, demo_corpus().subset(range(30)), tmp_path / "v", shard_rows=20).folder
    vectors = load_vectors(folder)
    settings = vectors.manifest
    stored = np.dtype(vectors.dtype).itemsize
    held = sum(vectors.get(p, layer, rows=range(20)).size * stored for p in vectors.poolings for layer in vectors.layers)
    assert vectors.dtype == "float16" and shard_output_bytes(settings, 20) == held
    # The bench's 2,048-text shards of the bundled model: 7 layers x 3 poolings x 384 dims in float16, 33 MB each;
    # two actors get room for eight each, more than the 200 MB that held them back.
    bundled = {"dtype": "float16", "layers": list(range(7)), "poolings": ["cls", "mean", "max"], "hidden_size": 384}
    one = 2048 * 7 * 3 * 384 * 2
    assert shard_output_bytes(bundled, 2048) == one
    assert object_store_floor_mb(bundled, [(0, 0, 2048), (1, 2048, 1000)], 2) == -(-IN_FLIGHT * 2 * one // 2**20) > 200
    assert object_store_floor_mb(bundled, [(0, 0, 10)], 1) == 75  # Ray's own minimum


def test_an_unreachable_cluster_is_refused_quickly(tmp_path, monkeypatch, capsys, tiny_model_dirs):
    start = time.monotonic()
    with pytest.raises(RayUnavailable, match="No Ray cluster answers at 127.0.0.1:9"):
        check_ray_address("127.0.0.1:9", timeout=2)
    with pytest.raises(RayUnavailable, match="not an address"):
        check_ray_address("ray://nowhere")
    monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:9")
    out = tmp_path / "v"
    code = main(
        [
            "embed",
            "demo",
            "--max-rows",
            "20",
            "--model",
            str(tiny_model_dirs["bert"]),
            "--out",
            str(out),
            "--engine",
            "ray",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "No Ray cluster answers" in err and "RAY_ADDRESS" in err and "Traceback" not in err
    assert time.monotonic() - start < 60
    # Nothing that could pass for a result: the folder holds an unfinished manifest and no shard.
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    from clsviz.shards import ShardError, open_shards

    with pytest.raises(ShardError, match="unfinished"):
        open_shards(out)
