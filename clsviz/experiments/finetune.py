"""Fine-tuning: does the pooling still matter once the encoder is trained for the task?

A linear probe reads a frozen model. The question people ask next is whether [CLS] would do
as well as a mean (or any token) if the encoder were *trained* to put the answer there.
:func:`run_finetune` trains a copy of the encoder with a linear head on one pooling at a
time (same seed, same split, same data order, same budget for each) and reports held-out
accuracy before and after, with the training curves.

The shared encoder is never touched: each run deep-copies ``encoder.model`` and enables
gradients on the copy only.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..corpus import is_missing, stratified_rows
from ..encoder import Encoder
from ..pooling import pool_hidden
from ..progress import check_cancel, single_blas_thread
from ..vectors import pad_rows, tokenize_texts
from .probe import ProbeError, make_probe

__all__ = ["FINETUNE_POOLINGS", "FinetuneError", "FinetuneResult", "run_finetune"]

FINETUNE_POOLINGS = ("cls", "mean", "first", "last")
"""Poolings the head can read: [CLS], the mean of all tokens, the first and the last content token."""


class FinetuneError(ProbeError):
    """The data cannot be used for fine-tuning as asked; the message says what to change."""


@dataclass(frozen=True, eq=False)
class FinetuneResult:
    """Held-out accuracy per pooling and the training curves.

    * ``table``: one row per pooling: ``pooling``, ``frozen_accuracy`` (logistic regression on
      the untrained encoder's pooled vectors, same split; also the head's starting point
      with ``head_init="probe"``), ``heldout_accuracy`` (after
      fine-tuning), ``gain``, ``train_n``, ``heldout_n``, ``epochs``, ``steps``, ``seconds``
    * ``curves``: tidy rows ``pooling``, ``step``, ``epoch`` (fractional), ``metric``
      (``train_loss``, ``heldout_loss``, ``heldout_accuracy``), ``value``
    * ``chance`` (1 / classes) and ``majority`` (held-out share of the training majority class)
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    label: str
    classes: tuple[str, ...]
    chance: float
    majority: float
    device: str
    model_name: str
    messages: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """One plain sentence: which pooling won after fine-tuning, and what fine-tuning added."""
        t = self.table.sort_values("heldout_accuracy", ascending=False)
        best, worst = t.iloc[0], t.iloc[-1]
        baselines = f"chance {self.chance:.1%}, majority {self.majority:.1%}"
        if len(t) == 1:
            text = (
                f"After fine-tuning on '{self.label}', {best['pooling']} reaches "
                f"{best['heldout_accuracy']:.1%} held-out accuracy ({baselines})."
            )
        else:
            text = (
                f"After fine-tuning on '{self.label}', {best['pooling']} reaches {best['heldout_accuracy']:.1%} "
                f"held-out accuracy and {worst['pooling']} {worst['heldout_accuracy']:.1%} "
                f"(a {100 * (best['heldout_accuracy'] - worst['heldout_accuracy']):.1f}-point spread; {baselines})."
            )
        if "cls" in set(t["pooling"]):
            cls = t[t["pooling"] == "cls"].iloc[0]
            text += (
                f" [CLS] went from {cls['frozen_accuracy']:.1%} on the frozen model to "
                f"{cls['heldout_accuracy']:.1%} once trained."
            )
        return text


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


class _Batcher:
    """Pads pre-tokenized texts (rows of the corpus) into tensors on the encoder's device."""

    def __init__(self, encoder: Encoder, ids, special):
        self.encoder, self.ids, self.special = encoder, ids, special

    def __call__(self, rows):
        ids, mask, special, _ = pad_rows(self.encoder, self.ids, self.special, rows)
        cls_index = ((ids == self.encoder.info.cls_token_id) & special).int().argmax(dim=1)
        return ids, mask, special, cls_index


def _pooled(model, batch, pooling: str):
    """[B, D] pooled last-layer vectors (differentiable when grads are on)."""
    ids, mask, special, cls_index = batch
    hidden = model(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # [B, T, D]
    return pool_hidden(hidden[:, None], mask, special, pooling, cls_index)[:, 0]


def _frozen_probes(encoder, batcher, train, test, y, n_classes, poolings, seed) -> dict[str, tuple]:
    """Logistic regression on the shared (frozen) encoder's pooled vectors, per pooling.

    Returns pooling -> (held-out accuracy, head weight [C, D], head bias [C]): the probe with its
    standardisation folded in, so ``x @ weight.T + bias`` gives the probe's logits.
    """
    import warnings

    import torch
    from sklearn.exceptions import ConvergenceWarning

    feats = {p: [] for p in poolings}
    rows = np.concatenate([train, test])
    with torch.inference_mode():
        for start in range(0, len(rows), 64):
            batch = batcher(rows[start : start + 64])
            ids, mask, special, cls_index = batch
            hidden = encoder.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            for p in poolings:
                feats[p].append(pool_hidden(hidden[:, None], mask, special, p, cls_index)[:, 0].float().cpu().numpy())
    out = {}
    with single_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for p in poolings:
            X = np.concatenate(feats[p])
            probe = make_probe(random_state=seed).fit(X[: len(train)], y[train])
            scaler, lr = probe[0], probe[-1]
            coef, intercept = lr.coef_, lr.intercept_
            if n_classes == 2:  # scikit-learn keeps one logit for two classes: softmax([0, z]) = sigmoid(z)
                coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
            weight = coef / scaler.scale_
            bias = intercept - weight @ scaler.mean_
            accuracy = float(np.mean(probe.predict(X[len(train) :]) == y[test]))
            out[p] = (accuracy, weight.astype(np.float32), bias.astype(np.float32))
    return out


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
    max_length: int = 64,
    heldout: float = 0.2,
    max_texts: int | None = None,
    seed: int = 0,
    evals_per_epoch: int = 2,
    head_init: str = "random",
    label_name: str = "label",
    progress: Callable[..., None] | None = None,
    cancel=None,
) -> FinetuneResult:
    """Fine-tune a copy of the encoder with a linear head, once per pooling.

    texts : N strings; labels : N label values (missing ones are left out)
    poolings : names from :data:`FINETUNE_POOLINGS`
    Each pooling starts from a fresh copy of ``encoder.model`` with the same seed, the same
    stratified held-out split (``heldout`` share) and the same batch order; AdamW with ``lr``
    for the encoder and ``head_lr`` for the head, gradients clipped at 1.0, for ``epochs``.
    ``head_init="random"`` is the usual fresh head; ``"probe"`` starts it from the
    logistic-regression probe fitted on the frozen encoder (linear probing, then fine-tuning;
    Kumar et al. 2022), so step 0 scores the frozen accuracy. Where that probe already
    separates the training texts (common with a few hundred texts and hundreds of dims) the
    loss starts near zero and training changes little.
    ``max_texts`` draws a stratified sample first. Runs on ``encoder.device`` (CUDA when the
    encoder is there). ``progress(done_steps, total_steps, message)``; setting ``cancel``
    (``threading.Event``) raises :class:`~clsviz.progress.Cancelled` between steps.
    """
    import torch

    _check_settings(poolings, head_init, epochs, batch_size, heldout)
    texts, labels, messages = _labelled(texts, labels, label_name)
    y, classes = _encode(labels, label_name)
    train, test, notes = _split(y, heldout, seed, max_texts)
    messages += notes

    tokenized = tokenize_texts(encoder, texts, max_length)
    data = _Data(_Batcher(encoder, tokenized.input_ids, tokenized.special_masks), y,
                 torch.as_tensor(y, device=encoder.device), train, test)
    steps_per_epoch = -(-len(train) // batch_size)
    plan = _Plan(epochs, batch_size, lr, head_lr, seed, max(1, steps_per_epoch // max(1, evals_per_epoch)),
                 steps_per_epoch, steps_per_epoch * epochs * len(poolings), head_init)
    train_counts = np.bincount(y[train], minlength=len(classes))
    majority = float(np.mean(y[test] == int(train_counts.argmax())))

    def report(done, message):
        if progress is not None:
            progress(done, plan.total_steps, message)

    report(0, "Frozen baseline…")
    frozen = _frozen_probes(encoder, data.batcher, train, test, y, len(classes), poolings, seed)
    rows_out, curves, done = [], [], 0
    for pooling in poolings:
        check_cancel(cancel, "Fine-tuning")
        started = time.perf_counter()
        accuracy, steps, pooling_curves = _train_one(encoder, pooling, len(classes), frozen[pooling], data, plan,
                                                     lambda step, msg, base=done: report(base + step, msg), cancel)
        done += steps
        curves += pooling_curves
        rows_out.append(
            {
                "pooling": pooling,
                "frozen_accuracy": frozen[pooling][0],
                "heldout_accuracy": accuracy,
                "gain": accuracy - frozen[pooling][0],
                "train_n": len(train),
                "heldout_n": len(test),
                "epochs": epochs,
                "steps": steps,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
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
    )


def _check_settings(poolings, head_init: str, epochs: int, batch_size: int, heldout: float) -> None:
    bad = [p for p in poolings if p not in FINETUNE_POOLINGS]
    if bad or not poolings:
        raise FinetuneError(f"Unknown pooling(s) {bad}: choose from {', '.join(FINETUNE_POOLINGS)}.")
    if head_init not in ("probe", "random"):
        raise FinetuneError(f"head_init must be 'probe' or 'random', got {head_init!r}.")
    if epochs < 1 or batch_size < 1:
        raise FinetuneError("epochs and batch_size must be at least 1.")
    if not 0.0 < heldout < 1.0:
        raise FinetuneError(f"heldout must be a share between 0 and 1, got {heldout}.")


def _labelled(texts, labels, label_name: str) -> tuple[list[str], list, list[str]]:
    """The texts that have a label (with a note when some were left out), checked for use."""
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise FinetuneError(f"{len(labels)} labels for {len(texts)} texts: give one label per text.")
    keep = [i for i, v in enumerate(labels) if not is_missing(v)]
    messages = []
    if len(keep) < len(labels):
        messages.append(f"{len(labels) - len(keep)} texts have no '{label_name}' label and were left out.")
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    if len(texts) < 10:
        raise FinetuneError(f"Only {len(texts)} labelled texts: fine-tuning needs at least 10.")
    if len(set(texts)) == 1:
        raise FinetuneError("All texts are the same sentence: there is nothing to learn. Use different sentences.")
    return texts, labels, messages


@dataclass(frozen=True)
class _Data:
    batcher: _Batcher
    y: np.ndarray
    y_dev: object  # torch tensor of y on the encoder's device
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class _Plan:
    epochs: int
    batch_size: int
    lr: float
    head_lr: float
    seed: int
    eval_every: int
    steps_per_epoch: int
    total_steps: int
    head_init: str


def _evaluate(model, head, pooling: str, data: _Data) -> tuple[float, float]:
    """(held-out accuracy, mean held-out loss) of ``model`` + ``head`` reading ``pooling``."""
    import torch

    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(data.test), 64):
            rows = data.test[start : start + 64]
            logits = head(_pooled(model, data.batcher(rows), pooling))
            loss += float(torch.nn.functional.cross_entropy(logits, data.y_dev[rows], reduction="sum"))
            correct += int((logits.argmax(dim=1) == data.y_dev[rows]).sum())
    model.train()
    return correct / len(data.test), loss / len(data.test)


def _train_one(encoder: Encoder, pooling: str, n_classes: int, frozen, data: _Data, plan: _Plan, report, cancel):
    """Train a fresh copy of the encoder and a linear head on one pooling.

    Returns (final held-out accuracy, steps taken, curve rows). Seeding happens inside
    fork_rng, so the process's own random state is left as it was.
    """
    import torch

    dev = encoder.device
    cuda_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    curves = []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(plan.seed)
        # A private copy: the shared model keeps requires_grad=False and its weights.
        model = copy.deepcopy(encoder.model)
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        head = torch.nn.Linear(encoder.info.hidden_size, n_classes).to(dev)
        if plan.head_init == "probe":
            with torch.no_grad():
                head.weight.copy_(torch.as_tensor(frozen[1]))
                head.bias.copy_(torch.as_tensor(frozen[2]))
        optimizer = torch.optim.AdamW(
            [{"params": model.parameters(), "lr": plan.lr}, {"params": head.parameters(), "lr": plan.head_lr}],
            weight_decay=0.01,
        )
        step, last = 0, plan.steps_per_epoch * plan.epochs
        acc, loss_h = _evaluate(model, head, pooling, data)
        curves += [(pooling, 0, 0.0, "heldout_accuracy", acc), (pooling, 0, 0.0, "heldout_loss", loss_h)]
        for epoch in range(plan.epochs):
            order = np.random.default_rng([plan.seed, epoch]).permutation(data.train)
            for start in range(0, len(order), plan.batch_size):
                check_cancel(cancel, "Fine-tuning")
                rows = order[start : start + plan.batch_size]
                loss = torch.nn.functional.cross_entropy(head(_pooled(model, data.batcher(rows), pooling)), data.y_dev[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*model.parameters(), *head.parameters()], 1.0)
                optimizer.step()
                step += 1
                at = step / plan.steps_per_epoch
                curves.append((pooling, step, at, "train_loss", float(loss.detach())))
                if step % plan.eval_every == 0 or step == last:
                    acc, loss_h = _evaluate(model, head, pooling, data)
                    curves += [(pooling, step, at, "heldout_accuracy", acc), (pooling, step, at, "heldout_loss", loss_h)]
                report(step, f"{pooling}: epoch {epoch + 1}/{plan.epochs}, step {step}/{last}")
        del model, head, optimizer
    return acc, step, curves
