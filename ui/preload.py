"""The bundled model, loaded while the server starts up.

``make run`` and the Docker image start the server through :mod:`ui.serve`, which calls
:func:`start` once Streamlit is imported and before its server starts: importing torch and
transformers and reading the bundled weights (several seconds on two cores) then happen while
the server starts and, above all, while a person opens the page (imports hold Python's GIL, so
they share the CPU with the server's own start rather than run beside it). The first page asks
:func:`take` for the encoder (through ``ui.state.cached_encoder``): it waits for a load still
under way, and gets ``None`` when no preload was started, it failed or it took longer than the
wait, and then loads the model itself, as before. The encoder is
handed over once: afterwards Streamlit's resource cache holds it and this module keeps no
reference. The same thread starts the job engine's warm worker process (:func:`ui.engine.warm`)
and has it load the bundled model too, so the first background job does not wait for a fresh
interpreter, torch and the weights. ``CLSVIZ_PRELOAD=0`` turns both off.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing clsviz here would import torch before the thread could
    from clsviz import Encoder

__all__ = ["ENV", "WAIT_S", "error", "start", "take"]

ENV = "CLSVIZ_PRELOAD"
"""Environment variable: ``0`` turns the start-up preload off."""

WAIT_S = 300.0
"""How long the first page waits for a preload under way before loading the model itself."""

_lock = threading.Lock()
_done = threading.Event()
_state: dict = {}  # "thread", then "encoder" or "error"


def _warm_workers() -> None:
    """Start the job engine's worker process and load the bundled model in it (at the worker's
    lower priority), so the first background job finds it warm."""
    from clsviz.encoder import DEFAULT_MODEL
    from ui import engine  # here, not at the top: it imports torch, which belongs in this thread

    try:
        engine.warm((DEFAULT_MODEL,))
    except Exception:  # the first job starts its worker itself, as before
        logging.getLogger(__name__).warning("the job worker could not be started ahead", exc_info=True)


def _load() -> None:
    from clsviz import load_encoder

    _warm_workers()
    try:
        encoder = load_encoder()
        with _lock:
            _state["encoder"] = encoder
    except Exception as exc:  # the first page loads the model itself and shows the error there
        with _lock:
            _state["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        _done.set()


def start() -> threading.Thread | None:
    """Begin loading the bundled model in a background thread (once per process); None when
    ``CLSVIZ_PRELOAD=0``."""
    if os.environ.get(ENV, "").strip() == "0":
        return None
    with _lock:
        if "thread" not in _state:
            _state["thread"] = threading.Thread(target=_load, name="clsviz-preload", daemon=True)
            _state["thread"].start()
        return _state["thread"]


def take(timeout: float | None = None) -> Encoder | None:
    """The preloaded bundled encoder, handed over once (later calls get None). Waits up to
    ``timeout`` seconds (None: as long as it takes) for a load under way; None when no preload
    was started, it failed, or it did not finish in time."""
    with _lock:
        if "thread" not in _state:
            return None
    if not _done.wait(timeout):
        return None
    with _lock:
        return _state.pop("encoder", None)


def error() -> str | None:
    """Why the preload failed, or None."""
    with _lock:
        return _state.get("error")
