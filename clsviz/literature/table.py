"""Every published claim checked on one model: the table the Findings page, ``clsviz findings``
and the HTML report show."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping

import pandas as pd

from ..progress import check_cancel
from ..provenance import model_profile
from .claims import DIFFERS, INCONCLUSIVE, NOT_MEASURABLE, Claim, decisions, load_claims, unmet, verdict
from .external import describe_elsewhere, massive_ablation, mixing_faithfulness
from .finetuning import finetune_change
from .measures import (
    ATTENTION_SAMPLE,
    BASELINE_SAMPLE,
    MEASURED,
    SAMPLE_SIZE,
    Context,
    Measurement,
    anisotropy_profile,
    inversion_bound,
    massive_ratio,
    sep_share,
    special_norm_share,
    sts_gap,
)
from .probing import probe_peaks

__all__ = [
    "COLUMNS",
    "MEASURES",
    "caveat",
    "check_claims",
    "claims_html",
    "count_verdicts",
    "finding_sentence",
    "judge",
    "with_elsewhere",
]

MEASURES: dict[str, Callable[[Claim, Context], Measurement]] = {
    "sts_gap": sts_gap,
    "sep_share": sep_share,
    "special_norm_share": special_norm_share,
    "anisotropy_profile": anisotropy_profile,
    "massive_ratio": massive_ratio,
    "massive_ablation": massive_ablation,
    "probe_peaks": probe_peaks,
    "finetune_change": finetune_change,
    "mixing_faithfulness": mixing_faithfulness,
    "inversion_bound": inversion_bound,
}
"""The measurement function each claim's ``measure`` names."""

COLUMNS = (
    "key", "claim", "source", "model", "published", "published_protocol", "this_model", "protocol", "sample",
    "verdict", "reason", "sentence", "elsewhere", "pages", "url", "measure", "low", "high", "threshold", "caveat",
)  # fmt: skip
"""The columns of :func:`check_claims`, in order. ``low`` / ``high``: the 95% interval of the
deciding number (of the check that decided the verdict: the first that differs, else the first
that is inconclusive, else the first; empty only when nothing was measured); ``threshold``: what
the rule compares it with; ``caveat``: how this measurement differs from the published one
(model, size, objective, data)."""


def judge(claim: Claim, measurement: Measurement) -> tuple[str, str]:
    """(verdict, reason) of one row: the claim's checks on the measured numbers, with the
    measurement's notes after; a row that was not measured takes its status as verdict."""
    notes = " ".join(n if n.endswith(".") else n + "." for n in measurement.notes)
    if measurement.status != MEASURED:
        return measurement.status, notes or "This row was not measured."
    result, reason = verdict(claim.checks, measurement.numbers)
    reason = reason[0].upper() + reason[1:] + ("" if reason.endswith(".") else ".") if reason else ""
    if result != NOT_MEASURABLE and claim.threshold_note:
        reason += f" ({claim.threshold_note})"
    return result, " ".join(p for p in (reason, notes) if p)


def _deciding(claim: Claim, measurement: Measurement) -> tuple[object, object, object]:
    """(low, high, threshold) of the check that decided the row: the first that differs, else the
    first that is inconclusive, else the first measured ("" when nothing was measured)."""
    found = [(c, d) for c, d in zip(claim.checks, decisions(claim.checks, measurement.numbers)) if d is not None]
    order = {DIFFERS: 0, INCONCLUSIVE: 1}
    for check, decision in sorted(found, key=lambda cd: order.get(cd[1].verdict, 2)):
        if decision is not None:
            est = decision.estimate
            low = est.low if est.low == est.low else ""
            high = est.high if est.high == est.high else ""
            threshold = f"{check['threshold']}–{check['upper']}" if check["kind"] == "inside" else float(check["threshold"])
            return low, high, threshold
    return "", "", ""


def caveat(claim: Claim, profile, measurement: Measurement) -> str:
    """How this row's measurement differs from the published one: the model (name, layers,
    training, objective) against the paper's, how well a lab model learnt the sentence objective
    the claim needs (its held-out accuracy), the data used instead of the paper's, and any
    warning of the measurement (e.g. a fine-tuned copy that keeps no record of its training texts)."""
    if measurement.status != MEASURED and not measurement.value:
        return ""
    parts = [f"Measured on {profile.describe()}; published on {claim.model}"]
    if "sentence_objective" in claim.requires and profile.objective_note:
        parts.append(profile.objective_note)
    if claim.data:
        parts.append(f"data: {claim.data}")
    parts += [n for n in measurement.notes if n.startswith("WARNING")]
    return ". ".join(p.rstrip(".") for p in parts) + "."


def finding_sentence(source: str, claim: str, result: str, reason: str) -> str:
    """One plain sentence for a row: ``"Clark et al. 2019 (...) — differs: ..."``."""
    return f"{source}: {claim[0].lower()}{claim[1:].rstrip('.')} — {result}. {reason}".strip()


def check_claims(encoder, *, corpus=None, pairs=None, finetuned=None, session_results: Mapping | None = None,
                 sample_size: int = SAMPLE_SIZE, attention_sample: int = ATTENTION_SAMPLE,
                 baseline_sample: int = BASELINE_SAMPLE, scoreboard_sample: int | None = None, seed: int = 0,
                 progress=None, cancel=None) -> pd.DataFrame:  # fmt: skip
    """Every claim of ``clsviz/data/literature.toml`` measured on ``encoder``: one row per claim
    with the columns of :data:`COLUMNS` (``verdict`` one of :data:`clsviz.literature.VERDICTS`,
    ``reason`` in plain words, ``this_model`` the number(s) with ``protocol`` and ``sample``,
    ``low`` / ``high`` / ``threshold`` of the deciding number, ``caveat``).

    Every row runs on a fixed sample drawn with ``seed`` and says so: ``corpus`` (a
    :class:`clsviz.Corpus`, default the demo corpus) gives the sentences sampled for attention,
    norms, the anisotropy baseline, the causal tests and the scoreboard; the layer-profile probe
    always reads the demo corpus's labels. ``pairs`` (``sentence1, sentence2, score``; default the
    demo pairs) gives the similarity benchmark. ``scoreboard_sample`` overrides the sentences of
    the faithfulness claim (its protocol says 30). ``finetuned``: a fine-tuned copy of the model (a
    folder or an Encoder) for the fine-tuning claim (``session_results["finetuned"]`` too).
    ``session_results`` maps the keys of :data:`clsviz.literature.SESSION_RESULTS` to results
    other pages computed: only described in ``elsewhere``, never used for a verdict. A claim whose
    precondition (its ``requires``: training, sentence objective, ...) this model does not meet
    is "not measurable on this model", with the reason and what would make it measurable; its
    numbers are still shown for reference. ``progress(done, total, message)`` after each claim;
    ``cancel`` stops between steps.
    """
    claims = load_claims()
    session = dict(session_results or {})
    ctx = Context(encoder, corpus, pairs, session, sample_size=sample_size, attention_sample=attention_sample,
                  baseline_sample=baseline_sample, seed=seed, cancel=cancel, finetuned=finetuned,
                  scoreboard_sample=scoreboard_sample)
    profile = model_profile(encoder)
    elsewhere = describe_elsewhere(session, encoder.name)
    rows = []
    for i, claim in enumerate(claims):
        check_cancel(cancel, "Checking the published findings")
        if progress is not None:
            progress(i, len(claims), f"Checking {claim.source}")
        try:
            measurement = MEASURES[claim.measure](claim, ctx)
        except ValueError as exc:  # something about this model or its data: said, not raised
            measurement = Measurement(NOT_MEASURABLE, notes=(str(exc),))
        result, reason = judge(claim, measurement)
        why_not = unmet(claim, profile)
        if why_not:
            shown = f" Shown for reference, not judged: {reason}" if measurement.status == MEASURED else ""
            result, reason = NOT_MEASURABLE, why_not + shown
        low, high, threshold = _deciding(claim, measurement)
        rows.append({
            "key": claim.key, "claim": claim.claim, "source": claim.source, "model": claim.model,
            "published": claim.published, "published_protocol": claim.protocol,
            "this_model": measurement.value, "protocol": " — ".join(p for p in (claim.here, measurement.protocol) if p),
            "sample": measurement.sample, "verdict": result, "reason": reason,
            "sentence": finding_sentence(claim.source, claim.claim, result, reason),
            "elsewhere": elsewhere.get(claim.key, ""), "pages": " ".join(claim.pages), "url": claim.url,
            "measure": claim.measure, "low": low, "high": high, "threshold": threshold,
            "caveat": caveat(claim, profile, measurement),
        })  # fmt: skip
    if progress is not None:
        progress(len(claims), len(claims), "Done")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def count_verdicts(table: pd.DataFrame, model_name: str) -> str:
    """``"10 findings on MODEL: 3 reproduces, 4 differs, ..."`` for a :func:`check_claims` table."""
    counts = table["verdict"].value_counts()
    return f"{len(table)} findings on {model_name}: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."


def with_elsewhere(table: pd.DataFrame, session: Mapping | None, model_name: str) -> pd.DataFrame:
    """``table`` with its ``elsewhere`` column rewritten from ``session`` as it is now (the other
    pages may have produced results since the check ran)."""
    said = describe_elsewhere(session or {}, model_name)
    return table.assign(elsewhere=[said.get(k, "") for k in table["key"]])


def claims_html(table: pd.DataFrame, model_name: str = "") -> str:
    """An HTML section (escaped text) of a :func:`check_claims` table for the offline report."""

    def esc(text) -> str:
        return html.escape(str(text), quote=True)

    def interval(r) -> str:
        low, high = pd.to_numeric(getattr(r, "low", ""), errors="coerce"), pd.to_numeric(getattr(r, "high", ""), errors="coerce")
        if pd.isna(low) or pd.isna(high):
            return ""
        return (f"<br><span class='note'>95% interval of the deciding number {float(low):.4g}–{float(high):.4g}; "
                f"threshold {esc(r.threshold)}</span>")

    def said(r) -> str:
        text = str(getattr(r, "caveat", "") or "")
        return f"<br><span class='note'>Caveat: {esc(text)}</span>" if text else ""

    rows = "".join(
        f"<tr><td><b>{esc(r.claim)}</b><br><a href='{esc(r.url)}'>{esc(r.source)}</a></td>"
        f"<td>{esc(r.published)}<br><span class='note'>{esc(r.model)}</span></td>"
        f"<td>{esc(r.this_model or '–')}<br><span class='note'>{esc(r.sample)}</span>{interval(r)}</td>"
        f"<td><b>{esc(r.verdict)}</b><br>{esc(r.reason)}{said(r)}</td></tr>"
        for r in table.itertuples()
    )
    on = f" on {esc(model_name)}" if model_name else ""
    return (
        f"<h2 id='published-findings'>Published findings, checked{on}</h2>"
        "<p class='caption'>Each finding about [CLS] from the literature, the number as published and the model it "
        "was measured on, this model's number by the same protocol as far as the model allows, with the 95% interval "
        "of the number the verdict rests on, and a verdict: reproduces or differs only when that interval clears the "
        "rule's threshold, inconclusive when it straddles it, not measurable on this model when the claim is about "
        "another kind of model, not measured yet when an input is missing. The caveat says how this measurement "
        "differs from the published one.</p>"
        "<table class='claims'><tr><th>claim</th><th>published</th><th>this model</th><th>verdict</th></tr>"
        f"{rows}</table>"
    )
