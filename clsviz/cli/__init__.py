"""The ``clsviz`` command line: inspect a text, embed, probe or fine-tune on a corpus, start the app.

Exit codes: 0 success; 2 bad arguments or input (one line on stderr says why); 1 any other
failure; 130 interrupted.

Each command lives in a module of this package with a ``register(subparsers)`` function;
a new command is a new module added to :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .app_command import find_app
from .common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Progress,
    UsageError,
    one_line,
    read_corpus,
)

__all__ = ["COMMAND_MODULES", "Progress", "UsageError", "build_parser", "find_app", "main", "read_corpus"]

COMMAND_MODULES = (
    "sentence_commands",
    "corpus_commands",
    "intervention_commands",
    "training_commands",
    "lab_commands",
    "inversion_commands",
    "compare_commands",
    "literature_commands",
    "model_commands",
    "analysis_commands",
    "app_command",
)
"""Modules of this package that add commands, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="clsviz",
        description="Inspect the [CLS] token of BERT-family encoders from the command line.",
        epilog="Run 'clsviz COMMAND --help' for a command's options. Exit codes: 0 success, "
        "2 bad arguments or input, 1 other failure.",
    )
    parser.add_argument("--version", action="version", version=f"clsviz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _usage_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the person gave something unusable: exit 2 with the reason."""
    from ..encoder import ModelLoadError

    return (UsageError, ValueError, ModelLoadError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":  # only 'clsviz run' takes the parameters of the analysis it runs
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "run":
        args.params = extra
    try:
        return int(args.handler(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("clsviz: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _usage_errors() as exc:
        if args.debug:
            raise
        print(f"clsviz {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if args.debug:
            raise
        print(f"clsviz {args.command}: error: {one_line(exc)} ({type(exc).__name__}; run with --debug "
              "for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
