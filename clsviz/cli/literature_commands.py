"""``clsviz findings``: every published finding about [CLS] checked on a model, with a verdict."""

from __future__ import annotations

import textwrap
from pathlib import Path

from .common import (
    DEMO,
    EXIT_OK,
    Progress,
    UsageError,
    add_command,
    add_common,
    add_model,
    check_output,
    load_encoder_arg,
    positive_int,
    print_messages,
    read_corpus,
    status,
    write_csv,
)

__all__ = ["cmd_findings", "print_claims", "register"]


def print_claims(table, width: int = 100) -> None:
    """The table of :func:`clsviz.literature.check_claims` as readable blocks, one per claim."""

    def block(label: str, text: str) -> None:
        if text:
            print(textwrap.fill(text, width, initial_indent=f"  {label:<11}", subsequent_indent=" " * 13,
                                break_on_hyphens=False))

    for row in table.itertuples():
        print(f"{row.source} — {row.verdict.upper()}")
        block("claim", row.claim)
        block("published", row.published)
        block("on", row.model)
        block("this model", f"{row.this_model} [{row.sample}]" if row.this_model else "")
        if row.low != "" and row.high != "":
            block("interval", f"95% interval of the deciding number {float(row.low):.4g}–{float(row.high):.4g}; "
                              f"rule threshold {row.threshold}")
        block("why", row.reason)
        block("caveat", row.caveat)
        block("elsewhere", row.elsewhere)
        print()


def _pairs(path: str):
    from ..readers import load_pairs

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no pairs file at '{path}' (give a CSV or TSV with columns sentence1, sentence2, score)")
    data = file.read_bytes()
    return load_pairs(data, file.name, max_rows=10**7, max_bytes=max(len(data), 1))


def cmd_findings(args) -> int:
    """Check every published finding about [CLS] that clsviz can measure (Sentence-BERT's [CLS] vs
    mean, attention to [SEP], value-norm weighting, anisotropy, massive activations, the layer
    profile of probes, fine-tuning, faithfulness, inversion) on a model, by the same protocol as
    far as the model allows. Prints, per finding, the published number and model, this model's
    number with the 95% interval of the deciding number and a verdict - reproduces, differs,
    inconclusive (the interval straddles the rule's threshold), not measurable on this model (the
    claim's precondition is unmet), or not measured yet - with the reason and the caveat (model,
    objective, data used instead of the paper's); every row runs on a fixed, stated sample.
    --out saves the table as CSV (the columns of clsviz.literature.COLUMNS, low, high, threshold
    and caveat included). Takes a few minutes on the bundled model on a CPU.
    """
    out = check_output(args.out, (".csv",), "--out") if args.out else None
    if args.finetuned is not None and not Path(args.finetuned).is_dir():
        raise UsageError(f"--finetuned takes the folder a fine-tuned copy was saved to; '{args.finetuned}' is not a folder")
    pairs = _pairs(args.pairs) if args.pairs else None
    corpus = None
    if args.corpus != DEMO:
        corpus = read_corpus(args)
        print_messages(args, corpus)
        if len(corpus) < 20:
            raise UsageError(f"the corpus has {len(corpus)} texts; the checks need at least 20 (or use the demo corpus)")

    from ..literature import check_claims, count_verdicts

    encoder = load_encoder_arg(args)
    table = check_claims(encoder, corpus=corpus, pairs=pairs, finetuned=args.finetuned, sample_size=args.sample,
                         attention_sample=args.attention_sample, seed=args.seed,
                         progress=Progress("Checking", not args.quiet))  # fmt: skip
    print(f"Model: {encoder.name} ({encoder.info.num_layers} layers)\n")
    print_claims(table)
    print(count_verdicts(table, encoder.name))
    if out is not None:
        write_csv(table, out)
        status(args, f"Saved: {out}")
    return EXIT_OK


def register(sub) -> None:
    """Add the ``findings`` command to the subparsers ``sub``."""
    p = add_command(sub, "findings", cmd_findings, "check published findings about [CLS] on a model, with verdicts")
    add_model(p)
    p.add_argument("--corpus", default=DEMO, help="sentences to sample (a corpus file or data set, as for 'embed'; "
                   "default: the demo corpus)")
    p.add_argument("--text-column", default=None, help="the corpus column holding the texts (default: detected)")
    p.add_argument("--max-rows", type=positive_int, default=None, help="read at most this many corpus rows")
    p.add_argument("--pairs", default=None, metavar="PAIRS.csv",
                   help="scored pairs (sentence1, sentence2, score) for the similarity check (default: the demo pairs)")
    p.add_argument("--finetuned", default=None, metavar="FOLDER",
                   help="a fine-tuned copy of the model, saved as a folder: checks which layers fine-tuning changed")
    p.add_argument("--sample", type=positive_int, default=384, help="texts probed and decoded (default 384)")
    p.add_argument("--attention-sample", type=positive_int, default=32,
                   help="sentences traced with their attention maps (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    p.add_argument("--out", metavar="TABLE.csv", default=None, help="save the table here")
    add_common(p)
