"""How does [CLS] learn? Where a training signal enters the encoder, and what a model state shows.

[CLS] is not trained like the other tokens: a loss placed on the [CLS] vector (next-sentence
prediction, a classifier) sends its gradient into the last layer through the [CLS] position
only, and attention spreads it to the other tokens in the lower layers; mean pooling sends it to
every position equally.

* :func:`gradient_flow` - float32 [L+1, T]: the L2 norm of d loss / d h_t at every hidden-state
  index (0 = embedding output) and token, for one text and one readout
* :func:`probe_as_linear` - a fitted logistic-regression probe as a linear head (weight, bias)
* :func:`state_metrics` - what a fine-tuning checkpoint records about a model state on a fixed
  held-out set: per-layer probe accuracy of [CLS] and of the mean, cos([CLS], mean of the
  tokens), linear CKA of the token vectors to a reference state; per-block entropy of [CLS]'s
  attention and the attention it receives (see :mod:`clsviz.experiments.finetune`)
* :func:`summarize_run`, :func:`summarize_moved` - what a fine-tuning run showed, in one sentence

Nothing here changes the shared model: gradients are taken through :func:`clsviz.blocks.run_stack`
with an input that requires grad (the model's parameters keep ``requires_grad=False``; no hooks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..blocks import block_weights, run_stack
from ..compare import cka
from ..encoder import Encoder
from ..keywords import accepts_max_length
from ..layers import block_of_row
from ..metrics import cosine, entropy
from ..model_heads import ClassifierHead
from ..pooling import check_pooling, pool_hidden
from ..tracing import check_summary_token, special_positions, tokenize
from .probe import run_probe

__all__ = [
    "FLOW_POOLINGS",
    "GradientFlowError",
    "StateMetrics",
    "gradient_flow",
    "gradient_flows",
    "flow_table",
    "probe_as_linear",
    "random_head",
    "state_metrics",
    "summarize_moved",
    "summarize_run",
]

FLOW_POOLINGS = ("cls", "mean", "classifier")
"""What :func:`gradient_flow` reads: [CLS], the mean of every token, or the encoder's own
fine-tuned classification head (which reads [CLS]); any pooling of :func:`clsviz.pool` except
``pooler`` is accepted as well."""

LAYER_METRICS = ("probe_cls", "probe_mean", "cos_cls_mean", "cka_to_start")
BLOCK_METRICS = ("cls_entropy", "attention_to_cls")


class GradientFlowError(ValueError):
    """The readout asked for cannot be built; the message says what is allowed."""


# --- heads ------------------------------------------------------------------------------------


def random_head(hidden_size: int, seed: int = 0, num_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The seeded random linear head of :func:`gradient_flow`: weight float32 [C, D] drawn as
    ``default_rng(seed).standard_normal((C, D)) / sqrt(D)`` and a zero bias [C]."""
    rng = np.random.default_rng(int(seed))
    weight = rng.standard_normal((int(num_classes), int(hidden_size))) / np.sqrt(hidden_size)
    return weight.astype(np.float32), np.zeros(int(num_classes), dtype=np.float32)


def probe_as_linear(probe) -> tuple[np.ndarray, np.ndarray]:
    """A fitted probe as a linear head: (weight float32 [C, D], bias float32 [C]) with
    ``x @ weight.T + bias`` equal to the probe's logits (softmax of them = its probabilities).

    ``probe``: a fitted scikit-learn linear classifier (``coef_``, ``intercept_``), or a Pipeline
    of ``StandardScaler`` steps ending in one (as :func:`~clsviz.experiments.probe.make_probe`
    builds); the scaler is folded into the weights. Two classes come out as two logits [0, z].
    """
    steps = list(getattr(probe, "steps", [("", probe)]))
    *scalers, (_, last) = steps
    coef, intercept = getattr(last, "coef_", None), getattr(last, "intercept_", None)
    if coef is None or intercept is None:
        raise GradientFlowError(
            f"{type(last).__name__} is not a fitted linear classifier (no coef_ / intercept_). Give a fitted "
            "LogisticRegression, a make_probe() pipeline, a torch module or a ClassifierHead."
        )
    coef, intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
    if coef.shape[0] == 1:  # scikit-learn keeps one logit for two classes: softmax([0, z]) = sigmoid(z)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    for name, step in reversed(scalers):
        if type(step).__name__ != "StandardScaler":
            raise GradientFlowError(f"Only StandardScaler steps can be folded into a linear head, not {name!r}.")
        scale = step.scale_ if step.scale_ is not None else np.ones(coef.shape[1])
        mean = step.mean_ if step.mean_ is not None else np.zeros(coef.shape[1])
        coef = coef / scale
        intercept = intercept - coef @ mean
    return coef.astype(np.float32), intercept.astype(np.float32)


def linear_head(weight, bias, device):
    import torch

    w = torch.as_tensor(weight, dtype=torch.float32, device=device)
    b = torch.as_tensor(bias, dtype=torch.float32, device=device)
    return lambda x: x.to(w.dtype) @ w.T + b


def _head_fn(encoder: Encoder, head, seed: int) -> tuple[Callable, int]:
    """(callable torch [B, D] -> logits [B, C], C) for the head given to :func:`gradient_flow`."""
    import torch

    dim = encoder.info.hidden_size
    if head is None:
        weight, bias = random_head(dim, seed)
        return linear_head(weight, bias, encoder.device), 2
    if isinstance(head, ClassifierHead):
        return head.apply, head.num_labels
    if isinstance(head, torch.nn.Module):
        params = list(head.parameters())
        device = params[0].device if params else encoder.device
        with torch.no_grad():
            probe = head(torch.zeros(1, dim, device=device))
        return (lambda x: head(x.to(device))), int(probe.shape[-1])
    if isinstance(head, tuple) and len(head) == 2:
        weight, bias = (np.asarray(a, dtype=np.float32) for a in head)
    else:
        weight, bias = probe_as_linear(head)
    if weight.ndim != 2 or weight.shape[1] != dim or bias.shape != (weight.shape[0],):
        raise GradientFlowError(
            f"The head has weight {list(weight.shape)} and bias {list(bias.shape)}; this encoder's vectors have "
            f"{dim} dims, so the head needs weight [C, {dim}] and bias [C]."
        )
    return linear_head(weight, bias, encoder.device), int(weight.shape[0])


# --- gradient flow ----------------------------------------------------------------------------


def flow_norms(view, ids, special, readout: Callable, target: int, cls_index: int) -> np.ndarray:
    """float32 [L+1, T]: ||d loss / d h_l[t]|| for one tokenized input run through ``view.model``
    block by block; ``readout(last [1, T, D], mask, special, cls_index)`` gives logits [1, C] and
    the loss is their cross-entropy with class ``target``."""
    import torch

    device = next(iter(view.model.parameters())).device
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)[None]
    special = torch.as_tensor(np.asarray(special, dtype=bool), device=device)[None]
    mask = torch.ones_like(special)
    saved: dict[int, torch.Tensor] = {}

    def keep(index: int):
        def remember(h):
            if index == 0:  # the embedding output becomes a leaf that requires grad
                h = h.detach().requires_grad_(True)
            saved[index] = h
            return h

        return remember

    num_layers = len(block_weights(view))
    with torch.inference_mode(False), torch.enable_grad():
        run_stack(view, ids, attention_mask=mask, replace={i: keep(i) for i in range(num_layers + 1)})
        logits = readout(saved[num_layers], mask, special, cls_index)
        if not 0 <= int(target) < logits.shape[-1]:
            raise GradientFlowError(f"target {target} is not a class of this head: use 0..{logits.shape[-1] - 1}.")
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.as_tensor([int(target)], device=logits.device))
        grads = torch.autograd.grad(loss, [saved[i] for i in range(num_layers + 1)])
    return torch.stack([g[0].float().norm(dim=-1) for g in grads]).cpu().numpy().astype(np.float32)


def pooled_readout(reads: str, head: Callable) -> Callable:
    """A readout for :func:`flow_norms`: ``head`` on the ``reads`` pooling of the last layer."""

    def readout(last, mask, special, cls_index):
        return head(pool_hidden(last[:, None], mask, special, reads, cls_index)[:, 0])

    return readout


@accepts_max_length
def gradient_flow(enc: Encoder, text: str, pooling: str = "cls", seed: int = 0, *, head=None, target: int = 0,
                  max_tokens: int | None = None) -> np.ndarray:  # fmt: skip
    """float32 [L+1, T]: the L2 norm of d loss / d h_t at every hidden-state index (row 0 = the
    embedding output, row l = the output of block l) and every token t of ``text``.

    The loss is the cross-entropy with class ``target`` (default 0) of a head on the pooled
    last-layer vector. ``pooling``: ``"cls"`` (the [CLS]-like token), ``"mean"`` (every token the
    attention mask covers) or another :func:`clsviz.pool` name; ``"classifier"`` uses the
    encoder's own fine-tuned classification head, which reads [CLS]. ``head``: None for a seeded
    random linear 2-class head (:func:`random_head` with ``seed``); a fitted probe
    (:func:`probe_as_linear`); a ``(weight [C, D], bias [C])`` pair; a torch module [B, D] -> [B, C];
    or a :class:`clsviz.model_heads.ClassifierHead`.

    With ``"cls"`` the last row is exactly zero everywhere except at [CLS]; with ``"mean"`` it is
    the same at every token. Computed block by block from the weights (:func:`clsviz.blocks.run_stack`)
    with autograd; the shared model is not changed. Raises :class:`GradientFlowError` for a
    readout that cannot be built and ``BlockStructureError`` for a family clsviz cannot run.
    """
    if pooling == "classifier":
        if head is not None:
            raise GradientFlowError("pooling='classifier' uses the encoder's own head; leave head=None.")
        if enc.classifier is None:
            raise GradientFlowError(
                f"'{enc.name}' has no fine-tuned classification head, so pooling='classifier' has nothing to read. "
                "Use pooling='cls' or 'mean', or load a *ForSequenceClassification checkpoint."
            )
        head, reads = enc.classifier, "cls"
    else:
        try:
            reads = check_pooling(pooling)
        except ValueError as exc:
            raise GradientFlowError(f"{exc} For gradient flow also 'classifier' (the model's own head).") from None
        if reads == "pooler":
            raise GradientFlowError("gradient_flow reads the raw last layer; use 'cls', 'mean' or 'classifier'.")
    if reads == "cls":
        check_summary_token(enc.info, "Gradient flow through [CLS]")
    tt = tokenize(enc, text, max_tokens)
    cls_index, _ = special_positions(tt, enc.info)
    head_fn, _ = _head_fn(enc, head, seed)
    return flow_norms(enc, tt.input_ids, tt.special_mask, pooled_readout(reads, head_fn), target, cls_index)


FLOW_PANELS = {"cls": "[CLS] pooling", "mean": "mean pooling"}


def gradient_flows(enc: Encoder, text: str, poolings: Sequence[str] = ("cls", "mean"), seed: int = 0,
                   max_tokens: int | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """{panel title: :func:`gradient_flow` float32 [L+1, T]} for each pooling with the same seeded
    random head: the side-by-side view of where the signal enters ("[CLS] pooling", "mean pooling")."""
    return {FLOW_PANELS.get(p, p): gradient_flow(enc, text, p, seed, max_tokens=max_tokens) for p in poolings}


def flow_table(flows: dict[str, np.ndarray], tokens: Sequence[str]) -> pd.DataFrame:
    """Tidy rows ``reading``, ``layer``, ``position``, ``token``, ``value`` of :func:`gradient_flows`."""
    rows = [
        {"reading": name, "layer": layer, "position": t, "token": tokens[t], "value": float(values[layer, t])}
        for name, values in flows.items()
        for layer in range(values.shape[0])
        for t in range(values.shape[1])
    ]
    return pd.DataFrame(rows, columns=["reading", "layer", "position", "token", "value"])


# --- one model state on a held-out set --------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StateMetrics:
    """What one model state shows on the held-out set.

    * ``layers``: tidy rows ``layer`` (0 = embeddings), ``metric`` (``probe_cls``, ``probe_mean``,
      ``cos_cls_mean``, ``cka_to_start``), ``value``
    * ``blocks``: tidy rows ``block`` (1..L), ``metric`` (``cls_entropy`` in nats, ``attention_to_cls``), ``value``
    * ``tokens``: float32 [L+1, N_tokens, D], every real token of the held-out texts (the CKA reference)
    * ``per_text``: the block metrics before the mean over texts: metric -> float64 [N, L] (for intervals)
    """

    layers: pd.DataFrame
    blocks: pd.DataFrame
    tokens: np.ndarray
    per_text: dict = field(default_factory=dict)


def _batch_stats(out, mask, special, slot) -> tuple[list, ...]:
    """Per text of one batch: slot vectors [L+1, D], means [L+1, D], content means [L+1, D],
    token vectors [L+1, n, D], entropy of the slot's attention row [L], attention it receives [L]."""
    import torch

    hidden = torch.stack(out.hidden_states).float()  # [L+1, B, T, D]
    attn = torch.stack(out.attentions).float()  # [L, B, H, T, T]
    slots, means, content_means, tokens, ent, received = [], [], [], [], [], []
    for i in range(hidden.shape[1]):
        n, s = int(mask[i].sum()), int(slot[i])
        h = hidden[:, i, :n]  # [L+1, n, D]
        content = (~special[i, :n]).to(h.device)
        slots.append(h[:, s].cpu().numpy())
        means.append(h.mean(dim=1).cpu().numpy())
        content_means.append(h[:, content].mean(dim=1).cpu().numpy())
        tokens.append(h.cpu().numpy())
        a = attn[:, i, :, :n, :n].cpu().numpy()  # [L, H, n, n]
        ent.append(entropy(a[:, :, s, :]).mean(axis=1))
        others = np.arange(n) != s
        received.append(a[:, :, others, s].mean(axis=(1, 2)) if others.any() else a[:, :, :, s].mean(axis=(1, 2)))
    return slots, means, content_means, tokens, ent, received


def _probe_rows(slots: np.ndarray, means: np.ndarray, labels, folds: int, seed: int) -> list[dict]:

    if folds < 2:
        return []
    result = run_probe({"cls": slots, "mean": means}, list(labels), folds=folds, seed=seed, n_jobs=1)
    return [
        {"layer": int(r.layer), "metric": f"probe_{r.pooling}", "value": float(r.accuracy_mean)}
        for r in result.table.itertuples()
    ]


def state_metrics(model, batches: Iterable[tuple], labels: Sequence, *, reference: np.ndarray | None = None,
                  folds: int = 5, seed: int = 0) -> StateMetrics:  # fmt: skip
    """Measure one model state on a fixed held-out set (see :class:`StateMetrics`).

    ``model``: an encoder module computing attention eagerly (``output_attentions`` works);
    ``batches``: ``(ids, mask, special, slot)`` tensors [B, T] / [B] in the order of ``labels``,
    where ``slot`` is the position of the summary token ([CLS], or the token standing in for it).
    Per text, then averaged over texts: cos(slot vector, mean of the text's own tokens) as in
    :func:`clsviz.report.layer_stats`; the entropy of the slot's attention row and the attention
    the other tokens pay to it (means over heads). ``probe_*``: cross-validated probe accuracy
    (``folds``-fold, :func:`~clsviz.experiments.probe.run_probe`) of the slot vector and of the mean
    of every token; left out when ``folds < 2``. ``cka_to_start``: linear CKA of every real token's
    vector to ``reference`` (the same tokens in the starting state; 1 when it is None).
    """
    import torch

    parts: list[list] = [[] for _ in range(6)]
    with torch.inference_mode():
        for ids, mask, special, slot in batches:
            out = model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True, output_attentions=True)
            for acc, got in zip(parts, _batch_stats(out, mask.cpu(), special.cpu(), slot.cpu())):
                acc.extend(got)
    slots, means, content_means = (np.stack(p) for p in parts[:3])  # [N, L+1, D]
    tokens = np.concatenate(parts[3], axis=1)  # [L+1, N_tokens, D]
    cos = cosine(slots, content_means).mean(axis=0)  # [L+1]
    layer_rows = _probe_rows(slots, means, labels, folds, seed)
    for layer in range(tokens.shape[0]):
        layer_rows.append({"layer": layer, "metric": "cos_cls_mean", "value": float(cos[layer])})
        same = 1.0 if reference is None else cka(tokens[layer], reference[layer])
        layer_rows.append({"layer": layer, "metric": "cka_to_start", "value": float(same)})
    ent, received = np.mean(parts[4], axis=0), np.mean(parts[5], axis=0)  # [L]
    block_rows = [
        {"block": block_of_row(b), "metric": name, "value": float(values[b])}
        for name, values in (("cls_entropy", ent), ("attention_to_cls", received))
        for b in range(len(values))
    ]
    per_text = {"cls_entropy": np.asarray(parts[4], dtype=np.float64), "attention_to_cls": np.asarray(parts[5], dtype=np.float64)}
    return StateMetrics(pd.DataFrame(layer_rows), pd.DataFrame(block_rows), tokens.astype(np.float32), per_text)


# --- what a run showed, in one sentence ---------------------------------------------------------

_MOVED_WORDS = {"cls_last": "[CLS] placed last", "fresh_middle": "a fresh token in the middle (no [CLS])"}


def _noise(accuracy: float, n: int) -> float:
    """One standard error of an accuracy measured on ``n`` texts (at least that of one text)."""
    return float(np.sqrt(max(accuracy * (1 - accuracy), 1.0 / max(n, 1)) / max(n, 1)))


def summarize_moved(result) -> str:
    """One plain sentence on the moved summary tokens of a ``FinetuneResult``: do they learn as
    well as [CLS] in position 0? Differences within two standard errors of the held-out accuracies
    count as "as well"; a run where nothing beat the majority class, or where the task was at
    ceiling before training (``result.ceiling_note()``), says it cannot tell."""
    t = result.table.set_index("pooling")
    moved = [p for p in _MOVED_WORDS if p in t.index]
    if not moved or "cls" not in t.index:
        return ""
    n = int(t["heldout_n"].iloc[0])
    ref = float(t.loc["cls", "heldout_accuracy"])
    parts = [f"{_MOVED_WORDS[p]} reaches {t.loc[p, 'heldout_accuracy']:.1%}" for p in moved]
    text = f"Trained with the same seed, split and budget, {' and '.join(parts)}, against {ref:.1%} for [CLS] in position 0"
    if "mean" in t.index:
        text += f" and {t.loc['mean', 'heldout_accuracy']:.1%} for the mean"
    text += f" ({n} held-out texts)"
    best = float(t["heldout_accuracy"].max())
    ceiling = result.ceiling_note() if hasattr(result, "ceiling_note") else ""
    if ceiling:
        return text + f". Inconclusive: {ceiling[0].lower()}{ceiling[1:]}"
    if best <= result.majority + 2 * _noise(result.majority, n):
        return text + (
            f". No run got clearly past always guessing the majority class ({result.majority:.1%}), so this run "
            "cannot tell whether position matters: train for more epochs or on more texts."
        )
    behind = [p for p in moved
              if ref - t.loc[p, "heldout_accuracy"] > 2 * np.hypot(_noise(ref, n), _noise(t.loc[p, "heldout_accuracy"], n))]  # fmt: skip
    if not behind:
        return text + (
            ": within the noise of the held-out set, a summary token placed elsewhere learns as well, so on this "
            "model and label position 0 is a convention, not a requirement."
        )
    return text + (
        f": {' and '.join(_MOVED_WORDS[p] for p in behind)} learned less than [CLS] in position 0 by more than "
        "two standard errors, so on this run the first position (or the [CLS] token's own embedding) helped."
    )


def summarize_run(result, pooling: str = "cls") -> str:
    """One plain sentence on what the checkpoints of a ``FinetuneResult`` showed for ``pooling``
    (the first pooling trained when it is absent): the probe at the last layer from the first to
    the last checkpoint, the layer fine-tuning moved most (lowest CKA to step 0) and [CLS]'s
    attention entropy in the last block."""
    layers, blocks = result.layer_metrics, result.block_metrics
    if layers.empty:
        return ""
    pooling = pooling if pooling in set(layers["pooling"]) else str(layers["pooling"].iloc[0])
    mine, theirs = layers[layers["pooling"] == pooling], blocks[blocks["pooling"] == pooling]
    first, last = int(mine["step"].min()), int(mine["step"].max())
    top = int(mine["layer"].max())

    def value(table, metric, step, where, at):
        rows = table[(table["metric"] == metric) & (table["step"] == step) & (table[where] == at)]
        return float(rows["value"].iloc[0]) if len(rows) else float("nan")

    parts = []
    a, b = value(mine, "probe_cls", first, "layer", top), value(mine, "probe_cls", last, "layer", top)
    if np.isfinite(a) and np.isfinite(b):
        m0, m1 = value(mine, "probe_mean", first, "layer", top), value(mine, "probe_mean", last, "layer", top)
        parts.append(f"a probe reads the label from [CLS] at layer {top} with {a:.0%} at step {first} and {b:.0%} at "
                     f"step {last} (the mean: {m0:.0%} to {m1:.0%})")  # fmt: skip
    cka_end = mine[(mine["metric"] == "cka_to_start") & (mine["step"] == last)].dropna(subset=["value"])
    if len(cka_end):
        low = cka_end.loc[cka_end["value"].idxmin()]
        parts.append(f"the token vectors moved most at layer {int(low['layer'])} (CKA to step 0: {low['value']:.2f})")
    if len(theirs):
        nb = int(theirs["block"].max())
        e0, e1 = value(theirs, "cls_entropy", first, "block", nb), value(theirs, "cls_entropy", last, "block", nb)
        parts.append(f"the entropy of [CLS]'s attention in block {nb} went from {e0:.2f} to {e1:.2f} nats")
    return f"Training on {pooling} for {last} steps, " + "; ".join(parts) + "."
