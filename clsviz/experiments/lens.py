"""When is the sentence vector decided? A tuned lens for encoders' sentence vectors.

The tuned lens (Belrose et al. 2023) reads a decoder's hidden state at every layer through an
affine map fitted to predict the last layer. Here the hidden state is a pooled sentence vector
(the [CLS] token's, the mean of the tokens, ...) and the target is

* ``target="final"``: the same pooling at the last layer - score: the held-out cosine between
  the mapped vector and the last layer's;
* ``target="logits"``: a fine-tuned classifier's prediction - the mapped vector is fitted to the
  last layer's [CLS] vector (what the head reads), the head is applied to it, and the score is
  the share of held-out texts where it agrees with the model's own prediction (with the mean
  KL divergence from the model's probabilities beside it).

Two readings per layer: ``identity`` (the vector as it is) and ``tuned`` (``h + W h + b``, the
residual ``W, b`` fitted by ridge regression on the training texts with the penalty chosen by
scikit-learn's efficient leave-one-out cross-validation, :class:`sklearn.linear_model.RidgeCV`).
Penalising the residual shrinks the map towards the identity, so the tuned lens is the
identity at the last layer (score 1) and falls back to it where the data say nothing.
Intervals: 95% percentile bootstrap over the held-out texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV

from ..encoder import Encoder
from ..heads import NoClassifierError, probabilities
from ..metrics import bootstrap_interval, cosine
from ..progress import ProgressFn, check_cancel, single_blas_thread
from ..tables import Table, as_table
from ..vectors import PooledVectors, check_poolings, extract

__all__ = ["ALPHAS", "DECIDED_AT", "LensResult", "LensTarget", "compare_lens", "fit_residual_map", "penalty_scale",
           "tuned_lens"]

LensTarget = Literal["final", "logits"]
ALPHAS = tuple(float(a) for a in np.logspace(-6, 3, 19))
"""Ridge penalties the cross-validation chooses from, relative to the data: each is multiplied by
the mean eigenvalue of the centred inputs' Gram matrix (sum of squares / D), so one grid fits
vectors of any scale (a [CLS] that barely varies needs a far smaller absolute penalty)."""
DECIDED_AT = 0.9
"""A layer counts as "decided" once its tuned-lens score's interval lies at or above this."""


def _check_target(target: str) -> str:
    if target not in get_args(LensTarget):
        raise ValueError(f"Unknown lens target {target!r}. Valid: {', '.join(get_args(LensTarget))}.")
    return target


@dataclass(frozen=True, eq=False)
class LensResult:
    """The lens read at every layer.

    ``table`` (tidy; a :class:`clsviz.tables.Table`, so ``.table`` and ``.table()`` both read
    it): pooling, target, layer, method ("identity" | "tuned"), score, low, high,
    alpha (the chosen ridge penalty; NaN for identity), alpha_relative (the same, as the grid
    :data:`ALPHAS` writes it: relative to the inputs' scale), kl (``target="logits"`` only; NaN
    otherwise), floor (the score of a guess that ignores the vector: the training texts' mean
    target vector, or their most frequent predicted label), n_train, n_test. ``train_texts`` / ``test_texts`` say which texts fitted and
    which scored.
    """

    table: Table
    target: str
    model_name: str
    train_texts: tuple[str, ...]
    test_texts: tuple[str, ...]
    decided_at: float = DECIDED_AT

    def decided_layer(self, pooling: str, method: str = "tuned") -> int | None:
        """The first layer whose score's lower bound reaches :attr:`decided_at` (None if none does)."""
        rows = self.table[(self.table["pooling"] == pooling) & (self.table["method"] == method)].sort_values("layer")
        hit = rows[rows["low"] >= self.decided_at]
        return None if hit.empty else int(hit["layer"].iloc[0])

    def summary(self) -> list[str]:
        """Plain sentences: per pooling, the layer where the sentence vector is decided, and how
        much the tuned lens adds over the identity at the middle layer (with intervals)."""
        what = "agrees with the model's prediction" if self.target == "logits" else "reaches cosine"
        unit = "" if self.target == "logits" else f" {self.decided_at:.1f} to the last layer"
        lines = []
        for pooling in self.table["pooling"].unique():
            rows = self.table[self.table["pooling"] == pooling]
            decided = self.decided_layer(pooling)
            last = int(rows["layer"].max())
            mid = rows[rows["layer"] == last // 2].set_index("method")
            reading = (f"from layer {decided} on" if decided is not None else "at no layer, not even the last")
            if self.target == "logits":
                head = f"{pooling}: the tuned lens {what} on {self.decided_at:.0%} or more of held-out texts {reading}"
            else:
                head = f"{pooling}: the tuned lens {what}{unit} {reading}"
            lines.append(
                f"{head}; at layer {last // 2} it scores {_fmt(mid.loc['tuned'])} against "
                f"{_fmt(mid.loc['identity'])} for the vector as it is and {float(rows['floor'].iloc[0]):.2f} for a "
                f"guess that ignores the vector (held-out texts: {int(rows['n_test'].iloc[0])})."
            )
        return lines


def _fmt(row) -> str:
    return f"{row['score']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"


def penalty_scale(X: np.ndarray) -> float:
    """The mean eigenvalue of the centred Gram matrix of ``X`` [N, D] (sum of squares / D): what
    :data:`ALPHAS` are relative to (1 for a constant ``X``)."""
    X = np.asarray(X, dtype=np.float64)
    scale = float(((X - X.mean(axis=0)) ** 2).sum() / X.shape[1])
    return scale if scale > 0 else 1.0


def fit_residual_map(X: np.ndarray, Y: np.ndarray, alphas: Sequence[float] = ALPHAS) -> RidgeCV:
    """Ridge regression of the residual ``Y - X`` on ``X`` (both [N, D]), the penalty chosen by
    efficient leave-one-out cross-validation from ``alphas`` x :func:`penalty_scale` (one penalty
    for every output). Predict the target with ``X + model.predict(X)``; ``model.alpha_`` is the
    chosen (absolute) penalty."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    scale = penalty_scale(X)
    return RidgeCV(alphas=tuple(float(a) * scale for a in alphas), fit_intercept=True).fit(X, Y - X)


def _split(n: int, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < float(held_out) < 1.0:
        raise ValueError(f"held_out must be a fraction between 0 and 1, got {held_out}.")
    n_test = max(2, int(round(n * float(held_out))))
    if n - n_test < 3:
        raise ValueError(f"{n} texts leave {n - n_test} to fit the lens on; give at least {n_test + 3} texts.")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _head_scores(encoder: Encoder, mapped: np.ndarray, reference_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(agreement [N] as 0/1, KL(model || lens) [N]) of the head applied to ``mapped`` [N, D]."""
    head = encoder.classifier
    logits = head.logits(mapped.astype(np.float32)).float().cpu().numpy()
    probs = probabilities(logits, head.problem_type)
    eps = 1e-12
    if head.problem_type == "multi_label_classification":
        agree = np.all((probs >= 0.5) == (reference_probs >= 0.5), axis=1)
        p, q = np.clip(reference_probs, eps, 1 - eps), np.clip(probs, eps, 1 - eps)
        kl = (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))).sum(axis=1)
    else:
        agree = probs.argmax(axis=1) == reference_probs.argmax(axis=1)
        p, q = np.clip(reference_probs, eps, 1.0), np.clip(probs, eps, 1.0)
        kl = (reference_probs * np.log(p / q)).sum(axis=1)
    return agree.astype(np.float64), np.maximum(kl, 0.0)


def _require_classifier(encoder: Encoder) -> None:
    head = getattr(encoder, "classifier", None)
    if head is None:
        raise NoClassifierError(
            f"target='logits' reads a classifier's prediction, and '{encoder.name}' has no classification head. "
            "Load a fine-tuned classifier, or use target='final'."
        )
    if head.problem_type == "regression":
        raise NoClassifierError(f"'{encoder.name}' has a regression head: there is no predicted label to agree with. "
                                "Use target='final'.")


def _lens_rows(encoder: Encoder, pooled: PooledVectors, pooling: str, target: str, train: np.ndarray,
               test: np.ndarray, seed: int, n_boot: int, cancel) -> list[dict]:
    last = pooled.num_layers
    Y = pooled.get("cls" if target == "logits" else pooling, last).astype(np.float64)
    reference = None
    if target == "logits":
        head = encoder.classifier
        reference = probabilities(head.logits(Y.astype(np.float32)).float().cpu().numpy(), head.problem_type)
        labels = reference.argmax(axis=1)
        floor = float(np.mean(labels[test] == np.bincount(labels[train]).argmax()))
        reference = reference[test]
    else:
        floor = float(np.mean(cosine(Y[train].mean(axis=0), Y[test])))
    rows = []
    for layer in range(last + 1):
        check_cancel(cancel, "The tuned lens")
        X = pooled.get(pooling, layer).astype(np.float64)
        model = fit_residual_map(X[train], Y[train])
        relative = float(model.alpha_) / penalty_scale(X[train])
        for method, mapped, alpha, rel in (("identity", X[test], np.nan, np.nan),
                                           ("tuned", X[test] + model.predict(X[test]), float(model.alpha_), relative)):
            kl = np.full(len(test), np.nan)
            if target == "logits":
                per_text, kl = _head_scores(encoder, mapped, reference)
            else:
                per_text = cosine(mapped, Y[test])
            score, low, high = bootstrap_interval(np.mean, per_text, n_boot=n_boot, seed=seed)
            rows.append({"pooling": pooling, "target": target, "layer": layer, "method": method,
                         "score": score, "low": low, "high": high, "alpha": alpha, "alpha_relative": rel,
                         "kl": float(np.mean(kl)),
                         "floor": floor, "n_train": len(train), "n_test": len(test)})
    return rows


def compare_lens(enc: Encoder, texts: Sequence[str], poolings: Sequence[str] = ("cls", "mean"),
                 target: LensTarget = "final", seed: int = 0, held_out: float = 0.2, *, n_boot: int = 1000,
                 vectors: PooledVectors | None = None, progress: ProgressFn | None = None,
                 cancel=None) -> LensResult:
    """:func:`tuned_lens` for several poolings on one split (texts embedded once); the table
    holds every pooling's rows. ``vectors`` (of ``texts``, every pooling asked for and "cls"
    for ``target="logits"``) skips the embedding."""
    target = _check_target(target)
    poolings = check_poolings(enc, poolings)
    if target == "logits":
        _require_classifier(enc)
    texts = [str(t) for t in texts]
    if len(set(texts)) < 2:
        raise ValueError("The lens needs varied texts: give at least two different sentences (10 or more is better).")
    train, test = _split(len(texts), held_out, seed)
    needed = tuple(dict.fromkeys((*poolings, *(("cls",) if target == "logits" else ()))))
    if vectors is None:
        vectors = extract(enc, texts, poolings=needed, cancel=cancel)
    elif tuple(vectors.texts) != tuple(texts) or not set(needed) <= set(vectors.poolings):
        raise ValueError(f"The vectors given do not hold these texts with the poolings {', '.join(needed)}.")
    rows = []
    with single_blas_thread():
        for i, pooling in enumerate(poolings):
            rows += _lens_rows(enc, vectors, pooling, target, train, test, seed, n_boot, cancel)
            if progress is not None:
                progress(i + 1, len(poolings), f"Tuned lens: {pooling} done")
    return LensResult(as_table(pd.DataFrame(rows)), target, enc.name, tuple(texts[i] for i in train),
                      tuple(texts[i] for i in test))


def tuned_lens(enc: Encoder, texts: Sequence[str], pooling: str = "cls", target: LensTarget = "final", seed: int = 0,
               held_out: float = 0.2, *, n_boot: int = 1000, progress: ProgressFn | None = None,
               cancel=None) -> LensResult:
    """The identity and tuned lens of one pooling at every layer, scored on held-out texts.

    ``held_out`` of the texts (at least 2) score; the rest fit one ridge map per layer.
    Returns a :class:`LensResult` whose ``.table`` has columns layer, method, score, low,
    high (and pooling, target, alpha, kl, n_train, n_test).
    """
    return compare_lens(enc, texts, (pooling,), target, seed, held_out, n_boot=n_boot, progress=progress,
                        cancel=cancel)
