"""The linear probe itself: its estimator, its labels check, its cross-validated scores and its result.

:mod:`clsviz.experiments.probe` (vectors in memory) and :mod:`clsviz.experiments.streaming_probe`
(shard folders) both build on these, so that a cell probed either way is the same fit, scored on
the same folds, and reported in the same :class:`ProbeResult`. Everything here is importable from
:mod:`clsviz.experiments.probe` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..narrative import probe_summary

__all__ = [
    "DEFAULT_C",
    "DEFAULT_MAX_ITER",
    "ProbeError",
    "ProbeResult",
    "capped_message",
    "check_labels",
    "cv_scores",
    "make_probe",
]

# scikit-learn's default penalty. On standardised features lbfgs needs tens of iterations for
# most cells; a cap of 100 bounds the hard ones (the first token at layer 0, say) without
# changing their accuracy by more than noise. Fits stopped by the cap are counted and said in
# ProbeResult.messages, never hidden. Features stay float32, which halves the cost.
DEFAULT_C = 1.0
DEFAULT_MAX_ITER = 100


class ProbeError(ValueError):
    """The data cannot be probed as asked; the message says why and what to change."""


# --- labels ----------------------------------------------------------------------------


def check_labels(labels: Sequence, folds: int = 5, name: str = "label") -> tuple[np.ndarray, tuple]:
    """Validate a label column for ``folds``-fold stratified cross-validation.

    Returns (int64 codes [N], class values). Raises :class:`ProbeError` for fewer than two
    folds, too few rows, a single class, or a class with fewer examples than folds.
    """
    folds = int(folds)
    if folds < 2:
        raise ProbeError(f"Cross-validation needs at least 2 folds, got {folds}.")
    values = list(labels)
    n = len(values)
    if n < 2 * folds:
        raise ProbeError(
            f"Only {n} labelled text(s): {folds}-fold cross-validation needs at least {2 * folds} "
            f"(two classes with {folds} examples each). Add texts or lower the number of folds."
        )
    keys = [str(v) for v in values]
    classes, codes, counts = np.unique(np.asarray(keys, dtype=object), return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ProbeError(
            f"The label column '{name}' has a single class ({classes[0]!r}): there is nothing to "
            "predict. Pick a column with at least two different values."
        )
    small = [(str(c), int(k)) for c, k in zip(classes, counts) if k < folds]
    if small:
        listed = ", ".join(f"{c!r} ({k})" for c, k in small[:8]) + (" ..." if len(small) > 8 else "")
        raise ProbeError(
            f"In '{name}', {len(small)} class(es) have fewer examples than the {folds} folds: {listed}. "
            f"Each fold needs one example of every class: remove or merge these classes, add examples, "
            f"or lower the folds to {max(2, min(k for _, k in small))} or fewer."
        )
    return codes.astype(np.int64), tuple(str(c) for c in classes)


# --- the probe -------------------------------------------------------------------------


def make_probe(C: float = DEFAULT_C, max_iter: int = DEFAULT_MAX_ITER, random_state: int = 0):
    """The probe estimator: standardise features, then multinomial logistic regression (lbfgs).

    A scikit-learn Pipeline, so ``cross_val_score(make_probe(), X, y, cv=...)`` reproduces one
    cell of :func:`run_probe`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=C, max_iter=max_iter, solver="lbfgs", random_state=random_state),
    )


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """Cross-validated probe accuracies.

    * ``table``: one row per (layer, pooling) with columns ``layer`` (0 = embeddings),
      ``pooling``, ``accuracy_mean``, ``accuracy_sd`` (over folds), ``n`` (texts), ``folds``
    * ``chance``: 1 / number of classes; ``majority``: share of the most frequent class
    * ``classes`` and ``class_counts``: the label values and how many texts carry each
    * ``messages``: notes about the data and the fits (rows left out, fits stopped at the
      iteration cap, ...)
    * ``fits`` / ``capped_fits``: logistic-regression fits made (cells x folds) and how many of
      them stopped at ``max_iter`` iterations before converging
    """

    table: pd.DataFrame
    label: str
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    chance: float
    majority: float
    n: int
    folds: int
    model_name: str = ""
    seconds: float = 0.0
    messages: tuple[str, ...] = field(default_factory=tuple)
    fits: int = 0
    capped_fits: int = 0

    def best(self, pooling: str | None = None) -> pd.Series:
        """The row with the highest mean accuracy (of one pooling, or over all)."""
        rows = self.table if pooling is None else self.table[self.table["pooling"] == pooling]
        if rows.empty:
            raise KeyError(f"No results for pooling {pooling!r}.")
        return rows.loc[rows["accuracy_mean"].idxmax()]

    def summary(self, baseline=None) -> str:
        """One plain paragraph of what the numbers say, read at every layer
        (:func:`clsviz.narrative.probe_summary`; a baseline adds the near-identical-vectors note)."""
        return probe_summary(self, baseline)


def cv_scores(X: np.ndarray, y: np.ndarray, splits, C: float, max_iter: int, seed: int) -> tuple[np.ndarray, int]:
    """(float [folds] test accuracies, how many of the fold fits stopped at ``max_iter``)."""
    scores = np.empty(len(splits))
    capped = 0
    for i, (train, test) in enumerate(splits):
        model = make_probe(C, max_iter, seed).fit(X[train], y[train])
        scores[i] = float(np.mean(model.predict(X[test]) == y[test]))
        # lbfgs reports the iterations it ran; reaching the cap is what sklearn's
        # ConvergenceWarning says (read here, because warnings are not thread-safe to record).
        capped += int(np.max(model[-1].n_iter_) >= max_iter)
    return scores, capped


def capped_message(capped: int, fits: int, max_iter: int) -> str | None:
    """The note a result carries when fits stopped at the iteration cap (None when none did)."""
    if not capped:
        return None
    return (
        f"{capped} of {fits} fits stopped at the {max_iter}-iteration cap before converging; their accuracies "
        "may be slightly low. Raise max_iter to let them finish."
    )
