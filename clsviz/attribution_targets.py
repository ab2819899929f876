"""What :func:`clsviz.attribution.attribute` splits over the tokens: its *targets*, and their values.

A :class:`Target` is one number computed from the hidden states of a text: the cosine of a pooled
vector to that of another text (``"similarity"``), a linear probe's class logit (``"probe"``; a
scikit-learn Pipeline's scalers are folded into the linear map), or a class logit of the model's
own head (``"classifier"``). :func:`make_target` builds one for a text, :func:`target_values`
evaluates it on rows of token ids by running the model forward. Everything here is importable
from :mod:`clsviz.attribution` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .encoder import apply_pooler
from .keywords import accepts_max_length
from .layers import check_layer
from .pooling import check_pooling, pool, pool_hidden
from .tracing import check_summary_token, has_content, special_positions, tokenize, trace

__all__ = [
    "DEFAULT_BUDGET",
    "TARGETS",
    "AttributionError",
    "Target",
    "make_target",
    "resolve_layer",
    "target_values",
]

TARGETS = ("similarity", "probe", "classifier")
"""What is attributed: a cosine to another text, a probe's class logit, the model's own head."""

DEFAULT_BUDGET = 512 * 2**20
"""Bytes of activations one batch of inputs (or of path points) may hold."""


class AttributionError(ValueError):
    """An attribution cannot be computed for this input, target or model."""


@dataclass(frozen=True, eq=False)
class Target:
    """A scalar target: ``fn(hidden)`` maps hidden states torch [L+1, B, T, D] to [B].

    ``kind`` is one of :data:`TARGETS` or ``"custom"``; ``description`` says it in words;
    ``labels`` names the classes of a probe or classifier target (empty otherwise).
    """

    kind: str
    description: str
    fn: Callable
    labels: tuple[str, ...] = ()
    class_index: int | None = None

    def __call__(self, hidden):
        return self.fn(hidden)


def _check_other(other) -> str:
    if not isinstance(other, str):
        raise AttributionError(f"other must be the text to compare with, a string; got {type(other).__name__}.")
    if not has_content(other):
        raise AttributionError(
            "The sentence to compare with is empty. Type a sentence for the similarity target "
            "(or leave it out to compare the text with itself)."
        )
    return other


def _linear_probe(probe) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(W [C, D], b [C], class names) of a fitted linear probe, scalers folded in; a binary
    probe becomes two rows, the log-odds of each class (-z, z)."""
    a = c = None  # x' = x * a + c, the scalers before the linear model
    if isinstance(probe, tuple) and len(probe) == 2:
        weight, bias, final = np.asarray(probe[0], dtype=np.float64), np.asarray(probe[1], dtype=np.float64), None
    else:
        final = probe.steps[-1][1] if hasattr(probe, "steps") else probe
        if not hasattr(final, "coef_"):
            raise AttributionError(
                "probe must be a fitted linear model (e.g. clsviz.experiments.probe.make_probe() after "
                "fit), a Pipeline ending in one, or (weight, bias) arrays; this one has no coef_ - fit it first."
            )
        for _, step in getattr(probe, "steps", [])[:-1]:
            if step is None or step == "passthrough":
                continue
            if not hasattr(step, "with_std") or not hasattr(step, "scale_"):
                raise AttributionError(
                    f"The probe's pipeline has a {type(step).__name__} step; clsviz folds only fitted "
                    "StandardScaler steps into the linear map. Pass (weight, bias) arrays instead."
                )
            mean = step.mean_ if getattr(step, "with_mean", True) and step.mean_ is not None else 0.0
            scale = step.scale_ if getattr(step, "with_std", True) and step.scale_ is not None else 1.0
            step_a, step_c = 1.0 / np.asarray(scale, dtype=np.float64), -np.asarray(mean, dtype=np.float64) / scale
            a, c = (step_a, step_c) if a is None else (a * step_a, c * step_a + step_c)
        weight = np.asarray(final.coef_, dtype=np.float64)
        bias = np.asarray(final.intercept_, dtype=np.float64)
    weight = np.atleast_2d(weight)
    bias = np.broadcast_to(np.atleast_1d(bias), (weight.shape[0],)).astype(np.float64)
    if a is not None:
        bias = bias + weight @ np.broadcast_to(c, weight.shape[1:])
        weight = weight * a
    if weight.shape[0] == 1:
        weight, bias = np.concatenate([-weight, weight]), np.concatenate([-bias, bias])
    classes = getattr(final, "classes_", None)
    names = tuple(str(x) for x in classes) if classes is not None else tuple(str(i) for i in range(len(weight)))
    return weight, bias, names


def _pooled(encoder, hidden, layer: int, pooling: str, special, cls_index: int):
    """torch [B, D]: ``pooling`` of hidden-state index ``layer`` of ``hidden`` [L+1, B, T, D]."""
    import torch

    h = hidden[layer][:, None]  # [B, 1, T, D]
    batch, _, seq_len, _ = h.shape
    mask = torch.ones(batch, seq_len, dtype=torch.bool, device=h.device)
    spec = torch.as_tensor(special, device=h.device)[None].expand(batch, seq_len)
    states = None
    if pooling == "pooler":
        states = apply_pooler(encoder.model, h[:, 0, cls_index])
        states = None if states is None else states[:, None]
    return pool_hidden(h, mask, spec, pooling, cls_index, states)[:, 0]


def resolve_layer(encoder, layer: int, pooling: str) -> int:
    """The hidden-state index of ``layer`` (0..L, negative from the end) after checking ``pooling``;
    :class:`AttributionError` naming the valid range otherwise."""
    try:
        check_pooling(pooling)
        return check_layer(layer, encoder.info.num_layers)
    except (IndexError, ValueError) as exc:
        raise AttributionError(str(exc)) from exc


@accepts_max_length
def make_target(encoder, text: str, target="similarity", other: str | None = None, pooling: str = "cls",
                layer: int = -1, probe=None, class_index: int | None = None,
                max_tokens: int | None = None) -> Target:  # fmt: skip
    """The :class:`Target` of :func:`attribute` (see there) for ``text`` cut at ``max_tokens``
    tokens; ``target`` may also be a callable ``fn(hidden [L+1, B, T, D]) -> [B]`` (a custom target)."""
    import torch

    if callable(target) and not isinstance(target, str):
        return target if isinstance(target, Target) else Target("custom", "a custom target", target)
    if target not in TARGETS:
        raise AttributionError(f"Unknown target {target!r}; choose one of {', '.join(TARGETS)} (or pass a callable).")
    idx = resolve_layer(encoder, layer, pooling)
    if pooling in ("cls", "pooler"):
        try:
            check_summary_token(encoder.info, f"Attribution to the {pooling!r} pooling")
        except ValueError as exc:
            raise AttributionError(str(exc)) from None
    try:
        tt = tokenize(encoder, text, max_tokens)
    except ValueError as exc:
        raise AttributionError(str(exc)) from exc
    special, cls_index = tt.special_mask, special_positions(tt, encoder.info)[0]
    vector = f"{'[CLS]' if pooling == 'cls' else pooling + '-pooled'} vector at layer {idx}"

    def pooled(hidden):
        return _pooled(encoder, hidden, idx, pooling, special, cls_index)

    if target == "similarity":
        other = text if other is None else _check_other(other)
        ref = torch.as_tensor(pool(trace(encoder, other, max_tokens=max_tokens), pooling, idx))

        def similarity(hidden):
            v = pooled(hidden)
            return torch.nn.functional.cosine_similarity(v, ref.to(device=v.device, dtype=v.dtype)[None], dim=-1)

        to = "its unperturbed self" if other == text else "that of the other sentence"
        return Target("similarity", f"cosine of the {vector} to {to}", similarity)
    if target == "probe":
        if probe is None:
            raise AttributionError("target='probe' needs probe=: a fitted probe (Pipeline) or (weight, bias) arrays.")
        weight, bias, labels = _linear_probe(probe)
        if weight.shape[1] != encoder.info.hidden_size:
            raise AttributionError(
                f"The probe reads {weight.shape[1]}-dimensional vectors but this model's are "
                f"{encoder.info.hidden_size}-dimensional; fit the probe on this model's vectors."
            )
        w_t, b_t = torch.as_tensor(weight), torch.as_tensor(bias)

        def logits(hidden):
            v = pooled(hidden)
            return v @ w_t.to(device=v.device, dtype=v.dtype).T + b_t.to(device=v.device, dtype=v.dtype)

        return _class_target(encoder, tt.input_ids, "probe", logits, labels, class_index, vector)
    head = getattr(encoder, "classifier", None)
    if head is None:
        raise AttributionError(
            f"target='classifier' reads the model's own classification head, and '{encoder.name}' has "
            "none. Load a fine-tuned *ForSequenceClassification checkpoint, or use target='similarity' "
            "or target='probe'."
        )
    return _class_target(encoder, tt.input_ids, "classifier", lambda hidden: head.apply(pooled(hidden)),
                         head.labels, class_index, vector)  # fmt: skip


def _class_target(encoder, ids, kind, logits, labels, class_index, vector: str) -> Target:
    if class_index is None:  # the class the model or probe picks for this text
        class_index = int(np.argmax(_forward_values(encoder, ids[None], logits)[0]))
    if not isinstance(class_index, (int, np.integer)) or not 0 <= int(class_index) < len(labels):
        raise AttributionError(f"class_index must be 0..{len(labels) - 1} ({', '.join(labels)}); got {class_index!r}.")
    c = int(class_index)
    label = labels[c]
    return Target(kind, f"{kind} logit of '{label}' read from the {vector}", lambda hidden: logits(hidden)[:, c], labels, c)


def _forward_values(encoder, ids: np.ndarray, fn, budget: int = DEFAULT_BUDGET) -> np.ndarray:
    """float64 [B]: ``fn`` on the model's hidden states for every row of ``ids`` [B, T] (batched)."""
    import torch

    info = encoder.info
    per_row = 4 * (info.num_layers + 1) * ids.shape[1] * info.hidden_size * 4 + 4 * 3 * info.num_heads * ids.shape[1] ** 2
    step = int(max(1, budget // max(1, per_row)))
    out = []
    with torch.inference_mode():
        for start in range(0, len(ids), step):
            batch = torch.as_tensor(ids[start : start + step], device=encoder.device)
            res = encoder.model(input_ids=batch, attention_mask=torch.ones_like(batch), output_hidden_states=True)
            out.append(fn(torch.stack(res.hidden_states)).double().cpu().numpy())
    return np.concatenate(out)


def target_values(encoder, ids, target: Target, budget: int = DEFAULT_BUDGET) -> np.ndarray:
    """float64 [B]: ``target`` for every row of token ids [B, T] (one forward pass per batch)."""
    return _forward_values(encoder, np.atleast_2d(np.asarray(ids, dtype=np.int64)), target, budget)
