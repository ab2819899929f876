"""Long computations: the progress and cancel conventions every corpus-level function follows.

A long function takes ``progress`` - called as ``progress(done, total)`` or ``progress(done,
total, message)`` - and ``cancel``, a ``threading.Event``; it calls :func:`check_cancel`
between steps, which raises :class:`Cancelled` once the event is set. The app's job queue
runs such functions in the background and shows their progress; a notebook passes neither.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["Cancelled", "ProgressFn", "Steps", "check_cancel", "single_blas_thread"]

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


class Steps:
    """The progress of a computation made of several steps, as one: step ``i``'s own
    ``(done, total)`` is reported to ``progress`` as its share of the whole, with the message
    "step 2 of 3 (control task): 40 of 98". ``weights`` (default: equal) say how much of the
    whole each step is, so the share done - and a time left estimated from it - follows the
    work. ``progress`` may be None.

    >>> steps = Steps(progress, ["probe", "control task", "MDL"])
    >>> run_probe(..., progress=steps.step(0)); run_selectivity(..., progress=steps.step(1))
    """

    def __init__(self, progress: ProgressFn | None, names: Sequence[str], weights: Sequence[float] | None = None):
        if not names:
            raise ValueError("Steps needs at least one step name.")
        weights = [1.0] * len(names) if weights is None else [float(w) for w in weights]
        if len(weights) != len(names) or min(weights) <= 0:
            raise ValueError(f"Steps needs one positive weight per step ({len(names)}), got {weights}.")
        self.progress = progress
        self.names = tuple(names)
        whole = sum(weights)
        self._starts = [sum(weights[:i]) / whole for i in range(len(weights))]
        self._sizes = [w / whole for w in weights]

    def step(self, index: int) -> ProgressFn:
        """The progress callback of step ``index`` (0-based); reports the step's start at once."""
        count, name = len(self.names), self.names[index]
        start, size = self._starts[index], self._sizes[index]

        def report(done, total=None, message=None) -> None:
            if self.progress is None:
                return
            share = min(1.0, max(0.0, float(done) / float(total))) if total else 0.0
            detail = message or (f"{done:,} of {total:,}" if total else "")
            text = f"step {index + 1} of {count} ({name})" + (f": {detail}" if detail else "")
            self.progress(round((start + share * size) * 1000), 1000, text)

        report(0)
        return report
