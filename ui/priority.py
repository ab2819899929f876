"""The first thing a job worker process runs (loky's initializer): lower its priority before it
imports anything heavy, so that even the worker's own start - importing torch, loading the model
while the server starts - yields the CPU to the server drawing pages. Imports nothing heavy."""

from __future__ import annotations

import os

__all__ = ["NICENESS", "THREADS_ENV", "lower"]

NICENESS = 10
"""How much the worker process lowers its priority (``os.nice``)."""
THREADS_ENV = "CLSVIZ_JOB_THREADS"
"""Environment variable: the worker's torch threads (default: torch's, one per core). On a
machine shared with other work, 1 avoids the stall of a lower-priority process whose second
thread is preempted (a fine-tune at load 17: 147 s on two threads, 34 s on one); float results
then differ in their last bits from a two-thread run, which is why it is a setting and not
chosen from the load."""


def lower() -> None:
    """Lower this process's priority by :data:`NICENESS`; quiet tokenizers; the torch threads
    ``CLSVIZ_JOB_THREADS`` asks for (set before torch is imported, which reads it then)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    threads = os.environ.get(THREADS_ENV, "").strip()
    if threads.isdigit() and int(threads) > 0:
        os.environ["OMP_NUM_THREADS"] = threads
    try:
        os.nice(NICENESS)
    except OSError:  # not permitted on this system: the job still runs, at normal priority
        pass
