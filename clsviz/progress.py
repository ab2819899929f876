"""Long computations: the progress and cancel conventions every corpus-level function follows.

A long function takes ``progress`` - called as ``progress(done, total)`` or ``progress(done,
total, message)`` - and ``cancel``, a ``threading.Event``; it calls :func:`check_cancel`
between steps, which raises :class:`Cancelled` once the event is set. The app's job queue
runs such functions in the background and shows their progress; a notebook passes neither.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Cancelled", "ProgressFn", "check_cancel", "single_blas_thread"]

ProgressFn = Callable[..., None]
"""``progress(done, total)`` or ``progress(done, total, message)``."""


class Cancelled(RuntimeError):
    """A long computation was stopped because its cancel event was set."""


def check_cancel(cancel, what: str = "The computation") -> None:
    """Raise :class:`Cancelled` when ``cancel`` (a ``threading.Event`` or None) is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"{what} was cancelled.")


def single_blas_thread():
    """Context manager: numpy's and scipy's BLAS limited to one thread for many small fits.

    threadpoolctl only limits libraries already loaded, and scipy's lbfgs brings its own
    OpenBLAS, so it is imported first. Threaded BLAS on small matrices spends far more time
    spinning than computing (measured: 50x slower on a busy 2-core machine).
    """
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
