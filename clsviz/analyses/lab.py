"""The [CLS] lab's evidence: pretraining variants from scratch (long) and saved runs side by side.

* ``lab.pretrain`` (texts = running text, ``""`` between documents): pretrain each of ``variants``
  (``"first+nsp,last+nsp"``) with the same settings into a new folder of :func:`clsviz.lab.lab_dir`
* ``lab.compare`` (texts = the folders of saved lab runs): their checkpoint curves side by side

Both return a :class:`LabResult`: the runs' tidy metrics, the lab figures, and the plain sentences
of each run and of the one-thing comparisons between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pandas as pd

from ..figures import lab_figures
from ..lab import DEFAULT_CHECKPOINTS, DEFAULT_STEPS, compare_runs, lab_dir, open_run
from ..lab.config import MODEL_SIZES, check_settings
from ..lab.data import check_running_text, documents
from ..lab.reference import comparisons, parse_variant
from ..lab.run import PretrainRun, run_summary
from .core import Result, analysis

__all__ = ["LAB_FIGURES", "LabResult", "compare_analysis", "pretrain_analysis"]

LAB_FIGURES = ("lab.probe", "lab.sink", "lab.sentence", "lab.curves")


@dataclass(frozen=True, eq=False)
class LabResult(Result):
    """One or more lab runs (:class:`clsviz.lab.PretrainRun`), shown together."""

    runs: tuple[PretrainRun, ...]

    @property
    def folders(self) -> tuple[str, ...]:
        return tuple(str(r.folder) for r in self.runs)

    def table(self) -> pd.DataFrame:
        return compare_runs(self.runs)

    def figure_keys(self) -> tuple[str, ...]:
        drawable = lab_figures(self.table()) if self.runs else {}
        return tuple(k for k in LAB_FIGURES if k in drawable)

    def figure(self, key: str, **view):
        if key not in self.figure_keys():
            return super().figure(key)
        return lab_figures(self.table())[key]

    def summary(self) -> list[str]:
        return [s for r in self.runs for s in run_summary(r.table(), r.layout)] + comparisons(self.runs)


def _check_pretrain(texts: Sequence[str], *, variants: str, size: str, steps: int, checkpoints: int, seed: int,
                    **_) -> None:
    """The quick look before a pretraining run is queued: the variants, the settings, the texts."""
    names = [v.strip() for v in variants.split(",") if v.strip()]
    if not names:
        raise ValueError("No variants to pretrain: name at least one, e.g. 'first+nsp'.")
    for name in names:
        parse_variant(name)
    check_settings(MODEL_SIZES[size] or None, steps, seed, checkpoints)
    check_running_text(documents(list(texts)))


@analysis("lab.pretrain", title="Pretraining from scratch", inputs=("texts",), long=True, figures=LAB_FIGURES,
          questions=(2, 3), precheck=_check_pretrain)  # fmt: skip
def pretrain_analysis(texts: Sequence[str], *, variants: str = "first+nsp",
                      size: Literal["default", "small", "tiny"] = "default", steps: int = DEFAULT_STEPS,
                      checkpoints: int = DEFAULT_CHECKPOINTS, seed: int = 0, corpus_name: str = "", progress=None,
                      cancel=None) -> LabResult:  # fmt: skip
    """Pretrain small BERT encoders from scratch on running text ``texts``, one per variant
    (comma-separated SUMMARY+OBJECTIVE: first / last / none + nsp / sop / mlm), measured at
    ``checkpoints`` points; each is saved as a model folder in the lab folder."""
    from ..lab.training import pretrain_set  # torch, transformers, accelerate: loaded when a run starts

    names = [v.strip() for v in variants.split(",") if v.strip()]
    folder = lab_dir() / f"set-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"
    runs = pretrain_set(list(texts), names, folder, steps=steps, checkpoints=checkpoints,
                        config=MODEL_SIZES[size] or None, seed=seed, corpus_name=corpus_name or None,
                        progress=progress, cancel=cancel)  # fmt: skip
    return LabResult(tuple(runs))


@analysis("lab.compare", title="Lab variants side by side", inputs=("texts",), figures=LAB_FIGURES, questions=(2, 3))
def compare_analysis(texts: Sequence[str]) -> LabResult:
    """The saved lab runs whose folders ``texts`` names (their metrics, not their weights) side by side."""
    if not texts:
        raise ValueError("No lab runs to compare: pick at least one saved run.")
    return LabResult(tuple(open_run(folder) for folder in texts))
