"""The published claims (read once from ``clsviz/data/literature.toml``), their preconditions and
the verdict rule.

A claim's ``checks`` turn "the paper found X" into rules on numbers measured on the current
model, each number with its 95% interval (:class:`clsviz.verdicts.Estimate`); :func:`verdict`
applies them with :func:`clsviz.verdicts.decide`, so a row reproduces or differs only when the
interval clears the threshold, and is inconclusive otherwise. Check fields (a TOML inline table):
``kind`` (one of :data:`CHECK_KINDS`), ``number`` (the name of the measured number),
``threshold`` (and ``upper`` for ``inside``), ``label`` and ``format`` for the words.

A claim's ``requires`` states the model it is about (:func:`unmet` compares it with
:func:`clsviz.provenance.model_profile`): ``training`` (any of "pre-trained", "fine-tuned",
"sentence-tuned"), ``sentence_objective`` (any of "nsp", "sop", "none"), ``summary_position``
(any of "first", "last", "absent"), ``family`` (model types). A model that does not meet it gets
"not measurable on this model" with the reason and ``measurable_on`` (what would make it measurable).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files

from ..verdicts import (
    DIFFERS,
    INCONCLUSIVE,
    NOT_MEASURABLE,
    NOT_YET,
    REPRODUCES,
    RULES,
    VERDICTS,
    Decision,
    Estimate,
    combine,
    decide,
    inconclusive_sentence,
)

__all__ = [
    "CHECK_KINDS",
    "CLAIM_FIELDS",
    "DIFFERS",
    "INCONCLUSIVE",
    "NOT_MEASURABLE",
    "NOT_YET",
    "REPRODUCES",
    "REQUIREMENTS",
    "VERDICTS",
    "Claim",
    "ClaimsFileError",
    "as_estimate",
    "decisions",
    "load_claims",
    "parse_claims",
    "unmet",
    "verdict",
]

CHECK_KINDS = RULES
"""The rule kinds a check may use (see :mod:`clsviz.verdicts`)."""

REQUIREMENTS = ("training", "sentence_objective", "summary_position", "family")
"""The keys of a claim's ``requires`` table."""

CLAIM_FIELDS = (
    "key", "claim", "source", "reference", "url", "model", "published", "unit", "values", "protocol",
    "here", "data", "measure", "pages", "to_measure", "requires", "measurable_on", "checks", "threshold_note", "params",
)  # fmt: skip
"""The fields every claim of the data file has."""


class ClaimsFileError(ValueError):
    """The claims data file is malformed; the message names the claim and the field."""


@dataclass(frozen=True)
class Claim:
    """One published finding: what was claimed, where, on which model, the number as published,
    how it is measured here (``measure`` names the function) and the verdict rule (``checks``)."""

    key: str
    claim: str
    source: str
    reference: str
    url: str
    model: str
    published: str
    unit: str
    values: Mapping[str, float]
    protocol: str
    here: str
    data: str
    measure: str
    pages: tuple[str, ...]
    to_measure: str
    checks: tuple[Mapping, ...]
    threshold_note: str
    params: Mapping[str, object] = field(default_factory=dict)
    requires: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    measurable_on: str = ""


def _check_claim(raw: Mapping, index: int) -> Claim:
    name = raw.get("key", f"claim {index + 1}")
    missing = [f for f in CLAIM_FIELDS if f not in raw]
    if missing:
        raise ClaimsFileError(f"Claim '{name}' lacks field(s) {', '.join(missing)}; every claim needs "
                              f"{', '.join(CLAIM_FIELDS)}.")
    for f in CLAIM_FIELDS:
        if f not in ("values", "pages", "checks", "params", "to_measure", "requires", "measurable_on") and not str(raw[f]).strip():
            raise ClaimsFileError(f"Claim '{name}': the field '{f}' is empty.")
    for check in raw["checks"]:
        if check.get("kind") not in CHECK_KINDS:
            raise ClaimsFileError(f"Claim '{name}': check kind {check.get('kind')!r} is not one of {', '.join(CHECK_KINDS)}.")
        if "number" not in check or "threshold" not in check or (check["kind"] == "inside" and "upper" not in check):
            raise ClaimsFileError(f"Claim '{name}': a check needs 'number' and 'threshold' ('upper' too for 'inside').")
    bad = [k for k in raw["requires"] if k not in REQUIREMENTS]
    if bad:
        raise ClaimsFileError(f"Claim '{name}': requires has unknown key(s) {bad}; allowed: {', '.join(REQUIREMENTS)}.")
    if raw["requires"] and not str(raw["measurable_on"]).strip():
        raise ClaimsFileError(f"Claim '{name}': a claim with requirements needs 'measurable_on' (what would make it measurable).")
    values = {str(k): float(v) for k, v in raw["values"].items()}
    return Claim(
        key=str(raw["key"]), claim=str(raw["claim"]), source=str(raw["source"]), reference=str(raw["reference"]),
        url=str(raw["url"]), model=str(raw["model"]), published=str(raw["published"]), unit=str(raw["unit"]),
        values=values, protocol=str(raw["protocol"]), here=str(raw["here"]), data=str(raw["data"]),
        measure=str(raw["measure"]),
        pages=tuple(str(p) for p in raw["pages"]), to_measure=str(raw["to_measure"]),
        checks=tuple(dict(c) for c in raw["checks"]), threshold_note=str(raw["threshold_note"]),
        params=dict(raw["params"]), requires={str(k): tuple(str(x) for x in v) for k, v in raw["requires"].items()},
        measurable_on=str(raw["measurable_on"]),
    )  # fmt: skip


def parse_claims(text: str) -> tuple[Claim, ...]:
    """The claims of a TOML document shaped like ``clsviz/data/literature.toml``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClaimsFileError(f"The claims file is not valid TOML: {exc}") from None
    raw = data.get("claim")
    if not isinstance(raw, list) or not raw:
        raise ClaimsFileError("The claims file has no [[claim]] tables.")
    claims = tuple(_check_claim(c, i) for i, c in enumerate(raw))
    keys = [c.key for c in claims]
    if len(set(keys)) != len(keys):
        raise ClaimsFileError(f"Claim keys repeat: {sorted(k for k in set(keys) if keys.count(k) > 1)}.")
    return claims


@lru_cache(maxsize=1)
def load_claims() -> tuple[Claim, ...]:
    """The claims shipped in ``clsviz/data/literature.toml``, in table order."""
    return parse_claims(files("clsviz").joinpath("data", "literature.toml").read_text(encoding="utf-8"))


# --- preconditions -------------------------------------------------------------------------------

_SAID = {
    "training": "{} model",
    "sentence_objective": "pre-trained with {}",
    "summary_position": "its summary token {}",
    "family": "of the {} family",
}
_OBJECTIVE_WORDS = {"nsp": "next-sentence prediction", "sop": "sentence-order prediction", "none": "no sentence objective"}


def _words(key: str, values: Sequence[str]) -> str:
    shown = [_OBJECTIVE_WORDS.get(v, v) if key == "sentence_objective" else v for v in values]
    return _SAID[key].format(" or ".join(shown))


def unmet(claim: Claim, profile) -> str:
    """Why ``profile`` (a :class:`clsviz.provenance.ModelProfile`) does not meet the claim's
    ``requires``, in plain words; "" when it does."""
    have = {"training": profile.training, "sentence_objective": profile.sentence_objective,
            "summary_position": profile.summary_position, "family": profile.family}  # fmt: skip
    missing = [key for key, allowed in claim.requires.items() if have[key] not in allowed]
    if not missing:
        return ""
    needs = ", ".join(_words(k, claim.requires[k]) for k in claim.requires)
    has = ", ".join(_words(k, [str(have[k]) if have[k] is not None else "an unknown objective"]) for k in missing)
    has = f"a {has}" if missing[0] == "training" else has
    evidence = "; ".join(profile.evidence)
    return (f"The claim is about {claim.model}: it needs a {needs}. This model is {has}"
            f"{f' ({evidence})' if evidence else ''}. Measurable on {claim.measurable_on}.")


# --- the verdict ----------------------------------------------------------------------------------


def as_estimate(value) -> Estimate | None:
    """An :class:`~clsviz.verdicts.Estimate` from a measured number (an Estimate, or a bare float
    without an interval), None when it is missing or not finite."""
    if value is None:
        return None
    if isinstance(value, Estimate):
        return value if value.value == value.value and abs(value.value) != float("inf") else None
    value = float(value)
    return Estimate(value, float("nan"), float("nan"), 1) if value == value and abs(value) != float("inf") else None


def decisions(checks: Sequence[Mapping], numbers: Mapping[str, object]) -> list[Decision | None]:
    """Each check applied to its number (None where the number is missing)."""
    out = []
    for check in checks:
        value = as_estimate(numbers.get(check["number"]))
        if value is None:
            out.append(None)
            continue
        out.append(decide(check["kind"], value, float(check["threshold"]), upper=check.get("upper"),
                          label=str(check.get("label", check["number"])), fmt=str(check.get("format", ".3g"))))  # fmt: skip
    return out


def verdict(checks: Sequence[Mapping], numbers: Mapping[str, object]) -> tuple[str, str]:
    """(verdict, reason) for measured ``numbers`` (:class:`~clsviz.verdicts.Estimate` each, or
    bare floats, which have no interval) under a claim's ``checks``: "reproduces" when every
    check's interval clears its threshold on the claim's side, "differs" when one clears it on
    the other side (the failing ones are named first), "inconclusive" when an interval straddles
    a threshold (with about how many more sentences would settle it), "not measurable on this
    model" when a number a check reads is missing or not finite, or when there are no checks."""
    if not checks:
        return NOT_MEASURABLE, "there is no rule to compare this model's numbers with the published ones"
    found = decisions(checks, numbers)
    missing = [f"{c.get('label', c['number'])} could not be measured" for c, d in zip(checks, found) if d is None]
    if missing:
        return NOT_MEASURABLE, "; ".join(missing)
    result = combine([d.verdict for d in found])
    order = {DIFFERS: 0, INCONCLUSIVE: 1, REPRODUCES: 2}
    clauses = [d.clause for d in sorted(found, key=lambda d: order[d.verdict])]
    reason = "; ".join(clauses)
    if result == INCONCLUSIVE:
        first = next(d for d in found if d.verdict == INCONCLUSIVE)
        reason += ". " + inconclusive_sentence(first.estimate, first.threshold)
    return result, reason
