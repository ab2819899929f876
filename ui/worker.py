"""The side of a background job that runs in the worker process (no Streamlit here).

A job travels to the worker as a pickle in which every :class:`clsviz.Encoder` is replaced by
a reference (its model name and device): the worker loads each model once, with the same safe
loader as the app, and keeps it for the next job. The worker lowers its own priority, so the
server process that draws pages for people always gets the CPU first.
"""

from __future__ import annotations

import io
import os
import pickle
import threading

__all__ = ["EncoderReferences", "dumps", "initialize", "loads", "run"]

_ENCODERS: dict = {}
_ENCODERS_LOCK = threading.Lock()
NICENESS = 10
"""How much the worker process lowers its priority (``os.nice``)."""


class EncoderReferences(pickle.Pickler):
    """A pickler that writes an Encoder as ``("encoder", name, device)``, not as its weights."""

    def persistent_id(self, obj):
        from clsviz.encoder import Encoder

        if isinstance(obj, Encoder):
            return ("encoder", obj.name, obj.info.device)
        return None


class _Loader(pickle.Unpickler):
    def persistent_load(self, pid):
        kind, name, device = pid
        if kind != "encoder":
            raise pickle.UnpicklingError(f"unknown reference {kind!r}")
        return _encoder(name, device)


def dumps(obj) -> bytes:
    """``obj`` pickled with encoders as references (raises when something cannot be pickled)."""
    buffer = io.BytesIO()
    EncoderReferences(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads(data: bytes):
    """The object :func:`dumps` wrote, its encoders loaded (once per process)."""
    return _Loader(io.BytesIO(data)).load()


def _encoder(name: str, device: str):
    from clsviz.encoder import DEFAULT_MODEL, load_encoder

    with _ENCODERS_LOCK:
        key = (name, device)
        if key not in _ENCODERS:
            _ENCODERS[key] = load_encoder(None if name == DEFAULT_MODEL else name, device=device)
        return _ENCODERS[key]


def initialize() -> None:
    """Worker process start: lower priority, quiet tokenizers."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        os.nice(NICENESS)
    except OSError:  # not permitted on this system: the job still runs, at normal priority
        pass


def run(payload: bytes, state, cancel):
    """Run the job in ``payload`` (``(fn, args, kwargs)``), reporting progress into ``state``
    (a shared dict: done, total, message) and stopping when ``cancel`` (a shared event) is set."""
    fn, args, kwargs = loads(payload)

    def progress(done, total=None, message=None):
        update = {"done": float(done)}
        if total is not None:
            update["total"] = float(total)
        if message is not None:
            update["message"] = str(message)
        state.update(update)

    return fn(*args, progress=progress, cancel=cancel, **kwargs)
