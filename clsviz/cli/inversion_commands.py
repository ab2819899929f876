"""``clsviz lens`` and ``clsviz invert``: what one sentence vector holds, read with trained readers.

``lens`` fits the tuned lens on a corpus (when is the sentence vector decided?); ``invert``
trains an inverter on a corpus and writes back sentences from their vectors: typed ones
(``--text``), the corpus's own held-out part, or the whole inversion ladder (``--ladder``).
"""

from __future__ import annotations

from ..layers import check_layer
from .common import (
    EXIT_OK,
    Progress,
    UsageError,
    add_command,
    add_common,
    add_corpus,
    add_model,
    check_output,
    file_size,
    load_encoder_arg,
    positive_int,
    print_messages,
    read_corpus,
    status,
)

__all__ = ["cmd_invert", "cmd_lens", "register"]


def _outputs(args):
    out = check_output(args.out, (".csv",), "--out") if args.out else None
    page = check_output(args.html, (".html", ".htm"), "--html") if getattr(args, "html", None) else None
    return out, page


def _save(args, result, out, page, title: str) -> None:
    from .analysis_commands import write_html

    if out is not None:
        result.table().to_csv(out, index=False)
        status(args, f"Saved:  {out} ({file_size(out)})")
    if page is not None:
        write_html(result, page, title)
        status(args, f"Saved:  {page} ({file_size(page)})")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--held-out takes a fraction such as 0.2, got '{text}'") from None
    if not 0 < value < 1:
        raise UsageError(f"--held-out must lie between 0 and 1, got {value}")
    return value


def cmd_lens(args) -> int:
    """The tuned lens on a corpus: each layer's [CLS] (and mean) vector read as it is and through an
    affine map fitted on the corpus to predict the last layer, scored on held-out texts with 95%
    intervals. --target logits reads a fine-tuned classifier's prediction instead. Prints the
    layer from which the sentence vector is decided; --out saves the table, --html the figure."""
    from ..analyses import NotApplicable, get

    out, page = _outputs(args)
    held_out = _fraction(args.held_out)  # checked before anything slow
    corpus = read_corpus(args)
    print_messages(args, corpus)
    encoder = load_encoder_arg(args)
    analysis = get("lens.tuned")
    params = analysis.check(pooling=args.pooling, target=args.target, held_out=held_out, seed=args.seed)
    try:
        result = analysis(encoder, list(corpus.texts), progress=Progress("Tuned lens", not args.quiet), **params)
    except NotApplicable as exc:
        raise UsageError(str(exc)) from None
    table = result.table()
    wide = table.assign(reading=[f"{s:.3f} [{lo:.3f}, {hi:.3f}]" for s, lo, hi in
                                 zip(table["score"], table["low"], table["high"])])  # fmt: skip
    print(wide.pivot(index="layer", columns=["pooling", "method"], values="reading").to_string())
    for sentence in result.summary():
        print(sentence)
    _save(args, result, out, page, "clsviz: the tuned lens")
    return EXIT_OK


def _typed(args, encoder, texts):
    from ..experiments.inverter import train_inverter

    status(args, f"Training an inverter on {len(texts):,} corpus texts…")
    inverter = train_inverter(encoder, texts, layer=args.layer, pooling=args.pooling, steps=args.steps,
                              seed=args.seed, max_tokens=args.max_tokens or 32,
                              progress=Progress("Training", not args.quiet))  # fmt: skip
    frame = inverter.evaluate(args.text, corrections=args.corrections)
    for _, row in frame.iterrows():
        print(f"{row['text']}\n  -> {row['output']}\n     token F1 {row['token_f1']:.2f}, BLEU {row['bleu']:.1f}, "
              f"cosine {row['cosine']:.3f}")
    return frame


def _held_out(args, encoder, texts):
    import numpy as np

    from ..experiments.inverter import train_inverter
    from ..experiments.text_match import score_interval

    held_out = float(args.held_out)
    order = np.random.default_rng(args.seed).permutation(len(texts))
    n_test = max(2, int(round(len(texts) * held_out)))
    if len(texts) - n_test < 2:
        raise UsageError(f"{len(texts)} texts leave too few to train on; give a larger corpus")
    test = [texts[i] for i in sorted(order[:n_test])]
    train = [texts[i] for i in sorted(order[n_test:])]
    status(args, f"Training on {len(train):,} texts, scoring {len(test):,} held out…")
    inverter = train_inverter(encoder, train, layer=args.layer, pooling=args.pooling, steps=args.steps,
                              seed=args.seed, max_tokens=args.max_tokens or 32,
                              progress=Progress("Training", not args.quiet))  # fmt: skip
    frame = inverter.evaluate(test, corrections=args.corrections)
    summary = score_interval(frame, frame["output"], frame["reference"], seed=args.seed)
    for _, row in summary.iterrows():
        print(f"{row['metric']}: {row['estimate']:.3f} [{row['low']:.3f}, {row['high']:.3f}] "
              f"over {int(row['n'])} held-out texts")
    for _, row in frame.head(5).iterrows():
        print(f"  {row['reference']}\n  -> {row['output']}")
    return frame


def cmd_invert(args) -> int:
    """Train an inverter on a corpus and write sentences back from their vectors at --layer with
    --pooling. With --text: the typed sentences, recovered by an inverter trained on the whole
    corpus. Without: a held-out part of the corpus, scored (token F1, BLEU, exact match with 95%
    intervals). With --ladder: every layer for [CLS], mean and max beside retrieval and the
    bag-of-words decoder (the inversion ladder). --out saves the table, --html the ladder's figure."""
    out, page = _outputs(args)
    if page is not None and not args.ladder:
        raise UsageError("--html draws the ladder's figure: add --ladder")
    args.held_out = _fraction(args.held_out)  # checked before anything slow
    from ..experiments.inverter import check_corrections, check_steps

    check_steps(args.steps)
    check_corrections(args.corrections)
    corpus = read_corpus(args)
    print_messages(args, corpus)
    texts = list(dict.fromkeys(corpus.texts))
    encoder = load_encoder_arg(args)
    try:
        check_layer(args.layer, encoder.info.num_layers)
    except IndexError as exc:
        raise UsageError(f"--layer: {exc}") from None
    if args.ladder:
        from ..analyses import get

        analysis = get("inversion.ladder")
        params = analysis.check(layers=args.layers, steps=args.steps, corrections=args.corrections,
                                held_out=args.held_out, seed=args.seed)  # fmt: skip
        result = analysis(encoder, texts, progress=Progress("Ladder", not args.quiet), **params)
        table = result.table()
        inverter = table[table["method"] == "inverter"]
        print(inverter.pivot(index=["pooling", "layer"], columns="metric", values="estimate").round(3).to_string())
        for sentence in result.summary():
            print(sentence)
        _save(args, result, out, page, "clsviz: the inversion ladder")
        return EXIT_OK
    frame = _typed(args, encoder, texts) if args.text else _held_out(args, encoder, texts)
    if out is not None:
        frame.to_csv(out, index=False)
        status(args, f"Saved:  {out} ({file_size(out)})")
    return EXIT_OK


def register(sub) -> None:
    """Add the ``lens`` and ``invert`` commands to the subparsers ``sub``."""
    p = add_command(sub, "lens", cmd_lens, "the tuned lens: from which layer is the sentence vector decided?")
    add_corpus(p)
    add_model(p)
    p.add_argument("--pooling", default="cls+mean", choices=("cls+mean", "cls", "mean", "max"),
                   help="the sentence vectors read (default: cls+mean)")  # fmt: skip
    p.add_argument("--target", default="final", choices=("final", "logits"),
                   help="final: the same pooling at the last layer; logits: a classifier's prediction")  # fmt: skip
    p.add_argument("--held-out", default="0.2", help="the fraction of texts that score (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the split (default: 0)")
    p.add_argument("--out", "-o", default=None, metavar="LENS.csv", help="save the table as CSV")
    p.add_argument("--html", default=None, metavar="LENS.html", help="save the figure as an offline HTML file")
    add_common(p)

    p = add_command(sub, "invert", cmd_invert, "recover sentences from their vectors with a trained inverter")
    add_corpus(p)
    add_model(p)
    p.add_argument("--text", "-t", action="append", help="a sentence to recover (repeat for several)")
    p.add_argument("--layer", type=int, default=-1, help="the hidden-state index read (default: -1, the last)")
    p.add_argument("--pooling", default="cls", help="the pooling read (default: cls)")
    p.add_argument("--steps", type=positive_int, default=600, help="training steps per inverter (default: 600)")
    p.add_argument("--corrections", type=int, default=0, help="correction steps after the first guess (default: 0)")
    p.add_argument("--held-out", default="0.2", help="the fraction of texts that score (default: 0.2)")
    p.add_argument("--ladder", action="store_true", help="every layer for cls, mean and max: the inversion ladder")
    p.add_argument("--layers", default="all", choices=("all", "every_other", "last"),
                   help="--ladder: the layers read (default: all)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", "-o", default=None, metavar="RESULT.csv", help="save the table as CSV")
    p.add_argument("--html", default=None, metavar="LADDER.html", help="--ladder: save the figure as HTML")
    add_common(p)
