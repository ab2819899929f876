"""The fine-tuning loop of :func:`clsviz.experiments.finetune.run_finetune`, and what it records
at its checkpoints (:class:`Monitor`).

One :class:`~clsviz.experiments.learners.Learner` trains at a time with the same seed, split,
batch order and budget as the others; the held-out set is fixed for the whole run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..encoder import Encoder
from ..pooling import pool_hidden
from ..progress import check_cancel, single_blas_thread
from .dynamics import flow_norms, linear_head, pooled_readout, probe_as_linear, random_head, state_metrics
from .learners import FRESH_TOKEN, MOVED_POOLINGS, Learner, build_inputs
from .probe import make_probe

__all__ = ["Data", "Monitor", "Plan", "checkpoint_steps", "train_one"]


@dataclass(frozen=True)
class Data:
    """Labels (int codes [N], on the device as ``y_dev``), the split, and the tokenized texts."""

    y: np.ndarray
    y_dev: object
    train: np.ndarray
    test: np.ndarray
    tokenized: object


@dataclass(frozen=True)
class Plan:
    """The budget every learner gets: epochs, batch size, learning rates, seed, when to evaluate."""

    epochs: int
    batch_size: int
    lr: float
    head_lr: float
    seed: int
    eval_every: int
    steps_per_epoch: int
    total_steps: int
    head_init: str
    checkpoints: tuple[int, ...]

    @property
    def last(self) -> int:
        return self.steps_per_epoch * self.epochs


def checkpoint_steps(last_step: int, checkpoints: int) -> tuple[int, ...]:
    """The steps at which a run records its checkpoints: ``checkpoints`` equal parts of the
    run, step 0 and the last step included (none when ``checkpoints`` is 0)."""
    if checkpoints <= 0:
        return ()
    return tuple(sorted({int(round(s)) for s in np.linspace(0, last_step, int(checkpoints) + 1)}))


def _batches(learner: Learner, rows: np.ndarray, size: int = 64):
    for start in range(0, len(rows), size):
        yield learner.batch(rows[start : start + size])


def frozen_probe(learner: Learner, data: Data, n_classes: int, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Logistic regression on the untrained copy's pooled vectors (train split), scored on the
    held-out split: (accuracy, weight [C, D], bias [C]) with the standardisation folded in."""
    import torch
    from sklearn.exceptions import ConvergenceWarning


    rows = np.concatenate([data.train, data.test])
    feats = []
    learner.train(False)
    with torch.inference_mode():
        for ids, mask, special, slot in _batches(learner, rows):
            hidden = learner.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            feats.append(pool_hidden(hidden[:, None], mask, special, learner.reads, slot)[:, 0].float().cpu().numpy())
    X = np.concatenate(feats)
    with single_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe = make_probe(random_state=seed).fit(X[: len(data.train)], data.y[data.train])
    accuracy = float(np.mean(probe.predict(X[len(data.train) :]) == data.y[data.test]))
    weight, bias = probe_as_linear(probe)
    if weight.shape[0] != n_classes:  # a class missing from the training split cannot be probed
        return accuracy, None, None
    return accuracy, weight, bias


def evaluate(learner: Learner, data: Data) -> tuple[float, float]:
    """(held-out accuracy, mean held-out cross-entropy) of the learner in eval mode."""
    import torch

    learner.train(False)
    correct, loss = 0, 0.0
    with torch.no_grad():
        for start in range(0, len(data.test), 64):
            rows = data.test[start : start + 64]
            logits = learner.logits(learner.batch(rows))
            loss += float(torch.nn.functional.cross_entropy(logits, data.y_dev[rows], reduction="sum"))
            correct += int((logits.argmax(dim=1) == data.y_dev[rows]).sum())
    learner.train(True)
    return correct / len(data.test), loss / len(data.test)


class Monitor:
    """Records a learner's state at its checkpoints (tidy rows, see ``FinetuneResult``).

    The starting state of learners that read the same inputs is the same model, so it is
    measured once per kind of input and reused; it is also the CKA reference of later steps.
    """

    def __init__(self, encoder: Encoder, data: Data, flow_tokenized, folds: int, seed: int):
        self.encoder, self.data, self.flow_tokenized = encoder, data, flow_tokenized
        self.folds, self.seed = folds, seed
        self.start: dict[str, object] = {}
        self.checkpoints, self.layers, self.blocks, self.flows = [], [], [], []
        weight, bias = random_head(encoder.info.hidden_size, seed)
        self.head = linear_head(weight, bias, encoder.device)

    def record(self, learner: Learner, step: int, epoch: float, accuracy: float, loss: float) -> None:
        kind = learner.pooling if learner.pooling in MOVED_POOLINGS else "standard"
        key = (learner.pooling, int(step), round(float(epoch), 4))
        self.checkpoints.append((*key, accuracy, loss))
        if step == 0 and kind in self.start:
            metrics = self.start[kind]
        else:
            reference = self.start[kind].tokens if kind in self.start else None
            labels = self.data.y[self.data.test]
            metrics = state_metrics(learner.eager, _batches(learner, self.data.test), labels,
                                    reference=reference, folds=self.folds, seed=self.seed)  # fmt: skip
            if step == 0:
                self.start[kind] = metrics
        self.layers += [(*key, r.layer, r.metric, r.value) for r in metrics.layers.itertuples()]
        self.blocks += [(*key, r.block, r.metric, r.value) for r in metrics.blocks.itertuples()]
        if self.flow_tokenized is not None:
            self._flow(learner, key)

    def _flow(self, learner: Learner, key: tuple) -> None:
        inputs = build_inputs(self.encoder, self.flow_tokenized, learner.pooling, learner.fresh_id)
        ids, special, slot = inputs.ids[0], inputs.special[0], int(inputs.slots[0])
        learner.train(False)
        norms = flow_norms(learner.view, ids, special, pooled_readout(learner.reads, self.head), 0, slot)
        learner.train(True)
        tokens = [FRESH_TOKEN if int(i) == learner.fresh_id else t
                  for i, t in zip(ids, self.encoder.tokenizer.convert_ids_to_tokens([int(i) for i in ids]))]  # fmt: skip
        for layer in range(norms.shape[0]):
            self.flows += [(*key, layer, t, tokens[t], float(norms[layer, t])) for t in range(norms.shape[1])]


def train_one(learner: Learner, data: Data, plan: Plan, monitor: Monitor | None, frozen, report, cancel):
    """Train one learner for the plan's budget. Returns (final held-out accuracy, steps, curve rows).

    ``frozen``: (accuracy, weight, bias) of the frozen probe, the head's start with
    ``head_init="probe"``. ``report(step, message)`` after each step.
    """
    import torch

    pooling = learner.pooling
    if plan.head_init == "probe" and learner.head is not None and frozen[1] is not None:
        with torch.no_grad():
            learner.head.weight.copy_(torch.as_tensor(frozen[1]))
            learner.head.bias.copy_(torch.as_tensor(frozen[2]))
    optimizer = torch.optim.AdamW(learner.param_groups(plan.lr, plan.head_lr), weight_decay=0.01)
    params = learner.modules_parameters()
    learner.train(True)
    step, curves = 0, []

    def checkpoint(at: float, acc: float, loss_h: float) -> None:
        if monitor is not None and step in plan.checkpoints:
            # The step counts as done once its checkpoint is recorded (the end is reported once).
            report(max(step - 1, 0), f"{pooling}: checkpoint at step {step}/{plan.last}")
            monitor.record(learner, step, at, acc, loss_h)

    acc, loss_h = evaluate(learner, data)
    curves += [(pooling, 0, 0.0, "heldout_accuracy", acc), (pooling, 0, 0.0, "heldout_loss", loss_h)]
    checkpoint(0.0, acc, loss_h)
    for epoch in range(plan.epochs):
        order = np.random.default_rng([plan.seed, epoch]).permutation(data.train)
        for start in range(0, len(order), plan.batch_size):
            check_cancel(cancel, "Fine-tuning")
            rows = order[start : start + plan.batch_size]
            loss = torch.nn.functional.cross_entropy(learner.logits(learner.batch(rows)), data.y_dev[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            at = step / plan.steps_per_epoch
            curves.append((pooling, step, at, "train_loss", float(loss.detach())))
            if step % plan.eval_every == 0 or step == plan.last or step in plan.checkpoints:
                acc, loss_h = evaluate(learner, data)
                curves += [(pooling, step, at, "heldout_accuracy", acc), (pooling, step, at, "heldout_loss", loss_h)]
                checkpoint(at, acc, loss_h)
            report(step, f"{pooling}: epoch {epoch + 1}/{plan.epochs}, step {step}/{plan.last}")
    del optimizer
    return acc, step, curves
