"""Speed of the pretraining lab: the app's default run (``clsviz.lab.pretrain`` with its defaults:
first+nsp, the default config, ``DEFAULT_STEPS`` steps, ``DEFAULT_CHECKPOINTS`` checkpoints) on the
lab corpus (Jane Austen's novels when ``make lab-corpus`` installed them, else the shipped excerpt).

``python benchmarks/lab.py`` prints the JSON of :func:`measure`. Target: the default run takes at most
10 minutes on a 2-core CPU (``lab_pretrain_demo_minutes``: median of ``runs`` runs, with min and max).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.timing import emit_json  # noqa: E402

TARGETS = {"lab_pretrain_demo_minutes": ("<=", 10.0)}


def measure(runs: int = 3, device: str | None = None) -> dict:
    """Minutes of the app's default lab run, ``runs`` times (each into a fresh temporary folder)."""
    import torch

    from clsviz.lab import DEFAULT_CHECKPOINTS, DEFAULT_STEPS, LabConfig, lab_texts, pretrain

    texts, corpus = lab_texts()
    load_before = os.getloadavg()
    minutes, seconds_per_step = [], []
    for _ in range(max(1, int(runs))):
        with tempfile.TemporaryDirectory(prefix="clsviz-lab-bench-") as tmp:
            start = time.perf_counter()
            run = pretrain(texts, out=Path(tmp) / "model", corpus_name=corpus, device=device)
            minutes.append((time.perf_counter() - start) / 60)
            seconds_per_step.append(run.layout["seconds"] / DEFAULT_STEPS)
    return {
        "lab_pretrain_demo_minutes": statistics.median(minutes),
        "lab_pretrain_demo_minutes_min": min(minutes),
        "lab_pretrain_demo_minutes_max": max(minutes),
        "runs": len(minutes),
        "seconds_per_step_overall": statistics.median(seconds_per_step),
        "settings": {"variant": "first+nsp", "steps": DEFAULT_STEPS, "checkpoints": DEFAULT_CHECKPOINTS,
                     "config": LabConfig().to_dict(), "corpus": corpus},  # fmt: skip
        "device": str(run.layout["device"]),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs (default: 3)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    emit_json(measure(args.runs, args.device), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
