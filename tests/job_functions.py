"""Small module-level functions the job tests send to the worker process (they must be
importable there, so they live in a light module of their own)."""

from __future__ import annotations

import os
import time


def count(n: int, progress, cancel, delay: float = 0.01) -> int:
    """Counts to n, reporting each step; stops (raises) when cancelled."""
    for i in range(n):
        if cancel.is_set():
            raise RuntimeError("stopped")
        progress(i + 1, n, f"step {i + 1} of {n}")
        time.sleep(delay)
    return n * 2


def wait_for_cancel(progress, cancel, limit: float = 60.0) -> str:
    """Runs until cancelled (or ``limit`` seconds)."""
    started = time.monotonic()
    progress(0, 1, "waiting")
    while not cancel.is_set() and time.monotonic() - started < limit:
        time.sleep(0.02)
    if cancel.is_set():
        raise RuntimeError("interrupted")
    return "not cancelled"


def where(progress, cancel) -> dict:
    """Which process ran the job, and at what priority."""
    return {"pid": os.getpid(), "nice": os.nice(0)}


def fail(progress, cancel, message: str = "the label has one class"):
    raise ValueError(message)


def ignore_cancel(progress, cancel, seconds: float = 120.0) -> str:
    """Reports once, then sleeps without ever looking at ``cancel``."""
    progress(0, 1, "not listening")
    time.sleep(seconds)
    return "slept"


def model_identity(encoder, progress, cancel) -> dict:
    """Which process ran the job, which encoder object it was handed, and the models it holds."""
    from ui import worker

    return {"pid": os.getpid(), "encoder": id(encoder), "models": worker.loaded_models()}


def embed_slowly(encoder, texts: list[str], out: str, progress, cancel, pause: float = 0.5):
    """Embeds ``texts`` into the shard folder ``out`` two rows a shard, pausing after each shard
    (so a test can stop the worker mid-run); returns the rows already done when it started."""
    from clsviz import Corpus
    from clsviz.extraction import embed_to_shards

    first: list[int] = []

    def report(done, total):
        if not first:
            first.append(done)
        progress(done, total, f"{done} of {total} rows")
        time.sleep(pause)

    embed_to_shards(encoder, Corpus(texts=list(texts)), out, poolings=("cls", "mean"), shard_rows=2,
                    progress=report, cancel=cancel)
    return first[0]


def big_array(n: int, progress, cancel) -> dict:
    """A result holding one large array (it goes back through shared memory) and a small one."""
    import numpy as np

    return {"large": np.arange(n, dtype=np.float64), "small": np.arange(3), "pid": os.getpid()}


def torch_threads(progress, cancel) -> int:
    """The torch threads of the process that runs the job."""
    import torch

    return torch.get_num_threads()
