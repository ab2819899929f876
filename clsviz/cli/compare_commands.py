"""``clsviz compare``: two models on the same corpus, layer by layer (linear CKA)."""

from __future__ import annotations

from .common import (
    EXIT_OK,
    Progress,
    UsageError,
    add_command,
    add_common,
    add_corpus,
    check_output,
    positive_int,
    print_messages,
    read_corpus,
    status,
    write_csv,
)

__all__ = ["cmd_compare", "register"]


def _readings(text: str) -> tuple[str, ...]:
    from ..compare import CKA_READINGS

    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in names if s not in CKA_READINGS]
    if unknown or not names:
        raise UsageError(f"--readings takes a comma-separated subset of {','.join(CKA_READINGS)}, got '{text}'")
    return names


def cmd_compare(args) -> int:
    """Compare two models on the same texts: linear CKA between every layer of MODEL_A and every
    layer of MODEL_B for token vectors, [CLS] vectors and mean vectors. Prints the CKA of each
    layer with its counterpart (1 = the layer is unchanged up to rotation and scale; the same
    relative depth when the models differ in depth) and one sentence on where B differs most;
    --out saves every layer pair as CSV. Give 'bundled' for the bundled model.
    """
    out = check_output(args.out, (".csv",), "--out") if args.out else None
    readings = _readings(args.readings)
    corpus = read_corpus(args)
    print_messages(args, corpus)

    from ..compare import compare_encoders
    from ..encoder import load_encoder
    from ..experiments.side_by_side import describe_change, diagonal_table, sample_corpus

    corpus = sample_corpus(corpus, args.sample, corpus.label_names[0] if corpus.labels else None, args.seed)

    encoders = []
    for name in (args.model_a, args.model_b):
        status(args, f"Loading {name}…")
        encoders.append(load_encoder(name, device=args.device))
    enc_a, enc_b = encoders
    comparison = compare_encoders(
        enc_a, enc_b, corpus.texts, readings, token_sample=args.token_sample, batch_size=args.batch_size,
        seed=args.seed, progress=Progress("Comparing", not args.quiet),
    )
    for reading, why in comparison.skipped.items():
        status(args, f"Note: no '{reading}' reading: {why}")
    for message in comparison.messages:
        status(args, f"Note: {message}")
    diagonal = diagonal_table(comparison)
    if diagonal.empty:
        raise UsageError("no reading could be compared on these texts; see the notes above")
    wide = diagonal.pivot(index=["layer_a", "layer_b"], columns="reading", values="cka")
    wide = wide[[r for r in readings if r in wide.columns]]
    same = (diagonal["layer_a"] == diagonal["layer_b"]).all()
    print(f"A: {enc_a.name} ({enc_a.info.num_layers} layers)   B: {enc_b.name} ({enc_b.info.num_layers} layers)")
    print(f"Linear CKA of each layer of A with {'the same layer' if same else 'the layer at the same relative depth'} "
          f"of B ({comparison.num_texts} texts; 0 = embeddings; nan = undefined):")
    print("\n".join("  " + line for line in wide.to_string(float_format=lambda x: f"{x:.4f}").splitlines()))
    print(describe_change(comparison))
    if out is not None:
        write_csv(comparison.table(), out)
        print(f"Saved:  {out} (every layer of A × every layer of B, per reading)")
    return EXIT_OK


def register(sub) -> None:
    """Add the ``compare`` command to the subparsers ``sub``."""
    p = add_command(sub, "compare", cmd_compare, "compare two models layer by layer on a corpus (linear CKA)")
    p.add_argument("model_a", metavar="MODEL_A", help="Hugging Face id or local folder ('bundled' for the bundled model)")
    p.add_argument("model_b", metavar="MODEL_B", help="the second model, e.g. a fine-tuned copy of MODEL_A saved as a folder")
    add_corpus(p)
    p.add_argument("--readings", default="tokens,cls,mean", help="what to compare (default: tokens,cls,mean)")
    p.add_argument("--sample", type=positive_int, default=None,
                   help="use a sample of this many texts (stratified by the first label column; default: all)")
    p.add_argument("--token-sample", type=positive_int, default=1000,
                   help="token vectors compared for the 'tokens' reading (a seeded sample; default 1000)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="texts per forward pass (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda when available)")
    p.add_argument("--out", metavar="TABLE.csv", default=None, help="save every layer pair's CKA here")
    add_common(p)
