"""Which measure of "what flows into [CLS]" predicts what removing tokens actually does.

Every measure ranks the content tokens of a text:

* the context-mixing measures by the [CLS] row (or the row the pooling reads) of their matrix
  at ``layer``, in two forms compared like with like: rolled out over every block up to
  ``layer`` (``rollout`` for raw attention; ``value_norm``, ``globenc``, ``alti``,
  ``value_zeroing``) and that one block alone (``attention``, ``alti_block``,
  ``value_zeroing_block``);
* the gradient methods and occlusion by their *signed* score, highest first: the tokens that
  push the target up are removed first, as the deletion curve measures how far the target
  drops (a token whose removal would raise the target is not "important" for that drop);
* ``random``: the mean of :data:`SHUFFLES` seeded random orders, the reference to beat.

Then tokens are removed - replaced by the mask token (the pad token where there is none) - in
that order, and the target is measured again:

* deletion curve ``D(k)``: the target with the top-k tokens removed, k = 1..n (n content tokens);
  keep curve ``K(k)``: with every content token removed except the top k
* AOPC as Samek et al. (2017) define it: ``1/(n+1) * sum_{k=0..n} f(x) - D(k)`` (the k = 0 term
  is 0), the same for every measure, so texts of different lengths weigh alike
* comprehensiveness and sufficiency (DeYoung et al. 2020): ``f(x) - D(k)`` and ``f(x) - K(k)``
  averaged over the top 1, 5, 10, 20 and 50% of the tokens

Each measure's own perturbation is stated beside it (:meth:`Scoreboard.ranking`'s
``perturbation``): occlusion scores tokens with the same mask-token replacement the curves use
(an advantage over the others), integrated gradients walks from pad-token embeddings.

The default target gives every family a real signal: the model's classifier logit for the
class it predicts when it has a head, else the logit of the predicted class of a linear probe of
the demo corpus's sentiment fitted on this model (:func:`default_probe`). The pooled vector's
cosine to its unperturbed self (``"self_similarity"``) is at its maximum at the input, so its
gradient there is zero: gradient × input is then left out with a note, never ranked. A measure
whose scores are all float noise for any target is left out the same way.

>>> board = rank_measures(enc, ["The film was not bad at all."])
>>> board.ranking()        # one row per measure, best first, with aopc_low / aopc_high
>>> verdict(board)         # one sentence, decided on the intervals
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from .attribution import (
    ATTRIBUTION_METHODS,
    NOISE,
    AttributionError,
    Target,
    attribute,
    make_target,
    occlusion_id,
    resolve_layer,
    target_values,
)
from .attribution import METHOD_NAMES as ATTRIBUTION_NAMES
from .corpus import demo_corpus
from .keywords import accepts_max_length
from .layers import block_row
from .mixing import METHOD_NAMES as MIXING_NAMES
from .mixing import measure, rollout
from .pooling import token_position
from .progress import check_cancel
from .tracing import Trace, summary_index, trace
from .vectors import extract
from .verdicts import REPRODUCES, compare_paired, decide, estimate, paired_difference

__all__ = [
    "BINS",
    "BOARD_TARGETS",
    "MEASURES",
    "MEASURE_NAMES",
    "SHUFFLES",
    "Scoreboard",
    "aopc",
    "default_probe",
    "rank_measures",
    "token_ranking",
    "verdict",
]

MEASURES = (
    "attention", "rollout", "value_norm", "globenc", "alti", "value_zeroing", "alti_block", "value_zeroing_block",
    "integrated_gradients", "grad_x_input", "occlusion", "random",
)  # fmt: skip
"""Every measure the scoreboard ranks; ``"random"`` is the reference a measure must beat."""

MEASURE_NAMES = {
    "attention": "raw attention (last block)",
    "rollout": "attention rollout",
    **{m: f"{MIXING_NAMES[m]} rollout" for m in ("value_norm", "globenc", "alti", "value_zeroing")},
    "alti_block": f"{MIXING_NAMES['alti']} (last block)",
    "value_zeroing_block": f"{MIXING_NAMES['value_zeroing']} (last block)",
    **ATTRIBUTION_NAMES,
    "random": "random order",
}

BoardTarget = Literal["auto", "probe", "classifier", "self_similarity"]
BOARD_TARGETS: tuple[str, ...] = ("auto", "probe", "classifier", "self_similarity")
"""Targets by name: ``auto`` (the classifier's logit when the model has a head, else a demo
sentiment probe's), ``probe``, ``classifier``, ``self_similarity`` (no gradient at the input)."""

BINS = (0.01, 0.05, 0.1, 0.2, 0.5)
"""Shares of the tokens removed or kept for comprehensiveness and sufficiency (DeYoung et al. 2020)."""

SHUFFLES = 20
"""Random orders averaged for the ``random`` reference, per text."""

DEFAULT_PROBE_LABEL = "sentiment"

_FAMILY = {"attention": "attention", "rollout": "attention", "random": "reference", "occlusion": "perturbation"}
_PROBES: dict = {}


def _family(name: str) -> str:
    return _FAMILY.get(name, "gradient" if name in ATTRIBUTION_METHODS else "mixing")


def _perturbation(name: str, filler: str) -> str:
    curve = f"curve: tokens replaced by {filler}"
    if name == "occlusion":
        return f"scores: each token replaced by {filler}, the same perturbation as the curve (an advantage); {curve}"
    if name == "integrated_gradients":
        return f"scores: a path from pad-token word embeddings to the input; {curve}"
    if name == "grad_x_input":
        return f"scores: the gradient at the input times the word embedding; {curve}"
    if name == "random":
        return f"mean of {SHUFFLES} random orders; {curve}"
    return f"scores: read from the unperturbed forward pass; {curve}"


@dataclass(frozen=True, eq=False)
class Scoreboard:
    """The faithfulness of each measure on some texts.

    * ``table``: one row per (text, measure): ``text_index``, ``text``, ``measure``, ``family``,
      ``n_tokens``, ``first_token`` (the token removed first), ``aopc``, ``comprehensiveness``,
      ``sufficiency``
    * ``curves``: one row per (text, measure, k): ``k``, ``fraction`` (k / n), ``full`` (f(x)),
      ``deleted`` (D(k)), ``kept`` (K(k)); for ``random`` the mean over the shuffles
    * ``notes``: measures left out and why; ``perturbations``: measure -> its perturbation in words
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    model_name: str
    target: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    perturbations: dict = field(default_factory=dict)
    seed: int = 0

    def ranking(self) -> pd.DataFrame:
        """One row per measure, means over the texts, best AOPC first, with ``rank`` (1 = best),
        ``aopc_low`` / ``aopc_high`` (95% bootstrap interval over the texts) and
        ``perturbation``. Measures left out (see ``notes``) are not in it."""
        columns = ["rank", "measure", "name", "family", "aopc", "aopc_low", "aopc_high", "comprehensiveness",
                   "sufficiency", "texts", "perturbation"]  # fmt: skip
        if self.table.empty:
            return pd.DataFrame(columns=columns)
        rows = []
        for (name, family), part in self.table.groupby(["measure", "family"], sort=False):
            found = estimate(part["aopc"].to_numpy(), seed=self.seed, unit="sentences")
            rows.append({"measure": name, "family": family, "aopc": found.value, "aopc_low": found.low,
                         "aopc_high": found.high, "comprehensiveness": float(part["comprehensiveness"].mean()),
                         "sufficiency": float(part["sufficiency"].mean()), "texts": len(part),
                         "perturbation": self.perturbations.get(name, "")})  # fmt: skip
        means = pd.DataFrame(rows).sort_values(["aopc", "comprehensiveness"], ascending=False, kind="stable")
        means = means.reset_index(drop=True)
        means.insert(0, "rank", np.arange(1, len(means) + 1))
        means.insert(2, "name", [MEASURE_NAMES[m] for m in means["measure"]])
        return means[columns]

    def per_text(self, name: str) -> np.ndarray:
        """float64 [texts]: the AOPC of measure ``name`` per text, in text order."""
        rows = self.table[self.table["measure"] == name].sort_values("text_index")
        return rows["aopc"].to_numpy(dtype=np.float64)


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


def aopc(full: float, deleted: np.ndarray) -> float:
    """Samek et al.'s AOPC of one deletion curve: ``sum_{k=0..n} (f(x) - D(k)) / (n + 1)``, with
    ``D(0) = f(x)`` and ``deleted`` = D(1..n)."""
    deleted = np.asarray(deleted, dtype=np.float64)
    return float(np.sum(full - deleted) / (len(deleted) + 1))


def default_probe(encoder, pooling: str = "cls", layer: int = -1, label: str = DEFAULT_PROBE_LABEL):
    """A linear probe (standardised logistic regression, as :func:`clsviz.experiments.probe.make_probe`) of the demo corpus's
    ``label`` fitted on this model's ``pooling`` vectors at ``layer`` (cached per model)."""
    from sklearn.linear_model import LogisticRegression  # optional until a probe is fitted: sklearn is heavy
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    idx = resolve_layer(encoder, layer, pooling)
    key = (encoder.name, pooling, idx, label)
    if key not in _PROBES:
        corpus = demo_corpus()
        X = extract(encoder, corpus.texts, (pooling,), max_tokens=128).vectors[:, idx, 0]
        # The probe of clsviz.experiments.probe.make_probe (standardise, then logistic regression),
        # built here because the evidence layer sits below the experiments.
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        _PROBES[key] = probe.fit(X, np.asarray(corpus.labels[label]))
    return _PROBES[key]


def _resolve_target(encoder, target, pooling: str, idx: int, probe):
    """(target kind for make_target, probe, description prefix)."""
    if callable(target) and not isinstance(target, str):
        return target, probe
    if target not in BOARD_TARGETS:
        raise ValueError(f"Unknown target {target!r}; choose one of {', '.join(BOARD_TARGETS)} (or pass a callable).")
    if target == "auto":
        target = "classifier" if getattr(encoder, "classifier", None) is not None else "probe"
    if target == "probe" and probe is None:
        probe = default_probe(encoder, pooling, idx)
    return ("similarity" if target == "self_similarity" else target), probe


def _scores(encoder, t: Trace, name: str, goal: Target, pooling: str, block: int, steps: int, memo, cancel):
    """float64 [T]: the token scores of measure ``name`` for ``t``."""
    if name in ATTRIBUTION_METHODS:
        found = attribute(encoder, t.text, target=goal, method=name, steps=steps, max_tokens=t.seq_len)
        scores = found.scores.astype(np.float64)
        if float(np.max(np.abs(scores[~t.special_mask]), initial=0.0)) <= NOISE * max(1.0, abs(found.value)):
            raise AttributionError(f"its scores are float noise (at most {NOISE:g} of the target): this target gives "
                                   "it no signal on this text.")  # fmt: skip
        return scores
    method = "attention" if name == "rollout" else name.removesuffix("_block")
    if method not in memo:
        memo[method] = measure(encoder, t, method, cancel=cancel)
    mix = memo[method]
    one_block = name == "attention" or name.endswith("_block")
    matrix = mix.matrix[block_row(block)] if one_block else rollout(mix.matrix, method)[block_row(block)]
    return _pooling_row(matrix, pooling, t)


def _curve_rows(t: Trace, order: np.ndarray, filler: int) -> list[np.ndarray]:
    content = np.flatnonzero(t.content_mask)
    rows = []
    for k in range(1, len(order) + 1):
        deleted = t.input_ids.copy()
        deleted[order[:k]] = filler
        kept = t.input_ids.copy()
        kept[np.setdiff1d(content, order[:k])] = filler
        rows += [deleted, kept]
    return rows


def _curves(encoder, t: Trace, goal: Target, orders: dict[str, list[np.ndarray]]) -> dict[str, tuple]:
    """{measure: (full, deleted [n], kept [n])} (means over a measure's orders), all perturbed
    inputs in one batched pass."""
    filler = occlusion_id(encoder)
    rows = [t.input_ids]
    for many in orders.values():
        for order in many:
            rows += _curve_rows(t, order, filler)
    values = target_values(encoder, np.stack(rows), goal)
    out, at = {}, 1
    for name, many in orders.items():
        curves = []
        for order in many:
            n = len(order)
            curves.append(values[at : at + 2 * n].reshape(n, 2))
            at += 2 * n
        mean = np.mean(curves, axis=0)
        out[name] = (float(values[0]), mean[:, 0], mean[:, 1], [c[:, 0] for c in curves])
    return out


def _metrics(full: float, deleted: np.ndarray, kept: np.ndarray, each: list[np.ndarray]) -> dict[str, float]:
    n = len(deleted)
    ks = [max(1, math.ceil(q * n)) - 1 for q in BINS]
    return {
        "aopc": float(np.mean([aopc(full, d) for d in each])),
        "comprehensiveness": float(np.mean(full - deleted[ks])),
        "sufficiency": float(np.mean(full - kept[ks])),
    }


@accepts_max_length
def rank_measures(encoder, texts, target="auto", measures=MEASURES, pooling: str = "cls",
                  layer: int = -1, probe=None, class_index: int | None = None, steps: int = 32, seed: int = 0,
                  max_tokens: int | None = None, progress=None, cancel=None) -> Scoreboard:  # fmt: skip
    """Rank ``measures`` by how well their token rankings predict removals, on ``texts``.

    ``texts``: strings or Traces of ``encoder``. ``target``: one of :data:`BOARD_TARGETS`
    (``"auto"``: the model's classifier logit when it has a head, else the logit of a probe of
    the demo corpus's sentiment, :func:`default_probe`; ``"probe"`` with ``probe=`` or that
    default; ``"classifier"``; ``"self_similarity"``: the ``pooling`` vector's cosine to its
    unperturbed self) or a callable on hidden states [L+1, B, T, D] -> [B]. ``class_index=None``
    takes each text's predicted class. ``steps``: integrated-gradients path points. A measure the
    model cannot support, or whose scores carry no signal for this target, is left out with a
    note. ``progress(done, total, message)`` and ``cancel`` as in :mod:`clsviz.progress`. Raises
    ValueError for no texts, unknown measures or targets, or a bad layer.
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
    kind, probe = _resolve_target(encoder, target, pooling, idx, probe)
    rng = np.random.default_rng(seed)
    filler = encoder.tokenizer.convert_ids_to_tokens(occlusion_id(encoder))
    rows, curve_rows, notes, skipped = [], [], [], set()
    description = ""
    total = len(items) * (len(measures) + 1)
    for ti, item in enumerate(items):
        t = item if isinstance(item, Trace) else trace(encoder, item, max_tokens=max_tokens)
        goal = make_target(encoder, t.text, kind, None, pooling, idx, probe, class_index, max_tokens=t.seq_len)
        description = description or goal.description
        orders, memo = {}, {}
        for mi, name in enumerate(measures):
            check_cancel(cancel, "The faithfulness scoreboard")
            if progress is not None:
                progress(ti * (len(measures) + 1) + mi, total, f"Sentence {ti + 1}: {MEASURE_NAMES[name]}")
            if name in skipped:
                continue
            if name == "random":
                orders[name] = [token_ranking(rng.permutation(t.seq_len), t.special_mask) for _ in range(SHUFFLES)]
                continue
            try:
                scores = _scores(encoder, t, name, goal, pooling, idx, steps, memo, cancel)
            except ValueError as exc:  # a family without the block structure, or no signal
                skipped.add(name)
                notes.append(f"{MEASURE_NAMES[name]} left out: {exc}")
                continue
            orders[name] = [token_ranking(scores, t.special_mask)]
        for name, (full, deleted, kept, each) in _curves(encoder, t, goal, orders).items():
            n = len(deleted)
            rows.append({"text_index": ti, "text": t.text, "measure": name, "family": _family(name), "n_tokens": n,
                         "first_token": t.tokens[orders[name][0][0]], **_metrics(full, deleted, kept, each)})  # fmt: skip
            curve_rows.append(pd.DataFrame({"text_index": ti, "measure": name, "k": np.arange(1, n + 1),
                                            "fraction": np.arange(1, n + 1) / n, "full": full,
                                            "deleted": deleted, "kept": kept}))  # fmt: skip
    if progress is not None:
        progress(total, total, "Done")
    curves = pd.concat(curve_rows, ignore_index=True) if curve_rows else pd.DataFrame()
    table = pd.DataFrame(rows)
    # A measure dropped after some texts were scored leaves the board entirely: one set of texts.
    if skipped and not table.empty:
        table = table[~table["measure"].isin(skipped)].reset_index(drop=True)
        curves = curves[~curves["measure"].isin(skipped)].reset_index(drop=True)
    perturbations = {m: _perturbation(m, filler) for m in measures if m not in skipped}
    return Scoreboard(table, curves, encoder.name, description, tuple(notes), perturbations, seed)


def verdict(board: Scoreboard) -> str:
    """Plain sentences, decided on the 95% intervals over the texts: which measure ranks first
    and whether it is clear of the runner-up ("about even" otherwise), where raw attention
    stands, and how many measures beat the random order (paired interval above 0)."""
    ranking = board.ranking()
    if ranking.empty:
        return "No measure could be scored on these texts."
    n_texts = int(board.table["text_index"].nunique())
    texts = f"{n_texts} sentence{'s' if n_texts != 1 else ''}"
    best = ranking.iloc[0]
    lead = f"AOPC {best['aopc']:.3f} ({best['aopc_low']:.3f}–{best['aopc_high']:.3f})"
    if len(ranking) == 1:
        return f"On {board.model_name}, only {MEASURE_NAMES[best['measure']]} was scored: {lead} over {texts}."
    second = ranking.iloc[1]
    words, diff = compare_paired(board.per_text(best["measure"]), board.per_text(second["measure"]),
                                 MEASURE_NAMES[best["measure"]], MEASURE_NAMES[second["measure"]], seed=board.seed)  # fmt: skip
    if decide("above", diff, 0.0).verdict == REPRODUCES:
        sentence = (f"On {board.model_name}, {MEASURE_NAMES[best['measure']]} best predicts what removing tokens does "
                    f"to the {board.target} ({lead} over {texts}); {words}")
    else:
        close = ranking[ranking["aopc_high"] >= best["aopc_low"]]
        sentence = (f"On {board.model_name}, no measure is clearly best at predicting what removing tokens does to the "
                    f"{board.target} over {texts}: {MEASURE_NAMES[best['measure']]} ranks first ({lead}), but {words}; "
                    f"{len(close)} of {len(ranking)} measures have intervals reaching its own")
    raw = ranking[ranking["measure"] == "attention"]
    if not raw.empty and best["measure"] != "attention":
        r = raw.iloc[0]
        sentence += f". Raw attention ranks {int(r['rank'])} of {len(ranking)} (AOPC {r['aopc']:.3f})"
    if "random" in set(ranking["measure"]):
        reference = board.per_text("random")
        others = [m for m in ranking["measure"] if m != "random"]
        beaten = [m for m in others
                  if decide("above", paired_difference(board.per_text(m), reference, seed=board.seed), 0.0).verdict == REPRODUCES]  # fmt: skip
        sentence += (f". {len(beaten)} of {len(others)} measures beat the random order (mean of {SHUFFLES} shuffles) "
                     "with a 95% interval of the paired difference above 0")
    return sentence + "."
