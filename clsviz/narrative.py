"""Every sentence clsviz writes about the numbers, from every layer it talks about.

A one-line finding is evidence a person will repeat, so it must say what the whole series
says, not what two of its ends say: where a series rises, falls or turns, at which layers a
gap is large and where it is small, and when a number cannot be told apart from the same
number for unrelated text. The building blocks here (:func:`layer_span`,
:func:`describe_series`, :func:`describe_gap`, :func:`same_as_baseline`) are tested on
planted series; the page summaries are built from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .attention import cls_entropy, max_entropy
from .metrics import cosine

__all__ = [
    "Finding",
    "benchmark_summary",
    "findings",
    "describe_gap",
    "describe_series",
    "fold_noise",
    "layer_span",
    "position_summary",
    "probe_gap_summary",
    "probe_summary",
    "same_as_baseline",
    "turning_points",
    "value_range",
    "verdict_from_intervals",
]


def value_range(values: Sequence[float], fmt: str = ".2f") -> str:
    """``"0.49"`` when every value rounds the same, else ``"0.45–0.52"``."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}–{hi}"


def layer_span(layers: Sequence[int], word: str = "layer") -> str:
    """``[0, 1, 2, 3, 5]`` -> ``"layers 0–3 and 5"``; ``[4]`` -> ``"layer 4"``; ``[]`` -> ``"no layer"``."""
    values = sorted({int(v) for v in layers})
    if not values:
        return f"no {word}"
    runs, start = [], values[0]
    for prev, cur in zip(values, values[1:] + [None]):
        if cur is None or cur != prev + 1:
            runs.append(f"{start}–{prev}" if prev > start else f"{start}")
            start = cur
    text = runs[0] if len(runs) == 1 else ", ".join(runs[:-1]) + " and " + runs[-1]
    plural = len(values) > 1
    return f"{word}s {text}" if plural else f"{word} {text}"


def turning_points(values: Sequence[float], tolerance: float = 0.1) -> list[int]:
    """Indexes of the first value and of every peak and trough of a series, ignoring moves
    smaller than ``tolerance`` times the series' range (a zigzag filter). The last index is
    included only when the series still moves that much after the last turn."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return []
    span = float(np.nanmax(v) - np.nanmin(v))
    threshold = tolerance * span
    pivots, direction, extreme = [0], 0, 0
    for i in range(1, len(v)):
        if direction == 0:
            if abs(v[i] - v[0]) >= threshold and span > 0:
                direction, extreme = (1 if v[i] > v[0] else -1), i
        elif (v[i] - v[extreme]) * direction >= 0:
            extreme = i  # still going the same way
        elif abs(v[extreme] - v[i]) >= threshold:
            pivots.append(extreme)  # turned
            direction, extreme = -direction, i
    if direction != 0 and extreme != pivots[-1]:
        pivots.append(extreme)
    return pivots


def describe_series(values: Sequence[float], labels: Sequence[int], fmt: str = ".2f", word: str = "layer",
                    suffix: str = "") -> str:
    """How a per-layer series moves: ``"rises from 0.10 at layer 0 to 0.90 at layer 6"``, or
    with its turns: ``"falls from 1.14 at block 1 to 0.16 at block 3, then rises to 2.00 at
    block 6"``. ``labels`` are the layer (or block) numbers of ``values``; ``suffix`` follows
    every number (e.g. ``"%"``)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return "has no values"

    def num(x: float) -> str:
        return format(x, fmt) + suffix

    points = turning_points(v)
    if len(points) < 2:
        return f"stays near {num(v[0])} at every {word} ({word}s {labels[0]}–{labels[-1]})"
    legs = []
    for a, b in zip(points, points[1:]):
        verb = "rises" if v[b] > v[a] else "falls"
        start = f"from {num(v[a])} at {word} {labels[a]} " if not legs else ""
        legs.append(f"{'' if not legs else 'then '}{verb} {start}to {num(v[b])} at {word} {labels[b]}")
    text = ", ".join(legs)
    if points[-1] != len(v) - 1:
        text += f", and stays close to that up to {word} {labels[-1]} ({num(v[-1])})"
    return text


def describe_gap(
    a: Sequence[float],
    b: Sequence[float],
    labels: Sequence[int],
    name_a: str,
    name_b: str,
    small: float | Sequence[float] = 0.02,
    scale: float = 100.0,
    unit: str = "points",
    word: str = "layer",
) -> str:
    """Where ``a`` and ``b`` differ and by how much, layer by layer: ``"the mean is ahead of
    [CLS] by 13–18 points at layers 2–3 and within 2 points at layers 0–1 and 4–6"``.
    A gap of at most ``small`` (in the series' own units) counts as no gap; ``small`` may be one
    number per layer (the half-width of the gap's 95% interval), and the close layers are then
    called "about even (within noise)"."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    gap = b - a
    per_layer = np.ndim(small) > 0
    band = np.broadcast_to(np.asarray(small, dtype=np.float64), gap.shape)
    ahead_b = [i for i, g in enumerate(gap) if g > band[i]]
    ahead_a = [i for i, g in enumerate(gap) if g < -band[i]]
    close = [i for i, g in enumerate(gap) if abs(g) <= band[i]]
    parts = []
    for leader, other, idx in ((name_b, name_a, ahead_b), (name_a, name_b, ahead_a)):
        if idx:
            pieces = [f"by {value_range(list(np.abs(gap[run]) * scale), '.0f')} {unit} at "
                      f"{layer_span([labels[i] for i in run], word)}" for run in _runs(idx, gap)]
            joined = pieces[0] if len(pieces) == 1 else ", ".join(pieces[:-1]) + " and " + pieces[-1]
            parts.append(f"{leader} is ahead of {other} {joined}")
    if close and per_layer:
        parts.append(f"about even (the 95% interval of the gap includes 0) at {layer_span([labels[i] for i in close], word)}")
    elif close:
        parts.append(f"within {float(small) * scale:.0f} {unit} at {layer_span([labels[i] for i in close], word)}")
    return "; ".join(parts)


def _runs(indexes: Sequence[int], sizes: np.ndarray | None = None) -> list[list[int]]:
    """``[0, 1, 3, 4, 5]`` -> ``[[0, 1], [3, 4, 5]]``: consecutive indexes grouped; with ``sizes``
    a group also ends where the size jumps more than threefold (80 points next to 3 are two
    different stories)."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and i == runs[-1][-1] + 1 and (sizes is None or _similar(sizes[runs[-1][-1]], sizes[i])):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _similar(a: float, b: float) -> bool:
    lo, hi = sorted((abs(a), abs(b)))
    return hi <= 3 * lo


def same_as_baseline(values: Sequence[float], reference: Sequence[float], tolerance: float) -> list[int]:
    """Indexes where a value cannot be told apart from the same quantity for unrelated text:
    ``|value - reference| <= tolerance``."""
    v, r = np.asarray(values, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return [i for i in range(len(v)) if np.isfinite(v[i]) and np.isfinite(r[i]) and abs(v[i] - r[i]) <= tolerance]


def verdict_from_intervals(intervals: dict[str, tuple[float, float, float]], fmt: str = ".1%") -> str:
    """Name a winner only when its interval clears every other: ``intervals`` maps a name to
    (estimate, low, high). Otherwise say the intervals overlap and no winner can be named."""
    if not intervals:
        return ""
    ranked = sorted(intervals.items(), key=lambda kv: -kv[1][0])
    best, (est, low, high) = ranked[0]
    others = ranked[1:]
    shown = "; ".join(f"{n} {format(e, fmt)} ({format(lo, fmt)}–{format(hi, fmt)})" for n, (e, lo, hi) in ranked)
    if not others:
        return shown
    if all(low > o[1][2] for o in others):
        return f"{best} is ahead and its 95% interval clears the others: {shown}."
    return f"The 95% intervals overlap, so this sample does not say which is better: {shown}."


# --- the Overview's four findings ------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A question, a one-line answer for one Trace, and the number behind it."""

    key: str
    question: str
    answer: str
    value: float


SAME_VECTOR = 0.999
"""A [CLS] whose cosine to an unrelated sentence's [CLS] is at least this is 'the same vector
for every input' at that layer."""


def _same_vector_sentence(baseline) -> str:
    """What the baseline says about [CLS] being one vector for every input, or ""."""
    if baseline is None or "cls" not in baseline.references:
        return ""
    between, _ = baseline.reference("cls")
    same = [i for i, c in enumerate(between) if c >= SAME_VECTOR]
    if not same:
        return ""
    text = (f" At {layer_span(same)} this model's [CLS] is almost the same vector for every input (cosine to an "
            f"unrelated sentence's [CLS] {min(between[same]):.4f} or more), so whatever it holds about this "
            "sentence sits in tiny differences")
    rest = [i for i in range(len(between)) if i not in same]
    if rest:
        text += f"; it depends on the sentence only at {layer_span(rest)} ({', '.join(f'{between[i]:.2f}' for i in rest)})"
    return text + "."


def findings(trace, baseline=None) -> list[Finding]:
    """Four findings for one Trace (aggregate? why first? how does it learn? recoverable?),
    each read from every layer; with a :class:`clsviz.baseline.Baseline` they are set against
    the same numbers for unrelated sentences."""
    layers = list(range(trace.num_layers + 1))
    blocks = list(range(1, trace.num_layers + 1))
    content = trace.content_mask
    cls = trace.hidden_states[:, trace.cls_index]
    means = trace.hidden_states[:, content].mean(axis=1)
    aggregate = cosine(cls, means)
    received = trace.attentions[:, :, :, trace.cls_index].mean(axis=(1, 2))
    entropy = cls_entropy(trace.attentions, trace.cls_index).mean(axis=1)
    return [
        Finding("aggregate", "Is [CLS] an aggregate of the sentence?", _aggregate(aggregate, layers, baseline),
                float(aggregate[-1])),
        Finding("first", "Why is it first — would another token do?",
                f"The share of all attention that lands on [CLS] {describe_series(received * 100, blocks, '.0f', 'block', '%')} "
                f"(an even share would be {100 / trace.seq_len:.0f}%). Nothing in bidirectional attention "
                "favours position 0; only the learned embeddings do, and a large share can be a parking place "
                "rather than a summary (see the causal tests).", float(received[-1])),
        Finding("learn", "How does [CLS] come to represent the sentence?",
                f"The entropy of what [CLS] reads (mean over heads) {describe_series(entropy, blocks, '.2f', 'block')}; "
                f"{max_entropy(trace.seq_len):.2f} would be an even spread over all {trace.seq_len} tokens.",
                float(entropy[-1])),
        _recover(trace, cls[-1], baseline),
    ]


def _aggregate(values, layers, baseline) -> str:
    text = f"The cosine between [CLS] and the mean of the sentence's own tokens {describe_series(values, layers)}."
    if baseline is None or "cls_mean_content" not in baseline.references:
        return text + " Compare it with the unrelated-sentence baseline on the Similarity page before reading much into it."
    reference, spread = baseline.reference("cls_mean_content")
    above = [i for i in layers if values[i] - reference[i] > 2 * max(spread[i], 1e-6)]
    text += (f" With an unrelated sentence's tokens it {describe_series(reference, layers)}; this sentence is "
             f"clearly above that (by more than two standard deviations) at {layer_span(above)}.")
    return text + _same_vector_sentence(baseline)


def _recover(trace, last_cls, baseline) -> Finding:
    content = np.flatnonzero(trace.content_mask)
    sims = cosine(trace.hidden(-1)[content], last_cls[None, :])
    best = int(np.argmax(sims))
    token, value = trace.tokens[content[best]], float(sims[best])
    text = (f"At the last layer the token closest to [CLS] is '{token}' (cosine {value:.2f})")
    if baseline is not None and "cls_token" in baseline.references:
        reference, spread = baseline.reference("cls_token")
        text += f"; a token of an unrelated sentence scores {reference[-1]:.2f} ± {spread[-1]:.2f} on average"
    text += ". Decoding whole sentences is tested on the 'Recover the sentence?' page."
    return Finding("recover", "Can the sentence be recovered from the [CLS] vector?", text, value)


# --- page summaries ---------------------------------------------------------------------------------


def benchmark_summary(result, name: str = "these pairs") -> str:
    """[CLS] against the mean on scored pairs, at the last layer, with intervals; where each
    pooling does best; and what Sentence-BERT found, with why this model may differ."""
    table = result.table
    last = int(table["layer"].max())
    intervals = {p: result.interval(p, last) for p in result.poolings if p in ("cls", "mean", "max")}
    finite = {p: v for p, v in intervals.items() if np.isfinite(v[0])}
    if not finite:
        return "Every cosine or every score is the same, so no ranking can be compared."
    text = f"At the last layer, on {int(table['pairs'].iloc[0])} {name}: " + verdict_from_intervals(finite, ".3f")
    best = result.best()
    if best is not None:
        text += (f" The best cell is {best['pooling']} at layer {int(best['layer'])} "
                 f"(ρ = {best['spearman']:.3f}, {best['spearman_low']:.3f}–{best['spearman_high']:.3f}).")
    return text


MATCH = 0.99
"""A slot vector with at least this cosine to the standard [CLS] 'matches' it at that layer."""


def position_summary(table, baseline=None, labels: dict | None = None) -> str:
    """What moving, removing or replacing [CLS] does, layer by layer (a
    :func:`clsviz.experiments.position.position_table`): from which layer each variant's slot
    matches the standard [CLS], how much attention it receives compared with the standard one,
    and - with a baseline - where matching says little because [CLS] is one vector for every
    input."""
    labels = labels or {}
    cos = table.pivot(index="layer", columns="variant", values="cos_to_standard_cls").sort_index()
    received = table.pivot(index="layer", columns="variant", values="attention_received").sort_index()
    layers = list(cos.index)
    groups: dict[str, list[str]] = {}
    for variant in cos.columns:
        if variant == "standard":
            continue
        matching = [layer for layer in layers if cos.loc[layer, variant] >= MATCH]
        key = f"from layer {matching[0]}" if matching else "at no layer"
        groups.setdefault(key, []).append(labels.get(variant, variant))
    if not groups:
        return ""
    parts = [f"{', '.join(names)}: {when}" for when, names in sorted(groups.items(), key=lambda kv: kv[0])]
    text = (f"The vector in the [CLS] slot matches the standard [CLS] (cosine {MATCH} or more) — "
            + "; ".join(parts) + ".")
    last = layers[-1]
    text += (" At the last layer: " + ", ".join(
        f"{labels.get(v, v)} {cos.loc[last, v]:.3f}" for v in cos.columns if v != "standard") + ".")
    to_mean = table[(table["variant"] == "standard") & (table["layer"] == last)]["cos_to_mean"]
    if len(to_mean):
        text += f" The standard [CLS] itself has cosine {float(to_mean.iloc[0]):.2f} to the mean of the text's tokens there."
    share = received.drop(index=[layer for layer in received.index if layer == 0], errors="ignore")
    if "standard" in share.columns and len(share):
        ratios = {v: float(share[v].mean() / share["standard"].mean()) for v in share.columns if v != "standard"}
        low = {labels.get(v, v): r for v, r in ratios.items() if r < 0.75}
        if low:
            text += (f" {', '.join(low)} receive{'s' if len(low) == 1 else ''} {value_range(list(low.values()), '.0%')} "
                     "of the attention the standard [CLS] receives, averaged over blocks: much of the attention "
                     "[CLS] gets comes with position 0, not with the token.")
    if baseline is not None and "cls" in baseline.references:
        between, _ = baseline.reference("cls")
        same = [i for i in layers if i < len(between) and between[i] >= SAME_VECTOR]
        if same:
            text += (f" Caution: at {layer_span(same)} this model's [CLS] is almost the same vector for every input "
                     f"(cosine to an unrelated sentence's [CLS] {min(between[same]):.4f} or more), so a match there "
                     "says little; the layers where the variants differ are the evidence.")
    return text


def fold_noise(sd_a, sd_b, folds: int) -> np.ndarray:
    """Half-width of the 95% interval of the difference of two cross-validated accuracies, from
    their standard deviations over ``folds`` folds: 1.96 * sqrt((sd_a² + sd_b²) / folds), at
    least 1 point (a fold of a few dozen texts cannot resolve less)."""
    sd_a, sd_b = np.asarray(sd_a, dtype=np.float64), np.asarray(sd_b, dtype=np.float64)
    return np.maximum(1.96 * np.sqrt((sd_a**2 + sd_b**2) / max(int(folds), 1)), 0.01)


def probe_gap_summary(table, reference: str = "standard", labels: dict | None = None, word: str = "layer") -> str:
    """A probe table (columns variant or pooling, layer, accuracy, majority; with ``accuracy_sd``
    and ``folds`` the noise of each gap is known) read at every layer: each variant's gap to
    ``reference`` where it is clear of the noise and where the two are about even."""
    labels = labels or {}
    column = "variant" if "variant" in table.columns else "pooling"
    value = "accuracy" if "accuracy" in table.columns else "accuracy_mean"
    wide = table.pivot(index="layer", columns=column, values=value).sort_index()
    if reference not in wide.columns or wide.shape[1] < 2:
        return ""
    spread = table.pivot(index="layer", columns=column, values="accuracy_sd").sort_index() if "accuracy_sd" in table else None
    folds = int(table["folds"].iloc[0]) if "folds" in table.columns else 5
    layers = list(wide.index)
    parts = []
    for other in wide.columns:
        if other == reference:
            continue
        small = 0.02 if spread is None else fold_noise(spread[reference].fillna(0), spread[other].fillna(0), folds)
        parts.append(f"{labels.get(other, other)}: " + describe_gap(
            wide[reference].to_numpy(), wide[other].to_numpy(), layers, labels.get(reference, reference),
            labels.get(other, other), small=small, word=word))
    majority = float(table["majority"].iloc[0]) if "majority" in table.columns else float("nan")
    text = "Compared layer by layer with " + labels.get(reference, reference) + " — " + " | ".join(parts) + "."
    if np.isfinite(majority):
        text += f" Always guessing the majority class gives {majority:.0%}."
    return text


def probe_summary(result, baseline=None) -> str:
    """A probe grid (:class:`clsviz.experiments.probe.ProbeResult`) read at every layer: the best
    cell with its spread over folds, [CLS] against the mean layer by layer, the random token, and
    - with a baseline - why a probe can read a label from vectors that are almost identical."""
    table = result.table
    best = table.loc[table["accuracy_mean"].idxmax()]
    model = f" for {result.model_name}" if result.model_name else ""
    text = (f"Predicting '{result.label}'{model}, the best pooling is {best['pooling']} at layer {int(best['layer'])} "
            f"({best['accuracy_mean']:.1%} ± {best['accuracy_sd']:.1%} over {result.folds} folds; chance "
            f"{result.chance:.1%}, majority class {result.majority:.1%}).")
    noise = fold_noise(best["accuracy_sd"], table["accuracy_sd"].fillna(0).to_numpy(), result.folds)
    even = table[(best["accuracy_mean"] - table["accuracy_mean"].to_numpy() <= noise) & (table.index != best.name)]
    if len(even):
        text += (f" {len(even)} other cell(s) are about even with it (the 95% interval of the gap includes 0), so "
                 "no single best cell is clear: " + ", ".join(
                     f"{r.pooling} at layer {int(r.layer)} {r.accuracy_mean:.1%}" for r in even.head(5).itertuples())
                 + ("…" if len(even) > 5 else "") + ".")
    poolings = set(table["pooling"])
    if {"cls", "mean"} <= poolings:
        wide = table.pivot(index="layer", columns="pooling", values="accuracy_mean").sort_index()
        spread = float(table[table["pooling"].isin(["cls", "mean"])]["accuracy_sd"].mean())
        text += (" Layer by layer: " + describe_gap(wide["cls"].to_numpy(), wide["mean"].to_numpy(), list(wide.index),
                                                    "[CLS]", "the mean", small=max(0.02, spread)) + "")
        text += f" (gaps within {max(0.02, spread) * 100:.0f} points are within the spread over folds)."
    if "random" in poolings:
        rnd = table[table["pooling"] == "random"]
        top = rnd.loc[rnd["accuracy_mean"].idxmax()]
        text += f" A random content token reaches {top['accuracy_mean']:.1%} (layer {int(top['layer'])})."
    return text + _identical_but_separable(table, baseline)


def _identical_but_separable(table, baseline) -> str:
    if baseline is None or "cls" not in baseline.references:
        return ""
    between, _ = baseline.reference("cls")
    cls = table[table["pooling"] == "cls"].set_index("layer")["accuracy_mean"]
    same = [int(layer) for layer in cls.index if layer < len(between) and between[int(layer)] >= SAME_VECTOR]
    if not same:
        return ""
    top = float(cls.loc[same].max())
    return (f" At {layer_span(same)} this model's [CLS] is almost the same vector for every input (cosine to an "
            f"unrelated sentence's [CLS] {min(between[same]):.4f} or more), yet the probe reaches up to {top:.0%} "
            "there: it standardises every dimension, so differences far smaller than the vector itself still "
            "separate the classes. That shows the label is linearly present in tiny variations of [CLS], not that "
            "[CLS] is a good sentence vector for cosine similarity.")
