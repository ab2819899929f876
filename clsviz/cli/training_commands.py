"""``clsviz finetune``: fine-tune copies of the encoder per pooling and watch [CLS] at checkpoints;
``clsviz demo-classifier``: make (once) the demo classifier that the pages about a fine-tuned model
read on a fresh install."""

from __future__ import annotations

from pathlib import Path

from ..corpus import FINETUNE_LABEL
from .common import (
    EXIT_OK,
    Progress,
    UsageError,
    add_command,
    add_common,
    add_corpus,
    add_model,
    check_output,
    load_encoder_arg,
    positive_int,
    print_messages,
    read_corpus,
    status,
)

__all__ = ["cmd_demo_classifier", "cmd_finetune", "register"]


def _poolings(text: str) -> tuple[str, ...]:
    from ..analyses.learning import parse_poolings

    try:
        return parse_poolings(text)
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None


def _save_folder(text: str | None) -> Path | None:
    if text is None:
        return None
    folder = Path(text)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"--save: '{folder}' already exists and is not an empty folder; nothing is overwritten")
    if not folder.parent.is_dir():
        raise UsageError(f"--save: the folder '{folder.parent}' does not exist (needed for '{folder.name}')")
    return folder


def cmd_finetune(args) -> int:
    """How does [CLS] learn? Fine-tune a copy of the encoder once per pooling (same seed, split and
    budget), recording at --checkpoints points of the run the held-out accuracy, per-layer probe
    accuracy of [CLS] and of the mean, [CLS]'s attention, cos([CLS], mean), CKA to step 0 and the
    gradient flow of one sentence. Writes every table as JSON; --save writes the cls_head copy as a
    checkpoint folder that clsviz and transformers load as a classifier.
    """
    from ..experiments.dynamics import summarize_moved, summarize_run
    from ..experiments.finetune import run_finetune
    from ..experiments.learners import HEAD_POOLING

    out = check_output(args.out, (".json",), "--out")
    poolings = _poolings(args.poolings)
    save = _save_folder(args.save)
    if save is not None and HEAD_POOLING not in poolings:
        poolings = (*poolings, HEAD_POOLING)
        status(args, f"Note: --save needs the '{HEAD_POOLING}' pooling (a standard classifier); it was added.")
    args.labels = args.label
    corpus = read_corpus(args)
    print_messages(args, corpus)
    if args.label not in corpus.labels:
        raise UsageError(f"the corpus has no label column '{args.label}' (label columns: {', '.join(corpus.labels) or 'none'})")
    encoder = load_encoder_arg(args)
    result = run_finetune(
        encoder, corpus.texts, corpus.labels[args.label], poolings=poolings, epochs=args.epochs,
        max_texts=args.max_texts, max_tokens=args.max_tokens or 64, seed=args.seed, checkpoints=args.checkpoints,
        flow_text=args.flow_text, label_name=args.label, progress=Progress("Fine-tuning", not args.quiet),
    )  # fmt: skip
    for message in result.messages:
        status(args, f"Note: {message}")
    columns = ["pooling", "frozen_accuracy", "heldout_accuracy", "gain", "steps", "seconds"]
    print(f"Fine-tuned {encoder.name} on '{result.label}' ({len(result.classes)} classes) on {result.device}:")
    print(result.table[columns].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    for sentence in (result.summary(), summarize_run(result), summarize_moved(result)):
        if sentence:
            print(sentence)
    result.to_json(out)
    print(f"Saved:  {out}")
    if save is not None:
        print(f"Saved the fine-tuned classifier: {result.save_classifier(save)} (load it with clsviz.load_encoder)")
    return EXIT_OK


def cmd_demo_classifier(args) -> int:
    """Make the demo classifier of --model (the bundled one by default): a copy fine-tuned on the demo
    corpus's 'sentiment' labels through [CLS] and the model's own classification head, saved into the
    models folder ($CLSVIZ_MODELS_DIR, or --models-dir) where the app's model lists offer it. A demo
    classifier saved before is reused, not trained again. Prints its folder and held-out accuracy
    with its 95% interval.
    """
    from ..experiments.demo_classifier import DEMO_SETTINGS, demo_classifier

    root = Path(args.models_dir) if args.models_dir else None
    if root is not None and not root.is_dir():
        raise UsageError(f"--models-dir: '{root}' is not a folder")
    encoder = load_encoder_arg(args)
    made = demo_classifier(encoder, root=root, max_texts=args.max_texts or DEMO_SETTINGS["max_texts"],
                           epochs=args.epochs or DEMO_SETTINGS["epochs"], seed=args.seed,
                           progress=Progress("Fine-tuning the demo classifier", not args.quiet))  # fmt: skip
    for sentence in made.summary():
        print(sentence)
    print(f"Saved:  {made.folder}" if not made.reused else f"Reused: {made.folder}")
    return EXIT_OK


def register(sub) -> None:
    """Add the ``finetune`` and ``demo-classifier`` commands to the subparsers ``sub``."""
    _register_demo(sub)
    p = add_command(sub, "finetune", cmd_finetune, "fine-tune a copy per pooling and watch [CLS] at checkpoints")
    add_corpus(p)
    p.add_argument("--label", "-l", default=FINETUNE_LABEL, metavar="COLUMN",
                   help=f"the label column to learn (default: {FINETUNE_LABEL}, which the bundled model does not already "
                   "solve on the demo corpus)")
    add_model(p)
    p.add_argument("--poolings", default="cls,mean",
                   help="comma-separated: cls, mean, first, last, cls_head ([CLS] through the family's own "
                   "classifier head), cls_last ([CLS] placed last), fresh_middle (a fresh token in the middle) "
                   "(default: cls,mean)")  # fmt: skip
    p.add_argument("--epochs", type=positive_int, default=2, help="epochs per pooling (default: 2)")
    p.add_argument("--max-texts", type=positive_int, default=400,
                   help="a stratified sample of at most this many labelled texts (default: 400)")
    p.add_argument("--checkpoints", type=int, default=10,
                   help="record the model state at this many equal parts of the run, step 0 included (default: 10; 0: none)")
    p.add_argument("--flow-text", default=None, help="the sentence whose gradient flow is recorded (default: the first held-out text)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="save the cls_head copy as a checkpoint folder (added to the poolings when missing)")
    p.add_argument("--out", "-o", required=True, metavar="RESULTS.json", help="every table of the run as JSON")
    add_common(p)


def _register_demo(sub) -> None:
    p = add_command(sub, "demo-classifier", cmd_demo_classifier,
                    "make (once) a demo classifier: the model fine-tuned on the demo corpus's sentiment labels")  # fmt: skip
    add_model(p)
    p.add_argument("--models-dir", default=None, metavar="DIR",
                   help="where to save it (default: $CLSVIZ_MODELS_DIR or ~/.cache/clsviz/models)")  # fmt: skip
    p.add_argument("--max-texts", type=positive_int, default=None,
                   help="a stratified sample of at most this many demo texts (default: the app's, 400)")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs (default: the app's, 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_common(p)
