"""Speed of the causal tests on [CLS], each also as a ratio to a bare forward pass.

    python benchmarks/interventions.py [--json out.json]

* ``knockout_sweep_demo_s``: :func:`knockout_sweep` on the whole demo corpus (896 texts, label
  ``topic``) with the bundled model - every block b, cut from b upward and at b only, for
  [CLS] and for mean pooling, plus the probes. Median of 3 runs, with min and max.
* ``head_ablation_200_s``: :func:`head_sweep` (mean ablation, label ``topic``) on 200 demo
  texts (a stratified sample) - all 6 x 12 heads, one at a time. Median of 3 runs, with min and max.
* ``forward_demo_s`` / ``forward_200_s``: the same texts through the model's own fast forward
  pass (every hidden state, the batching of ``clsviz.extract``): median of 3 runs, with min
  and max. The ratios divide each sweep run's time by that median.
* ``*_cpu_s`` / ``*_cpu_ratio_to_forward``: the same in CPU seconds of this process (all its
  threads), which other processes sharing the machine disturb far less than wall time.

Targets (issue "Speed and safety"): each sweep <= 60 s on the development machine (2 CPU cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.timing import emit_json  # noqa: E402

TARGETS = {"knockout_sweep_demo_s": ("<=", 60), "head_ablation_200_s": ("<=", 60)}


def _forward(encoder, texts, batch_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of the bare forward pass over ``texts``."""
    import torch

    from clsviz.vectors import hidden_batches, tokenize_texts

    start, cpu = time.perf_counter(), time.process_time()
    tok = tokenize_texts(encoder, texts)
    with torch.inference_mode():
        for _ in hidden_batches(encoder, tok.input_ids, tok.special_masks, batch_size):
            pass
    return time.perf_counter() - start, time.process_time() - cpu


def _repeat(name: str, fn, runs: int = 3) -> dict:
    """``name`` (median wall seconds), ``name_min`` / ``name_max``, ``name_cpu`` (median CPU s), ``name_runs``."""
    walls, cpus = zip(*(fn() for _ in range(runs)))
    return {name: round(statistics.median(walls), 3), f"{name}_min": round(min(walls), 3),
            f"{name}_max": round(max(walls), 3), f"{name}_cpu": round(statistics.median(cpus), 3), f"{name}_runs": runs}  # fmt: skip


def _once(fn) -> tuple[float, float, object]:
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def _sweep(name: str, prefix: str, fn, forward: dict, forward_key: str, runs: int) -> tuple[dict, object]:
    """``runs`` timed calls of a sweep: ``name`` seconds (median, min, max), its CPU seconds, and
    its ratio to the median bare forward pass over the same texts (per run: min, max); and the
    last call's result."""
    calls = [_once(fn) for _ in range(runs)]
    walls, cpus = [c[0] for c in calls], [c[1] for c in calls]
    base = forward[forward_key]
    out = {
        name: round(statistics.median(walls), 2), f"{name}_min": round(min(walls), 2),
        f"{name}_max": round(max(walls), 2), f"{name}_runs": runs,
        f"{name.removesuffix('_s')}_cpu_s": round(statistics.median(cpus), 2),
        f"{prefix}_ratio_to_forward": round(statistics.median(walls) / base, 1),
        f"{prefix}_ratio_to_forward_min": round(min(walls) / base, 1),
        f"{prefix}_ratio_to_forward_max": round(max(walls) / base, 1),
        f"{prefix}_cpu_ratio_to_forward": round(statistics.median(cpus) / forward[f"{forward_key}_cpu"], 1),
    }  # fmt: skip
    return out, calls[-1][2]


def measure(runs: int = 3) -> dict:
    """Run the measurements (each sweep ``runs`` times); a flat dict: seconds, ratios, counts, and a
    few strings (notes, findings)."""
    import torch

    from clsviz import demo_corpus, load_encoder
    from clsviz.corpus import stratified_rows
    from clsviz.experiments.interventions import head_sweep, knockout_sweep

    encoder = load_encoder()
    corpus = demo_corpus()
    texts, labels = list(corpus.texts), list(corpus.labels["topic"])
    rows = stratified_rows(labels, 200, seed=0)
    texts200, labels200 = [texts[i] for i in rows], [labels[i] for i in rows]
    _forward(encoder, texts[:64], 64)  # warm up the kernels and the tokenizer

    forward_demo = _repeat("forward_demo_s", lambda: _forward(encoder, texts, 64))
    knockout, knocked = _sweep("knockout_sweep_demo_s", "knockout", lambda: knockout_sweep(encoder, texts, labels, label_name="topic"),
                               forward_demo, "forward_demo_s", runs)
    forward_200 = _repeat("forward_200_s", lambda: _forward(encoder, texts200, 32))
    heads, swept = _sweep("head_ablation_200_s", "head_ablation", lambda: head_sweep(encoder, texts200, labels200, label_name="topic"),
                          forward_200, "forward_200_s", runs)
    return {
        **knockout,
        **forward_demo,
        **heads,
        **forward_200,
        "runs": runs,
        "knockout_texts": knocked.n,
        "head_ablation_texts": swept.n,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "notes": f"sweeps: median of {runs} runs with min/max, each ratio to the median of 3 bare forward passes over "
        "the same texts. A load average above the CPU count means other processes shared the machine.",
        "knockout_finding": knocked.finding,
        "head_ablation_finding": swept.finding,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    results = measure()
    emit_json(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
