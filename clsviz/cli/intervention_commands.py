"""``clsviz intervene``: the causal tests on [CLS] over a corpus (knockout, patch, heads,
massive, registers), each printed as a table and one plain sentence, saved as CSV on request."""

from __future__ import annotations

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
    write_csv,
)

__all__ = ["EXPERIMENTS", "cmd_intervene", "register"]

EXPERIMENTS = {
    "knockout": "cut [CLS]'s reads of the words from each block upward (and at each block only)",
    "patch": "swap [CLS] between sentences with different labels at each layer (needs --label)",
    "heads": "ablate every (block, head) alone; sinks vs aggregators",
    "massive": "zero the massive dimensions of the special tokens, or set them to their mean",
    "registers": "insert k extra tokens after [CLS]; where does the parked attention go?",
}


def _counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--registers takes comma-separated whole numbers such as 0,1,2,3,4, got '{text}'") from None


def _run(args, encoder, texts, labels):
    from ..experiments import interventions as iv

    common = dict(folds=args.folds, seed=args.seed, max_tokens=args.max_tokens, label_name=args.label or "label",
                  progress=Progress(args.experiment.capitalize(), not args.quiet))  # fmt: skip
    if args.experiment == "knockout":
        return iv.knockout_sweep(encoder, texts, labels, keys=args.keys, batch_size=args.batch_size, **common)
    if args.experiment == "patch":
        return iv.patching_sweep(encoder, texts, labels, pairs=args.pairs, batch_size=args.batch_size, **common)
    if args.experiment == "heads":
        return iv.head_sweep(encoder, texts, labels, mode=args.mode, batch_size=args.batch_size, **common)
    if args.experiment == "massive":
        dims = [int(d) for d in args.dims.split(",")] if args.dims else None
        return iv.massive_sweep(encoder, texts, labels, layer=args.layer, dims=dims, batch_size=args.batch_size, **common)
    return iv.register_sweep(encoder, texts, labels, ks=_counts(args.registers), batch_size=args.batch_size, **common)


def cmd_intervene(args) -> int:
    """Run one causal test on [CLS] over a corpus: knockout (does [CLS] need to read the words, from
    which block on?), patch (where does the sentence's label live in [CLS]?), heads (which heads
    matter; which only park attention on [CLS]?), massive (zero vs mean the massive dimensions) or
    registers (do extra tokens take over the sink?). With --label, a probe fitted on clean [CLS]
    vectors reads the results. Prints the table and one plain sentence; --out saves the CSV (and,
    for massive and registers, the attention table beside it). The shared model is never changed.
    """
    out = check_output(args.out, (".csv",), "--out") if args.out else None
    if args.experiment == "patch" and not args.label:
        raise UsageError("'intervene patch' needs --label COLUMN: the probe reads which sentence [CLS] came from")
    if args.dims:
        try:
            [int(d) for d in args.dims.split(",")]
        except ValueError:
            raise UsageError(f"--dims takes comma-separated dimension numbers such as 99,223, got '{args.dims}'") from None
    if args.experiment == "registers":
        _counts(args.registers)
    args.labels = args.label
    corpus = read_corpus(args)
    print_messages(args, corpus)
    labels = None
    if args.label:
        if args.label not in corpus.labels:
            have = ", ".join(corpus.labels) or "none"
            raise UsageError(f"the corpus has no label column '{args.label}' (label columns: {have})")
        from ..experiments.probe import check_labels

        check_labels([v for v in corpus.labels[args.label] if str(v).strip()], args.folds, args.label)
        labels = list(corpus.labels[args.label])
    encoder = load_encoder_arg(args)
    result = _run(args, encoder, list(corpus.texts), labels)
    for message in result.messages:
        status(args, f"Note: {message}")
    print(f"{args.experiment} on {result.n} texts with {result.model_name} ({result.seconds:.1f} s):")
    print(result.table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(result.finding)
    if out is not None:
        write_csv(result.table.assign(model=result.model_name, label=result.label), out)
        print(f"Saved:  {out}")
        if result.attention is not None:
            beside = out.with_name(f"{out.stem}_attention.csv")
            write_csv(result.attention, beside)
            print(f"Saved:  {beside}")
    return EXIT_OK


def register(sub) -> None:
    """Add the ``intervene`` command to the subparsers ``sub``."""
    p = add_command(sub, "intervene", cmd_intervene, "causal tests on [CLS] over a corpus: knockout, patch, heads, "
                    "massive, registers")  # fmt: skip
    p.add_argument("experiment", choices=tuple(EXPERIMENTS),
                   help="; ".join(f"{k}: {v}" for k, v in EXPERIMENTS.items()))  # fmt: skip
    add_corpus(p)
    p.add_argument("--label", "-l", default=None, metavar="COLUMN",
                   help="a label column for the probe (required for patch; optional otherwise)")  # fmt: skip
    add_model(p)
    p.add_argument("--keys", default="content", choices=("content", "others", "special"),
                   help="knockout: which reads of [CLS] are cut (default: content, the text's tokens)")  # fmt: skip
    p.add_argument("--pairs", type=positive_int, default=200, help="patch: sentence pairs to patch (default: 200)")
    p.add_argument("--mode", default="mean", choices=("mean", "zero"),
                   help="heads: replace a head's output by its corpus mean (default) or by zero")  # fmt: skip
    p.add_argument("--layer", type=int, default=1,
                   help="massive: the hidden-state index where the dimensions are set (default: 1)")  # fmt: skip
    p.add_argument("--dims", default=None, help="massive: comma-separated dimensions (default: found at --layer)")
    p.add_argument("--registers", default="0,1,2,3,4", help="registers: the counts k to try (default: 0,1,2,3,4)")
    p.add_argument("--folds", type=positive_int, default=5, help="probe cross-validation folds (default: 5)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", "-o", default=None, metavar="RESULT.csv", help="also save the table as CSV")
    add_common(p)
