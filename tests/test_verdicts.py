"""The verdict rules (clsviz.verdicts): every rule on each side of its threshold and with an
interval that straddles it, the sample size that would settle a straddle, and the paired words."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clsviz.verdicts import (
    DIFFERS,
    INCONCLUSIVE,
    REPRODUCES,
    RULES,
    VERDICTS,
    Estimate,
    combine,
    compare_paired,
    decide,
    estimate,
    inconclusive_sentence,
    more_needed,
)


def test_there_are_exactly_five_verdicts():
    assert VERDICTS == ("reproduces", "differs", "inconclusive", "not measurable on this model", "not measured yet")


def _e(value, low, high, n=30):
    return Estimate(value, low, high, n)


# rule, threshold, (estimate above, below, straddling) -> expected verdicts
CASES = {
    "at_least": (0.5, REPRODUCES, DIFFERS),
    "above": (0.5, REPRODUCES, DIFFERS),
    "at_most": (0.5, DIFFERS, REPRODUCES),
    "below": (0.5, DIFFERS, REPRODUCES),
}


@pytest.mark.parametrize("rule", list(CASES))
def test_each_rule_on_both_sides_and_straddling(rule):
    threshold, when_above, when_below = CASES[rule]
    assert decide(rule, _e(0.7, 0.6, 0.8), threshold).verdict == when_above
    assert decide(rule, _e(0.3, 0.2, 0.4), threshold).verdict == when_below
    straddle = decide(rule, _e(0.52, 0.45, 0.6), threshold)
    assert straddle.verdict == INCONCLUSIVE
    assert "straddles 0.5" in straddle.clause
    # The estimate alone is on the "right" side, yet the rule never decides on it.
    assert decide(rule, _e(0.7, 0.45, 0.8), threshold).verdict == INCONCLUSIVE


def test_strict_and_loose_rules_differ_exactly_at_the_threshold():
    on = _e(0.6, 0.5, 0.7)  # the interval touches 0.5 from above
    assert decide("at_least", on, 0.5).verdict == REPRODUCES
    assert decide("above", on, 0.5).verdict == INCONCLUSIVE
    under = _e(0.4, 0.3, 0.5)
    assert decide("at_most", under, 0.5).verdict == REPRODUCES
    assert decide("below", under, 0.5).verdict == INCONCLUSIVE
    assert decide("at_least", under, 0.5).verdict == INCONCLUSIVE  # 0.5 itself is "at least"
    assert decide("above", under, 0.5).verdict == DIFFERS


def test_inside_a_range():
    assert decide("inside", _e(1.0, 0.9, 1.1), 0.8, upper=1.2).verdict == REPRODUCES
    assert decide("inside", _e(1.4, 1.3, 1.5), 0.8, upper=1.2).verdict == DIFFERS
    assert decide("inside", _e(0.6, 0.5, 0.7), 0.8, upper=1.2).verdict == DIFFERS
    assert decide("inside", _e(1.15, 1.1, 1.3), 0.8, upper=1.2).verdict == INCONCLUSIVE
    with pytest.raises(ValueError, match="upper="):
        decide("inside", _e(1, 0.9, 1.1), 0.8)


def test_no_interval_is_never_decided():
    for rule in ("at_least", "at_most", "above", "below"):
        assert decide(rule, Estimate(5.0, math.nan, math.nan, 1), 0.5).verdict == INCONCLUSIVE
    with pytest.raises(ValueError, match="Unknown rule 'about'; choose one of " + ", ".join(RULES)):
        decide("about", _e(1, 0, 2), 0.5)


def test_the_bootstrap_interval_matches_a_hand_made_one():
    values = np.random.default_rng(3).normal(0.4, 0.1, size=40)
    found = estimate(values, seed=0)
    rows = np.random.default_rng(0).integers(0, 40, size=(1000, 40))
    means = values[rows].mean(axis=1)
    assert found.value == pytest.approx(values.mean())
    assert (found.low, found.high) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert found.n == 40
    one = estimate([0.3])
    assert one.value == 0.3 and not one.finite


def test_more_sentences_needed_follows_the_square_root_law():
    # Half-width 0.1 on 30 sentences, estimate 0.05 above the threshold: the half-width must
    # halve, so four times the sentences: 90 more.
    value = _e(0.55, 0.45, 0.65, n=30)
    assert more_needed(value, 0.5) == 90
    assert "about 90 more sentences would" in inconclusive_sentence(value, 0.5)
    assert more_needed(_e(0.5, 0.4, 0.6), 0.5) is None
    assert "no sample size would settle it" in inconclusive_sentence(_e(0.5, 0.4, 0.6), 0.5)


def test_several_rules_combine():
    assert combine([REPRODUCES, REPRODUCES]) == REPRODUCES
    assert combine([REPRODUCES, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, DIFFERS]) == DIFFERS
    assert combine([]) == INCONCLUSIVE


def test_paired_words_follow_the_interval():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.2, size=30)
    ahead, diff = compare_paired(base + 0.1, base, "ALTI", "attention")
    assert ahead.startswith("ALTI is ahead of attention by 0.100") and diff.low > 0
    behind, _ = compare_paired(base, base + 0.1, "ALTI", "attention")
    assert behind.startswith("attention is ahead of ALTI by 0.100")
    noise = rng.normal(0, 0.05, size=30)
    even, diff = compare_paired(base + noise - noise.mean(), base, "ALTI", "attention")
    assert "about even" in even and diff.low < 0 < diff.high
