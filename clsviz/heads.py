"""A fine-tuned classifier's own head, read through every layer of its [CLS] vector.

A ``*ForSequenceClassification`` model turns the last layer's [CLS]-like vector into logits
with a small head (BERT/ALBERT: pooler dense + tanh, then a linear classifier; RoBERTa,
ELECTRA, MPNet: dense + activation + out_proj; DistilBERT: pre_classifier + ReLU +
classifier; DeBERTa-v2: context pooler + classifier). :class:`ClassifierHead` replays exactly
that computation from any [N, D] batch of vectors, over the weights the encoder loaded, so the
same head can read the [CLS] vector of every hidden-state index ("logit lens"):

* :func:`classifier_lens` – float32 [L+1, num_labels]: the head on [CLS] after each layer;
  the last row is the model's own logits
* :func:`mean_lens` – float32 [L+1, num_labels]: the head on the mean of all tokens, a contrast
  the head was never trained on (see :data:`MEAN_LENS_CAPTION`)
* :func:`predict` – the model's prediction (logits and probabilities) for one Trace
* :func:`lens_table` – both lenses as one tidy table for downloads
* :func:`settled_layer` – the first layer from which the lens agrees with the final answer,
  and :func:`describe_settled`, that answer in one plain sentence
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .encoder import Encoder
from .model_heads import (
    HEAD_KINDS,
    SUPPORTED_HEADS,
    ClassifierHead,
    NoClassifierError,
    build_classifier_head,
    classifier_architecture,
)
from .pooling import pool_hidden
from .tracing import Trace

__all__ = [
    "HEAD_KINDS",
    "LENS_READINGS",
    "MEAN_LENS_CAPTION",
    "ClassifierHead",
    "NoClassifierError",
    "Prediction",
    "SUPPORTED_HEADS",
    "build_classifier_head",
    "classifier_architecture",
    "classifier_lens",
    "EVEN_MARGIN",
    "describe_settled",
    "lens_table",
    "mean_lens",
    "predict",
    "probabilities",
    "settled_layer",
]

LENS_READINGS = ("cls", "mean")
"""The vectors the lens reads: the [CLS]-like token (what the head was trained on) or the mean
of all tokens (a contrast)."""

MEAN_LENS_CAPTION = (
    "The head was trained on the [CLS] vector only; here it reads the mean of all token vectors "
    "instead. The model never does this - it shows how much of the answer the average carries, "
    "not how the model decides."
)

# --- reading the head through the layers -------------------------------------------------------
def _require_head(enc: Encoder) -> ClassifierHead:
    head = getattr(enc, "classifier", None)
    if head is None:
        notes = " ".join(enc.info.notes)
        raise NoClassifierError(
            f"'{enc.name}' has no classification head, so there is nothing for the head to read. "
            f"Load a fine-tuned checkpoint with one: clsviz reads {SUPPORTED_HEADS}."
            + (f" {notes}" if notes else "")
        )
    return head


def _check_trace(enc: Encoder, trace: Trace) -> None:
    if trace.info != enc.info:
        raise ValueError(
            f"This trace was made with '{trace.info.name}', not with '{enc.name}'. "
            "Trace the text with the same encoder whose head you read."
        )


def _apply(enc: Encoder, vectors: np.ndarray) -> np.ndarray:
    logits = _require_head(enc).logits(vectors)
    return logits.float().cpu().numpy().astype(np.float32)


def classifier_lens(enc: Encoder, trace: Trace) -> np.ndarray:
    """float32 [L+1, num_labels]: the model's classification head applied to the [CLS] vector
    of every hidden-state index (0 = embeddings). The last row equals the model's logits.

    Raises :class:`NoClassifierError` when ``enc`` has no head.
    """
    _require_head(enc)
    _check_trace(enc, trace)
    return _apply(enc, trace.hidden_states[:, trace.cls_index, :])


def mean_lens(enc: Encoder, trace: Trace) -> np.ndarray:
    """float32 [L+1, num_labels]: the same head applied to the mean of all token vectors
    (``clsviz.pool(trace, "mean", layer)``) of every hidden-state index. The head was never
    trained on this vector: show :data:`MEAN_LENS_CAPTION` beside it."""
    _require_head(enc)
    _check_trace(enc, trace)
    hidden = trace.hidden_states[None]  # [1, L+1, T, D]
    mask = np.ones((1, trace.seq_len), dtype=bool)
    means = pool_hidden(hidden, mask, trace.special_mask[None], "mean")[0]  # [L+1, D]
    return _apply(enc, means.astype(np.float32))


def probabilities(logits: np.ndarray, problem_type: str = "single_label_classification") -> np.ndarray | None:
    """float64 [..., C] probabilities from logits [..., C], clipped to [0, 1].

    Single-label: a softmax over the last axis (rows sum to 1), computed stably in float64.
    Multi-label: an independent sigmoid per label. Regression: None (a score, not a probability).
    """
    z = np.asarray(logits, dtype=np.float64)
    if problem_type == "regression":
        return None
    if problem_type == "multi_label_classification":
        # 0.5 * (1 + tanh(z / 2)) is the logistic function without overflow for large |z|.
        return np.clip(0.5 * (1.0 + np.tanh(z / 2.0)), 0.0, 1.0)
    with np.errstate(over="ignore"):  # z - max may reach -inf for huge spreads: exp gives 0 there
        shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return np.clip(e / e.sum(axis=-1, keepdims=True), 0.0, 1.0)


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one text: ``logits`` float64 [C], ``probabilities`` float64 [C]
    (None for regression), ``label`` the highest-scoring label name."""

    labels: tuple[str, ...]
    logits: np.ndarray
    probabilities: np.ndarray | None
    label: str
    problem_type: str

    def summary(self, top: int = 3) -> str:
        """The answer in words: ``"positive 85% · neutral 10% · negative 5%"`` (the ``top``
        most probable labels), or ``"score 0.731"`` for a regression head."""
        if self.probabilities is None:
            return f"score {float(self.logits[0]):.3g}"
        order = np.argsort(-self.probabilities, kind="stable")[: max(1, int(top))]
        return " · ".join(f"{self.labels[i]} {self.probabilities[i]:.0%}" for i in order)


def predict(enc: Encoder, trace: Trace) -> Prediction:
    """The classifier's prediction for the traced text (the lens's last row)."""
    head = _require_head(enc)
    logits = classifier_lens(enc, trace)[-1].astype(np.float64)
    return Prediction(
        labels=head.labels,
        logits=logits,
        probabilities=probabilities(logits, head.problem_type),
        label=head.labels[int(np.argmax(logits))],
        problem_type=head.problem_type,
    )


def settled_layer(lens: np.ndarray) -> int:
    """The first hidden-state index from which the lens's top label stays the final one.

    lens : [L+1, C] (a :func:`classifier_lens`). Returns an index in 0..L (L: only the last layer).
    """
    lens = np.asarray(lens)
    if lens.ndim != 2 or lens.shape[0] < 1:
        raise ValueError(f"lens: expected [layers + 1, labels], got {list(lens.shape)}")
    top = lens.argmax(axis=1)
    differs = np.flatnonzero(top != top[-1])
    return 0 if differs.size == 0 else int(differs[-1] + 1)


EVEN_MARGIN = 0.10
"""Two labels whose probabilities differ by less than this are "about even": a lens read on one
text has no sampling interval, so the margin itself is quoted and small ones are called even."""


def _margin(probs: np.ndarray, labels: Sequence[str]) -> tuple[str, str, float, float]:
    """(top label, runner-up, top probability, runner-up probability) of one probability row."""
    order = np.argsort(-probs, kind="stable")
    second = order[1] if len(order) > 1 else order[0]
    return labels[order[0]], labels[second], float(probs[order[0]]), float(probs[second])


def _odds(probs: np.ndarray, labels: Sequence[str], layer: int) -> str:
    """``"about even at layer 5 ('positive' 51% vs 'negative' 49%)"`` or ``"'positive' 80% vs ..."``."""
    top, second, p, q = _margin(probs, labels)
    said = f"'{top}' {p:.0%} vs '{second}' {q:.0%}"
    return f"about even at layer {layer} ({said})" if p - q < EVEN_MARGIN else f"{said} at layer {layer}"


def describe_settled(
    lens: np.ndarray,
    labels: Sequence[str],
    problem_type: str = "single_label_classification",
    cls_token: str = "[CLS]",
) -> str:
    """One plain sentence answering "at which layer does the prediction form in [CLS]?" for a
    lens [L+1, C] (see :func:`settled_layer`); ``labels`` name the C columns. The probability
    margins at the layers it names are quoted, and a margin under :data:`EVEN_MARGIN` is called
    "about even" rather than a prediction."""
    lens = np.asarray(lens, dtype=np.float64)
    if lens.ndim != 2 or lens.shape[1] != len(labels):
        raise ValueError(f"lens: expected [layers + 1, {len(labels)}] for {len(labels)} labels, got {list(lens.shape)}")
    last = lens.shape[0] - 1
    if problem_type == "regression":
        return (
            f"This head gives a score, not a label (regression): follow the line to see from which layer "
            f"{cls_token} carries a score near the final {lens[-1, 0]:.3g}."
        )
    probs = probabilities(lens, problem_type)
    settled = settled_layer(lens)
    label = labels[int(lens[-1].argmax())]
    final = _odds(probs[-1], labels, last)
    if settled == 0:
        k = int(lens[-1].argmax())
        return (
            f"The head picks '{label}' at every layer, already from the {cls_token} embedding (layer 0), which is "
            f"the same for every text: no block flips the answer. Its probability for '{label}' goes from "
            f"{probs[0, k]:.0%} at layer 0 to {probs[-1, k]:.0%} at layer {last} ({_odds(probs[0], labels, 0)}; "
            f"{final})."
        )
    before = _odds(probs[settled - 1], labels, settled - 1)
    even_before = before.startswith("about even")
    if settled == last:
        if even_before:
            return (f"The prediction '{label}' ({final}) tips in {cls_token} only at the last layer: the head was "
                    f"{before}, so the earlier layers leave it open rather than say otherwise.")
        said = labels[int(lens[settled - 1].argmax())]
        return (
            f"The prediction '{label}' forms in {cls_token} only at the last layer ({last}): at layer {last - 1} "
            f"the head would still have said '{said}' ({before}); at the last layer {final}."
        )
    said = labels[int(lens[settled - 1].argmax())]
    earlier = f"it was {before}" if even_before else f"at layer {settled - 1} it would have said '{said}' ({before})"
    return (
        f"The prediction '{label}' forms in {cls_token} at layer {settled} of {last}: from there on the head "
        f"reads '{label}' at every layer ({final}; {earlier})."
    )


def lens_table(enc: Encoder, trace: Trace, readings: Sequence[str] = LENS_READINGS) -> pd.DataFrame:
    """Tidy table of the lens: one row per (reading, layer, label) with ``logit``,
    ``probability`` (NaN for regression) and ``top`` (the label the head picks at that layer).

    ``reading`` is "cls" (:func:`classifier_lens`) or "mean" (:func:`mean_lens`); ``layer`` is the
    hidden-state index (0 = embeddings).
    """
    head = _require_head(enc)
    lenses = {"cls": classifier_lens, "mean": mean_lens}
    unknown = [r for r in readings if r not in lenses]
    if unknown:
        raise ValueError(f"Unknown lens reading(s) {unknown}; choose from {', '.join(LENS_READINGS)}.")
    frames = []
    for reading in readings:
        logits = lenses[reading](enc, trace)  # [L+1, C]
        probs = probabilities(logits, head.problem_type)
        n_layers, n_labels = logits.shape
        top = logits.argmax(axis=1)
        frames.append(
            pd.DataFrame(
                {
                    "model": enc.name,
                    "reading": reading,
                    "layer": np.repeat(np.arange(n_layers), n_labels),
                    "label": np.tile(np.array(head.labels, dtype=object), n_layers),
                    "logit": logits.ravel().astype(np.float64),
                    "probability": np.full(logits.size, np.nan) if probs is None else probs.ravel(),
                    "top": (np.arange(n_labels)[None, :] == top[:, None]).ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
