"""The lab's reference set: the variants ``make lab`` trains, and the report it writes about them.

:data:`REFERENCE_VARIANTS` differ in one thing at a time from ``first+nsp`` (BERT's recipe):
``first+mlm`` drops the sentence objective, ``last+nsp`` moves the summary token to the end,
``none+mlm`` has no summary token at all, ``first+sop`` swaps NSP for sentence order.
:func:`write_report` writes the runs' tidy metrics (``metrics.csv``), every figure as plotly JSON
and one HTML page (``curves.html``), and ``summary.md``: the plain sentences with their intervals
and the one-thing comparisons (:func:`comparisons`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from ..artifacts import atomic_path
from ..figures import figure_spec, lab_figures
from .config import check_objective, check_summary
from .run import PretrainRun, compare_runs, describe_interval, run_summary

__all__ = ["REFERENCE_VARIANTS", "comparisons", "parse_variant", "write_report"]

REFERENCE_VARIANTS = ("first+nsp", "first+mlm", "last+nsp", "none+mlm", "first+sop")
"""The reference set, in the order ``make lab`` trains it (SOP last: the one left out when time is short)."""

# (variant A, variant B, what differs): each pair differs in exactly one thing.
_PAIRS = (
    ("first+nsp", "first+mlm", "a sentence objective (NSP) against none"),
    ("first+nsp", "last+nsp", "the summary token first against last"),
    ("first+nsp", "first+sop", "NSP against SOP"),
    ("first+mlm", "none+mlm", "a summary token against none"),
)


def parse_variant(text: str) -> tuple[str, str | None]:
    """``"last+nsp"`` -> ``("last", "nsp")``; ``"none+mlm"`` -> ``("none", None)``. ValueError
    listing the valid parts otherwise."""
    summary, _, objective = str(text).strip().partition("+")
    if not objective:
        raise ValueError(f"A variant is SUMMARY+OBJECTIVE, e.g. 'first+nsp' or 'none+mlm'; got {text!r}.")
    return check_summary(summary), check_objective(objective)


def _final(run: PretrainRun, metric: str):
    m = run.metrics[run.metrics["metric"] == metric]
    if m.empty:
        return None
    last = m[m["step"] == m["step"].max()]
    if last["layer"].notna().any():
        last = last[last["layer"] == last["layer"].max()]
    return last.iloc[0]


def _verdict(a, b, name_a: str, name_b: str) -> str:
    if a["low"] > b["high"]:
        return f"{name_a} is ahead (the intervals do not overlap)"
    if a["high"] < b["low"]:
        return f"{name_b} is ahead (the intervals do not overlap)"
    return "about even (the intervals overlap)"


def comparisons(runs: Sequence[PretrainRun]) -> list[str]:
    """Plain sentences comparing variants that differ in one thing, at the last checkpoint and the
    last layer: the probe of the sentence vector each variant is built to use (the summary token,
    or the mean without one) and the held-out sentence accuracy."""
    by = {r.variant: r for r in runs}
    out = []
    for a, b, what in _PAIRS:
        if a not in by or b not in by:
            continue
        metric_a = "probe_cls" if by[a].layout.get("summary") != "none" else "probe_mean"
        metric_b = "probe_cls" if by[b].layout.get("summary") != "none" else "probe_mean"
        pa, pb = _final(by[a], metric_a), _final(by[b], metric_b)
        if pa is None or pb is None:
            continue
        name_a = f"{a} ({'summary token' if metric_a == 'probe_cls' else 'mean'})"
        name_b = f"{b} ({'summary token' if metric_b == 'probe_cls' else 'mean'})"
        out.append(
            f"{what[0].upper() + what[1:]}: the sentence vector's probe reads {describe_interval(pa['value'], pa['low'], pa['high'])} "
            f"in {name_a} and {describe_interval(pb['value'], pb['low'], pb['high'])} in {name_b}: {_verdict(pa, pb, a, b)}."
        )
    return out


def _html_page(figures: dict, sentences: list[str], command: str) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>clsviz lab: reference set</title></head><body>",
        "<h1>clsviz lab: the reference set</h1>",
        f"<p>Reproduced with <code>{html.escape(command)}</code></p><ul>",
        *[f"<li>{html.escape(s)}</li>" for s in sentences],
        "</ul>",
    ]
    for i, (key, fig) in enumerate(figures.items()):
        spec = figure_spec(key)
        # plotly.js is written into the page once, so it opens offline.
        parts += [f"<h2>{html.escape(spec.title)}</h2><p>{html.escape(spec.caption)}</p>",
                  fig.to_html(full_html=False, include_plotlyjs=i == 0)]  # fmt: skip
    return "\n".join(parts + ["</body></html>"])


def write_report(runs: Sequence[PretrainRun], folder, command: str = "") -> dict[str, Path]:
    """Write ``metrics.csv``, ``figures/<key>.json``, ``curves.html`` and ``summary.md`` about
    ``runs`` into ``folder``; returns the paths by name."""
    folder = Path(folder)
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    table = compare_runs(runs)
    paths = {"metrics": folder / "metrics.csv", "html": folder / "curves.html", "summary": folder / "summary.md"}
    with atomic_path(paths["metrics"]) as tmp:
        table.to_csv(tmp, index=False)
    figures = lab_figures(table)
    for key, fig in figures.items():
        paths[key] = folder / "figures" / f"{key}.json"
        with atomic_path(paths[key]) as tmp:
            tmp.write_text(fig.to_json(), encoding="utf-8")
    sentences = [s for r in runs for s in run_summary(r.table(), r.layout)] + comparisons(runs)
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(_html_page(figures, sentences, command), encoding="utf-8")
    lines = ["# clsviz lab: the reference set", ""]
    if command:
        lines += [f"Reproduced with `{command}`.", ""]
    lines += [f"- {s}" for s in sentences]
    with atomic_path(paths["summary"]) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths
