"""Where a model comes from and what it saw: how it was trained (the preconditions published
findings need) and which texts a fine-tuned copy was trained on (so no probe or score reads them).

:func:`model_profile` reads, in this order, what the model's own files say:

1. a ``clsviz_pretraining`` dict in ``config.json`` (written by clsviz's pretraining lab):
   ``summary`` ("first", "last", "none": read as the summary position first, last, absent) and
   ``sentence_objective`` ("nsp", "sop" or None); such a model is pre-trained only;
2. a sequence-classification head (``architectures`` ending in ``ForSequenceClassification``,
   or a loaded head): fine-tuned;
3. sentence-transformers files beside the config (``modules.json``,
   ``config_sentence_transformers.json``) or a known sentence-embedding publisher: sentence-tuned,
   with the pooling it was trained with;
4. ``architectures`` with ``ForPreTraining`` (both pre-training heads: MLM and the sentence
   objective) or ``ForMaskedLM``: pre-trained; the sentence objective is the family's original
   recipe (:data:`FAMILY_OBJECTIVES`: BERT used next-sentence prediction, ALBERT sentence order,
   RoBERTa and ELECTRA none);
5. otherwise (a bare ``*Model``): assumed pre-trained, and the profile says it was assumed.

:func:`training_texts` reads the record a fine-tuned copy keeps of its training texts
(``clsviz.json`` beside its config, written by ``FinetuneResult.save_classifier``); texts are
stored as SHA-256 digests of their UTF-8 bytes, never as text. :func:`held_out` drops those texts
from a sample and says how many went.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .pretraining_heads import pretraining_layout

__all__ = [
    "FAMILY_OBJECTIVES",
    "OBJECTIVES",
    "RECORD_FILE",
    "SUMMARY_POSITIONS",
    "TRAININGS",
    "HeldOut",
    "ModelProfile",
    "held_out",
    "model_profile",
    "objective_record",
    "text_digest",
    "training_texts",
]

Training = Literal["pre-trained", "fine-tuned", "sentence-tuned"]
TRAININGS: tuple[str, ...] = ("pre-trained", "fine-tuned", "sentence-tuned")
"""How a model was trained last: pre-training only, fine-tuned for a task with a head, or trained
for sentence embeddings (sentence-transformers and the like)."""
OBJECTIVES: tuple[str, ...] = ("nsp", "sop", "none")
"""The sentence-level pre-training objective: next-sentence prediction, sentence order, none."""
SUMMARY_POSITIONS: tuple[str, ...] = ("first", "last", "absent")
"""Where the summary token ([CLS] or its stand-in) sits."""

FAMILY_OBJECTIVES = {
    "bert": "nsp", "albert": "sop", "roberta": "none", "xlm-roberta": "none", "camembert": "none",
    "distilbert": "none", "electra": "none", "deberta": "none", "deberta-v2": "none", "mpnet": "none",
    "modernbert": "none",
}  # fmt: skip
"""The sentence objective of each family's original pre-training recipe."""

SENTENCE_PUBLISHERS = ("sentence-transformers/", "BAAI/bge-", "intfloat/e5-", "thenlper/gte-", "nomic-ai/")
"""Hub id prefixes of models trained as sentence embedders."""

RECORD_FILE = "clsviz.json"
"""The note a clsviz fine-tuned copy keeps beside its config (``training_texts_sha256`` inside)."""

_OBJECTIVE_NAMES = {"nsp": "next-sentence prediction", "sop": "sentence-order prediction"}

_SENTENCE_FILES = ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json")


@dataclass(frozen=True)
class ModelProfile:
    """What the model's files say about how it was trained (see the module docstring).

    ``training``: one of :data:`TRAININGS`; ``sentence_objective``: one of :data:`OBJECTIVES` or
    None when unknown; ``summary_position``: one of :data:`SUMMARY_POSITIONS`; ``pooling``: the
    pooling a sentence-tuned model was trained with, or the head's pooling of a fine-tuned one;
    ``evidence``: how each was read, in plain words; ``objective_note``: for a lab model with a
    sentence objective, how well it learnt it (:func:`objective_record`), else ""."""

    name: str
    family: str
    num_layers: int
    hidden_size: int
    training: str
    sentence_objective: str | None
    summary_position: str
    pooling: str | None = None
    evidence: tuple[str, ...] = ()
    objective_assumed: bool = False
    objective_note: str = ""

    def describe(self) -> str:
        """``"all-MiniLM-L6-v2 (bundled): bert family, 6 layers, 384 dims, sentence-tuned (mean pooling)"``."""
        training = self.training + (
            f" ({self.pooling} pooling)" if self.pooling and self.training != "pre-trained" else ""
        )
        objective = {
            "nsp": "next-sentence prediction",
            "sop": "sentence-order prediction",
            "none": "no sentence objective",
        }
        said = f"{self.name}: {self.family} family, {self.num_layers} layers, {self.hidden_size} dims, {training}"
        if self.sentence_objective is not None:  # "pre-trained, pre-trained with ..." said once
            said = said.removesuffix(", pre-trained") + f", pre-trained with {objective[self.sentence_objective]}"
            said += f" (assumed: the {self.family} family's recipe)" if self.objective_assumed else ""
        if self.summary_position != "first":
            said += f", summary token {self.summary_position}"
        return said


def _folder(encoder) -> Path | None:
    source = Path(str(getattr(encoder.info, "source", "")))
    return source if source.is_dir() else None


def _sentence_pooling(folder: Path) -> str | None:
    for config in sorted(folder.glob("*_Pooling/config.json")):
        try:
            modes = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for key, name in (("pooling_mode_cls_token", "cls"), ("pooling_mode_mean_tokens", "mean"),
                          ("pooling_mode_max_tokens", "max"), ("pooling_mode_mean_sqrt_len_tokens", "mean")):  # fmt: skip
            if modes.get(key):
                return name
    return None


def _lab_settings(config) -> dict | None:
    """The lab's ``clsviz_pretraining`` record (as :mod:`clsviz.lab` writes it), or None."""
    try:
        return pretraining_layout(config)
    except ValueError:  # a hand-edited record: the loader already refused it with its own message
        return None


def objective_record(folder: Path | None, objective: str | None) -> str:
    """How well a lab model learnt its sentence objective, in one plain sentence: the last held-out
    accuracy its ``metrics.csv`` records (``heldout_nsp_accuracy`` or ``heldout_sop_accuracy``, with
    its 95% interval) against chance (50%). "" when the model has no sentence objective; a sentence
    saying it is unknown when the run recorded no held-out accuracy (a run without checkpoints)."""
    if objective not in _OBJECTIVE_NAMES:
        return ""
    head = f"its {objective.upper()} head ({_OBJECTIVE_NAMES[objective]})"
    rows = []
    try:
        with open(Path(folder) / "metrics.csv", encoding="utf-8", newline="") as handle:  # type: ignore[arg-type]
            for row in csv.DictReader(handle):
                if row.get("metric") == f"heldout_{objective}_accuracy":
                    rows.append((int(float(row["step"])), float(row["value"]), row.get("low") or "nan", row.get("high") or "nan"))
    except (OSError, TypeError, ValueError, KeyError):
        rows = []
    if not rows:
        return (f"The lab run recorded no held-out accuracy of {head} (it was pretrained without checkpoints), "
                "so how far the objective trained its [CLS] is not known")
    step, value, low, high = max(rows)
    low, high = float(low), float(high)
    shown = f"{value:.0%}" + (f" (95% interval {low:.0%}–{high:.0%})" if not (math.isnan(low) or math.isnan(high)) else "")
    said = f"{head[0].upper()}{head[1:]} reached {shown} on held-out sentence pairs at step {step}"
    if low > 0.5:
        return said + ", above chance (50%)"
    return (said + ", not clearly above chance (50%): the objective that should train its [CLS] was hardly "
            "learnt, unlike the published model's")


def model_profile(encoder) -> ModelProfile:
    """The :class:`ModelProfile` of a loaded :class:`~clsviz.encoder.Encoder`."""
    config = encoder.model.config
    info = encoder.info
    family = str(getattr(config, "model_type", info.model_type) or "unknown")
    architectures = [str(a) for a in (getattr(config, "architectures", None) or ())]
    folder = _folder(encoder)
    default = FAMILY_OBJECTIVES.get(family)
    base = dict(name=info.name, family=family, num_layers=info.num_layers, hidden_size=info.hidden_size)
    lab = _lab_settings(config)
    sequence_head = any(a.endswith("ForSequenceClassification") for a in architectures)
    head = getattr(encoder, "classifier", None) is not None or sequence_head
    if lab is not None and not sequence_head:  # its sentence-objective head is its pretraining, not a fine-tune
        objective = str(lab.get("sentence_objective") or "none").lower()
        position = {"first": "first", "last": "last", "none": "absent"}[lab["summary"]]
        return ModelProfile(**base, training="pre-trained", sentence_objective=objective if objective in OBJECTIVES else None,
                            summary_position=position if position in SUMMARY_POSITIONS else "first",
                            evidence=("config.json names clsviz pretraining settings (clsviz_pretraining)",),
                            objective_note=objective_record(folder, objective) if folder is not None else "")  # fmt: skip
    if head:
        return ModelProfile(**base, training="fine-tuned", sentence_objective=default, summary_position="first",
                            pooling=getattr(info, "head_pooling", None), objective_assumed=default is not None,
                            evidence=("it has a sequence-classification head",))  # fmt: skip
    sentence_files = folder is not None and any((folder / f).is_file() for f in _SENTENCE_FILES)
    if sentence_files or any(
        str(info.source).startswith(p) or info.name.startswith(p) for p in SENTENCE_PUBLISHERS
    ):
        pooling = _sentence_pooling(folder) if folder is not None else None
        why = (
            "its folder holds sentence-transformers files"
            if sentence_files
            else "it is published as a sentence embedder"
        )
        return ModelProfile(**base, training="sentence-tuned", sentence_objective=default, summary_position="first",
                            pooling=pooling, objective_assumed=default is not None, evidence=(why,))  # fmt: skip
    if any(a.endswith("ForPreTraining") for a in architectures):
        objective = default if default is not None else None
        return ModelProfile(**base, training="pre-trained", sentence_objective=objective, summary_position="first",
                            evidence=(f"config.json names {', '.join(architectures)} (the pre-training heads)",))  # fmt: skip
    said = ", ".join(architectures) or "no architecture"
    how = ("config.json names a masked-language-model head" if any(a.endswith("ForMaskedLM") for a in architectures)
           else f"config.json names {said} and no other training, so pre-training only is assumed")  # fmt: skip
    evidence = (how,) + (
        (f"the sentence objective is the {family} family's original recipe",) if default else ()
    )
    return ModelProfile(**base, training="pre-trained", sentence_objective=default, summary_position="first",
                        objective_assumed=default is not None, evidence=evidence)  # fmt: skip


# --- what a fine-tuned copy was trained on -----------------------------------------------------


def text_digest(text: str) -> str:
    """The SHA-256 hex digest of a text's UTF-8 bytes (how training texts are recorded)."""
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()


def training_texts(encoder) -> frozenset[str] | None:
    """Digests of the texts this model was fine-tuned on (from its ``clsviz.json``), or None
    when it keeps no such record."""
    folder = _folder(encoder)
    if folder is None or not (folder / RECORD_FILE).is_file():
        return None
    try:
        note = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    digests = note.get("training_texts_sha256") if isinstance(note, dict) else None
    return frozenset(str(d) for d in digests) if isinstance(digests, list) else None


@dataclass(frozen=True)
class HeldOut:
    """A sample with a model's training texts taken out: ``texts`` (kept, in order), ``rows``
    (their indexes in the input), ``removed`` (how many were training texts), ``known`` (False
    when the model is fine-tuned but keeps no record, so nothing could be checked) and ``note``
    (one plain sentence, empty when there is nothing to say)."""

    texts: tuple[str, ...]
    rows: tuple[int, ...]
    removed: int
    known: bool
    note: str


def held_out(texts: Sequence[str], *encoders, seen: Iterable[str] | None = None) -> HeldOut:
    """``texts`` without the training texts of any of ``encoders`` (and of ``seen``, raw texts).

    A fine-tuned encoder with no record cannot be checked: the texts are kept and ``note`` says
    loudly that its numbers may read its own training texts."""
    digests: set[str] = {text_digest(t) for t in (seen or ())}
    unknown = []
    for enc in encoders:
        if enc is None:
            continue
        record = training_texts(enc)
        if record is not None:
            digests |= record
        elif model_profile(enc).training == "fine-tuned":
            unknown.append(enc.name)
    rows = tuple(i for i, t in enumerate(texts) if text_digest(t) not in digests)
    removed = len(texts) - len(rows)
    parts = []
    if removed:
        parts.append(
            f"{removed} of {len(texts)} texts were left out because the fine-tuned model was trained on them"
        )
    if unknown:
        parts.append(f"WARNING: {', '.join(unknown)} is fine-tuned but keeps no record of its training texts, so "
                     "these numbers may be read on texts it was trained on (and look better than they are)")  # fmt: skip
    note = "; ".join(parts) + "." if parts else ""
    return HeldOut(tuple(texts[i] for i in rows), rows, removed, not unknown, note)
