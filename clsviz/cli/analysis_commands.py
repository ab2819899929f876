"""``clsviz analyses`` and ``clsviz run``: every declared analysis from the command line.

``clsviz analyses`` lists them (inputs, parameters with their choices and defaults, figures);
``clsviz run NAME`` runs one on the inputs given (``--text``, a corpus, ``--pairs``, ``--second``),
prints its summary sentences, and writes its table (``--out F.csv``) and its figures
(``--html F.html``). An analysis's own parameters are given as ``--name value`` after the name.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import atomic_path
from .common import (
    DEMO,
    EXIT_OK,
    Progress,
    UsageError,
    add_command,
    add_common,
    add_model,
    check_output,
    file_size,
    load_encoder_arg,
    print_messages,
    status,
    write_csv,
)

__all__ = ["cmd_analyses", "cmd_run", "register", "write_html"]

VECTOR_POOLINGS = ("cls", "mean", "max")
"""The poolings ``clsviz run`` extracts when an analysis takes corpus vectors (with those its
``--poolings`` names)."""


def _describe(analysis) -> str:
    params = ", ".join(
        f"--{p.name.replace('_', '-')} {'|'.join(map(str, p.choices)) if p.choices else p.kind.__name__}"
        f" (default {p.default!r})"
        for p in analysis.params
    )
    roles = ", ".join([*analysis.inputs, *(f"[{r}]" for r in analysis.optional)])
    lines = [f"{analysis.name}{' (long)' if analysis.long else ''}: {analysis.title}",
             f"    inputs: {roles}", f"    {analysis.description}"]  # fmt: skip
    if params:
        lines.append(f"    parameters: {params}")
    if analysis.figures:
        lines.append(f"    figures: {', '.join(analysis.figures)}")
    return "\n".join(lines)


def cmd_analyses(args) -> int:
    """List every analysis clsviz can run: its inputs, its parameters (with their choices and
    defaults) and the figures it draws. Run one with 'clsviz run NAME'."""
    from ..analyses import ANALYSES

    for analysis in ANALYSES.values():
        print(_describe(analysis))
    return EXIT_OK


def _params(analysis, extra: list[str]) -> dict:
    """``--name value`` pairs after the analysis name, as its parameters."""
    params, i = {}, 0
    valid = {p.name for p in analysis.params}
    while i < len(extra):
        flag = extra[i]
        if not flag.startswith("--"):
            raise UsageError(f"unexpected argument '{flag}'; parameters are given as --name value")
        name, _, value = flag[2:].partition("=")
        name = name.replace("-", "_")
        if name not in valid:
            shown = ", ".join(f"--{v.replace('_', '-')}" for v in sorted(valid)) or "none"
            raise UsageError(f"'{analysis.name}' has no parameter --{name.replace('_', '-')}; it has {shown}")
        if not value:
            if analysis.param(name).kind is bool and (i + 1 == len(extra) or extra[i + 1].startswith("--")):
                value = "true"
            else:
                i += 1
                if i == len(extra):
                    raise UsageError(f"--{name.replace('_', '-')} needs a value")
                value = extra[i]
        params[name] = value
        i += 1
    return params


def _corpus(args):
    from .common import read_corpus

    if args.corpus is None:
        return None
    corpus = read_corpus(args)
    print_messages(args, corpus)
    return corpus


def _pairs(args):
    from ..corpus import demo_pairs
    from ..readers import load_pairs

    if args.pairs is None:
        return None
    if args.pairs == DEMO and not Path(DEMO).exists():
        return demo_pairs()
    path = Path(args.pairs)
    if not path.is_file():
        raise UsageError(f"no pairs file at '{args.pairs}' (a CSV with sentence1, sentence2, score, or 'demo')")
    data = path.read_bytes()
    return load_pairs(data, path.name, max_rows=10**12, max_bytes=max(len(data), 1))


def _vector_poolings(params: dict) -> tuple[str, ...]:
    """The poolings to extract: :data:`VECTOR_POOLINGS` and any the analysis's ``poolings``
    parameter names (``random`` is read by the analysis itself)."""
    named = [p.strip() for p in str(params.get("poolings") or "").split(",") if p.strip() and p.strip() != "random"]
    return tuple(dict.fromkeys((*VECTOR_POOLINGS, *named)))


def _inputs(analysis, args, params: dict | None = None) -> list:
    """The analysis's inputs, in its order, from the command line (loading only what it needs)."""
    from ..baseline import measure_baseline
    from ..benchmark import pair_texts
    from ..encoder import load_encoder
    from ..tracing import trace
    from ..vectors import extract

    roles = (*analysis.inputs, *analysis.optional)
    made: dict = {}
    needs_model = any(r in roles for r in ("encoder", "trace", "traces", "vectors", "baseline"))
    if needs_model:
        made["encoder"] = load_encoder_arg(args)
    texts = list(args.text or [])
    if "trace" in roles or "traces" in roles:
        if not texts and ("trace" in analysis.inputs or "traces" in analysis.inputs):
            raise UsageError(f"'{analysis.name}' reads a sentence: give it with --text \"...\"")
        made["traces"] = [trace(made["encoder"], t, max_tokens=args.max_tokens) for t in texts]
        made["trace"] = made["traces"][0] if made["traces"] else None
    corpus = _corpus(args) if any(r in roles for r in ("corpus", "texts", "vectors")) else None
    made["corpus"] = corpus
    made["texts"] = list(corpus.texts) if corpus is not None else (texts or None)
    made["pairs"] = _pairs(args) if "pairs" in roles else None
    if "vectors" in roles:
        source = made["texts"] or (list(pair_texts(made["pairs"])) if made["pairs"] is not None else None)
        if source is None:
            raise UsageError(f"'{analysis.name}' reads corpus vectors: name a corpus with --corpus (or 'demo')")
        status(args, f"Embedding {len(source):,} texts…")
        made["vectors"] = extract(made["encoder"], source, poolings=_vector_poolings(params or {}), max_tokens=args.max_tokens,
                                  labels=getattr(corpus, "labels", None) or None,
                                  progress=Progress("Embedding", not args.quiet))  # fmt: skip
    if "second" in roles and args.second is not None:
        status(args, f"Loading {args.second}…")
        made["second"] = load_encoder(args.second, device=args.device)
    if "baseline" in analysis.inputs or ("baseline" in analysis.optional and args.baseline):
        status(args, "Measuring the anisotropy baseline…")
        made["baseline"] = measure_baseline(made["encoder"])
    missing = [r for r in analysis.inputs if made.get(r) is None]
    if missing:
        raise UsageError(f"'{analysis.name}' needs {', '.join(missing)}: see 'clsviz analyses' for its inputs")
    return [made.get(r) for r in roles]


def write_html(result, path: Path, title: str) -> None:
    import html

    parts = []
    for i, (key, fig) in enumerate(result.figures().items()):
        parts.append(f"<h2>{html.escape(key)}</h2>" + fig.to_html(full_html=False, include_plotlyjs=i == 0,
                                                                   div_id=f"clsviz-figure-{i}"))  # fmt: skip
    sentences = "".join(f"<p>{html.escape(s)}</p>" for s in result.summary())
    document = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{sentences}{''.join(parts)}</body></html>\n"
    )
    with atomic_path(path) as partial:  # an HTML file cut short never stands under its name
        partial.write_text(document, encoding="utf-8")


def cmd_run(args) -> int:
    """Run one analysis (see 'clsviz analyses') and print its summary; --out writes its table
    as CSV, --html its figures as one offline HTML file. The analysis's own parameters follow
    as --name value (e.g. 'clsviz run attention --text "A fine film." --method value_norm')."""
    from ..analyses import ParamError, get

    try:
        analysis = get(args.name)
    except KeyError as exc:
        raise UsageError(str(exc).strip("'\"")) from None
    try:
        params = analysis.check(**_params(analysis, args.params))
    except ParamError as exc:
        raise UsageError(str(exc)) from None
    out = check_output(args.out, (".csv",), "the table") if args.out else None
    page = check_output(args.html, (".html", ".htm"), "the figures file") if args.html else None
    inputs = _inputs(analysis, args, params)
    status(args, f"Running {analysis.name}…")
    from ..analyses import NotApplicable

    try:
        result = analysis(*inputs, progress=Progress(analysis.name, not args.quiet), **params)
    except NotApplicable as exc:
        raise UsageError(f"{analysis.name} does not apply here: {exc}") from None
    for sentence in result.summary():
        print(sentence)
    table = result.table()
    if out is not None:
        write_csv(table, out)
        status(args, f"Wrote {out} ({len(table):,} rows, {file_size(out)})")
    elif not result.summary():
        print(table.head(20).to_string(index=False))
    if page is not None:
        write_html(result, page, f"clsviz: {analysis.title}")
        status(args, f"Wrote {page} ({file_size(page)})")
    return EXIT_OK


def register(sub) -> None:
    listing = add_command(sub, "analyses", cmd_analyses, "list every analysis 'clsviz run' can run")
    add_common(listing)
    p = add_command(sub, "run", cmd_run, "run one analysis by name (see 'clsviz analyses')")
    p.allow_abbrev = False  # an analysis's own --name must never be read as a prefix of these options
    p.add_argument("name", help="the analysis, e.g. attention, similarity, mixing (see 'clsviz analyses')")
    p.add_argument("--text", "-t", action="append", help="a sentence (repeat for several)")
    p.add_argument("--corpus", default=None, help="a corpus file, a Hugging Face data set, or 'demo'")
    p.add_argument("--text-column", default=None, help="the corpus column holding the texts (default: detected)")
    p.add_argument("--labels", default=None, help="comma-separated label columns of the corpus (default: detected)")
    p.add_argument("--config", default=None, help="a Hugging Face data set's configuration")
    p.add_argument("--split", default=None, help="a Hugging Face data set's split")
    p.add_argument("--max-rows", type=int, default=None, help="use at most this many corpus rows")
    p.add_argument("--pairs", default=None, help="scored pairs: a CSV with sentence1, sentence2, score, or 'demo'")
    p.add_argument("--second", default=None, help="a second model, for analyses that compare two")
    p.add_argument("--baseline", action="store_true", help="measure the anisotropy baseline where it is optional")
    p.add_argument("--out", default=None, help="write the table to this CSV file")
    p.add_argument("--html", default=None, help="write the figures to this offline HTML file")
    add_model(p)
    add_common(p)
    p.set_defaults(params=[])

