"""``clsviz inspect``: one text traced, its [CLS] numbers printed, an offline HTML report."""

from __future__ import annotations

import argparse
import sys

from .common import (
    EXIT_OK,
    Progress,
    UsageError,
    add_command,
    add_common,
    add_model,
    check_output,
    file_size,
    load_encoder_arg,
    positive_int,
    read_corpus,
    status,
)

__all__ = ["cmd_inspect", "register"]


def _print_classifier(encoder, tr) -> None:
    """The model's prediction and its head read through every layer (the lens)."""
    import pandas as pd

    from ..heads import classifier_lens, describe_settled, predict, probabilities

    info = encoder.info
    prediction = predict(encoder, tr)
    lens = classifier_lens(encoder, tr)  # [L+1, C]
    probs = probabilities(lens, prediction.problem_type)
    value = "logit" if probs is None else "probability"
    wide = pd.DataFrame(lens if probs is None else probs, columns=list(info.labels))
    wide.index.name = "layer"
    wide["top"] = [info.labels[i] for i in lens.argmax(axis=1)]
    print(f"Prediction: {prediction.summary(top=len(info.labels))}")
    print(f"Head: {info.head_pooling}")
    print(f"The head reading {info.cls_token} after every layer ({value}; 0 = embeddings):")
    print("\n".join("  " + line for line in wide.to_string(float_format=lambda x: f"{x:.4f}").splitlines()))
    print(describe_settled(lens, info.labels, prediction.problem_type, info.cls_token))


def _findings(args, encoder):
    """The published findings checked on ``encoder`` (``--findings``), with a one-line verdict each."""
    from ..literature import check_claims

    status(args, "Checking the published findings on this model (about a minute)…")
    table = check_claims(encoder, progress=Progress("Findings", not args.quiet))
    print("Published findings on this model:")
    for row in table.itertuples():
        print(f"  - {row.source}: {row.verdict}")
    return table


def cmd_inspect(args) -> int:
    """Trace one text through the encoder, print its tokens and per-layer [CLS] numbers (for a
    fine-tuned classifier also its prediction and its head read through every layer), and (with
    --html) write a standalone HTML report of every per-sentence figure. The report embeds
    plotly.js, so it opens offline.
    """
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text or not text.strip():
        raise UsageError("the text is empty; give a sentence, e.g. clsviz inspect \"The cat sat.\"")
    out = check_output(args.html, (".html", ".htm"), "the report") if args.html else None
    if args.max_tokens is not None and args.max_tokens < 3:
        raise UsageError(f"--max-tokens must be at least 3, got {args.max_tokens}")

    from ..narrative import findings
    from ..report import layer_stats, report_sections, write_report
    from ..tracing import trace

    encoder = load_encoder_arg(args)
    tr = trace(encoder, text, max_tokens=args.max_tokens)
    info = encoder.info
    print(f"Model:  {info.name} ({info.model_type}, {info.num_layers} layers, {info.num_heads} heads, "
          f"{info.hidden_size} dims)")
    print(f"Tokens: {tr.seq_len}{' (the text was cut to fit)' if tr.truncated else ''}")
    print("  " + " ".join(tr.tokens))
    role = "" if info.cls_token == "[CLS]" else f" (played by {info.cls_token})"
    print(f"[CLS]{role} layer by layer (0 = embeddings):")
    table = layer_stats(tr)
    print("\n".join("  " + line for line in table.to_string(index=False, float_format=lambda x: f"{x:.4f}").splitlines()))
    baseline = None
    if args.baseline:
        from ..baseline import measure_baseline

        status(args, "Measuring the anisotropy baseline (unrelated demo sentences)…")
        baseline = measure_baseline(encoder)
    print("Findings:")
    for finding in findings(tr, baseline):
        print(f"  - {finding.question} {finding.answer}")
    if encoder.classifier is not None:
        _print_classifier(encoder, tr)
    _print_mixing(encoder, tr)
    claims = _findings(args, encoder) if args.findings else None
    corpus_sections = _corpus_sections(args, encoder)
    if out is None:
        return EXIT_OK
    only = [s.strip() for s in args.sections.split(",") if s.strip()] if args.sections else None
    sections = report_sections(tr, encoder, baseline, only=only, strict=False, progress=Progress("Figures", not args.quiet))
    sections += corpus_sections
    for section in sections:
        if section.error:
            print(f"clsviz: warning: the '{section.key}' figure was left out: {section.error}", file=sys.stderr)
    write_report(tr, out, encoder, baseline, title=args.title, sections=sections, claims=claims)
    for section in sections:
        if section.note:
            status(args, f"Note: the '{section.key}' section does not apply: {section.note}")
    drawn = sum(s.figure is not None for s in sections)
    print(f"Report: {out} ({file_size(out)}, {drawn} figures; opens offline in any browser)")
    return EXIT_OK


def _corpus_sections(args, encoder) -> list:
    """The tuned lens (``--lens CORPUS``) and the inversion ladder (``--ladder CORPUS``), run on a
    corpus: their sentences printed, their sections for the report."""
    from ..analyses import NotApplicable, get
    from ..report import result_sections

    out = []
    runs = (("lens.tuned", args.lens, "Tuned lens", {}),
            ("inversion.ladder", args.ladder, "Ladder", {"steps": args.ladder_steps}))  # fmt: skip
    for name, source, label, params in runs:
        if source is None:
            continue
        corpus = read_corpus(argparse.Namespace(corpus=source, text_column=None, max_rows=None, config=None,
                                                split=None, labels=None))  # fmt: skip
        status(args, f"{label} on {len(corpus.texts):,} texts of {corpus.name}…")
        try:
            result = get(name)(encoder, list(corpus.texts), progress=Progress(label, not args.quiet), **params)
        except NotApplicable as exc:
            status(args, f"Note: {label.lower()} does not apply: {exc}")
            continue
        print(f"{label} ({corpus.name}):")
        for sentence in result.summary():
            print(f"  - {sentence}")
        out += result_sections(result)
    return out


def _print_mixing(encoder, tr) -> None:
    """What reached [CLS] after the last block, by raw attention rollout and by ALTI."""
    from ..mixing import METHOD_NAMES, measure, top_contributors

    print("What flows into [CLS] (rollout after the last block, top 3 input tokens):")
    for method in ("attention", "alti"):
        try:
            top = top_contributors(measure(encoder, tr, method))
        except ValueError as exc:  # a family whose blocks clsviz cannot run
            print(f"  {METHOD_NAMES[method]}: not available ({exc})")
            continue
        shown = ", ".join(f"{token} {share:.2f}" for _, token, share in top)
        print(f"  {METHOD_NAMES[method]}: {shown}")


def register(sub) -> None:
    """Add the ``inspect`` command to the subparsers ``sub``."""
    p = add_command(sub, "inspect", cmd_inspect, "trace one text; print [CLS] numbers; write an offline HTML report")
    p.add_argument("text", help="the text to inspect ('-' reads it from standard input)")
    add_model(p)
    p.add_argument("--html", metavar="REPORT.html", default=None, help="write the HTML report here")
    p.add_argument("--title", default=None, help="the report's title (default: 'clsviz report')")
    p.add_argument("--sections", default=None, help="comma-separated report sections to keep (default: all)")
    p.add_argument("--baseline", action="store_true",
                   help="also measure the anisotropy baseline (cosines between unrelated demo sentences): the "
                   "findings and the report set every cosine against it; takes a few seconds to a minute")
    p.add_argument("--findings", action="store_true",
                   help="also check the published findings about [CLS] on this model (as 'clsviz findings' does) and "
                   "add them to the report; takes about a minute")
    p.add_argument("--lens", default=None, metavar="CORPUS",
                   help="also fit the tuned lens on a corpus ('demo' or a file) and add it to the report")
    p.add_argument("--ladder", default=None, metavar="CORPUS",
                   help="also run the inversion ladder on a corpus ('demo' or a file) and add it to the report; "
                   "trains one inverter per layer and pooling: minutes")
    p.add_argument("--ladder-steps", type=positive_int, default=600,
                   help="--ladder: training steps per inverter (default: 600)")
    add_common(p)
