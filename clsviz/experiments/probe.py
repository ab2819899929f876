"""Linear probes: can a linear classifier read a label from [CLS], from a mean, or from any token?

For every layer and every pooling strategy, a logistic-regression probe is trained with
stratified k-fold cross-validation; :func:`run_probe` returns a tidy table of accuracies
(mean and standard deviation over folds) and the chance and majority-class baselines.

Besides the strategies of :mod:`clsviz.pooling`, the probe can read ``"random"``: one content
token per text, picked at random with a seed derived from the text itself
(:func:`random_token_vectors`), which answers "could *any* token do?".
"""

from __future__ import annotations

import math
import os
import time
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..corpus import PooledVectors, padded_batches
from ..encoder import Encoder
from ..pooling import check_strategy
from ..tracing import _has_content

__all__ = [
    "Cancelled",
    "PROBE_STRATEGIES",
    "ProbeError",
    "ProbeResult",
    "RANDOM_TOKEN",
    "check_labels",
    "default_strategies",
    "make_probe",
    "random_content_positions",
    "random_token_vectors",
    "run_probe",
]

RANDOM_TOKEN = "random"
"""Name of the strategy that reads one randomly chosen content token per text."""

PROBE_STRATEGIES = ("cls", "mean", "mean_content", "max", "sep", "first", "last", "pooler", RANDOM_TOKEN, "token:3")
"""The default grid: the named pooling strategies, a random content token, and token 3."""

# scikit-learn's default penalty. On standardised features lbfgs needs tens of iterations for
# most cells; a cap of 100 bounds the hard ones (the first token at layer 0, say) without
# changing their accuracy by more than noise. Features stay float32, which halves the cost.
DEFAULT_C = 1.0
DEFAULT_MAX_ITER = 100


class ProbeError(ValueError):
    """The data cannot be probed as asked; the message says why and what to change."""


class Cancelled(RuntimeError):
    """A long computation was stopped because its cancel event was set."""


def default_strategies(has_pooler: bool, token_k: int = 3) -> tuple[str, ...]:
    """The default grid for a model: ``pooler`` only where the model has one, ``token:K``."""
    names = [s for s in PROBE_STRATEGIES if not s.startswith("token:") and (has_pooler or s != "pooler")]
    return (*names, f"token:{int(token_k)}")


# --- random content token --------------------------------------------------------------


def _tokenize_all(encoder: Encoder, texts: Sequence[str], max_length: int | None):
    texts = [t if isinstance(t, str) else str(t) for t in texts]
    if not texts:
        raise ProbeError("No texts: the corpus is empty.")
    bad = [i + 1 for i, t in enumerate(texts) if not _has_content(t)]
    if bad:
        raise ProbeError(f"{len(bad)} text(s) are empty (rows {', '.join(map(str, bad[:10]))}).")
    limit = encoder.info.max_length if max_length is None else min(int(max_length), encoder.info.max_length)
    with encoder.lock:
        enc = encoder.tokenizer(
            texts,
            truncation=True,
            max_length=limit,
            split_special_tokens=True,
            return_special_tokens_mask=True,
            verbose=False,
        )
    return texts, enc["input_ids"], enc["special_tokens_mask"]


def _pick_positions(texts: Sequence[str], special_masks, seed: int) -> np.ndarray:
    positions = np.empty(len(texts), dtype=np.int64)
    for i, (text, special) in enumerate(zip(texts, special_masks)):
        content = np.flatnonzero(~np.asarray(special, dtype=bool))
        if len(content) == 0:
            raise ProbeError(f"Text {i + 1} has no content tokens after tokenization: {text[:60]!r}.")
        # Seeded by the text, not its row: the same sentence gets the same token in any corpus.
        rng = np.random.default_rng([int(seed), zlib.crc32(text.encode("utf-8"))])
        positions[i] = content[rng.integers(len(content))]
    return positions


def random_content_positions(
    encoder: Encoder, texts: Sequence[str], seed: int = 0, max_length: int | None = None
) -> np.ndarray:
    """int64 [N]: for each text, the position (special tokens counted) of one content token
    chosen at random with a generator seeded by ``(seed, crc32(text))``."""
    texts, _, special = _tokenize_all(encoder, texts, max_length)
    return _pick_positions(texts, special, seed)


def random_token_vectors(
    encoder: Encoder,
    texts: Sequence[str],
    seed: int = 0,
    batch_size: int = 32,
    max_length: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """float32 [N, L + 1, D]: each text's randomly chosen content token at every layer.

    The token is the one :func:`random_content_positions` picks. Texts run in length-sorted
    batches with the model's fast attention kernel; ``progress(done, total)`` after each batch.
    """
    import torch

    texts, all_ids, all_special = _tokenize_all(encoder, texts, max_length)
    positions = _pick_positions(texts, all_special, seed)
    info = encoder.info
    out = np.empty((len(texts), info.num_layers + 1, info.hidden_size), dtype=np.float32)
    device = encoder.device
    done = 0
    with torch.inference_mode():
        for rows, ids, mask, _ in padded_batches(encoder, all_ids, all_special, batch_size):
            result = encoder.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
            hidden = torch.stack(result.hidden_states, dim=1)  # [B, L+1, T, D]
            pos = torch.as_tensor(positions[rows], device=device)
            out[rows] = hidden[torch.arange(len(rows), device=device), :, pos, :].float().cpu().numpy()
            done += len(rows)
            if progress is not None:
                progress(done, len(texts))
    return out


# --- labels ----------------------------------------------------------------------------


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


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

    * ``table``: one row per (layer, strategy) with columns ``layer`` (0 = embeddings),
      ``strategy``, ``accuracy_mean``, ``accuracy_sd`` (over folds), ``n`` (texts), ``folds``
    * ``chance``: 1 / number of classes; ``majority``: share of the most frequent class
    * ``classes`` and ``class_counts``: the label values and how many texts carry each
    * ``messages``: notes about the data (rows left out, ...)
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

    def best(self, strategy: str | None = None) -> pd.Series:
        """The row with the highest mean accuracy (of one strategy, or over all)."""
        rows = self.table if strategy is None else self.table[self.table["strategy"] == strategy]
        if rows.empty:
            raise KeyError(f"No results for strategy {strategy!r}.")
        return rows.loc[rows["accuracy_mean"].idxmax()]

    def summary(self) -> str:
        """One plain sentence of what the numbers say: the best reading, and [CLS] vs mean."""
        best = self.best()
        model = f" for {self.model_name}" if self.model_name else ""
        text = (
            f"Predicting '{self.label}'{model}, the best reading is {best['strategy']} at layer "
            f"{int(best['layer'])} ({best['accuracy_mean']:.1%} ± {best['accuracy_sd']:.1%}; chance "
            f"{self.chance:.1%}, majority class {self.majority:.1%})."
        )
        strategies = set(self.table["strategy"])
        if {"cls", "mean"} <= strategies:
            cls, mean = self.best("cls"), self.best("mean")
            gap = (mean["accuracy_mean"] - cls["accuracy_mean"]) * 100
            if abs(gap) < 1.0:
                verdict = "about the same as"
            else:
                verdict = f"{abs(gap):.1f} points {'below' if gap > 0 else 'above'}"
            text += (
                f" [CLS] at its best layer ({int(cls['layer'])}) reaches {cls['accuracy_mean']:.1%}, "
                f"{verdict} the mean of all tokens at its best layer ({int(mean['layer'])}, "
                f"{mean['accuracy_mean']:.1%})."
            )
        if RANDOM_TOKEN in strategies:
            rnd = self.best(RANDOM_TOKEN)
            text += f" A random content token reaches {rnd['accuracy_mean']:.1%} (layer {int(rnd['layer'])})."
        return text


def _features(vectors, random_token) -> tuple[dict[str, np.ndarray], tuple[str, ...] | None]:
    if isinstance(vectors, PooledVectors):
        feats = {s: vectors.vectors[:, :, i] for i, s in enumerate(vectors.strategies)}
        texts = vectors.texts
    elif isinstance(vectors, Mapping):
        feats = {str(k): np.asarray(v) for k, v in vectors.items()}
        texts = None
    else:
        raise TypeError("vectors must be PooledVectors or a mapping strategy -> array [N, L + 1, D]")
    if random_token is not None:
        feats[RANDOM_TOKEN] = np.asarray(random_token)
    for name, arr in feats.items():
        if arr.ndim != 3:
            raise ValueError(f"{name}: expected an array [N, L + 1, D], got shape {list(arr.shape)}")
    return feats, texts


def _one_blas_thread():
    """Context: numpy's and scipy's BLAS limited to one thread for many small fits.

    threadpoolctl only limits libraries already loaded, and scipy's lbfgs brings its own
    OpenBLAS, so it is imported first. Threaded BLAS on these small matrices spends far more
    time spinning than computing (measured: 50x slower on a busy 2-core machine).
    """
    import sklearn.linear_model  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _cv_accuracy(X: np.ndarray, y: np.ndarray, splits, C: float, max_iter: int, seed: int) -> np.ndarray:
    scores = np.empty(len(splits))
    for i, (train, test) in enumerate(splits):
        model = make_probe(C, max_iter, seed).fit(X[train], y[train])
        scores[i] = float(np.mean(model.predict(X[test]) == y[test]))
    return scores


def run_probe(
    vectors: PooledVectors | Mapping[str, np.ndarray],
    labels: str | Sequence,
    *,
    strategies: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    random_token: np.ndarray | None = None,
    folds: int = 5,
    C: float = DEFAULT_C,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
    n_jobs: int | None = None,
    label_name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> ProbeResult:
    """Cross-validated linear-probe accuracy for every layer x strategy.

    vectors : PooledVectors, or a mapping strategy -> float array [N, L + 1, D]
    labels : N label values, or the name of a label column of ``vectors.labels``
    random_token : optional float array [N, L + 1, D] from :func:`random_token_vectors`,
        probed as strategy ``"random"``
    strategies / layers : subsets to probe (default: all available)

    Each cell is ``make_probe(C, max_iter)`` scored with the same ``StratifiedKFold(folds,
    shuffle=True, random_state=seed)`` splits. Rows whose label is missing are left out (and
    said so in ``messages``). Cells run on ``n_jobs`` threads (default: the CPU count, at most
    4), each with one BLAS thread. ``progress(done, total)`` after each cell; setting the
    ``cancel`` event (``threading.Event``) raises :class:`Cancelled`.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    start = time.perf_counter()
    feats, texts = _features(vectors, random_token)
    if isinstance(labels, str):
        if not isinstance(vectors, PooledVectors) or labels not in vectors.labels:
            available = ", ".join(vectors.labels) if isinstance(vectors, PooledVectors) else ""
            raise ProbeError(f"No label column '{labels}'. Available: {available or 'none'}.")
        label_name = label_name or labels
        labels = vectors.labels[labels]
    label_name = label_name or "label"
    labels = list(labels)
    n_total = next(iter(feats.values())).shape[0] if feats else 0
    if not feats:
        raise ProbeError("Nothing to probe: no strategies were given.")
    if len(labels) != n_total:
        raise ProbeError(f"{len(labels)} labels for {n_total} texts: give one label per text.")
    for name, arr in feats.items():
        if arr.shape[0] != n_total:
            raise ProbeError(f"{name}: {arr.shape[0]} rows, expected {n_total}.")

    keep = np.array([not _is_missing(v) for v in labels], dtype=bool)
    messages = []
    if not keep.all():
        messages.append(f"{int((~keep).sum())} of {n_total} texts have no '{label_name}' label and were left out.")
    kept_labels = [v for v, k in zip(labels, keep) if k]
    y, classes = check_labels(kept_labels, folds, label_name)
    if texts is not None:
        kept_texts = {t for t, k in zip(texts, keep) if k}
        if len(kept_texts) == 1:
            raise ProbeError(
                f"All {int(keep.sum())} texts are the same sentence, so every vector is identical and "
                "a probe can only guess. Use a corpus with different sentences."
            )
    rows = np.flatnonzero(keep)

    if strategies is None:
        strategies = list(feats)
    else:
        strategies = [s if s == RANDOM_TOKEN else check_strategy(s) for s in strategies]
        missing = [s for s in strategies if s not in feats]
        if missing:
            raise ProbeError(f"Not extracted: {', '.join(missing)}. Available: {', '.join(feats)}.")
    num_rows = next(iter(feats.values())).shape[1]
    layers = list(range(num_rows)) if layers is None else [int(layer) for layer in layers]
    bad_layers = [layer for layer in layers if not 0 <= layer < num_rows]
    if bad_layers:
        raise ProbeError(f"Layers {bad_layers} are outside 0..{num_rows - 1}.")
    if all(np.ptp(feats[s][rows][:, layers], axis=0).max() == 0 for s in strategies):
        raise ProbeError("Every text has the same vector, so a probe can only guess. Use different sentences.")

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    cells = [(layer, s) for layer in layers for s in strategies]
    results: dict[tuple[int, str], np.ndarray] = {}

    def work(cell):
        layer, s = cell
        X = np.ascontiguousarray(feats[s][rows, layer], dtype=np.float32)
        return cell, _cv_accuracy(X, y, splits, C, max_iter, seed)

    # Many small fits: one BLAS thread each, one fit per core.
    # max_iter is a budget: a probe that has not fully converged is still a fair probe.
    with (
        _one_blas_thread(),
        warnings.catch_warnings(),
        ThreadPoolExecutor(max(1, int(n_jobs or min(4, os.cpu_count() or 1)))) as pool,
    ):
        warnings.simplefilter("ignore", ConvergenceWarning)
        pending = {pool.submit(work, c) for c in cells}
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in done:
                cell, scores = fut.result()
                results[cell] = scores
            if cancel is not None and cancel.is_set():
                for fut in pending:
                    fut.cancel()
                raise Cancelled("The probe was cancelled.")
            if progress is not None and done:
                progress(len(results), len(cells))

    table = pd.DataFrame(
        [
            {
                "layer": layer,
                "strategy": s,
                "accuracy_mean": float(results[(layer, s)].mean()),
                "accuracy_sd": float(results[(layer, s)].std(ddof=1)),
                "n": len(y),
                "folds": folds,
            }
            for layer, s in cells
        ]
    )
    counts = np.bincount(y, minlength=len(classes))
    model_name = vectors.model_name if isinstance(vectors, PooledVectors) else ""
    return ProbeResult(
        table=table,
        label=label_name,
        classes=classes,
        class_counts=tuple(int(c) for c in counts),
        chance=1.0 / len(classes),
        majority=float(counts.max() / counts.sum()),
        n=len(y),
        folds=folds,
        model_name=model_name,
        seconds=time.perf_counter() - start,
        messages=tuple(messages),
    )
