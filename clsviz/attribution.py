"""Which input tokens a pooled vector's target depends on: gradient and occlusion attributions.

A *target* is one number computed from the hidden states of a text: the cosine between the
pooled vector of the text and that of another text (``"similarity"``: why does [CLS] call two
sentences similar, and does mean pooling agree?), the logit of one class of a linear probe
(``"probe"``), or of the model's own classification head (``"classifier"``). A *method* splits
that number over the input tokens:

* ``"integrated_gradients"`` (Sundararajan et al. 2017) over the word-embedding input only
  (position and token-type embeddings unchanged), from a baseline where every content token
  is the pad token's embedding and special tokens keep theirs; the path integral uses
  Gauss-Legendre nodes, so ``sum(scores)`` matches ``value - baseline_value`` closely
  (completeness: :attr:`Attribution.completeness_gap`)
* ``"grad_x_input"``: word embedding times the gradient, at the input (refused for a target whose
  gradient there is zero, such as the similarity of a text to itself: its scores would be noise)
* ``"occlusion"``: the drop of the target when one content token is replaced by the mask token
  (the pad token where the tokenizer has no mask token); special tokens score 0

Gradients come from :func:`clsviz.blocks.run_stack`, which runs the model's blocks from its
weights: the shared model is never put in training mode and its parameters never collect
gradients. Occlusion only runs the model forward, so it works for every family.

>>> a = attribute(enc, "The film was not bad at all.", target="similarity",
...               other="I liked the movie.", pooling="cls")
>>> a.scores, a.value, a.baseline_value, a.completeness_gap
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .blocks import BlockStructureError, embedding_weights, run_stack
from .encoder import apply_pooler
from .layers import check_layer
from .pooling import check_pooling, pool, pool_hidden
from .tracing import check_summary_token, has_content, special_positions, tokenize, trace

__all__ = [
    "ATTRIBUTION_METHODS",
    "METHOD_NAMES",
    "NOISE",
    "TARGETS",
    "Attribution",
    "AttributionError",
    "Target",
    "attribute",
    "attribution_table",
    "make_target",
    "occlusion_id",
    "resolve_layer",
    "target_values",
]

TARGETS = ("similarity", "probe", "classifier")
"""What is attributed: a cosine to another text, a probe's class logit, the model's own head."""

ATTRIBUTION_METHODS = ("integrated_gradients", "grad_x_input", "occlusion")
"""How the target is split over the input tokens."""

METHOD_NAMES = {
    "integrated_gradients": "integrated gradients",
    "grad_x_input": "gradient × input",
    "occlusion": "occlusion",
}

NOISE = 1e-6
"""Gradient × input scores whose largest magnitude is at most this times max(1, |f(x)|) are float
noise: the target has no gradient at the input."""

_DEFAULT_BUDGET = 512 * 2**20  # bytes of activations one batch of path points may hold
_MAX_STEPS = 1024


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


@dataclass(frozen=True, eq=False)
class Attribution:
    """Per-token attribution of one target for one text (T tokens, specials included).

    * ``scores``: float32 [T], each token's share of ``value - baseline_value`` (summed over
      embedding dimensions); specials score 0 under occlusion
    * ``value``: the target at the input; ``baseline_value``: at the baseline (every content
      token replaced: by the pad embedding for the gradient methods, by the occlusion token
      for occlusion)
    * ``completeness_gap``: ``sum(scores) - (value - baseline_value)``; near 0 for integrated
      gradients, not guaranteed for the other methods
    """

    text: str
    tokens: tuple[str, ...]
    special_mask: np.ndarray
    scores: np.ndarray
    value: float
    baseline_value: float
    method: str
    target: str
    pooling: str
    layer: int
    steps: int
    model_name: str

    @property
    def completeness_gap(self) -> float:
        return float(np.sum(self.scores, dtype=np.float64) - (self.value - self.baseline_value))

    @property
    def relative_gap(self) -> float:
        """``|completeness_gap| / |value - baseline_value|`` (inf when the two values agree)."""
        change = abs(self.value - self.baseline_value)
        return abs(self.completeness_gap) / change if change > 0 else float("inf")


# --- targets ---------------------------------------------------------------------------------
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


def make_target(encoder, text: str, target="similarity", other: str | None = None, pooling: str = "cls",
                layer: int = -1, probe=None, class_index: int | None = None,
                max_length: int | None = None) -> Target:  # fmt: skip
    """The :class:`Target` of :func:`attribute` (see there) for ``text`` cut at ``max_length``
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
        tt = tokenize(encoder, text, max_length)
    except ValueError as exc:
        raise AttributionError(str(exc)) from exc
    special, cls_index = tt.special_mask, special_positions(tt, encoder.info)[0]
    vector = f"{'[CLS]' if pooling == 'cls' else pooling + '-pooled'} vector at layer {idx}"

    def pooled(hidden):
        return _pooled(encoder, hidden, idx, pooling, special, cls_index)

    if target == "similarity":
        other = text if other is None else _check_other(other)
        ref = torch.as_tensor(pool(trace(encoder, other, max_length=max_length), pooling, idx))

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


# --- running the model --------------------------------------------------------------------------
def occlusion_id(encoder) -> int:
    """The token that stands in for a removed one: the mask token, else the pad token."""
    tok = encoder.tokenizer
    for candidate in (tok.mask_token_id, tok.pad_token_id):
        if candidate is not None:
            return int(candidate)
    raise AttributionError("This tokenizer has neither a mask nor a pad token to stand in for a removed token.")


def _forward_values(encoder, ids: np.ndarray, fn, budget: int = _DEFAULT_BUDGET) -> np.ndarray:
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


def target_values(encoder, ids, target: Target, budget: int = _DEFAULT_BUDGET) -> np.ndarray:
    """float64 [B]: ``target`` for every row of token ids [B, T] (one forward pass per batch)."""
    return _forward_values(encoder, np.atleast_2d(np.asarray(ids, dtype=np.int64)), target, budget)


def _embeddings(encoder, ids: np.ndarray, special: np.ndarray):
    """(input, baseline) word embeddings [T, E]: the baseline has the pad token's embedding at
    every content position and the specials' own embeddings."""
    import torch

    word = embedding_weights(encoder).word
    tok = encoder.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else occlusion_id(encoder)
    idx = torch.as_tensor(ids, device=word.device)
    base_ids = torch.where(torch.as_tensor(special, device=word.device), idx, torch.full_like(idx, int(pad)))
    return word[idx].clone(), word[base_ids].clone()


def _stack_values(encoder, emb, target):
    return target(run_stack(encoder, inputs_embeds=emb))


def _gradients(encoder, points, target, budget: int):
    """(values [N], gradients [N, T, E]) of ``target`` at word-embedding inputs ``points`` [N, T, E]."""
    import torch

    info = encoder.info
    seq_len = points.shape[1]
    per_point = 4 * info.num_layers * (3 * info.num_heads * seq_len**2 + 16 * seq_len * info.hidden_size)
    step = int(max(1, budget // max(1, per_point)))
    values, grads = [], []
    with torch.inference_mode(False), torch.enable_grad():
        for start in range(0, len(points), step):
            x = points[start : start + step].detach().clone().requires_grad_(True)
            f = _stack_values(encoder, x, target)
            (g,) = torch.autograd.grad(f.sum(), x)  # gradients reach x only: the weights are detached views
            values.append(f.detach())
            grads.append(g.detach())
    return torch.cat(values), torch.cat(grads)


def _integrated_gradients(encoder, emb, base, target, steps: int, budget: int):
    import torch

    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]; moved to [0, 1]
    alphas = torch.as_tensor((nodes + 1.0) / 2.0, dtype=emb.dtype, device=emb.device)
    w = torch.as_tensor(weights / 2.0, dtype=emb.dtype, device=emb.device)
    points = base[None] + alphas[:, None, None] * (emb - base)[None]
    _, grads = _gradients(encoder, points, target, budget)
    mean_grad = (w[:, None, None] * grads).sum(dim=0)
    return ((emb - base) * mean_grad).sum(dim=-1)


def _occlusion(encoder, ids, special, target, budget: int) -> tuple[np.ndarray, float, float]:
    content = np.flatnonzero(~special)
    filler = occlusion_id(encoder)
    batch = np.repeat(ids[None], len(content) + 2, axis=0)
    batch[np.arange(len(content)) + 1, content] = filler  # row 0: the input; last row: all occluded
    batch[-1, content] = filler
    values = target_values(encoder, batch, target, budget)
    scores = np.zeros(len(ids))
    scores[content] = values[0] - values[1:-1]
    return scores, float(values[0]), float(values[-1])


def attribute(encoder, text: str, target="similarity", other: str | None = None, pooling: str = "cls",
              layer: int = -1, method: str = "integrated_gradients", steps: int = 64, probe=None,
              class_index: int | None = None, max_length: int | None = None,
              budget: int = _DEFAULT_BUDGET) -> Attribution:  # fmt: skip
    """Split a target of ``text`` over its tokens.

    * ``target``: ``"similarity"`` (cosine between the ``pooling`` vector of ``text`` at
      ``layer`` and that of ``other``; ``other=None`` compares the text with itself),
      ``"probe"`` (the logit of class ``class_index`` of ``probe``: a fitted scikit-learn
      Pipeline / linear model, e.g. from :func:`clsviz.experiments.probe.make_probe`, or
      ``(weight [C, D] or [D], bias)`` arrays, read on the ``pooling`` vector at ``layer``;
      a binary probe's class logits are the log-odds ``-z`` and ``z``), ``"classifier"`` (the
      model's own head, :attr:`Encoder.classifier`, on the ``pooling`` vector at ``layer``:
      ``"cls"`` at ``-1`` gives the model's own logits), or a callable ``fn(hidden [L+1, B, T,
      D]) -> [B]``. ``class_index=None`` picks the class predicted for ``text``.
    * ``method``: one of :data:`ATTRIBUTION_METHODS`; ``steps``: integrated-gradients path points.
    * ``max_length``: cut the text (and ``other``) at this many tokens (default: the model's limit).
    * ``budget``: bytes of activations one batch may hold (long texts are split into batches).

    Raises :class:`AttributionError` (a ValueError) for an empty text or other sentence, an
    unknown target/method/pooling, a layer out of range, a model without a head for
    ``"classifier"``, and - for the gradient methods - a model family whose blocks clsviz
    cannot run (occlusion works for every family); and for ``"grad_x_input"`` on a target with
    no gradient at the input (the similarity of a text to itself, ``other=None``), whose scores
    would be float noise.
    """
    import torch

    if method not in ATTRIBUTION_METHODS:
        raise AttributionError(f"Unknown attribution method {method!r}; choose one of {', '.join(ATTRIBUTION_METHODS)}.")
    if not isinstance(steps, (int, np.integer)) or not 1 <= int(steps) <= _MAX_STEPS:
        raise AttributionError(f"steps must be a whole number from 1 to {_MAX_STEPS}; got {steps!r}.")
    try:
        tt = tokenize(encoder, text, max_length)
    except ValueError as exc:
        raise AttributionError(str(exc)) from exc
    if method == "grad_x_input" and isinstance(target, str) and target == "similarity" and other is None:
        raise AttributionError(_NO_GRADIENT)
    goal = make_target(encoder, text, target, other, pooling, layer, probe, class_index, max_length)
    ids, special = tt.input_ids, tt.special_mask
    if method == "occlusion":
        scores, value, baseline_value = _occlusion(encoder, ids, special, goal, budget)
    else:
        try:
            emb, base = _embeddings(encoder, ids, special)
        except BlockStructureError as exc:
            raise AttributionError(f"{METHOD_NAMES[method]} runs the model's blocks from their weights, and {exc}") from exc
        with torch.inference_mode():
            both = _stack_values(encoder, torch.stack([emb, base]), goal).double().cpu().numpy()
        value, baseline_value = float(both[0]), float(both[1])
        if method == "integrated_gradients":
            scores = _integrated_gradients(encoder, emb, base, goal, int(steps), budget)
        else:
            _, grads = _gradients(encoder, emb[None], goal, budget)
            scores = (emb * grads[0]).sum(dim=-1)
        scores = scores.double().cpu().numpy()
        if method == "grad_x_input" and np.max(np.abs(scores[~special]), initial=0.0) <= NOISE * max(1.0, abs(value)):
            raise AttributionError(
                f"Gradient × input found no gradient at the input for this target: every score is at most {NOISE:g} "
                "of the target, float noise rather than a ranking. Use integrated gradients or occlusion, or a "
                "target that changes with the input (a probe's or classifier's logit, or similarity to another text).")
    return Attribution(
        text=tt.text,
        tokens=tt.tokens,
        special_mask=np.asarray(special, dtype=bool),
        scores=np.asarray(scores, dtype=np.float32),
        value=value,
        baseline_value=baseline_value,
        method=method,
        target=goal.description,
        pooling=pooling,
        layer=int(layer),
        steps=int(steps) if method == "integrated_gradients" else 0,
        model_name=encoder.name,
    )


_NO_GRADIENT = (
    "Gradient × input needs a target with a gradient at the input. The cosine of a vector to itself is at its "
    "maximum there, so its gradient is exactly zero and the scores would be float noise. Give other= (a sentence "
    "to compare with), a probe or classifier target, or use integrated gradients or occlusion."
)


def attribution_table(attributions) -> pd.DataFrame:
    """Tidy table of one or more :class:`Attribution`: one row per (attribution, token) with
    ``pooling``, ``method``, ``target``, ``position``, ``token``, ``special``, ``score``,
    ``value``, ``baseline_value`` and ``completeness_gap``."""
    if isinstance(attributions, Attribution):
        attributions = [attributions]
    frames = [
        pd.DataFrame(
            {
                "model": a.model_name,
                "pooling": a.pooling,
                "method": a.method,
                "target": a.target,
                "position": np.arange(len(a.tokens)),
                "token": list(a.tokens),
                "special": a.special_mask,
                "score": a.scores.astype(np.float64),
                "value": a.value,
                "baseline_value": a.baseline_value,
                "completeness_gap": a.completeness_gap,
            }
        )
        for a in attributions
    ]
    return pd.concat(frames, ignore_index=True)
