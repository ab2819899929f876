"""``clsviz pretrain``: pretrain small encoders from scratch (the lab) and report their checkpoints."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from .common import EXIT_OK, Progress, UsageError, add_command, add_common, positive_int, status

__all__ = ["cmd_pretrain", "register"]


class _LogProgress:
    """Progress for long runs: the redrawn bar on a terminal; elsewhere (make, logs) the run's own
    message ("step 300/1200 · MLM loss 5.12") at most once every ``every`` seconds."""

    def __init__(self, label: str, enabled: bool, every: float = 60.0):
        self.bar = Progress(label, enabled)
        self.label, self.enabled, self.every, self.last = label, enabled, every, 0.0

    def __call__(self, done, total, message: str | None = None) -> None:
        if self.bar.tty or not self.enabled:
            self.bar(done, total, message)
            return
        now = time.monotonic()
        if message and (now - self.last >= self.every or "checkpoint" in message or done >= total):
            print(f"{self.label}: {message}", file=sys.stderr, flush=True)
            self.last = now


def _texts(args):
    """(texts, corpus description): --corpus as running text (TXT) or a corpus file, else the lab corpus."""
    from ..lab import lab_texts, read_running_text

    if args.corpus is None:
        texts, description = lab_texts(allow_excerpt=not args.require_corpus)
        return texts, description
    path = Path(args.corpus)
    if not path.is_file():
        raise UsageError(f"--corpus: no file '{path}'")
    if path.suffix.lower() == ".txt":
        return read_running_text(path), path.name
    from ..readers import load_corpus

    corpus = load_corpus(path.read_bytes(), path.name)
    return corpus, corpus.name


def _variants(args) -> list[str]:
    from ..lab.reference import REFERENCE_VARIANTS, parse_variant

    if args.reference:
        return list(REFERENCE_VARIANTS)
    names = [v.strip() for v in (args.variants or "").split(",") if v.strip()]
    if not names:
        names = [f"{args.summary}+{args.objective}"]
    for name in names:
        try:
            parse_variant(name)
        except ValueError as exc:
            raise UsageError(f"--variants: {exc}") from exc
    return list(dict.fromkeys(names))


def cmd_pretrain(args) -> int:
    """Pretrain one or more variants from scratch on running text, measuring each at --checkpoints
    points; save each model under --out and write the curves, the tidy metrics and a plain summary."""
    from ..lab.config import MODEL_SIZES, LabConfig
    from ..lab.reference import write_report
    from ..lab.training import pretrain_set

    variants = _variants(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: '{out}' is a file; give a new folder (nothing is overwritten)")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out: '{out}' already exists and is not empty; nothing is overwritten")
    config = dict(MODEL_SIZES[args.size])
    config.update({k: getattr(args, k) for k in ("layers", "hidden", "heads", "intermediate", "max_tokens", "vocab_size",
                                                 "batch_size", "learning_rate") if getattr(args, k) is not None})  # fmt: skip
    LabConfig.from_any(config)  # a size out of range is refused before the corpus is read or a folder made
    texts, corpus = _texts(args)
    status(args, f"Corpus: {corpus} · variants: {', '.join(variants)}")
    runs = pretrain_set(
        texts, variants, out, steps=args.steps, checkpoints=args.checkpoints, config=config or None, seed=args.seed,
        corpus_name=corpus, probe_label=args.probe_label, threads=args.threads, device=args.device,
        progress=_LogProgress("pretrain", not args.quiet),
    )  # fmt: skip
    for run in runs:
        for sentence in run.summary():
            print(sentence)
    command = "clsviz " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["pretrain"] else ""
    paths = write_report(runs, out, command)
    print(f"Saved:  {', '.join(str(r.folder) for r in runs)} (load with clsviz.load_encoder)")
    print(f"Report: {paths['summary']}, {paths['html']}, {paths['metrics']}")
    return EXIT_OK


def register(sub) -> None:
    """Add the ``pretrain`` command to the subparsers ``sub``."""
    from ..lab.config import DEFAULT_CHECKPOINTS, DEFAULT_STEPS, LabConfig

    d = LabConfig()
    p = add_command(sub, "pretrain", cmd_pretrain, "pretrain small encoders from scratch and watch [CLS] form")
    p.add_argument("--corpus", default=None, metavar="FILE",
                   help="running text: a TXT file (one paragraph per line, an empty line between documents) or a "
                   "corpus file (rows in order); default: Jane Austen's novels (make lab-corpus), else the shipped "
                   "excerpt")  # fmt: skip
    p.add_argument("--require-corpus", action="store_true",
                   help="fail instead of using the shipped excerpt when the full lab corpus is not installed")
    p.add_argument("--summary", default="first", choices=["first", "last", "none"],
                   help="where the summary token sits: first ([CLS] as BERT), last (after the final [SEP]), "
                   "none (the sentence vector is the mean) (default: first)")  # fmt: skip
    p.add_argument("--objective", default="nsp", choices=["nsp", "sop", "mlm"],
                   help="the sentence objective beside masked-LM: nsp, sop, or mlm (none) (default: nsp)")
    p.add_argument("--variants", default=None, metavar="LIST",
                   help="several variants, comma-separated SUMMARY+OBJECTIVE, e.g. first+nsp,last+nsp,none+mlm")
    p.add_argument("--reference", action="store_true",
                   help="the reference set: first+nsp, first+mlm, last+nsp, none+mlm, first+sop")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help=f"optimiser steps (default: {DEFAULT_STEPS})")
    p.add_argument("--checkpoints", type=int, default=DEFAULT_CHECKPOINTS,
                   help=f"measurement points from step 0 to the end (default: {DEFAULT_CHECKPOINTS}; 0: none)")
    p.add_argument("--size", default="default", choices=["default", "small", "tiny"],
                   help="a named model size: default (4 layers x 128 dims), small (4 x 64, what make lab trains), tiny "
                   "(2 x 32, a quick try); the options below change it (default: default)")  # fmt: skip
    for name, default, kind in (("layers", d.layers, int), ("hidden", d.hidden, int), ("heads", d.heads, int),
                                ("intermediate", d.intermediate, int), ("max-tokens", d.max_tokens, int),
                                ("vocab-size", d.vocab_size, int), ("batch-size", d.batch_size, int),
                                ("learning-rate", d.learning_rate, float)):  # fmt: skip
        p.add_argument(f"--{name}", type=kind, default=None, help=f"(default: {default})")
    p.add_argument("--probe-label", default="topic", help="the demo corpus label the checkpoint probes read (default: topic)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for torch (default: torch's; 1 is often faster on a busy machine)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: CUDA when present")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="a new folder: one model folder per variant, metrics.csv, curves.html, figures/, summary.md")
    add_common(p)
