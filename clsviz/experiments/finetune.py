"""Fine-tuning: does the pooling still matter once the encoder is trained for the task, and
how does [CLS] change while it learns?

A linear probe reads a frozen model. The question people ask next is whether [CLS] would do
as well as a mean (or any token) if the encoder were *trained* to put the answer there.
:func:`run_finetune` trains a copy of the encoder with a head on one pooling at a time (same
seed, same split, same data order, same budget for each) and reports held-out accuracy before
and after, with the training curves. At a fixed number of checkpoints (step 0 included) it
records what the model state shows on the fixed held-out set (see
:func:`clsviz.experiments.dynamics.state_metrics`) and the gradient flow of one sentence.

Besides the poolings of :data:`FINETUNE_POOLINGS` it trains ``cls_head`` ([CLS] through the
family's own classification head; its trained copy can be saved as a checkpoint folder) and the
moved summary tokens of :data:`~clsviz.experiments.learners.MOVED_POOLINGS` (position 0: a
convention or a requirement?).

The shared encoder is never touched: each run trains a private copy of its weights with
gradients enabled on the copy only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from ..corpus import labelled_rows, stratified_rows
from ..encoder import Encoder
from ..keywords import accepts_max_length
from ..progress import check_cancel
from ..tracing import check_summary_token
from ..vectors import tokenize_texts
from .finetune_result import (
    CEILING,
    DEFAULT_LABEL,
    FinetuneResult,
    accuracy_interval,
    loss_trend,
    result_frame,
)
from .learners import HEAD_POOLING, MOVED_POOLINGS, FinetuneError, Learner
from .training import Data, Monitor, Plan, checkpoint_steps, frozen_probe, train_one

__all__ = [
    "CEILING",
    "DEFAULT_LABEL",
    "FINETUNE_POOLINGS",
    "TRAINABLE_POOLINGS",
    "WATCH_SETTINGS",
    "FinetuneError",
    "FinetuneResult",
    "accuracy_interval",
    "loss_trend",
    "run_finetune",
]

FINETUNE_POOLINGS = ("cls", "mean", "first", "last")
"""Poolings the head can read: [CLS], the mean of all tokens, the first and the last content token."""

TRAINABLE_POOLINGS = (*FINETUNE_POOLINGS, HEAD_POOLING, *MOVED_POOLINGS)
"""Everything :func:`run_finetune` trains: the poolings, [CLS] through the family's own head
(``cls_head``), and the moved summary token (``cls_last``, ``fresh_middle``)."""

WATCH_SETTINGS = {"poolings": ("cls", "mean", "cls_last", "fresh_middle"), "max_texts": 400, "epochs": 2, "checkpoints": 10}
"""The settings the app's "How does [CLS] learn?" page starts from: 2 poolings and 2 moved summary
tokens on 400 texts, 2 epochs, 10 checkpoints (``benchmarks/dynamics.py`` measures that they finish
within 5 minutes on a 2-core CPU with the demo corpus)."""


def _encode(labels: Sequence, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    keys = np.asarray([str(v) for v in labels], dtype=object)
    classes, codes, counts = np.unique(keys, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise FinetuneError(
            f"The label column '{name}' has a single class ({classes[0]!r}): there is nothing to learn. "
            "Pick a column with at least two different values."
        )
    small = [f"{c!r} ({k})" for c, k in zip(classes, counts) if k < 2]
    if small:
        raise FinetuneError(
            f"In '{name}', {len(small)} class(es) have a single example: {', '.join(small[:8])}. A held-out "
            "split needs at least two of each: remove these rows or add examples."
        )
    return codes.astype(np.int64), tuple(str(c) for c in classes)


def _split(y: np.ndarray, heldout: float, seed: int, max_texts: int | None):
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    messages = []
    if max_texts is not None and len(y) > max_texts:
        index = stratified_rows(y, int(max_texts), seed)
        messages.append(f"{len(y)} texts; a stratified sample of {len(index)} is used to keep the run short.")
    n_classes = len(np.unique(y[index]))
    n_test = max(n_classes, int(round(heldout * len(index))))
    if len(index) - n_test < n_classes:
        raise FinetuneError(
            f"Only {len(index)} texts for {n_classes} classes: too few to hold out {n_test} and still train "
            "on every class. Add texts or use a label with fewer classes."
        )
    train, test = train_test_split(index, test_size=n_test, stratify=y[index], random_state=seed)
    return np.sort(train), np.sort(test), messages


def _check_settings(poolings, head_init: str, epochs: int, batch_size: int, heldout: float, checkpoints: int) -> None:
    bad = [p for p in poolings if p not in TRAINABLE_POOLINGS]
    if bad or not poolings:
        raise FinetuneError(f"Unknown pooling(s) {bad}: choose from {', '.join(TRAINABLE_POOLINGS)}.")
    if len(set(poolings)) != len(poolings):
        raise FinetuneError(f"A pooling is listed twice in {list(poolings)}: list each once.")
    if not 0 <= int(checkpoints) <= 100:
        raise FinetuneError(f"checkpoints must be between 0 (none) and 100, got {checkpoints}.")
    if head_init not in ("probe", "random"):
        raise FinetuneError(f"head_init must be 'probe' or 'random', got {head_init!r}.")
    if epochs < 1 or batch_size < 1:
        raise FinetuneError("epochs and batch_size must be at least 1.")
    if not 0.0 < heldout < 1.0:
        raise FinetuneError(f"heldout must be a share between 0 and 1, got {heldout}.")


def _labelled(texts, labels, label_name: str) -> tuple[list[str], list, list[str]]:
    """The texts that have a label (with a note when some were left out), checked for use."""
    texts, labels = list(texts), list(labels)
    keep, messages = labelled_rows(texts, labels, label_name, FinetuneError)
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    if len(texts) < 10:
        raise FinetuneError(f"Only {len(texts)} labelled texts: fine-tuning needs at least 10.")
    if len(set(texts)) == 1:
        raise FinetuneError("All texts are the same sentence: there is nothing to learn. Use different sentences.")
    return texts, labels, messages



def _seeded(encoder: Encoder, seed: int):
    """A forked torch RNG seeded with ``seed``: the process's own random state is left as it was."""
    import contextlib

    import torch

    dev = encoder.device
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=devices))
    torch.manual_seed(seed)
    return stack


def _monitor(encoder: Encoder, data: Data, flow_text, checkpoints: int, seed: int, max_tokens: int):
    """(Monitor or None, probe folds, the flow sentence, notes) for a run with ``checkpoints``."""
    if checkpoints == 0:
        return None, 0, "", []
    notes = []
    counts = np.bincount(data.y[data.test])
    folds = int(min(5, counts[counts > 0].min()))
    if folds < 2:
        notes.append("A class has a single held-out text, so the per-layer probe accuracies were left out.")
    if flow_text is None:
        flow_text = data.tokenized.texts[int(data.test[0])]
    try:
        flow_tokenized = tokenize_texts(encoder, [str(flow_text)], max_tokens)
    except ValueError as exc:
        raise FinetuneError(f"The sentence for the gradient flow cannot be used: {exc}") from None
    return Monitor(encoder, data, flow_tokenized, folds, seed), folds, flow_tokenized.texts[0], notes


def _train_all(encoder: Encoder, poolings, classes, data: Data, plan: Plan, monitor, label_name: str, report, cancel):
    """Train one learner per pooling in turn: (table rows, curve rows, the trained cls_head copy or None)."""
    rows_out, curves, done, trained = [], [], 0, None
    for run, pooling in enumerate(poolings, start=1):
        check_cancel(cancel, "Fine-tuning")
        which = f"run {run} of {len(poolings)}"  # the progress says which run of how many
        report(done, f"{which}, {pooling}: copying the model and scoring the frozen baseline…")
        started = time.perf_counter()
        with _seeded(encoder, plan.seed):
            learner = Learner(encoder, pooling, classes, data.tokenized)
            frozen = frozen_probe(learner, data, len(classes), plan.seed)
            accuracy, steps, pooling_curves = train_one(
                learner, data, plan, monitor, frozen,
                lambda step, msg, base=done, which=which: report(base + step, f"{which}, {msg}"), cancel)
        trained = learner.trained_classifier(label_name, steps) or trained
        del learner  # one private copy of the weights at a time
        done += steps
        curves += pooling_curves
        rows_out.append({"pooling": pooling, "frozen_accuracy": frozen[0], "heldout_accuracy": accuracy,
                         "gain": accuracy - frozen[0], "train_n": len(data.train), "heldout_n": len(data.test),
                         "epochs": plan.epochs, "steps": steps, "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
    return rows_out, curves, trained


@accepts_max_length
def run_finetune(
    encoder: Encoder,
    texts: Sequence[str],
    labels: Sequence,
    *,
    poolings: Sequence[str] = FINETUNE_POOLINGS,
    epochs: int = 2,
    lr: float = 5e-5,
    head_lr: float = 1e-3,
    batch_size: int = 16,
    max_tokens: int = 64,
    heldout: float = 0.2,
    max_texts: int | None = None,
    seed: int = 0,
    evals_per_epoch: int = 2,
    head_init: str = "random",
    checkpoints: int = 10,
    flow_text: str | None = None,
    label_name: str = "label",
    progress: Callable[..., None] | None = None,
    cancel=None,
) -> FinetuneResult:
    """Fine-tune a copy of the encoder with a head, once per pooling.

    texts : N strings; labels : N label values (missing ones are left out)
    poolings : names from :data:`TRAINABLE_POOLINGS`
    Each pooling starts from a fresh copy of ``encoder.model`` with the same seed, the same
    stratified held-out split (``heldout`` share) and the same batch order; AdamW with ``lr``
    for the encoder and ``head_lr`` for the head, gradients clipped at 1.0, for ``epochs``.
    ``head_init="random"`` is the usual fresh head; ``"probe"`` starts a linear head from the
    logistic-regression probe fitted on the frozen encoder (linear probing, then fine-tuning;
    Kumar et al. 2022), so step 0 scores the frozen accuracy. Where that probe already
    separates the training texts (common with a few hundred texts and hundreds of dims) the
    loss starts near zero and training changes little.
    ``checkpoints``: the run is cut into this many equal parts and the state at each boundary
    (step 0 and the last step included) is measured on the held-out set, with the gradient flow
    of ``flow_text`` (default: the first held-out text); 0 records none.
    ``max_texts`` draws a stratified sample first. Runs on ``encoder.device`` (CUDA when the
    encoder is there). ``progress(done_steps, total_steps, message)``; setting ``cancel``
    (``threading.Event``) raises :class:`~clsviz.progress.Cancelled` between steps.
    """
    import torch

    _check_settings(poolings, head_init, epochs, batch_size, heldout, checkpoints)
    check_summary_token(encoder.info, "Fine-tuning while watching [CLS]")
    texts, labels, messages = _labelled(texts, labels, label_name)
    y, classes = _encode(labels, label_name)
    train, test, notes = _split(y, heldout, seed, max_texts)
    messages += notes
    data = Data(y, torch.as_tensor(y, device=encoder.device), train, test, tokenize_texts(encoder, texts, max_tokens))
    steps_per_epoch = -(-len(train) // batch_size)
    last = steps_per_epoch * epochs
    plan = Plan(epochs, batch_size, lr, head_lr, seed, max(1, steps_per_epoch // max(1, evals_per_epoch)),
                steps_per_epoch, last * len(poolings), head_init, checkpoint_steps(last, checkpoints))  # fmt: skip
    monitor, folds, flow_text, more = _monitor(encoder, data, flow_text, checkpoints, seed, max_tokens)
    messages += more
    if head_init == "probe" and HEAD_POOLING in poolings:
        messages.append(f"'{HEAD_POOLING}' starts from its family's freshly drawn head; the probe start is for linear heads.")
    majority = float(np.mean(y[test] == int(np.bincount(y[train], minlength=len(classes)).argmax())))

    def report(done, message):
        if progress is not None:
            progress(done, plan.total_steps, message)

    rows_out, curves, trained = _train_all(encoder, poolings, classes, data, plan, monitor, label_name, report, cancel)
    return FinetuneResult(
        table=pd.DataFrame(rows_out),
        curves=pd.DataFrame(curves, columns=["pooling", "step", "epoch", "metric", "value"]),
        label=label_name,
        classes=classes,
        chance=1.0 / len(classes),
        majority=majority,
        device=str(encoder.device),
        model_name=encoder.name,
        messages=tuple(messages),
        checkpoints=result_frame("checkpoints", monitor.checkpoints if monitor else ()),
        layer_metrics=result_frame("layer_metrics", monitor.layers if monitor else ()),
        block_metrics=result_frame("block_metrics", monitor.blocks if monitor else ()),
        gradient_flow=result_frame("gradient_flow", monitor.flows if monitor else ()),
        flow_text=flow_text,
        probe_folds=folds,
        heldout_texts=tuple(data.tokenized.texts[int(i)] for i in test),
        classifier=None if trained is None else replace(
            trained, training_texts=tuple(data.tokenized.texts[int(i)] for i in train)),
    )
