"""Which measure of "what flows into [CLS]" predicts what removing tokens actually does.

Every measure ranks the content tokens of a text: the context-mixing measures by the [CLS] row
(or the row the pooling reads) of their rollout up to ``layer`` (raw attention by that block's
own row), the gradient methods by ``|score|`` (as Ferrando et al. 2022 and Mohebbi et al. 2023
compare them with mixing scores: how much a token matters, not in which direction), a seeded
random order as the reference. Then tokens are removed - replaced by the mask token (the pad
token where there is none) - in that order, and the target is measured again:

* deletion curve ``D(k)``: the target with the top-k tokens removed, k = 1..n (n content tokens);
  keep curve ``K(k)``: with every content token removed except the top k
* AOPC (Samek et al. 2017): ``mean_k f(x) - D(k)``, the area over the deletion curve
* comprehensiveness and sufficiency (DeYoung et al. 2020): ``f(x) - D(k)`` and ``f(x) - K(k)``
  averaged over the top 1, 5, 10, 20 and 50% of the tokens

A faithful ranking removes the tokens that matter first: high AOPC and comprehensiveness, low
sufficiency. The default target is the pooled vector's cosine to its unperturbed self
(f(x) = 1); a probe's or the model's classifier's logit works too (:func:`clsviz.attribution.make_target`).

>>> board = rank_measures(enc, ["The film was not bad at all."])
>>> board.ranking()        # one row per measure, best first
>>> verdict(board)         # one sentence
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .attribution import (
    ATTRIBUTION_METHODS,
    Target,
    attribute,
    make_target,
    occlusion_id,
    resolve_layer,
    target_values,
)
from .attribution import METHOD_NAMES as ATTRIBUTION_NAMES
from .mixing import METHOD_NAMES as MIXING_NAMES
from .mixing import measure, rollout
from .pooling import token_position
from .progress import check_cancel
from .tracing import Trace, summary_index, trace

__all__ = ["BINS", "MEASURES", "MEASURE_NAMES", "Scoreboard", "rank_measures", "token_ranking", "verdict"]

MEASURES = (
    "attention", "rollout", "value_norm", "globenc", "alti", "value_zeroing",
    "integrated_gradients", "grad_x_input", "occlusion", "random",
)  # fmt: skip
"""Every measure the scoreboard ranks; ``"random"`` is the reference a measure must beat."""

MEASURE_NAMES = {
    **MIXING_NAMES,
    "attention": "raw attention (last block)",
    "rollout": "attention rollout",
    **ATTRIBUTION_NAMES,
    "random": "random order",
}

BINS = (0.01, 0.05, 0.1, 0.2, 0.5)
"""Shares of the tokens removed or kept for comprehensiveness and sufficiency (DeYoung et al. 2020)."""

_FAMILY = {"attention": "attention", "rollout": "attention", "random": "reference", "occlusion": "perturbation"}


def _family(name: str) -> str:
    return _FAMILY.get(name, "gradient" if name in ATTRIBUTION_METHODS else "mixing")


@dataclass(frozen=True, eq=False)
class Scoreboard:
    """The faithfulness of each measure on some texts.

    * ``table``: one row per (text, measure): ``text_index``, ``text``, ``measure``, ``family``,
      ``n_tokens``, ``first_token`` (the token removed first), ``aopc``, ``comprehensiveness``,
      ``sufficiency``
    * ``curves``: one row per (text, measure, k): ``k``, ``fraction`` (k / n), ``full`` (f(x)),
      ``deleted`` (D(k)), ``kept`` (K(k))
    * ``notes``: measures left out and why
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    model_name: str
    target: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def ranking(self) -> pd.DataFrame:
        """One row per measure, means over the texts, best AOPC first, with ``rank`` (1 = best)."""
        if self.table.empty:
            return pd.DataFrame(columns=["rank", "measure", "name", "family", "aopc", "comprehensiveness", "sufficiency"])
        means = (
            self.table.groupby(["measure", "family"], sort=False)[["aopc", "comprehensiveness", "sufficiency"]]
            .mean()
            .reset_index()
            .sort_values(["aopc", "comprehensiveness"], ascending=False, kind="stable")
            .reset_index(drop=True)
        )
        means.insert(0, "rank", np.arange(1, len(means) + 1))
        means.insert(2, "name", [MEASURE_NAMES[m] for m in means["measure"]])
        return means


def _pooling_row(matrix: np.ndarray, pooling: str, t: Trace) -> np.ndarray:
    """float64 [T]: the row of a [T, T] mixing matrix that the pooled vector reads."""
    content = np.flatnonzero(t.content_mask)
    if pooling in ("mean", "max"):
        return matrix.mean(axis=0, dtype=np.float64)
    if pooling == "mean_content":
        return matrix[content].mean(axis=0, dtype=np.float64)
    k = token_position(pooling)
    if k is not None:
        index = min(k, t.seq_len - 1)
    elif pooling in ("sep", "first", "last"):
        index = {"sep": t.sep_index, "first": content[0], "last": content[-1]}[pooling]
    else:
        index = None
    return np.asarray(matrix[summary_index(t, f"The {pooling!r} pooling") if index is None else index], dtype=np.float64)


def token_ranking(scores: np.ndarray, special_mask: np.ndarray, by_magnitude: bool = False) -> np.ndarray:
    """int64 [n]: content positions, highest score first (``|score|`` with ``by_magnitude``);
    ties keep text order."""
    content = np.flatnonzero(~np.asarray(special_mask, dtype=bool))
    s = np.asarray(scores, dtype=np.float64)[content]
    s = np.abs(s) if by_magnitude else s
    return content[np.argsort(-s, kind="stable")]


def _scores(encoder, t: Trace, name: str, goal: Target, pooling: str, block: int, steps: int, rng, cancel) -> np.ndarray:
    """float64 [T]: the token scores of measure ``name`` for ``t``."""
    if name == "random":
        return rng.permutation(t.seq_len).astype(np.float64)
    if name in ATTRIBUTION_METHODS:
        found = attribute(encoder, t.text, target=goal, method=name, steps=steps, max_length=t.seq_len)
        return found.scores.astype(np.float64)
    method = "attention" if name == "rollout" else name
    mix = measure(encoder, t, method, cancel=cancel)
    matrix = mix.matrix[block - 1] if name == "attention" else rollout(mix.matrix, method)[block - 1]
    return _pooling_row(matrix, pooling, t)


def _curves(encoder, t: Trace, goal: Target, orders: dict[str, np.ndarray]) -> dict[str, tuple]:
    """{measure: (full, deleted [n], kept [n])}, all perturbed inputs in one batched pass."""
    filler = occlusion_id(encoder)
    content = np.flatnonzero(t.content_mask)
    rows = [t.input_ids]
    for order in orders.values():
        for k in range(1, len(order) + 1):
            deleted = t.input_ids.copy()
            deleted[order[:k]] = filler
            kept = t.input_ids.copy()
            kept[np.setdiff1d(content, order[:k])] = filler
            rows += [deleted, kept]
    values = target_values(encoder, np.stack(rows), goal)
    out, at = {}, 1
    for name, order in orders.items():
        n = len(order)
        block = values[at : at + 2 * n].reshape(n, 2)
        out[name] = (float(values[0]), block[:, 0], block[:, 1])
        at += 2 * n
    return out


def _metrics(full: float, deleted: np.ndarray, kept: np.ndarray) -> dict[str, float]:
    n = len(deleted)
    ks = [max(1, math.ceil(q * n)) - 1 for q in BINS]
    return {
        "aopc": float(np.mean(full - deleted)),
        "comprehensiveness": float(np.mean(full - deleted[ks])),
        "sufficiency": float(np.mean(full - kept[ks])),
    }


def rank_measures(encoder, texts, target="self_similarity", measures=MEASURES, pooling: str = "cls",
                  layer: int = -1, probe=None, class_index: int | None = None, steps: int = 32, seed: int = 0,
                  max_length: int | None = None, progress=None, cancel=None) -> Scoreboard:  # fmt: skip
    """Rank ``measures`` by how well their token rankings predict removals, on ``texts``.

    ``texts``: strings or Traces of ``encoder``. ``target``: ``"self_similarity"`` (cosine of
    the ``pooling`` vector at ``layer`` to its unperturbed self), ``"probe"``, ``"classifier"``
    (see :func:`clsviz.attribution.attribute`; ``class_index=None`` takes each text's predicted
    class) or a callable on hidden states [L+1, B, T, D] -> [B]. ``steps``: integrated-gradients
    path points. A measure the model cannot support (a family without the block structure) is
    left out with a note. ``progress(done, total, message)`` and ``cancel`` as in
    :mod:`clsviz.progress`. Raises ValueError for no texts, unknown measures or a bad layer.
    """
    items = [texts] if isinstance(texts, (str, Trace)) else list(texts)
    if not items:
        raise ValueError("rank_measures needs at least one text.")
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"Unknown measure(s) {unknown}; choose from {', '.join(MEASURES)}.")
    idx = resolve_layer(encoder, layer, pooling)
    if idx == 0:
        raise ValueError("layer 0 is the embedding output: no block has mixed anything in yet. Pick a layer from 1.")
    kind = "similarity" if target == "self_similarity" else target
    rng = np.random.default_rng(seed)
    rows, curve_rows, notes, skipped = [], [], [], set()
    description = ""
    total = len(items) * (len(measures) + 1)
    for ti, item in enumerate(items):
        t = item if isinstance(item, Trace) else trace(encoder, item, max_length=max_length)
        goal = make_target(encoder, t.text, kind, None, pooling, idx, probe, class_index, max_length=t.seq_len)
        description = description or goal.description
        orders = {}
        for mi, name in enumerate(measures):
            check_cancel(cancel, "The faithfulness scoreboard")
            if progress is not None:
                progress(ti * (len(measures) + 1) + mi, total, f"Sentence {ti + 1}: {MEASURE_NAMES[name]}")
            if name in skipped:
                continue
            try:
                scores = _scores(encoder, t, name, goal, pooling, idx, steps, rng, cancel)
            except ValueError as exc:  # e.g. a family without the block structure
                skipped.add(name)
                notes.append(f"{MEASURE_NAMES[name]} left out: {exc}")
                continue
            orders[name] = token_ranking(scores, t.special_mask, by_magnitude=name in ATTRIBUTION_METHODS)
        for name, (full, deleted, kept) in _curves(encoder, t, goal, orders).items():
            n = len(deleted)
            rows.append({"text_index": ti, "text": t.text, "measure": name, "family": _family(name), "n_tokens": n,
                         "first_token": t.tokens[orders[name][0]], **_metrics(full, deleted, kept)})  # fmt: skip
            curve_rows.append(pd.DataFrame({"text_index": ti, "measure": name, "k": np.arange(1, n + 1),
                                            "fraction": np.arange(1, n + 1) / n, "full": full,
                                            "deleted": deleted, "kept": kept}))  # fmt: skip
    if progress is not None:
        progress(total, total, "Done")
    curves = pd.concat(curve_rows, ignore_index=True) if curve_rows else pd.DataFrame()
    return Scoreboard(pd.DataFrame(rows), curves, encoder.name, description, tuple(notes))


def verdict(board: Scoreboard) -> str:
    """One plain sentence: which measure best predicts removals on this model, and where raw
    attention stands."""
    ranking = board.ranking()
    if ranking.empty:
        return "No measure could be scored on these texts."
    n_texts = board.table["text_index"].nunique()
    best = ranking.iloc[0]
    texts = f"{n_texts} sentence{'s' if n_texts != 1 else ''}"
    sentence = (
        f"On {board.model_name}, {MEASURE_NAMES[best['measure']]} best predicts what removing tokens does to "
        f"the {board.target} (AOPC {best['aopc']:.3f} over {texts})"
    )
    raw = ranking[ranking["measure"] == "attention"]
    if not raw.empty and best["measure"] != "attention":
        r = raw.iloc[0]
        sentence += f"; raw attention ranks {int(r['rank'])} of {len(ranking)} (AOPC {r['aopc']:.3f})"
    rand = ranking[ranking["measure"] == "random"]
    if not rand.empty and best["measure"] != "random":
        beaten = int((ranking["aopc"] > rand.iloc[0]["aopc"]).sum())
        sentence += f", and {beaten} of {len(ranking) - 1} measures beat a random order"
    return sentence + "."
