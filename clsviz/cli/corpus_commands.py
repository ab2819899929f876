"""``clsviz embed`` and ``clsviz probe``: a corpus pooled at every layer, and probed (with a control
task for selectivity and an MDL probe on request)."""

from __future__ import annotations

from pathlib import Path

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
    layers_arg,
    load_encoder_arg,
    poolings_arg,
    positive_int,
    print_messages,
    read_corpus,
    status,
    write_csv,
)

__all__ = ["cmd_embed", "cmd_probe", "register"]


def cmd_embed(args) -> int:
    """Run every text of a corpus through the encoder and save its pooled vectors (all layers ×
    poolings), with the texts and label columns. --out FOLDER writes Parquet shards and a manifest
    (float16 unless --dtype float32), resumable: run the same command again after an interruption.
    --out FILE.npz / FILE.parquet writes one file (small corpora). The app's pages and
    clsviz.vectors_io.load_vectors read either back.
    """
    poolings = poolings_arg(args.poolings)
    suffix = Path(args.out).suffix.lower()
    if Path(args.out).is_dir() or not suffix:
        return _embed_shards(args, poolings)
    if suffix not in (".npz", ".parquet"):
        raise UsageError(f"--out must end in .npz or .parquet for one file, or name a folder (no file ending) "
                         f"for shards; got '{Path(args.out).name}'")
    if args.engine != "local" or args.dtype == "float16" or args.layers or args.shard_rows:
        raise UsageError("--engine, --dtype float16, --layers and --shard-rows apply to a shard folder; "
                         "give --out a folder name")
    out = check_output(args.out, (".npz", ".parquet"), "--out")
    corpus = read_corpus(args)
    print_messages(args, corpus)

    from ..vectors import extract
    from ..vectors_io import save_vectors

    encoder = load_encoder_arg(args)
    vectors = extract(
        encoder,
        corpus.texts,
        poolings=poolings,
        batch_size=args.batch_size,
        progress=Progress("Embedding", not args.quiet),
        max_tokens=args.max_tokens,
        labels=dict(corpus.labels),
    )
    save_vectors(vectors, out)
    n, layers, s, d = vectors.vectors.shape
    print(f"Embedded {n} texts with {encoder.name}: {layers} layers (0 = embeddings) × {s} poolings "
          f"({', '.join(vectors.poolings)}) × {d} dims.")
    if vectors.labels:
        print(f"Labels: {', '.join(vectors.labels)}")
    if vectors.truncated.any():
        print(f"{int(vectors.truncated.sum())} text(s) were cut to the model's limit.")
    print(f"Saved:  {out} ({file_size(out)}); load it with clsviz.vectors_io.load_vectors('{out}')")
    return EXIT_OK


def _embed_shards(args, poolings) -> int:
    """``clsviz embed --out FOLDER``: the shard folder, resumed when it holds an unfinished run."""
    from ..extraction import embed_to_shards

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"'{out}' is a file; --out takes a folder for shards, or a .npz / .parquet file name")
    if not out.parent.is_dir():
        raise UsageError(f"the folder '{out.parent}' does not exist (needed for '{out.name}')")
    corpus = read_corpus(args)
    print_messages(args, corpus)
    encoder = load_encoder_arg(args)
    options = {}
    if args.engine == "ray":
        options = {"actors": args.actors}
        if args.engine_cpus:
            options["num_cpus"] = args.engine_cpus
        if args.object_store_mb:
            options["object_store_mb"] = args.object_store_mb
    shards = embed_to_shards(
        encoder, corpus, out, poolings=poolings, layers=layers_arg(args.layers) if args.layers else None,
        dtype=args.dtype or "float16", batch_size=args.batch_size, max_tokens=args.max_tokens,
        shard_rows=args.shard_rows, engine=args.engine, engine_options=options,
        progress=Progress("Embedding", not args.quiet),
    )
    m = shards.manifest
    print(f"Embedded {shards.rows} texts with {encoder.name}: layers {', '.join(map(str, shards.layers))} "
          f"(0 = embeddings) × {len(shards.poolings)} poolings ({', '.join(shards.poolings)}) × "
          f"{shards.hidden_size} dims, {shards.dtype}, {len(m['shards'])} shard(s).")
    if shards.label_names:
        print(f"Labels: {', '.join(shards.label_names)}")
    size = sum(s["bytes"] for s in m["shards"])
    print(f"Saved:  {out}/ ({size / 2**20:.1f} MB); load it with clsviz.vectors_io.load_vectors('{out}')")
    return EXIT_OK


def cmd_probe(args) -> int:
    """Could any token do? Cross-validated logistic-regression accuracy of a label column from each
    layer × pooling, with chance and majority baselines; the table is printed and (with --out)
    saved as CSV.
    """
    from ..experiments import probe
    from ..experiments.random_token import random_token_vectors

    out = check_output(args.out, (".csv",), "--out") if args.out else None
    names = poolings_arg(args.poolings, extra=(probe.RANDOM_TOKEN,)) if args.poolings is not None else None
    layers = layers_arg(args.layers) if args.layers else None
    args.labels = args.label  # read just the probed column, even where detection would skip it
    corpus = read_corpus(args)
    print_messages(args, corpus)
    if args.label not in corpus.labels:
        have = ", ".join(corpus.labels) or "none"
        raise UsageError(f"the corpus has no label column '{args.label}' (label columns: {have})")
    # Fail on unusable labels (one class, tiny classes) before the model runs.
    probe.check_labels([v for v in corpus.labels[args.label] if str(v).strip()], args.folds, args.label)

    from ..vectors import extract

    encoder = load_encoder_arg(args)
    names = names or probe.default_poolings(encoder.info.has_pooler)
    pooled = tuple(s for s in names if s != probe.RANDOM_TOKEN)
    vectors = extract(
        encoder, corpus.texts, poolings=pooled or ("cls",), batch_size=args.batch_size,
        progress=Progress("Embedding", not args.quiet), max_tokens=args.max_tokens,
        labels=dict(corpus.labels),
    )
    random_token = None
    if probe.RANDOM_TOKEN in names:
        random_token = random_token_vectors(
            encoder, corpus.texts, seed=args.seed, batch_size=args.batch_size, max_tokens=args.max_tokens,
            progress=Progress("Random tokens", not args.quiet),
        )
    result = probe.run_probe(
        vectors, args.label, poolings=names, layers=layers, random_token=random_token, folds=args.folds,
        seed=args.seed, progress=Progress("Probing", not args.quiet),
    )
    for message in result.messages:
        status(args, f"Note: {message}")
    wide = result.table.pivot(index="layer", columns="pooling", values="accuracy_mean")[list(names)]
    print(f"Probe accuracy for '{result.label}' ({result.n} texts, {len(result.classes)} classes, "
          f"{result.folds}-fold cross-validation; mean over folds), layer 0 = embeddings:")
    print(wide.to_string(float_format=lambda x: f"{x:.3f}"))
    print(f"Chance {result.chance:.3f}, majority class {result.majority:.3f}.")
    print(result.summary())
    table = result.table.assign(label=result.label, model=result.model_name, chance=result.chance, majority=result.majority)
    if args.control or args.mdl:
        table = _probe_controls(args, vectors, names, layers, random_token, table)
    if out is not None:
        write_csv(table, out)
        print(f"Saved:  {out}")
    return EXIT_OK


def _probe_controls(args, vectors, names, layers, random_token, table):
    """--control: selectivity against a control task; --mdl: online codelength. Both join ``table``."""
    from ..experiments import probe_controls
    from ..experiments.probe import RANDOM_TOKEN

    if args.control:
        sel = probe_controls.run_selectivity(
            vectors, args.label, poolings=names, layers=layers, folds=args.folds, seed=args.seed,
            random_token=random_token, progress=Progress("Control task", not args.quiet),
        )
        wide = sel.pivot(index="layer", columns="pooling", values="selectivity")[list(names)]
        print("Selectivity (accuracy - control-task accuracy; control: a random label per first word, same balance):")
        print(wide.to_string(float_format=lambda x: f"{x:.3f}"))
        print(probe_controls.summarize_selectivity(sel))
        table = table.merge(sel[["layer", "pooling", "control_accuracy", "control_sd", "selectivity"]],
                            on=["layer", "pooling"])  # fmt: skip
    if args.mdl:
        if random_token is not None:
            status(args, "Note: the MDL probe reads the extracted poolings; 'random' is left out of it.")
        mdl = probe_controls.run_mdl(vectors, args.label, poolings=[s for s in names if s != RANDOM_TOKEN],
                                     layers=layers, seed=args.seed, progress=Progress("MDL probe", not args.quiet))  # fmt: skip
        wide = mdl.pivot(index="layer", columns="pooling", values="codelength_bits")
        print(f"Online codelength in bits (MDL; uniform code {mdl['uniform_bits'].iloc[0]:.0f} bits, lower = easier):")
        print(wide.to_string(float_format=lambda x: f"{x:.0f}"))
        table = table.merge(mdl[["layer", "pooling", "codelength_bits", "compression"]], on=["layer", "pooling"], how="left")
    return table


def register(sub) -> None:
    """Add the ``embed`` and ``probe`` commands to the subparsers ``sub``."""
    p = add_command(sub, "embed", cmd_embed,
                    "pool a corpus at every layer with several poolings; save Parquet shards or .npz/.parquet")
    add_corpus(p)
    add_model(p)
    p.add_argument("--poolings", "--strategies", dest="poolings", default="cls,mean,max",
                   help="comma-separated poolings (default: cls,mean,max; also mean_content, "
                   "sep, pooler, first, last, token:K)")
    p.add_argument("--labels", default=None,
                   help="comma-separated label columns to keep (default: the columns detected as labels)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass (default: 32)")
    p.add_argument("--out", "-o", required=True, metavar="FOLDER",
                   help="output: a folder of Parquet shards (resumable), or a single .npz / .parquet file")
    p.add_argument("--dtype", choices=("float16", "float32"), default=None,
                   help="how shards store vectors (default: float16; a single file is always float32)")
    p.add_argument("--layers", default=None, help="comma-separated layers to keep in shards (default: all)")
    p.add_argument("--shard-rows", type=positive_int, default=None,
                   help="texts per shard (default: about 64 MB of float32 vectors per shard)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: Ray Data actors, on RAY_ADDRESS's cluster or an "
                   "embedded local Ray (pip install 'clsviz[ray]')")
    p.add_argument("--actors", type=positive_int, default=None,
                   help="Ray actors holding the model (default: one per GPU, else one per CPU)")
    p.add_argument("--engine-cpus", type=positive_int, default=None, help="CPUs of an embedded local Ray")
    p.add_argument("--object-store-mb", type=positive_int, default=None, help="object store of an embedded local Ray")
    add_common(p)

    p = add_command(sub, "probe", cmd_probe, "linear-probe accuracy per layer × pooling for a label column")
    add_corpus(p)
    p.add_argument("--label", "-l", required=True, metavar="COLUMN", help="the label column to predict")
    add_model(p)
    p.add_argument("--poolings", "--strategies", dest="poolings", default=None,
                   help="comma-separated poolings to probe (default: cls, mean, mean_content, max, sep, first, "
                   "last, pooler where the model has one, random (one random content token) and token:3)")
    p.add_argument("--layers", default=None, help="comma-separated layers to probe (default: all; 0 = embeddings)")
    p.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds (default: 5)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--control", action="store_true",
                   help="also probe a control task (a random label per first word, same class balance; Hewitt & "
                   "Liang 2019) and report selectivity = accuracy - control accuracy")
    p.add_argument("--mdl", action="store_true", help="also report the online codelength (MDL probe; Voita & Titov 2020)")
    p.add_argument("--out", "-o", default=None, metavar="PROBE.csv", help="also save the table as CSV")
    add_common(p)
