"""Speed of "Recover the sentence?": the inversion ladder at the app's defaults on the demo corpus
(every layer x [CLS], mean, max; 600 steps per inverter; two inverters training at once) and the
tuned lens, each timed end to end.

``python benchmarks/inversion.py`` prints the JSON of :func:`measure`; ``--device cuda`` trains on
a GPU. Target: the ladder <= 5 minutes on a 2-core CPU (``inverter_train_demo_minutes``, the median
of ``runs`` >= 3 runs with min and max).
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

TARGETS = {"inverter_train_demo_minutes": ("<=", 5.0)}


def _ladder_once(encoder, texts, layers: str) -> tuple[float, dict]:
    from clsviz.analyses import get

    analysis = get("inversion.ladder")
    params = analysis.check(layers=layers)  # the app's defaults otherwise
    start = time.perf_counter()
    result = analysis(encoder, texts, **params)
    minutes = (time.perf_counter() - start) / 60
    table = result.table()
    best = result.data.best()
    return minutes, {"settings": {**params, **result.data.settings}, "best_bleu": float(best["estimate"]),
                     "best_at": f"{best['pooling']} layer {int(best['layer'])}", "rows": len(table)}  # fmt: skip


def measure(device: str | None = None, runs: int = 3, finetune: bool = True) -> dict:
    """The ladder at the app's defaults, ``runs`` (>= 3) times: median minutes with min and max, and
    the tuned lens once. ``finetune=False`` (a quick smoke run) times only the last layer's ladder."""
    import torch

    from clsviz import load_encoder
    from clsviz.analyses import get
    from clsviz.corpus import demo_corpus

    runs = max(3, int(runs)) if finetune else 1
    encoder = load_encoder(device=device)
    texts = list(demo_corpus().texts)
    load_before = os.getloadavg()
    minutes, details = [], {}
    for _ in range(runs):
        m, details = _ladder_once(encoder, texts, "all" if finetune else "last")
        minutes.append(m)
    start = time.perf_counter()
    get("lens.tuned")(encoder, texts)
    lens_seconds = time.perf_counter() - start
    out = {
        "device": str(encoder.device),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_before": load_before,
        "texts": len(texts),
        "settings": details["settings"],
        "inverter_train_demo_minutes": statistics.median(minutes),
        "inverter_train_demo_minutes_min": min(minutes),
        "inverter_train_demo_minutes_max": max(minutes),
        "runs": len(minutes),
        "ladder_best_bleu": details["best_bleu"],
        "notes": [f"best inverter BLEU at {details['best_at']}"],
        "tuned_lens_seconds": lens_seconds,
        "load_average_after": os.getloadavg(),
    }
    out["targets"] = check_targets(out, TARGETS)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--runs", type=int, default=3, help="timed ladders (at least 3)")
    parser.add_argument("--quick", action="store_true", help="one ladder of the last layer only (a smoke run)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = measure(args.device, args.runs, not args.quick)
    emit_json(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
