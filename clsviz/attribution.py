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
gradients. Occlusion only runs the model forward, so it works for every family. The targets
are built and evaluated in :mod:`clsviz.attribution_targets`; their names import from here too.

>>> a = attribute(enc, "The film was not bad at all.", target="similarity",
...               other="I liked the movie.", pooling="cls")
>>> a.scores, a.value, a.baseline_value, a.completeness_gap
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .attribution_targets import (
    DEFAULT_BUDGET,
    TARGETS,
    AttributionError,
    Target,
    make_target,
    resolve_layer,
    target_values,
)
from .blocks import BlockStructureError, embedding_weights, run_stack
from .keywords import accepts_max_length
from .tracing import tokenize

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

_MAX_STEPS = 1024


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


# --- running the model --------------------------------------------------------------------------
def occlusion_id(encoder) -> int:
    """The token that stands in for a removed one: the mask token, else the pad token."""
    tok = encoder.tokenizer
    for candidate in (tok.mask_token_id, tok.pad_token_id):
        if candidate is not None:
            return int(candidate)
    raise AttributionError("This tokenizer has neither a mask nor a pad token to stand in for a removed token.")


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


@accepts_max_length
def attribute(encoder, text: str, target="similarity", other: str | None = None, pooling: str = "cls",
              layer: int = -1, method: str = "integrated_gradients", steps: int = 64, probe=None,
              class_index: int | None = None, max_tokens: int | None = None,
              budget: int = DEFAULT_BUDGET) -> Attribution:  # fmt: skip
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
    * ``max_tokens``: cut the text (and ``other``) at this many tokens (default: the model's limit).
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
        tt = tokenize(encoder, text, max_tokens)
    except ValueError as exc:
        raise AttributionError(str(exc)) from exc
    if method == "grad_x_input" and isinstance(target, str) and target == "similarity" and other is None:
        raise AttributionError(_NO_GRADIENT)
    goal = make_target(encoder, text, target, other, pooling, layer, probe, class_index, max_tokens)
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
