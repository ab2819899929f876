"""What a fine-tuning run (:func:`clsviz.experiments.finetune.run_finetune`) returns, and how it reads.

:class:`FinetuneResult` holds the held-out accuracy per pooling, the training curves and what each
checkpoint recorded; its :meth:`~FinetuneResult.summary` says each accuracy with its 95% bootstrap
interval (:func:`accuracy_interval`), whether the loss had flattened (:func:`loss_trend`) and
whether the task was at :data:`CEILING` before training. Every name here imports from
:mod:`clsviz.experiments.finetune` too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..corpus import FINETUNE_LABEL
from ..metrics import bootstrap_interval
from ..narrative import verdict_from_intervals
from .learners import HEAD_POOLING, SaveError, TrainedClassifier

__all__ = [
    "CEILING",
    "DEFAULT_LABEL",
    "FinetuneResult",
    "accuracy_interval",
    "loss_trend",
    "result_frame",
]

DEFAULT_LABEL = FINETUNE_LABEL
"""The demo label fine-tuning starts from: the bundled model does not already solve it (a probe on its
frozen [CLS] reads it at about 78% and the mean at about 86%, where "topic" and "form" are at 96-100%
before any training), so a run can show what training adds."""

CEILING = 0.95
"""A pooling whose frozen accuracy has its whole 95% interval at or above this is at ceiling before
training: the run cannot show a gain, and its comparisons are inconclusive."""

_EMPTY = {
    "checkpoints": ["pooling", "step", "epoch", "heldout_accuracy", "heldout_loss"],
    "layer_metrics": ["pooling", "step", "epoch", "layer", "metric", "value"],
    "block_metrics": ["pooling", "step", "epoch", "block", "metric", "value"],
    "gradient_flow": ["pooling", "step", "epoch", "layer", "position", "token", "value"],
}


def result_frame(name: str, rows=()) -> pd.DataFrame:
    """An empty (or filled) table of a :class:`FinetuneResult` with its columns, by table name."""
    return pd.DataFrame(list(rows), columns=_EMPTY[name])


def accuracy_interval(accuracy: float, n: int, seed: int = 0) -> tuple[float, float, float]:
    """(accuracy, low, high): the 95% percentile bootstrap interval of an accuracy measured on
    ``n`` texts (resampling the texts; it depends only on how many were right)."""
    right = int(round(float(accuracy) * n))
    if n < 2:
        return float(accuracy), 0.0, 1.0
    hits = np.zeros(n)
    hits[:right] = 1.0
    return bootstrap_interval(np.mean, hits, seed=seed)


def loss_trend(curves: pd.DataFrame, pooling: str, share: float = 0.2, drop: float = 0.1) -> str:
    """"falling" when the mean training loss of the last ``share`` of the steps is more than
    ``drop`` (relative) below that of the share before it, "flat" otherwise, "unknown" with
    fewer than 10 steps."""
    loss = curves[(curves["pooling"] == pooling) & (curves["metric"] == "train_loss")]["value"].to_numpy()
    if len(loss) < 10:
        return "unknown"
    k = max(1, int(len(loss) * share))
    last, before = float(np.mean(loss[-k:])), float(np.mean(loss[-2 * k : -k]))
    return "falling" if last < (1.0 - drop) * before else "flat"


@dataclass(frozen=True, eq=False)
class FinetuneResult:
    """Held-out accuracy per pooling, the training curves and what each checkpoint recorded.

    * ``table``: one row per pooling: ``pooling``, ``frozen_accuracy`` (logistic regression on
      the untrained encoder's pooled vectors, same split; also the head's starting point
      with ``head_init="probe"``), ``heldout_accuracy`` (after
      fine-tuning), ``gain``, ``train_n``, ``heldout_n``, ``epochs``, ``steps``, ``seconds``
    * ``curves``: tidy rows ``pooling``, ``step``, ``epoch`` (fractional), ``metric``
      (``train_loss``, ``heldout_loss``, ``heldout_accuracy``), ``value``
    * ``chance`` (1 / classes) and ``majority`` (held-out share of the training majority class)
    * ``checkpoints``: ``pooling``, ``step``, ``epoch``, ``heldout_accuracy``, ``heldout_loss``
    * ``layer_metrics``: ``pooling``, ``step``, ``epoch``, ``layer`` (0 = embeddings), ``metric``
      (``probe_cls``, ``probe_mean``: ``probe_folds``-fold probe accuracy on the held-out set;
      ``cos_cls_mean``; ``cka_to_start``: linear CKA of the held-out token vectors to step 0), ``value``
    * ``block_metrics``: ``pooling``, ``step``, ``epoch``, ``block`` (1..L), ``metric``
      (``cls_entropy``, ``attention_to_cls``), ``value``
    * ``gradient_flow``: ``pooling``, ``step``, ``epoch``, ``layer``, ``position``, ``token``,
      ``value`` (||d loss / d h|| for ``flow_text``, a seeded random 2-class head, target 0)
    "[CLS]" in the metrics is the summary token where it sits (the moved token for
    ``cls_last`` / ``fresh_middle``). ``classifier``: the trained ``cls_head`` copy (or None);
    :meth:`save_classifier` writes it as a checkpoint folder.
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    label: str
    classes: tuple[str, ...]
    chance: float
    majority: float
    device: str
    model_name: str
    messages: tuple[str, ...] = field(default_factory=tuple)
    checkpoints: pd.DataFrame = field(default_factory=lambda: result_frame("checkpoints"))
    layer_metrics: pd.DataFrame = field(default_factory=lambda: result_frame("layer_metrics"))
    block_metrics: pd.DataFrame = field(default_factory=lambda: result_frame("block_metrics"))
    gradient_flow: pd.DataFrame = field(default_factory=lambda: result_frame("gradient_flow"))
    flow_text: str = ""
    probe_folds: int = 0
    heldout_texts: tuple[str, ...] = ()
    classifier: TrainedClassifier | None = field(default=None, repr=False)

    def at_ceiling(self) -> list[str]:
        """The poolings whose frozen accuracy (before any training) is at ceiling: the whole 95%
        interval on the held-out texts at or above :data:`CEILING`."""
        n = int(self.table["heldout_n"].iloc[0]) if len(self.table) else 0
        return [r.pooling for r in self.table.itertuples() if accuracy_interval(r.frozen_accuracy, n)[1] >= CEILING]

    def ceiling_note(self) -> str:
        """A warning when the task is at ceiling before training ("" otherwise): the run's
        comparisons are then inconclusive."""
        full = self.at_ceiling()
        if not full:
            return ""
        n = int(self.table["heldout_n"].iloc[0])
        rows = self.table.set_index("pooling")
        said = "; ".join(f"{p} {rows.loc[p, 'frozen_accuracy']:.1%} (95% interval "
                         f"{accuracy_interval(rows.loc[p, 'frozen_accuracy'], n)[1]:.1%}–"
                         f"{accuracy_interval(rows.loc[p, 'frozen_accuracy'], n)[2]:.1%})" for p in full)  # fmt: skip
        return (f"Before any training the task is at ceiling: a probe on the frozen model already reads '{self.label}' "
                f"at {said} on {n} held-out texts, so this run cannot show what fine-tuning adds and its comparisons "
                f"are inconclusive. Pick a label the model does not already solve (e.g. '{DEFAULT_LABEL}' on the demo "
                "corpus).")

    def summary(self) -> str:
        """Plain sentences: each pooling's held-out accuracy with its 95% bootstrap interval (a
        winner is named only when its interval clears the others), what it was before fine-tuning
        (the frozen baseline) and whether the training loss had flattened by the end; first, when
        the task was at ceiling before training, that the run is inconclusive."""
        t = self.table.sort_values("heldout_accuracy", ascending=False)
        n = int(t["heldout_n"].iloc[0])
        baselines = f"chance {self.chance:.1%}, majority {self.majority:.1%}"
        intervals = {r.pooling: accuracy_interval(r.heldout_accuracy, n) for r in t.itertuples()}
        if len(t) == 1:
            best = t.iloc[0]
            _, low, high = intervals[best["pooling"]]
            text = (f"After fine-tuning on '{self.label}', {best['pooling']} reaches {best['heldout_accuracy']:.1%} "
                    f"held-out accuracy (95% interval {low:.1%}–{high:.1%} on {n} held-out texts; {baselines}).")  # fmt: skip
        else:
            text = (f"After fine-tuning on '{self.label}' ({n} held-out texts; {baselines}): "
                    + verdict_from_intervals(intervals))  # fmt: skip
        changes = []
        for r in t.itertuples():
            gain = 100 * (r.heldout_accuracy - r.frozen_accuracy)
            change = f"{r.pooling} {r.frozen_accuracy:.1%} → {r.heldout_accuracy:.1%}"
            changes.append(change + (" (below its frozen baseline)" if gain < 0 else f" ({gain:+.1f} points)"))
        text += " Frozen baseline (a probe on the untrained model, same split) → fine-tuned: " + "; ".join(changes) + "."
        falling = [p for p in t["pooling"] if loss_trend(self.curves, p) == "falling"]
        unknown = [p for p in t["pooling"] if loss_trend(self.curves, p) == "unknown"]
        if falling:
            text += (f" The training loss was still falling at the end for {', '.join(falling)}: more steps "
                     "could change these numbers.")  # fmt: skip
        elif len(unknown) < len(t):
            text += " The training loss had flattened by the end."
        ceiling = self.ceiling_note()
        return f"{ceiling} {text}" if ceiling else text

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table of the result by name (the CSV downloads)."""
        return {
            "accuracy": self.table,
            "curves": self.curves,
            "checkpoints": self.checkpoints,
            "layer_metrics": self.layer_metrics,
            "block_metrics": self.block_metrics,
            "gradient_flow": self.gradient_flow,
        }

    def to_dict(self) -> dict:
        """Everything but the trained model, as plain JSON types (NaN becomes null)."""

        def records(df: pd.DataFrame) -> list[dict]:
            return json.loads(df.to_json(orient="records"))

        return {
            "model": self.model_name,
            "label": self.label,
            "classes": list(self.classes),
            "chance": self.chance,
            "majority": self.majority,
            "device": self.device,
            "summary": self.summary(),
            "messages": list(self.messages),
            "flow_text": self.flow_text,
            "probe_folds": self.probe_folds,
            "heldout_texts": list(self.heldout_texts),
            "tables": {name: records(df) for name, df in self.tables().items()},
        }

    def to_json(self, path=None) -> str:
        """:meth:`to_dict` as JSON text; also written to ``path`` (UTF-8) when given."""
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def save_classifier(self, folder) -> Path:
        """Save the trained ``cls_head`` copy as a checkpoint folder (safetensors, tokenizer,
        ``id2label``) that :func:`clsviz.load_encoder` opens with its head. Returns the folder."""
        if self.classifier is None:
            raise SaveError(
                f"Only the '{HEAD_POOLING}' pooling trains a standard *ForSequenceClassification model; "
                f"this run trained {', '.join(self.table['pooling'])}. Add '{HEAD_POOLING}' and run again to save one."
            )
        return self.classifier.save(folder)
