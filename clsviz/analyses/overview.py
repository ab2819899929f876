"""The Overview's evidence: one first answer to each of the four questions, for one sentence."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..baseline import Baseline
from ..narrative import Finding, findings
from ..tracing import Trace
from .core import Result, analysis

__all__ = ["OverviewResult"]


@dataclass(frozen=True, eq=False)
class OverviewResult(Result):
    """The four findings (:class:`clsviz.narrative.Finding`) for one trace; ``baseline`` says
    whether they were set against unrelated sentences."""

    findings: tuple[Finding, ...]
    with_baseline: bool

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"question": f.question, "finding": f.answer, "value": f.value} for f in self.findings])

    def summary(self) -> list[str]:
        return [f"{f.question} {f.answer}" for f in self.findings]


@analysis("overview", title="Four questions, first answers", inputs=("trace",), optional=("baseline",),
          questions=(1, 2, 3, 4))  # fmt: skip
def overview_analysis(trace: Trace, baseline: Baseline | None = None) -> OverviewResult:
    """A first answer to each of the four questions for one sentence, read from every layer (set
    against unrelated sentences when the anisotropy baseline is given)."""
    return OverviewResult(tuple(findings(trace, baseline)), baseline is not None)
