"""Speed of "How does [CLS] learn?": gradient flow against a bare forward pass, and a watched
fine-tuning run at the page's defaults (``clsviz.experiments.finetune.WATCH_SETTINGS``).

``python benchmarks/dynamics.py`` prints the JSON of :func:`measure`; ``--device cuda`` runs on a
GPU. Targets: gradient flow <= 3x a bare forward pass; the watched run (2 poolings + 2 moved
tokens, demo corpus) <= 5 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.timing import check_targets, emit_json  # noqa: E402

TARGETS = {"gradient_flow_ratio": ("<=", 3.0), "watched_finetune_minutes": ("<=", 5.0)}
SENTENCES = {
    "short": "Why is the [CLS] token always first?",
    "long": " ".join(["The committee met again on Tuesday to discuss the budget, and nobody agreed."] * 8),
}


def _spread(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}


def _flow_ratio(encoder, text: str, repeat: int) -> dict:
    """Median seconds of gradient_flow and of one bare forward pass of the same tokens."""
    import torch

    from clsviz.experiments.dynamics import gradient_flow
    from clsviz.tracing import tokenize

    ids = torch.as_tensor(tokenize(encoder, text).input_ids, device=encoder.device)[None]

    def forward():
        with torch.inference_mode():
            encoder.model(input_ids=ids, attention_mask=torch.ones_like(ids))

    def sync():
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()

    forward(), gradient_flow(encoder, text)  # warm up both paths
    flows, bare = [], []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        forward()
        sync()
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        gradient_flow(encoder, text)
        sync()
        flows.append(time.perf_counter() - start)
    ratios = [f / b for f, b in zip(flows, bare, strict=True)]  # each run's pair, timed back to back
    return {"tokens": int(ids.shape[1]), "gradient_flow": _spread(flows), "forward": _spread(bare),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}  # fmt: skip


def _worst_ratio(flow: dict) -> dict:
    """``gradient_flow_ratio`` (with its min and max): the sentence with the largest median ratio."""
    worst = max(flow.values(), key=lambda v: v["ratio"])
    return {"gradient_flow_ratio": worst["ratio"], "gradient_flow_ratio_min": worst["ratio_min"],
            "gradient_flow_ratio_max": worst["ratio_max"]}


def _watched_run(encoder) -> dict:
    from clsviz.corpus import demo_corpus
    from clsviz.experiments.finetune import WATCH_SETTINGS, run_finetune

    corpus = demo_corpus()
    start = time.perf_counter()
    result = run_finetune(encoder, corpus.texts, corpus.labels["topic"], label_name="topic", **WATCH_SETTINGS)
    minutes = (time.perf_counter() - start) / 60
    return {
        "minutes": minutes,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in WATCH_SETTINGS.items()},
        "label": "topic",
        "seconds_per_pooling": dict(zip(result.table["pooling"], result.table["seconds"].astype(float))),
        "heldout_accuracy": dict(zip(result.table["pooling"], result.table["heldout_accuracy"].astype(float))),
        "checkpoint_steps": sorted(int(s) for s in result.checkpoints["step"].unique()),
    }


def measure(device: str | None = None, repeat: int = 5, finetune: bool = True) -> dict:
    """Gradient flow / forward ratio (median of ``repeat`` >= 3 runs, with min and max) on a short
    and a long sentence, and the watched fine-tuning run at the page defaults, on ``device``."""
    import torch

    from clsviz import load_encoder

    repeat = max(3, int(repeat))
    encoder = load_encoder(device=device)
    load_before = os.getloadavg()
    flow = {name: _flow_ratio(encoder, text, repeat) for name, text in SENTENCES.items()}
    out = {
        "device": str(encoder.device),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_before": load_before,
        "gradient_flow": flow,
        **_worst_ratio(flow),
    }
    if finetune:
        run = _watched_run(encoder)
        out["watched_finetune"] = run
        out["watched_finetune_minutes"] = run["minutes"]
    out["load_average_after"] = os.getloadavg()
    out["targets"] = check_targets(out, TARGETS)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (at least 3)")
    parser.add_argument("--no-finetune", action="store_true", help="only the gradient-flow ratio")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = measure(args.device, args.repeat, not args.no_finetune)
    emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
