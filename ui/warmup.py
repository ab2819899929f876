"""Work the app does in the background once a page has drawn, so that the first page never waits
for it: the anisotropy baseline of the model in use (the Overview sets its findings against it
once it is measured) and then UMAP's numba compilation (for the Embeddings page).

Both used to start with the first page and compete with it for the CPU; now the Overview draws
first, calls :func:`after_first_draw` at its end, and the work begins ``CLSVIZ_WARM_DELAY_S``
seconds later (default 2: the browser is still drawing the plots just sent).
"""

from __future__ import annotations

import os
import threading
import time

import streamlit as st

from clsviz import Encoder
from clsviz.baseline import Baseline, measure_baseline

from .cache import cached, shared_cache
from .similarity import baseline_sample
from .text import plain

__all__ = [
    "DELAY_ENV",
    "FAILED",
    "MEASURING",
    "READY",
    "after_first_draw",
    "baseline_note",
    "baseline_state",
    "ready_baseline",
    "wait",
]

DELAY_ENV = "CLSVIZ_WARM_DELAY_S"
"""Environment variable: seconds between the first page's end and the background work (default 2)."""
READY, MEASURING, FAILED = "ready", "measuring", "failed"

_threads: dict[str, threading.Thread] = {}
_errors: dict[str, str] = {}
_lock = threading.Lock()


def _delay() -> float:
    try:
        return max(0.0, float(os.environ.get(DELAY_ENV, "").strip() or 2.0))
    except ValueError:
        return 2.0


def ready_baseline(encoder: Encoder) -> Baseline | None:
    """The model's baseline when it has been measured already; None otherwise (never waits)."""
    return shared_cache().get(("baseline", encoder.name, baseline_sample()))


def baseline_state(encoder: Encoder) -> str:
    """:data:`READY`, :data:`MEASURING` (queued or computing in the background), or
    :data:`FAILED` (the reason is in :func:`baseline_note`)."""
    if ready_baseline(encoder) is not None:
        return READY
    with _lock:
        return FAILED if encoder.name in _errors else MEASURING


def _work(encoder: Encoder) -> None:
    time.sleep(_delay())
    sample = baseline_sample()
    try:
        cached("baseline", (encoder.name, sample), lambda: measure_baseline(encoder, sample=sample))
        if ready_baseline(encoder) is None:
            raise MemoryError("it does not fit in the app's cache budget (CLSVIZ_CACHE_MB)")
    except Exception as exc:  # the Overview works without a baseline; it says why
        with _lock:
            _errors[encoder.name] = f"{type(exc).__name__}: {exc}"
    from .embeddings import start_umap_warmup  # here: importing it pulls in scikit-learn and UMAP

    start_umap_warmup()


def _alive(encoder: Encoder) -> bool:
    with _lock:
        thread = _threads.get(encoder.name)
    return thread is not None and thread.is_alive()


def after_first_draw(encoder: Encoder) -> bool:
    """Start the background work for ``encoder`` (it waits ``CLSVIZ_WARM_DELAY_S`` before
    computing) unless it is running, done or failed for it; True when started now."""
    with _lock:
        running = _threads.get(encoder.name)
        if (running is not None and running.is_alive()) or encoder.name in _errors:
            return False
        if shared_cache().get(("baseline", encoder.name, baseline_sample())) is not None:
            return False
        thread = threading.Thread(target=_work, args=(encoder,), name=f"clsviz-warm-{encoder.name}", daemon=True)
        _threads[encoder.name] = thread
    thread.start()
    return True


def wait(encoder: Encoder, timeout: float | None = None) -> bool:
    """Block until the background work for ``encoder`` has finished (tests, scripts); True when it has."""
    with _lock:
        thread = _threads.get(encoder.name)
    if thread is not None:
        thread.join(timeout)
    return thread is None or not thread.is_alive()


def baseline_note(encoder: Encoder) -> None:
    """Under findings drawn without the baseline: what is happening, redrawn every second until
    the baseline is there (then the whole page reruns with it), or why it could not be measured."""
    if baseline_state(encoder) == FAILED:
        st.caption(plain(f"The unrelated-sentence baseline could not be measured ({_errors.get(encoder.name)}); "
                         "the findings use raw numbers only."))
        return

    @st.fragment(run_every=1.0)
    def poll() -> None:
        if baseline_state(encoder) != MEASURING or not _alive(encoder):
            # measured or failed: redraw the findings with it (a full run restarts the work when
            # the baseline was measured and later evicted from the cache)
            st.rerun()
            return
        st.caption(
            "Measuring how similar unrelated sentences look to this model (once per model, in the background): "
            "the findings above are set against that baseline as soon as it is ready."
        )

    poll()
