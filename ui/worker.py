"""The side of a background job that runs in the worker process (no Streamlit here).

A job travels to the worker as a pickle in which every :class:`clsviz.Encoder` is replaced by
a reference (its model name and device): the worker loads each model once, with the same safe
loader as the app, and keeps it for the next job (at most :data:`MAX_MODELS`, the least recently
used let go first), so a second job on the same model starts at once. The worker lowers its own
priority (:mod:`ui.priority`, before it imports torch), so the server process that draws pages
for people always gets the CPU first.

Progress goes back through a small file the server reads (``progress(done, total, message)``
writes at most :data:`PROGRESS_EVERY_S` apart, and the last report travels with the result);
a cancel request arrives as a file whose presence sets the job's cancel flag
(see :mod:`ui.journal`).
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

from clsviz.encoder import DEFAULT_MODEL, Encoder, load_encoder

from . import journal
from .priority import NICENESS

__all__ = [
    "MAX_MODELS",
    "NICENESS",
    "PROGRESS_EVERY_S",
    "CancelFile",
    "EncoderReferences",
    "ProgressFile",
    "call",
    "dumps",
    "loaded_models",
    "loads",
    "pack",
    "remove_leftovers",
    "run",
    "shared_folder",
    "unpack",
    "warm",
]

MAX_MODELS = 4
"""Models a worker keeps loaded (the server's own encoder cache holds as many)."""
PROGRESS_EVERY_S = 0.2
"""Least time between two progress files written by a worker."""
SHARED_BYTES = 4_000_000
"""A result's arrays this large go back to the server through shared memory, not the pipe."""
RESULT_PREFIX = "clsviz-result-"

_ENCODERS: OrderedDict[tuple[str, str], Encoder] = OrderedDict()
_ENCODERS_LOCK = threading.Lock()


class EncoderReferences(pickle.Pickler):
    """A pickler that writes an Encoder as ``("encoder", name, device)``, not as its weights."""

    def persistent_id(self, obj):
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


def _encoder(name: str, device: str = "cpu") -> Encoder:
    with _ENCODERS_LOCK:
        key = (name, device)
        if key in _ENCODERS:
            _ENCODERS.move_to_end(key)
        else:
            _ENCODERS[key] = load_encoder(None if name == DEFAULT_MODEL else name, device=device)
            while len(_ENCODERS) > MAX_MODELS:
                _ENCODERS.popitem(last=False)
        return _ENCODERS[key]


def loaded_models() -> list[str]:
    """The names of the models this process holds, least recently used first."""
    with _ENCODERS_LOCK:
        return [name for name, _ in _ENCODERS]


def warm(models: tuple[str, ...] = ()) -> list[str]:
    """Load ``models`` (names; the bundled model is :data:`clsviz.encoder.DEFAULT_MODEL`) so the
    next job on them starts at once; returns the models now held. A model that fails to load is
    left out (the job that names it reports why)."""
    for name in models:
        try:
            _encoder(name)
        except Exception:  # the job itself will load it again and fail with its message
            pass
    return loaded_models()


class ProgressFile:
    """The ``progress`` callback of a job in the worker: what it reports, written to ``path``
    (at most every :data:`PROGRESS_EVERY_S`) for the server to read."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.state: dict = {
            "pid": os.getpid(),
            "done": 0.0,
            "total": 0.0,
            "message": "Loading the model in the worker…",
        }
        self._written = 0.0
        self._lock = threading.Lock()
        self._pending: threading.Timer | None = None
        self._write()

    def say(self, message: str) -> None:
        """Report a step without progress, at once."""
        self.state["message"] = message
        self._write()

    def __call__(self, done, total=None, message=None) -> None:
        self.state["done"] = float(done)
        if total is not None:
            self.state["total"] = float(total)
        if message is not None:
            self.state["message"] = str(message)
        wait = PROGRESS_EVERY_S - (time.monotonic() - self._written)
        if wait <= 0:
            self._write()
            return
        with self._lock:  # written a moment ago: write this report once the interval is over
            if self._pending is None:
                self._pending = threading.Timer(wait, self._write)
                self._pending.daemon = True
                self._pending.start()

    def close(self) -> None:
        """Drop a write still pending (the job has ended; the last report goes with its result)."""
        with self._lock:
            if self._pending is not None:
                self._pending.cancel()
                self._pending = None

    def _write(self) -> None:
        with self._lock:
            self._pending = None
            self._written = time.monotonic()
            state = dict(self.state)
        try:
            journal.write_json(self.path, state, durable=False)
        except OSError:  # the server then shows less progress; the job goes on
            pass


class CancelFile:
    """The ``cancel`` event of a job in the worker: set once the server created ``path``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._set = False

    def is_set(self) -> bool:
        if not self._set:
            self._set = self.path.exists()
        return self._set

    def set(self) -> None:
        self._set = True

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set() and (end is None or time.monotonic() < end):
            time.sleep(0.05)
        return self.is_set()


def call(fn, *args, progress=None, cancel=None, **kwargs):
    """``fn(*args, **kwargs)`` as a job: for a function that takes neither ``progress`` nor
    ``cancel`` (a projection's ``fit``)."""
    return fn(*args, **kwargs)


def shared_folder() -> Path:
    """Where results travel through shared memory: ``/dev/shm``, else the temporary folder."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def pack(result, owner: int) -> tuple[bytes, list[tuple[str, int]]]:
    """``result`` pickled for the server, its arrays of :data:`SHARED_BYTES` or more written to
    files in shared memory (``/dev/shm``) instead of into the pickle: (pickle, [(file, bytes)]).
    The server maps those files rather than copying them through a pipe and unpickling them
    (:func:`unpack`). ``owner``: the server's pid, named in the files so a server's leftovers can
    be told apart."""
    files: list[tuple[str, int]] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < SHARED_BYTES:
            return True  # small: inside the pickle
        path = shared_folder() / f"{RESULT_PREFIX}{owner}-{uuid.uuid4().hex}"
        with open(path, "wb") as fh:
            fh.write(view)
        files.append((str(path), view.nbytes))
        return False

    return pickle.dumps(result, protocol=5, buffer_callback=out_of_band), files


_RESULT_PACKAGES = frozenset(
    {
        "clsviz",
        "ui",
        "numpy",
        "pandas",
        "pyarrow",
        "plotly",
        "torch",
        "sklearn",
        "scipy",
        "umap",
        "pynndescent",
        "numba",
        "transformers",
        "tokenizers",
        "collections",
        "datetime",
        "pathlib",
        "copyreg",
        "_codecs",
        "dataclasses",
        "enum",
        "functools",
    }
)
_RESULT_TYPES = frozenset({"SimpleNamespace", "MappingProxyType"})
"""The only names of the ``types`` module a result may hold (its others build code objects)."""
_UNSAFE_BUILTINS = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "getattr",
        "setattr",
        "delattr",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "exit",
        "quit",
        "help",
    }
)


class _ResultUnpickler(pickle.Unpickler):
    """Unpickles only what a result is made of: the results come from the app's own worker
    processes, never from a visitor or a file, and this list keeps it so (defence in depth) -
    a global from any other package, or a builtin that runs code, is refused."""

    def find_class(self, module: str, name: str):
        top = module.split(".")[0]
        allowed = (
            (top == "builtins" and name not in _UNSAFE_BUILTINS)
            or (module == "types" and name in _RESULT_TYPES)
            or top in _RESULT_PACKAGES
        )
        if allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a job result may not name {module}.{name}")


def unpack(blob: bytes, files: list[tuple[str, int]]):
    """The result :func:`pack` wrote: its large arrays map the shared-memory files (copy on
    write), which are removed at once (the memory stays while the arrays live)."""
    buffers = []
    try:
        for path, size in files:
            buffers.append(np.memmap(path, dtype=np.uint8, mode="c", shape=(size,)) if size else b"")
        return _ResultUnpickler(io.BytesIO(blob), buffers=buffers).load()
    finally:
        for path, _ in files:
            Path(path).unlink(missing_ok=True)


def remove_leftovers(alive=None) -> int:
    """Remove shared-memory result files of servers that no longer run; returns how many."""
    removed = 0
    for path in shared_folder().glob(f"{RESULT_PREFIX}*"):
        owner = path.name[len(RESULT_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not (alive or _pid_alive)(int(owner)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def run(payload: bytes, progress_path: str, cancel_path: str, owner: int):
    """Run the job in ``payload`` (``(fn, args, kwargs)``), reporting progress into the file
    ``progress_path`` and stopping once ``cancel_path`` exists; returns ``(result packed by
    :func:`pack`, last report)``."""
    progress = ProgressFile(progress_path)
    fn, args, kwargs = loads(payload)
    progress.say("Computing…")
    try:
        result = fn(*args, progress=progress, cancel=CancelFile(cancel_path), **kwargs)
    finally:
        progress.close()
    return pack(result, owner), dict(progress.state)
