"""The published claims (read once from ``clsviz/data/literature.toml``) and the verdict rule.

A claim's ``checks`` turn "the paper found X" into conditions on numbers measured on the
current model; :func:`verdict` is a pure function of those checks and numbers, so it is tested
on planted values. Check kinds (each a TOML inline table):

* ``at_least`` / ``at_most``: ``number`` against ``threshold``
* ``inside``: ``low <= number <= high`` (a published range)
* ``greater``: ``number`` above ``than`` by more than ``margin``; with ``interval = true`` the
  95% intervals must not overlap either (``<number>_low`` above ``<than>_high``)
* ``ordered``: the ``numbers`` in that order (each no larger than the next, the last larger
  than the first): the direction of an effect across several quantities
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files

__all__ = [
    "CHECK_KINDS",
    "CLAIM_FIELDS",
    "DIFFERS",
    "NOT_HERE_YET",
    "NOT_MEASURABLE",
    "NOT_YET",
    "REPRODUCES",
    "VERDICTS",
    "Claim",
    "ClaimsFileError",
    "check_sentence",
    "load_claims",
    "parse_claims",
    "verdict",
]

REPRODUCES = "reproduces"
DIFFERS = "differs"
NOT_MEASURABLE = "not measurable on this model"
NOT_YET = "not measured yet"
NOT_HERE_YET = "not measurable here yet"
VERDICTS = (REPRODUCES, DIFFERS, NOT_MEASURABLE, NOT_YET, NOT_HERE_YET)
"""Every verdict a row can get. The first three are the answer about this model; "not measured
yet" means an experiment on another page (or a fine-tuned copy) is needed first; "not measurable
here yet" means this installation of clsviz lacks the module that measures it."""

CHECK_KINDS = ("at_least", "at_most", "inside", "greater", "ordered")

CLAIM_FIELDS = (
    "key", "claim", "source", "reference", "url", "model", "published", "unit", "values", "protocol",
    "here", "measure", "pages", "to_measure", "checks", "threshold_note", "params",
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
    measure: str
    pages: tuple[str, ...]
    to_measure: str
    checks: tuple[Mapping, ...]
    threshold_note: str
    params: Mapping[str, object] = field(default_factory=dict)


def _check_claim(raw: Mapping, index: int) -> Claim:
    name = raw.get("key", f"claim {index + 1}")
    missing = [f for f in CLAIM_FIELDS if f not in raw]
    if missing:
        raise ClaimsFileError(f"Claim '{name}' lacks field(s) {', '.join(missing)}; every claim needs "
                              f"{', '.join(CLAIM_FIELDS)}.")
    for f in CLAIM_FIELDS:
        if f not in ("values", "pages", "checks", "params", "to_measure") and not str(raw[f]).strip():
            raise ClaimsFileError(f"Claim '{name}': the field '{f}' is empty.")
    for check in raw["checks"]:
        if check.get("kind") not in CHECK_KINDS:
            raise ClaimsFileError(f"Claim '{name}': check kind {check.get('kind')!r} is not one of {', '.join(CHECK_KINDS)}.")
    values = {str(k): float(v) for k, v in raw["values"].items()}
    return Claim(
        key=str(raw["key"]), claim=str(raw["claim"]), source=str(raw["source"]), reference=str(raw["reference"]),
        url=str(raw["url"]), model=str(raw["model"]), published=str(raw["published"]), unit=str(raw["unit"]),
        values=values, protocol=str(raw["protocol"]), here=str(raw["here"]), measure=str(raw["measure"]),
        pages=tuple(str(p) for p in raw["pages"]), to_measure=str(raw["to_measure"]),
        checks=tuple(dict(c) for c in raw["checks"]), threshold_note=str(raw["threshold_note"]),
        params=dict(raw["params"]),
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


# --- the verdict ----------------------------------------------------------------------------------


def _number(numbers: Mapping[str, float], name: str) -> float | None:
    value = numbers.get(name)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value: float, check: Mapping) -> str:
    return format(value, str(check.get("format", ".3g")))


def check_sentence(check: Mapping, numbers: Mapping[str, float]) -> tuple[bool | None, str]:
    """(held, one plain clause) for one check; held is None when a number it reads is missing."""
    kind, label = check["kind"], str(check.get("label", check.get("number", "")))
    if kind == "ordered":
        names = list(check["numbers"])
        labels = list(check.get("labels", names))
        values = [_number(numbers, n) for n in names]
        if any(v is None for v in values):
            gone = [lab for lab, v in zip(labels, values) if v is None]
            return None, f"{', '.join(gone)} could not be measured"
        held = all(a <= b for a, b in zip(values, values[1:])) and values[-1] > values[0]
        listed = ", ".join(f"{lab} {_fmt(v, check)}" for lab, v in zip(labels, values))
        return held, f"{listed}: {'in the published order' if held else 'not in the published order'}"
    value = _number(numbers, check["number"])
    if value is None:
        return None, f"{label} could not be measured"
    if kind in ("at_least", "at_most"):
        limit = float(check["threshold"])
        held = value >= limit if kind == "at_least" else value <= limit
        word = ("at least" if held else "below") if kind == "at_least" else ("at most" if held else "above")
        return held, f"{label} is {_fmt(value, check)}, {word} {_fmt(limit, check)}"
    if kind == "inside":
        low, high = float(check["low"]), float(check["high"])
        held = low <= value <= high
        side = "inside" if held else "outside"
        return held, f"{label} is {_fmt(value, check)}, {side} the published range {_fmt(low, check)}–{_fmt(high, check)}"
    other = _number(numbers, check["than"])
    other_label = str(check.get("than_label", check["than"]))
    if other is None:
        return None, f"{other_label} could not be measured"
    margin = float(check.get("margin", 0.0))
    gap = value - other
    held = gap > margin
    if held:
        result = f"ahead by {_fmt(gap, check)}" + (f", more than {_fmt(margin, check)}" if margin else "")
    elif gap > 0:
        result = f"ahead by only {_fmt(gap, check)}, not more than {_fmt(margin, check)}"
    else:
        result = "not ahead"
    text = f"{label} {_fmt(value, check)} against {other_label} {_fmt(other, check)}: {result}"
    if check.get("interval"):
        low, high = _number(numbers, f"{check['number']}_low"), _number(numbers, f"{check['than']}_high")
        if low is None or high is None:
            return None, f"the 95% intervals of {label} and {other_label} could not be measured"
        apart = low > high
        other_low, own_high = _number(numbers, f"{check['than']}_low"), _number(numbers, f"{check['number']}_high")
        reversed_apart = other_low is not None and own_high is not None and other_low > own_high
        held = held and apart
        text += "; the 95% intervals " + ("do not overlap" if apart or reversed_apart else "overlap")
    return held, text


def verdict(checks: Sequence[Mapping], numbers: Mapping[str, float]) -> tuple[str, str]:
    """(verdict, reason) for measured ``numbers`` under a claim's ``checks``: "reproduces" when
    every check holds, "differs" when one fails (the failing ones are named first), "not
    measurable on this model" when a number a check reads is missing or not finite, or when
    there are no checks. The reason is plain words with the numbers."""
    if not checks:
        return NOT_MEASURABLE, "there is no rule to compare this model's numbers with the published ones"
    results = [check_sentence(c, numbers) for c in checks]
    missing = [text for held, text in results if held is None]
    if missing:
        return NOT_MEASURABLE, "; ".join(missing)
    failed = [text for held, text in results if not held]
    passed = [text for held, text in results if held]
    if failed:
        return DIFFERS, "; ".join(failed + passed)
    return REPRODUCES, "; ".join(passed)
