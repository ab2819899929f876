"""The heads of a model pretrained in clsviz's lab (:mod:`clsviz.lab`), read when it is loaded.

A lab model is a standard ``BertForPreTraining`` (or ``BertForMaskedLM`` without a sentence
objective) whose config records the variant in a ``clsviz_pretraining`` dict: ``summary`` (where
the summary token sits: ``"first"``, ``"last"`` or ``"none"``), ``sentence_objective`` (``"nsp"``,
``"sop"`` or None), ``corpus``, ``steps``. :func:`clsviz.load_encoder` keeps its sentence head as
``Encoder.classifier`` (a :class:`~clsviz.model_heads.ClassifierHead` over the loaded weights: pooler
dense + tanh, then ``cls.seq_relationship``), read from the summary token - or from the mean of the
tokens when there is none - so :func:`clsviz.heads.classifier_lens` shows the model's own
sentence-objective logits in its last row. The masked-LM head is read by
:func:`clsviz.experiments.inversion.load_mlm_head` from the same folder.
"""

from __future__ import annotations

from collections.abc import Sequence

from .model_heads import ClassifierHead

__all__ = ["LAYOUT_KEY", "SENTENCE_LABELS", "pretraining_layout", "sentence_head"]

LAYOUT_KEY = "clsviz_pretraining"
"""The config attribute (a dict) that marks a lab model and records its variant."""

SENTENCE_LABELS = {
    "nsp": ("is next", "random"),
    "sop": ("in order", "swapped"),
}
"""The sentence head's labels in id order (transformers' convention: 0 = B continues A)."""

_SUMMARIES = ("first", "last", "none")


def pretraining_layout(config) -> dict | None:
    """The ``clsviz_pretraining`` dict of a lab model's config (checked), or None for other models."""
    layout = getattr(config, LAYOUT_KEY, None)
    if layout is None:
        return None
    if not isinstance(layout, dict) or layout.get("summary") not in _SUMMARIES:
        raise ValueError(
            f"The config's '{LAYOUT_KEY}' entry is not one clsviz wrote: expected a dict whose 'summary' is one of "
            f"{', '.join(_SUMMARIES)}, got {layout!r}."
        )
    objective = layout.get("sentence_objective")
    if objective not in (*SENTENCE_LABELS, None):
        raise ValueError(f"The config's '{LAYOUT_KEY}' names an unknown sentence objective {objective!r} (nsp, sop or none).")
    return dict(layout)


def sentence_head(full, base, layout: dict, missing_keys: Sequence[str] = ()) -> tuple[ClassifierHead | None, tuple[str, ...]]:
    """(head or None, notes): the sentence-objective head of a loaded ``BertForPreTraining``
    ``full`` whose encoder is ``base``; None with a note when its weights are missing."""
    objective = layout.get("sentence_objective")
    if objective is None:
        return None, ()
    lacking = [k for k in missing_keys if "seq_relationship" in k or "pooler" in k]
    if lacking:
        return None, (
            f"The checkpoint names a {objective.upper()} head but has no weights for {', '.join(sorted(lacking)[:3])}, "
            "so the sentence head is not offered.",
        )
    summary = layout["summary"]
    reads = "mean" if summary == "none" else "cls"
    where = {"first": "[CLS] (first)", "last": "[CLS] (last)", "none": "the mean of the tokens"}[summary]
    head = ClassifierHead(
        kind="pooler",
        labels=SENTENCE_LABELS[objective],
        pooling=f"{where} → pooler (dense + tanh) → {objective.upper()} head (seq_relationship)",
        problem_type="single_label_classification",
        classifier=full.cls.seq_relationship,
        first=base,
        reads=reads,
    )
    return head, ()
