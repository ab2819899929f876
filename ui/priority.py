"""The first thing a job worker process runs (loky's initializer): lower its priority before it
imports anything heavy, so that even the worker's own start - importing torch, loading the model
while the server starts - yields the CPU to the server drawing pages. Imports nothing heavy."""

from __future__ import annotations

import os

__all__ = ["NICENESS", "lower"]

NICENESS = 10
"""How much the worker process lowers its priority (``os.nice``)."""


def lower() -> None:
    """Lower this process's priority by :data:`NICENESS`; quiet tokenizers."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        os.nice(NICENESS)
    except OSError:  # not permitted on this system: the job still runs, at normal priority
        pass
