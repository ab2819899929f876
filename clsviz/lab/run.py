"""What a lab run returns: :class:`PretrainRun`, its tidy metrics, figures and plain summary.

``metrics`` columns (:data:`METRIC_COLUMNS`): ``step``; ``metric``; ``value``; ``layer`` - the
hidden-state index (0 = embeddings) for representation metrics and the block number (1..L) for
attention metrics (``attention_to_cls``, ``attention_to_sep``, ``cls_entropy``), empty for
whole-model metrics; ``low`` / ``high`` - the 95% bootstrap interval where the metric has one.

Curves (every few steps, means over the steps since the last point): ``mlm_loss``,
``mlm_accuracy``, ``nsp_loss`` / ``nsp_accuracy`` or ``sop_loss`` / ``sop_accuracy``. At each
checkpoint: ``heldout_mlm_loss``, ``heldout_nsp_accuracy`` (or ``_sop_``) on held-out documents,
and the instruments of :mod:`clsviz.lab.measures`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..encoder import load_encoder
from ..figures import lab_figures

__all__ = ["LAB_DIR_ENV", "METRIC_COLUMNS", "PretrainRun", "compare_runs", "describe_interval", "lab_dir", "open_run",
           "saved_runs"]

LAB_DIR_ENV = "CLSVIZ_LAB_DIR"
"""Environment variable: where lab models are saved when no folder is given (default ``~/.cache/clsviz/lab``)."""

METRIC_COLUMNS = ["step", "metric", "value", "layer", "low", "high"]
"""The columns of :attr:`PretrainRun.metrics`, in order."""


def describe_interval(value: float, low: float, high: float) -> str:
    """``"61% (95% CI 55-67%)"`` for a share."""
    return f"{value:.0%} (95% CI {low:.0%}-{high:.0%})"


@dataclass(frozen=True, eq=False)
class PretrainRun:
    """A finished lab run.

    * ``metrics``: tidy DataFrame (see the module note)
    * ``folder``: the saved model (transformers format; :meth:`load` opens it in clsviz)
    * ``layout``: how it was made - ``summary``, ``sentence_objective``, ``variant``, ``corpus``,
      ``steps``, ``seed``, ``config``, ``probe_set``, ``tokenizer``, ``seconds``, ``device``, ``messages``
    """

    metrics: pd.DataFrame
    folder: Path
    layout: dict = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return str(self.layout.get("variant", "lab"))

    def table(self) -> pd.DataFrame:
        """The metrics with the variant in a first column (the CSV download)."""
        return self.metrics.assign(variant=self.variant)[["variant", *METRIC_COLUMNS]]

    def load(self, **kwargs):
        """The saved model as a :class:`clsviz.Encoder` with its heads."""
        return load_encoder(str(self.folder), **kwargs)

    def figures(self) -> dict:
        """Registry keys -> figures of this run (:func:`clsviz.figures.lab_figures`)."""
        return lab_figures(self.table())

    def summary(self) -> list[str]:
        """Plain sentences on what the run showed, each number with its 95% interval."""
        return run_summary(self.table(), self.layout)


def lab_dir() -> Path:
    """Where lab models go by default: ``$CLSVIZ_LAB_DIR`` or ``~/.cache/clsviz/lab``."""
    override = os.environ.get(LAB_DIR_ENV, "").strip()
    return Path(override).expanduser() if override else Path.home() / ".cache" / "clsviz" / "lab"


def saved_runs(root=None) -> list[Path]:
    """Lab model folders under ``root`` (default :func:`lab_dir`) and one level below it (a set of
    variants), newest first: folders holding ``lab_run.json`` and ``config.json``. Hidden
    staging folders (a run being written) are not listed."""
    root = lab_dir() if root is None else Path(root)
    if not root.is_dir():
        return []
    found = [p for p in (*root.glob("*/lab_run.json"), *root.glob("*/*/lab_run.json"))
             if not any(part.startswith(".") for part in p.relative_to(root).parts) and (p.parent / "config.json").is_file()]  # fmt: skip
    return [p.parent for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def open_run(folder) -> PretrainRun:
    """A saved run (its ``metrics.csv`` and ``lab_run.json``) from a lab model folder."""
    folder = Path(folder)
    note, table = folder / "lab_run.json", folder / "metrics.csv"
    if not note.is_file() or not table.is_file():
        raise FileNotFoundError(f"'{folder}' is not a clsviz lab model folder (it has no lab_run.json and metrics.csv).")
    try:
        metrics = pd.read_csv(table).reindex(columns=METRIC_COLUMNS)
        layout = json.loads(note.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # a file cut short or edited by hand
        raise ValueError(f"'{folder}' holds a damaged lab run: its metrics.csv or lab_run.json cannot be read "
                         f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). Pretrain it again.") from None
    if not isinstance(layout, dict):
        raise ValueError(f"'{folder}' holds a damaged lab run: lab_run.json is not a record. Pretrain it again.")
    return PretrainRun(metrics=metrics, folder=folder, layout=layout)


def compare_runs(runs: Sequence[PretrainRun]) -> pd.DataFrame:
    """One tidy table of several runs, told apart by the ``variant`` column."""
    return pd.concat([r.table() for r in runs], ignore_index=True) if runs else pd.DataFrame(columns=["variant", *METRIC_COLUMNS])


def _rows(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    return table[table["metric"] == metric]


def _at(table: pd.DataFrame, metric: str, step: int, layer=None) -> pd.Series | None:
    rows = _rows(table, metric)
    rows = rows[rows["step"] == step]
    if layer is not None:
        rows = rows[rows["layer"] == layer]
    return None if rows.empty else rows.iloc[0]


def _loss_sentence(table: pd.DataFrame, steps: int) -> str | None:
    curve = _rows(table, "mlm_loss").sort_values("step")
    if len(curve) < 2:
        return None
    k = max(1, len(curve) // 10)
    first, last = curve["value"].iloc[:k].mean(), curve["value"].iloc[-k:].mean()
    text = f"the masked-LM loss went from {first:.2f} (first tenth of the curve) to {last:.2f} (last tenth)"
    held = _at(table, "heldout_mlm_loss", steps)
    if held is not None:
        text += f"; on held-out text it is {held['value']:.2f} (95% CI {held['low']:.2f}-{held['high']:.2f})"
    return text


def _probe_sentence(table: pd.DataFrame, steps: int, label: str) -> str | None:
    mean_rows = _rows(table, "probe_mean")
    if mean_rows.empty:
        return None
    top = int(mean_rows["layer"].max())
    mean, cls = _at(table, "probe_mean", steps, top), _at(table, "probe_cls", steps, top)
    if mean is None:
        return None
    where = f"at layer {top} after {steps} steps"
    if cls is None:
        return f"a probe reads '{label}' from the mean of the tokens {where} with {describe_interval(mean['value'], mean['low'], mean['high'])} (no summary token to compare)"
    text = (
        f"a probe reads '{label}' {where} from the summary token with {describe_interval(cls['value'], cls['low'], cls['high'])} "
        f"and from the mean with {describe_interval(mean['value'], mean['low'], mean['high'])}"
    )
    if cls["low"] > mean["high"]:
        text += ": the summary token is ahead (the intervals do not overlap)"
    elif cls["high"] < mean["low"]:
        text += ": the mean is ahead (the intervals do not overlap)"
    else:
        text += ": about even (the intervals overlap)"
    start = _at(table, "probe_cls", 0, top)
    if start is not None:
        text += f"; at step 0 (random weights) the summary token gave {start['value']:.0%}"
    return text


def _sink_sentence(table: pd.DataFrame, steps: int) -> str | None:
    for metric, name in (("attention_to_cls", "the summary token"), ("attention_to_sep", "the closing [SEP]")):
        rows = _rows(table, metric)
        rows = rows[rows["step"] == steps]
        if rows.empty:
            continue
        best = rows.loc[rows["value"].idxmax()]

        def share(row) -> str:
            known = pd.notna(row["low"]) and pd.notna(row["high"])
            return describe_interval(row["value"], row["low"], row["high"]) if known else f"{row['value']:.0%}"

        text = f"the other tokens park {share(best)} of their attention on {name} in block {int(best['layer'])} (its most)"
        start = _at(table, metric, 0, best["layer"])
        if start is not None:
            text += f", against {share(start)} at step 0"
        return text
    return None


def _sentence_objective_sentence(table: pd.DataFrame, steps: int, objective: str | None) -> str | None:
    if objective is None:
        return None
    held = _at(table, f"heldout_{objective}_accuracy", steps)
    if held is None:
        return None
    verdict = "above chance (50%)" if held["low"] > 0.5 else "not clearly above chance (50%)"
    return f"held-out {objective.upper()} accuracy is {describe_interval(held['value'], held['low'], held['high'])}, {verdict}"


def run_summary(table: pd.DataFrame, layout: dict) -> list[str]:
    """The plain sentences of :meth:`PretrainRun.summary` for one run's table and layout."""
    steps = int(layout.get("steps", table["step"].max() if len(table) else 0))
    cfg = layout.get("config", {})
    probe = layout.get("probe_set") or {}
    minutes = float(layout.get("seconds", np.nan)) / 60
    head = (
        f"{layout.get('variant', 'lab')}: {steps} steps on {layout.get('corpus', 'the texts')} "
        f"({cfg.get('layers', '?')} {'layer' if cfg.get('layers') == 1 else 'layers'}, {cfg.get('hidden', '?')} dims) "
        f"in {minutes:.1f} min on {layout.get('device', '?')}."
    )
    parts = [_loss_sentence(table, steps), _probe_sentence(table, steps, probe.get("label", "label")),
             _sink_sentence(table, steps), _sentence_objective_sentence(table, steps, layout.get("sentence_objective"))]  # fmt: skip
    return [head] + [p[0].upper() + p[1:] + "." for p in parts if p]
