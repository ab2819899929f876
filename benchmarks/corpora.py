"""Corpora at scale: extraction throughput at 1k / 10k / 100k texts (shard folders, flat memory),
the Ray engine against the in-process one (20k texts on this box; and a two-node Ray cluster on
this machine writing the same bytes), a 100k-row folder opened (peak RSS, time to the first
projection) and a nearest-neighbour query at 100k rows.

``measure() -> dict`` runs everything (each extraction size in a fresh process, so its peak RSS is
its own); ``python benchmarks/corpora.py`` prints the dict as JSON. ``CLSVIZ_BENCH_QUICK=1`` (for a
busy machine) skips the 100k extraction, extrapolating its throughput from 10k and opening a 100k
folder of synthetic vectors of the same shape instead, and times each engine once (said so in the
notes).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's clsviz, as benchmarks/run.py does
TARGETS = {
    "ray_vs_local_throughput_ratio": (">=", 0.8),
    "ray_two_nodes_identical": (">=", 1),
}
"""The issue's targets (comparison, value) for the numbers :func:`measure` returns."""

RAY_TEXTS = 20_000
"""Texts of the Ray-vs-local comparison: ten shards, enough for two actors to share evenly and for
the start of Ray and of its actors (each loads the model once) to be part of a real run."""

WORDS = ("the a cat dog film music city rain food team game song night river market garden street school "
         "old new quiet loud small large red blue happy sad fast slow").split()

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from clsviz import load_encoder
from clsviz.corpus import Corpus
from clsviz.extraction import embed_to_shards
import numpy as np
mode, n, out = {mode!r}, {n}, {out!r}
rng = np.random.default_rng(n)
words = {words!r}
texts = tuple(" ".join(rng.choice(words, size=int(rng.integers(4, 9)))) for _ in range(n))
corpus = Corpus(texts=texts, labels={{"kind": tuple(str(i % 3) for i in range(n))}})
if mode == "embed":
    enc = load_encoder()
    start = time.perf_counter()
    embed_to_shards(enc, corpus, out, max_tokens=16, batch_size=64, engine={engine!r},
                    engine_options={engine_options!r})
    seconds = time.perf_counter() - start
else:
    from clsviz.projection import Projector
    from clsviz.vectors_io import load_vectors
    start = time.perf_counter()
    shards = load_vectors(out)
    X = shards.get("cls", shards.layers[-1])
    Projector("pca", random_state=0).fit(X)
    seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

_TWO_NODES = r"""
import json, os, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from ray.cluster_utils import Cluster
from clsviz import load_encoder
from clsviz.corpus import Corpus
from clsviz.extraction import embed_to_shards
n, out = {n}, {out!r}
rng = np.random.default_rng(n)
words = {words!r}
texts = tuple(" ".join(rng.choice(words, size=int(rng.integers(4, 9)))) for _ in range(n))
corpus = Corpus(texts=texts, labels={{"kind": tuple(str(i % 3) for i in range(n))}})
enc = load_encoder()
options = dict(max_tokens=16, batch_size=64, shard_rows=200)
embed_to_shards(enc, corpus, out + "/local", **options)
cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1, "object_store_memory": 100 * 2**20}})
cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
cluster.wait_for_nodes()
os.environ["RAY_ADDRESS"] = cluster.address
start = time.perf_counter()
embed_to_shards(enc, corpus, out + "/ray", engine="ray", engine_options={{"actors": 2}}, **options)
seconds = time.perf_counter() - start
import ray
ray.init(address=cluster.address)
nodes = sum(1 for node in ray.nodes() if node["Alive"])
ray.shutdown()
cluster.shutdown()
files = sorted(os.listdir(out + "/local"))
same = files == sorted(os.listdir(out + "/ray")) and all(
    open(out + "/local/" + f, "rb").read() == open(out + "/ray/" + f, "rb").read() for f in files)
print(json.dumps({{"identical": same, "files": len(files), "nodes": nodes, "seconds": seconds}}))
"""


def _child(mode: str, n: int, out: str, engine: str = "local", engine_options: dict | None = None) -> dict:
    code = _CHILD.format(root=str(ROOT), mode=mode, n=n, out=out, words=WORDS, engine=engine,
                         engine_options=engine_options or {})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _two_nodes(n: int, out: str) -> dict:
    """In a fresh process: the in-process run, then a two-node Ray cluster on this machine
    (``ray.cluster_utils.Cluster``: a head and a second node, one CPU and one actor each) on the
    same texts; whether every file of the two folders is the same bytes."""
    code = _TWO_NODES.format(root=str(ROOT), n=n, out=out, words=WORDS)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _two_nodes_figures(folder: str, notes: dict) -> dict:
    """``ray_two_nodes_identical`` (1/0) and ``ray_two_nodes_s``, or None with the reason in
    ``notes`` when the cluster could not be run (last, so a failure costs no other figure)."""
    try:
        two = _two_nodes(1200, folder)
    except (subprocess.CalledProcessError, ValueError, IndexError) as exc:
        tail = (getattr(exc, "stderr", "") or str(exc)).strip().splitlines()[-1:] or [""]
        notes["ray_two_nodes_identical"] = f"the two-node cluster could not be run: {tail[0][:300]}"
        return {"ray_two_nodes_identical": None, "ray_two_nodes_s": None}
    notes["ray_two_nodes_identical"] = (
        f"1 = a two-node Ray cluster on this machine (ray.cluster_utils.Cluster: {two['nodes']} nodes of one CPU, "
        f"one actor each) wrote the same {two['files']} files (6 shards + manifest, 1,200 texts) byte for byte as "
        "the in-process run; ray_two_nodes_s: that Ray run's seconds, cluster start excluded")
    notes["ray_two_nodes_s"] = notes["ray_two_nodes_identical"]
    return {"ray_two_nodes_identical": int(two["identical"] and two["nodes"] == 2), "ray_two_nodes_s": two["seconds"]}


def _synthetic_folder(folder: str, rows: int) -> None:
    """A shard folder shaped like the bundled model's (7 layers x cls/mean/max x 384, float16)."""
    import numpy as np

    from clsviz.extraction import save_shards
    from clsviz.vectors import PooledVectors

    rng = np.random.default_rng(0)

    def chunks():
        for start in range(0, rows, 2048):
            n = min(2048, rows - start)
            yield PooledVectors(vectors=rng.normal(size=(n, 7, 3, 384)).astype(np.float32),
                                poolings=("cls", "mean", "max"), texts=tuple(f"text {start + i}" for i in range(n)),
                                model_name="synthetic", truncated=np.zeros(n, dtype=bool),
                                labels={"kind": tuple(str(i % 3) for i in range(n))})

    save_shards(chunks(), folder, rows=rows)


def _knn_query_ms(folder: str) -> tuple[float, float]:
    import numpy as np

    from clsviz.knn import build_index
    from clsviz.vectors_io import load_vectors

    shards = load_vectors(folder, verify=False)
    start = time.perf_counter()
    index = build_index(shards, "cls", shards.layers[-1])
    built = time.perf_counter() - start
    queries = shards.get("cls", shards.layers[-1], np.arange(0, 2000, 100))
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q, 10)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), built


def measure() -> dict:
    """Every measurement of this file; keys end in their unit. Notes under ``notes``."""
    quick = os.environ.get("CLSVIZ_BENCH_QUICK") == "1"
    results: dict = {"notes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [_child("embed", 1000, f"{tmp}/k1-{i}") for i in range(3)]
        one_k = statistics.median(r["seconds"] for r in runs)
        results["extract_1k_texts_per_s"] = 1000 / one_k
        results["extract_1k_peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in runs)
        ten = _child("embed", 10_000, f"{tmp}/k10")
        results["extract_10k_texts_per_s"] = 10_000 / ten["seconds"]
        results["extract_10k_peak_rss_mb"] = ten["peak_rss_mb"]
        if quick:
            results["extract_100k_texts_per_s"] = results["extract_10k_texts_per_s"]
            results["notes"]["extract_100k_texts_per_s"] = "extrapolated from 10k (CLSVIZ_BENCH_QUICK=1)"
            big, rows_big = f"{tmp}/synthetic100k", 100_000
            _synthetic_folder(big, rows_big)
        else:
            hundred = _child("embed", 100_000, f"{tmp}/k100")
            results["extract_100k_texts_per_s"] = 100_000 / hundred["seconds"]
            results["extract_100k_peak_rss_mb"] = hundred["peak_rss_mb"]
            big, rows_big = f"{tmp}/k100", 100_000
        results["notes"]["extract"] = ("bundled model, short generated texts (4-8 words, max 16 tokens), all 7 layers "
                                       "x cls/mean/max, float16 shards, batch 64; each size in a fresh process "
                                       "(peak RSS includes the model); 1k: median of 3")
        ray_opts = {"num_cpus": 2, "object_store_mb": 200, "actors": 2}
        repeats = 1 if quick else 3
        ray_texts = 2000 if quick else RAY_TEXTS
        pairs = [(_child("embed", ray_texts, f"{tmp}/l{i}")["seconds"],
                  _child("embed", ray_texts, f"{tmp}/r{i}", "ray", ray_opts)["seconds"]) for i in range(repeats)]
        ratios = [local / ray for local, ray in pairs]
        results["ray_vs_local_throughput_ratio"] = {"median": statistics.median(ratios), "min": min(ratios),
                                                    "max": max(ratios), "runs": repeats}
        results["notes"]["ray_vs_local_throughput_ratio"] = (
            f"{ray_texts:,} texts ({-(-ray_texts // 2048)} shards of 2,048), {repeats} interleaved pairs, each run in a "
            "fresh process; Ray: embedded local Ray on this box (2 CPUs, 2 actors of one CPU each), the start of Ray and "
            "the model load in each actor included; in-process: torch's 2 threads")
        opened = [_child("open", rows_big, big) for _ in range(3)]
        results["open_100k_first_projection_s"] = statistics.median(r["seconds"] for r in opened)
        results["open_100k_peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in opened)
        results["notes"]["open_100k"] = (f"{rows_big:,} rows: open + sha256 of every shard, read cls at the last "
                                         "layer, PCA fit on 20,000 and place all; fresh process, median of 3")
        query_ms, built = _knn_query_ms(big)
        results["knn_query_100k_ms"] = query_ms
        results["knn_build_100k_s"] = built
        results["notes"]["knn"] = f"faiss exact inner product on unit vectors, {rows_big:,} x 384, k=10, median of 20"
        results.update(_two_nodes_figures(f"{tmp}/two-nodes", results["notes"]))
    return results


if __name__ == "__main__":
    print(json.dumps(measure(), indent=1))
