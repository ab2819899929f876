"""The verdict rules: a number with its 95% interval against a threshold.

One small module used by the published findings (:mod:`clsviz.literature`), the faithfulness
scoreboard (:mod:`clsviz.faithfulness`) and the sentences the pages write
(:mod:`clsviz.narrative`), so that "reproduces", "ahead" or "about even" mean the same
everywhere. A verdict is decided on the interval, never on the estimate alone:

* ``at_least`` / ``above``: ``reproduces`` when the whole interval is at or above (strictly
  above) the threshold, ``differs`` when the whole interval is below (at or below) it;
* ``at_most`` / ``below``: the mirror image;
* ``inside``: ``reproduces`` when the interval lies inside ``[threshold, upper]``, ``differs``
  when it lies wholly outside;
* otherwise ``inconclusive``: the interval straddles the threshold, so the data cannot tell at
  this sample size; :func:`more_needed` estimates how many more sentences (pairs, seeds) would.

A row whose claim does not apply to the model is ``not measurable on this model`` (with the
reason and what would make it measurable); a row that needs an experiment first is ``not
measured yet``. Those two are decided before any rule runs (:mod:`clsviz.literature`).

Intervals are percentile bootstraps (:func:`clsviz.metrics.bootstrap_interval`) over the unit
the noise comes from: sentences, pairs, or seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .metrics import bootstrap_interval

__all__ = [
    "DIFFERS",
    "INCONCLUSIVE",
    "NOT_MEASURABLE",
    "NOT_YET",
    "REPRODUCES",
    "RULES",
    "VERDICTS",
    "Decision",
    "Estimate",
    "Rule",
    "Verdict",
    "combine",
    "compare_paired",
    "decide",
    "estimate",
    "inconclusive_sentence",
    "more_needed",
    "paired_difference",
]

REPRODUCES = "reproduces"
DIFFERS = "differs"
INCONCLUSIVE = "inconclusive"
NOT_MEASURABLE = "not measurable on this model"
NOT_YET = "not measured yet"
VERDICTS = (REPRODUCES, DIFFERS, INCONCLUSIVE, NOT_MEASURABLE, NOT_YET)
"""Every verdict a finding can get, and only these."""

Verdict = Literal["reproduces", "differs", "inconclusive", "not measurable on this model", "not measured yet"]
Rule = Literal["at_least", "at_most", "above", "below", "inside"]
RULES: tuple[str, ...] = ("at_least", "at_most", "above", "below", "inside")
"""The rule kinds :func:`decide` applies."""

_WORDS = {"at_least": "at least", "at_most": "at most", "above": "above", "below": "below", "inside": "inside"}


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% interval: ``value`` (the estimate), ``low``, ``high``, ``n`` (how
    many units the interval resamples) and ``unit`` (what they are: "sentences", "pairs", "seeds")."""

    value: float
    low: float
    high: float
    n: int = 0
    unit: str = "sentences"

    @property
    def finite(self) -> bool:
        return all(math.isfinite(x) for x in (self.value, self.low, self.high))

    def text(self, fmt: str = ".3g", suffix: str = "") -> str:
        """``"0.42 (95% interval 0.38–0.47)"``."""
        value = format(self.value, fmt) + suffix
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return value
        return f"{value} (95% interval {format(self.low, fmt)}{suffix}–{format(self.high, fmt)}{suffix})"


def estimate(values, statistic=np.mean, *, unit: str = "sentences", seed: int = 0, n_boot: int = 1000) -> Estimate:
    """``statistic(values)`` with its 95% percentile bootstrap interval over the rows of
    ``values`` ([N] or [N, K]; rows are resampled). With one row the interval is the value itself
    widened to nothing: low = high = NaN, and every rule is then inconclusive."""
    arr = np.asarray(values, dtype=np.float64)
    n = len(arr)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, unit)
    if n < 2:
        return Estimate(float(statistic(arr)), float("nan"), float("nan"), 1, unit)
    value, low, high = bootstrap_interval(statistic, arr, n_boot=n_boot, seed=seed)
    return Estimate(value, low, high, n, unit)


def paired_difference(a, b, *, unit: str = "sentences", seed: int = 0) -> Estimate:
    """mean(a - b) over paired rows (the same sentences measured two ways), with its interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same shape, got {a.shape} and {b.shape}")
    return estimate(a - b, unit=unit, seed=seed)


@dataclass(frozen=True)
class Decision:
    """One rule applied: the verdict, the estimate, the threshold(s) and a plain clause."""

    verdict: str
    estimate: Estimate
    threshold: float
    upper: float | None
    clause: str


def decide(rule: str, value: Estimate, threshold: float, *, upper: float | None = None, label: str = "the number",
           fmt: str = ".3g") -> Decision:  # fmt: skip
    """Apply one rule (:data:`RULES`) to ``value`` with its interval; see the module docstring.

    An estimate without a finite interval (one sentence, or a bootstrap that could not run) is
    never decided on its value: the rule is ``inconclusive``."""
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; choose one of {', '.join(RULES)}.")
    if rule == "inside" and upper is None:
        raise ValueError("The 'inside' rule needs upper= (the range is [threshold, upper]).")
    t = float(threshold)
    lo, hi = value.low, value.high
    bounds = f"{format(t, fmt)}–{format(float(upper), fmt)}" if rule == "inside" else format(t, fmt)
    said = f"{label} is {value.text(fmt)}"
    if not value.finite:
        return Decision(INCONCLUSIVE, value, t, upper, f"{said}: without an interval the rule cannot be decided")
    if rule == "inside":
        u = float(upper)
        if t <= lo and hi <= u:
            result, how = REPRODUCES, f"the whole interval lies inside {bounds}"
        elif hi < t or lo > u:
            result, how = DIFFERS, f"the whole interval lies outside {bounds}"
        else:
            result, how = INCONCLUSIVE, f"the interval straddles an end of {bounds}"
        return Decision(result, value, t, u, f"{said}: {how}")
    holds = {"at_least": lo >= t, "above": lo > t, "at_most": hi <= t, "below": hi < t}[rule]
    fails = {"at_least": hi < t, "above": hi <= t, "at_most": lo > t, "below": lo >= t}[rule]
    word = _WORDS[rule]
    if holds:
        result, how = REPRODUCES, f"the whole interval is {word} {bounds}"
    elif fails:
        result, how = DIFFERS, f"the whole interval is on the other side of {bounds} (the rule asks for {word} {bounds})"
    else:
        result, how = INCONCLUSIVE, f"the interval straddles {bounds} (the rule asks for {word} {bounds})"
    return Decision(result, value, t, upper, f"{said}: {how}")


def more_needed(value: Estimate, threshold: float) -> int | None:
    """About how many more units (sentences, pairs, seeds) would make an interval that straddles
    ``threshold`` clear it, if the estimate stayed where it is: the half-width shrinks as
    1/sqrt(n). None when the estimate sits on the threshold or the interval is unknown."""
    if not value.finite or value.n < 2:
        return None
    gap = abs(value.value - float(threshold))
    half = (value.high - value.low) / 2.0
    if gap <= 0 or half <= 0:
        return None
    needed = value.n * (half / gap) ** 2
    return max(1, int(math.ceil(needed - value.n)))


def inconclusive_sentence(value: Estimate, threshold: float) -> str:
    """"The data cannot tell at this sample size — about N more sentences would." """
    more = more_needed(value, threshold)
    text = f"The data cannot tell at this sample size ({value.n} {value.unit})"
    if more is None:
        return text + "; the estimate sits on the threshold itself, so no sample size would settle it."
    return text + f" — about {more:,} more {value.unit} would, if the estimate held."


def combine(verdicts: Sequence[str]) -> str:
    """One verdict from several rules: ``differs`` when any rule differs, ``reproduces`` when
    every rule reproduces, ``inconclusive`` otherwise (at least one straddles, none fails)."""
    verdicts = list(verdicts)
    if not verdicts:
        return INCONCLUSIVE
    if DIFFERS in verdicts:
        return DIFFERS
    if all(v == REPRODUCES for v in verdicts):
        return REPRODUCES
    return INCONCLUSIVE


def compare_paired(a, b, name_a: str, name_b: str, *, fmt: str = ".3f", unit: str = "sentences",
                   seed: int = 0) -> tuple[str, Estimate]:  # fmt: skip
    """Words for "is ``a`` larger than ``b``?" on paired values (one per sentence): ``"A is
    ahead of B by 0.05 (95% interval 0.02–0.08)"`` only when the interval of the difference
    clears 0, else ``"A and B are about even (difference ..., the interval includes 0)"``.
    Returns (sentence, the difference's estimate)."""
    diff = paired_difference(a, b, unit=unit, seed=seed)
    found = decide("above", diff, 0.0)
    if found.verdict == REPRODUCES:
        return f"{name_a} is ahead of {name_b} by {diff.text(fmt)}", diff
    if decide("below", diff, 0.0).verdict == REPRODUCES:
        flipped = Estimate(-diff.value, -diff.high, -diff.low, diff.n, diff.unit)
        return f"{name_b} is ahead of {name_a} by {flipped.text(fmt)}", diff
    return f"{name_a} and {name_b} are about even (difference {diff.text(fmt)}, the interval includes 0)", diff
