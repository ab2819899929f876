"""What every ``clsviz`` command shares: usage errors, progress on stderr, argument helpers,
reading the encoder and the corpus named on the command line.

Heavy imports (torch, transformers) happen only inside functions, so ``--help`` and argument
errors answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import time
from pathlib import Path

from ..artifacts import atomic_path

__all__ = [
    "DEMO",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Progress",
    "UsageError",
    "add_command",
    "add_common",
    "add_corpus",
    "add_model",
    "check_output",
    "file_size",
    "layers_arg",
    "load_encoder_arg",
    "one_line",
    "poolings_arg",
    "positive_int",
    "print_messages",
    "read_corpus",
    "status",
    "write_csv",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEMO = "demo"


class UsageError(Exception):
    """Bad arguments or input discovered after parsing; exits with status 2."""


class Progress:
    """A one-line progress bar on stderr: ``label [#####.....] 12/40``.

    On a terminal the line redraws in place; elsewhere (logs, pipes) only the finished
    line is written, so logs stay readable. Silent when ``enabled`` is False. Accepts the
    package's progress convention: ``(done, total)`` or ``(done, total, message)``.
    """

    def __init__(self, label: str, enabled: bool = True, stream=None, width: int = 28):
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()

    def __call__(self, done: float, total: float, message: str | None = None) -> None:
        if not self.enabled:
            return
        finished = total <= 0 or done >= total
        if not (self.tty or finished):
            return
        filled = self.width if total <= 0 else int(self.width * done / total)
        elapsed = time.monotonic() - self.started
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done:g}/{total:g} {elapsed:5.1f}s"
        self.stream.write(("\r" if self.tty else "") + line + ("\n" if finished else ""))
        self.stream.flush()


def status(args, message: str) -> None:
    """A progress note on stderr, unless ``--quiet``."""
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type name when the message is empty)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def file_size(path: Path) -> str:
    """A file's size for people: ``812 B``, ``3.4 MB``."""
    n = float(path.stat().st_size)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def write_csv(table, out: Path) -> None:
    """Write a DataFrame to ``out`` as CSV; the file stands under its name only once complete."""
    with atomic_path(out) as partial:
        table.to_csv(partial, index=False)


def check_output(path: str, endings: tuple[str, ...], what: str) -> Path:
    """Validate an output path before any slow work: its ending and its folder."""
    out = Path(path)
    if out.suffix.lower() not in endings:
        raise UsageError(f"{what} must end in {' or '.join(endings)}, got '{out.name}'")
    if out.is_dir():
        raise UsageError(f"'{out}' is a folder; give a file name for the {what}")
    if not out.parent.is_dir():
        raise UsageError(f"the folder '{out.parent}' does not exist (needed for '{out.name}')")
    return out


def poolings_arg(text: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Comma-separated pooling names, each checked (``extra`` names are allowed as they are)."""
    from ..pooling import check_pooling

    names = tuple(s.strip() for s in text.split(",") if s.strip())
    if not names:
        raise UsageError("--poolings is empty; give names such as cls,mean,max")
    return tuple(s if s in extra else check_pooling(s) for s in names)


def layers_arg(text: str) -> list[int]:
    """Comma-separated hidden-state indexes (0 = embeddings)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--layers takes comma-separated whole numbers such as 0,3,6, got '{text}'") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def add_command(sub, name: str, handler, summary: str) -> argparse.ArgumentParser:
    """A new command ``name`` under the subparsers ``sub``: ``summary`` for ``clsviz --help``;
    ``handler(args) -> exit status`` runs it and its docstring is ``clsviz name --help``'s
    description. Each command then adds its own options and, last, :func:`add_common`."""
    description = " ".join(inspect.cleandoc(handler.__doc__ or summary).split())
    parser = sub.add_parser(name, help=summary, description=description)
    parser.set_defaults(handler=handler)
    return parser


def add_model(p: argparse.ArgumentParser) -> None:
    """--model, --device, --max-tokens."""
    p.add_argument("--model", "-m", default=None,
                   help="Hugging Face id or local folder (default: the bundled all-MiniLM-L6-v2, offline)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda when available)")
    p.add_argument("--max-tokens", type=positive_int, default=None,
                   help="cut texts to this many tokens (default: the model's limit)")


def add_corpus(p: argparse.ArgumentParser) -> None:
    """The corpus argument, --text-column, --max-rows."""
    p.add_argument("corpus", help="a CSV / TSV / Parquet / JSON Lines file (a text column and optional label "
                   "columns), a TXT file (one sentence per line), a Hugging Face data set (hub id or local "
                   "folder; see --config, --split), or 'demo' for the corpus shipped with clsviz")
    p.add_argument("--text-column", default=None, help="the column holding the texts (default: detected)")
    p.add_argument("--config", default=None, help="a Hugging Face data set's configuration (e.g. sst2)")
    p.add_argument("--split", default=None, help="a Hugging Face data set's split (e.g. train, validation)")
    p.add_argument("--max-rows", type=positive_int, default=None, help="use at most this many rows (default: all)")


def add_common(p: argparse.ArgumentParser) -> None:
    """--quiet, --debug."""
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output on stderr")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected failure")


def load_encoder_arg(args):
    """The encoder named by ``--model`` (the bundled one by default)."""
    from ..encoder import load_encoder

    status(args, f"Loading {args.model or 'the bundled model'}…")
    return load_encoder(args.model, device=args.device)


def read_corpus(args):
    """The corpus named on the command line: a file (CSV, TSV, TXT, Parquet, JSON Lines), a
    Hugging Face data set (a local folder or a hub id, with ``--config`` / ``--split``), or
    ``demo`` for the shipped one.

    A local file has no size or row limit unless ``--max-rows`` sets one (the app's upload
    limits protect a shared server, not a person's own machine).
    """
    from ..corpus import demo_corpus
    from ..formats import load_dataset_corpus
    from ..readers import load_corpus

    source = args.corpus
    if source == DEMO and not Path(source).exists():
        corpus = demo_corpus()
        if args.max_rows is not None and len(corpus.texts) > args.max_rows:
            note = f"the first {args.max_rows} of {len(corpus.texts)} sentences are used"
            corpus = corpus.subset(slice(0, args.max_rows))
            corpus = dataclasses.replace(corpus, messages=(*corpus.messages, note))
        return corpus
    path = Path(source)
    labels = [c.strip() for c in args.labels.split(",") if c.strip()] if getattr(args, "labels", None) else None
    config, split = getattr(args, "config", None), getattr(args, "split", None)
    if path.is_dir() or (not path.exists() and (config or split or _looks_like_id(source))):
        return load_dataset_corpus(source, config, split, args.text_column, labels, args.max_rows)
    if not path.is_file():
        raise UsageError(f"no corpus file at '{source}' (give a CSV, TSV, TXT, Parquet or JSON Lines file, a data "
                         "set folder or hub id, or 'demo' for the demo corpus)")
    if config or split:
        raise UsageError("--config and --split name a part of a Hugging Face data set; a file has none")
    data = path.read_bytes()
    kwargs = {"text_column": args.text_column, "max_bytes": max(len(data), 1), "max_rows": args.max_rows or 10**12}
    if labels:
        kwargs["label_columns"] = labels
    return load_corpus(data, path.name, **kwargs)


def _looks_like_id(source: str) -> bool:
    """True for a name such as ``nyu-mll/glue`` or ``imdb``: no file ending, no path separators
    beyond one slash."""
    import re

    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", source)) and Path(source).suffix == ""


def print_messages(args, corpus) -> None:
    """The corpus's loading notes on stderr."""
    for message in getattr(corpus, "messages", ()):
        status(args, f"Note: {message}")
