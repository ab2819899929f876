"""What fine-tuning trains for each pooling: a private copy of the encoder, a head, and the inputs.

Every :class:`Learner` owns a copy of the shared encoder's weights (the shared model keeps its
weights and ``requires_grad=False``) and reads one position or pooling of the last layer:

* the poolings of :data:`~clsviz.experiments.finetune.FINETUNE_POOLINGS` (``cls``, ``mean``,
  ``first``, ``last``) through a bare linear head;
* ``cls_head``: [CLS] through the model family's own sequence-classification head, as a tutorial's
  ``*ForSequenceClassification`` does (BERT: pooler + classifier; RoBERTa: dense + out_proj; ...);
  its trained copy saves as a real checkpoint (:class:`TrainedClassifier`) that
  :func:`clsviz.load_encoder` opens with its head;
* the moved summary token (:data:`MOVED_POOLINGS`): ``cls_last`` puts the [CLS]-like token after
  the closing special token (position ids as they fall); ``fresh_middle`` leaves [CLS] out and puts
  a fresh token (a new vocabulary entry whose embedding starts at the mean word embedding) in the
  middle of the text. The linear head reads that token's position.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..artifacts import ArtifactError, atomic_folder
from ..encoder import Encoder, eager_view
from ..pooling import pool_hidden
from ..provenance import text_digest
from ..vectors import pad_rows
from .position import variant_inputs
from .probe import ProbeError

__all__ = [
    "HEAD_POOLING",
    "MOVED_POOLINGS",
    "TRAINING_LABELS",
    "Inputs",
    "Learner",
    "SaveError",
    "TrainedClassifier",
    "build_inputs",
    "check_folder_name",
]

HEAD_POOLING = "cls_head"
"""[CLS] through the model family's own sequence-classification head (pooler + classifier, ...)."""

MOVED_POOLINGS = ("cls_last", "fresh_middle")
"""The summary token moved: [CLS] placed last; a fresh token in the middle (no [CLS])."""

TRAINING_LABELS = {
    "cls": "[CLS] (first) → linear head",
    "mean": "mean of all tokens → linear head",
    "first": "first text token → linear head",
    "last": "last text token → linear head",
    HEAD_POOLING: "[CLS] → the family's own classification head",
    "cls_last": "[CLS] placed last → linear head",
    "fresh_middle": "a fresh token in the middle → linear head",
}
"""What each trainable pooling reads, for tables and legends."""

FRESH_TOKEN = "[fresh]"
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class FinetuneError(ProbeError):
    """The data or settings cannot be used for fine-tuning as asked; the message says what to change."""


class SaveError(ValueError):
    """The fine-tuned copy cannot be saved where asked; the message says what to change."""


@dataclass(frozen=True)
class Inputs:
    """Texts as one learner feeds them: per text ``ids`` int64 [T_i], ``special`` bool [T_i]
    (tokens that are not the text's own) and ``slots`` int64 [N], the summary token's position
    (where [CLS], or the token standing in for it, sits)."""

    ids: list
    special: list
    slots: np.ndarray
    tokens_note: str = ""

    def batch(self, encoder: Encoder, rows):
        """(ids, mask, special, slot) tensors on the encoder's device: [B, T] x 3 and [B]."""
        import torch

        ids, mask, special, _ = pad_rows(encoder, self.ids, self.special, rows)
        return ids, mask, special, torch.as_tensor(self.slots[np.asarray(rows)], device=ids.device)


def build_inputs(encoder: Encoder, tokenized, pooling: str, fresh_id: int | None = None) -> Inputs:
    """The inputs ``pooling`` trains on, from :func:`clsviz.vectors.tokenize_texts` output."""
    cls_id = encoder.info.cls_token_id
    ids_out, special_out, slots = [], [], []
    for ids, special in zip(tokenized.input_ids, tokenized.special_masks):
        ids, special = np.asarray(ids, dtype=np.int64), np.asarray(special, dtype=bool)
        hits = np.flatnonzero((ids == cls_id) & special)
        cls_index = int(hits[0]) if len(hits) else 0
        if pooling == "cls_last":
            ids, _, content, slot = variant_inputs(ids, special, cls_index, "cls_end")
            special = ~content
        elif pooling == "fresh_middle":
            ids, _, content, slot = variant_inputs(ids, special, cls_index, "cls_middle")
            ids[slot], special = int(fresh_id), ~content
        else:
            slot = cls_index
        ids_out.append(ids)
        special_out.append(special)
        slots.append(slot)
    return Inputs(ids_out, special_out, np.asarray(slots, dtype=np.int64))


def _reads(pooling: str) -> str:
    """The pool_hidden name the head reads (the moved tokens are read at their slot)."""
    return "cls" if pooling in (HEAD_POOLING, *MOVED_POOLINGS) else pooling


class Learner:
    """A private copy of the encoder and a head reading ``pooling``; build it inside a seeded
    ``torch.random.fork_rng`` so two runs with one seed start the same.

    ``model``: the bare encoder copy (fast attention) that trains; ``eager``: a view over the same
    tensors computing attention eagerly (for checkpoint metrics); ``full``: the
    ``*ForSequenceClassification`` model for ``cls_head`` (else None); ``reads``: the pooling of
    :func:`clsviz.pool_hidden` applied at the slot.
    """

    def __init__(self, encoder: Encoder, pooling: str, labels: tuple[str, ...], tokenized):
        import torch

        self.encoder, self.pooling, self.labels = encoder, pooling, labels
        self.reads = _reads(pooling)
        self.full, self.fresh_id = None, None
        if pooling == HEAD_POOLING:
            self.full = _classifier_copy(encoder, labels)
            self.model = self.full.base_model
            self.head = None
        else:
            self.model = copy.deepcopy(encoder.model)  # private: the shared model is never trained
            if pooling == "fresh_middle":
                self.fresh_id = _add_fresh_token(self.model)
            self.head = torch.nn.Linear(encoder.info.hidden_size, len(labels)).to(encoder.device)
        for p in self.modules_parameters():
            p.requires_grad_(True)
        self.eager = eager_view(self.model)
        self.eager.eval()
        self.view = SimpleNamespace(model=self.model)  # what clsviz.blocks reads the weights from
        self.inputs = build_inputs(encoder, tokenized, pooling, self.fresh_id)

    def modules_parameters(self) -> list:
        return list((self.full if self.full is not None else self.model).parameters()) + (
            [] if self.head is None else list(self.head.parameters())
        )

    def param_groups(self, lr: float, head_lr: float) -> list[dict]:
        """The encoder's parameters at ``lr``, the head's at ``head_lr`` (for cls_head: every
        parameter outside the bare encoder, e.g. the classifier; BERT's pooler is the encoder's)."""
        if self.full is None:
            return [{"params": list(self.model.parameters()), "lr": lr}, {"params": list(self.head.parameters()), "lr": head_lr}]
        inner = {id(p) for p in self.model.parameters()}
        outer = [p for p in self.full.parameters() if id(p) not in inner]
        return [{"params": list(self.model.parameters()), "lr": lr}, {"params": outer, "lr": head_lr}]

    def train(self, on: bool = True) -> None:
        (self.full if self.full is not None else self.model).train(on)

    def batch(self, rows):
        return self.inputs.batch(self.encoder, rows)

    def read_positions(self, batch):
        """int64 [B]: the position the head reads in each text of ``batch`` (None for ``mean``)."""
        ids, mask, special, slot = batch
        if self.reads == "mean":
            return None
        import torch

        positions = torch.arange(ids.shape[1], device=ids.device)[None].expand_as(ids).float()
        # Pool the position numbers themselves: [B, 1, T, 1] -> the index each text's head reads.
        return pool_hidden(positions[:, None, :, None], mask, special, self.reads, slot)[:, 0, 0].long()

    def logits(self, batch, hidden=None):
        """[B, C] logits of the model in its current mode (dropout on when training). With
        ``hidden`` ([B, T, D] last-layer states) only the head runs, on those states (linear heads)."""
        ids, mask, special, slot = batch
        if self.full is not None:
            if hidden is not None:
                raise ValueError(f"'{HEAD_POOLING}' runs the whole classifier; it takes no hidden states.")
            return self.full(input_ids=ids, attention_mask=mask.long()).logits
        if hidden is None:
            hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return self.head(pool_hidden(hidden[:, None], mask, special, self.reads, slot)[:, 0])

    def trained_classifier(self, label_name: str, steps: int) -> TrainedClassifier | None:
        """The trained ``cls_head`` copy as a :class:`TrainedClassifier` (on the CPU), else None."""
        if self.full is None:
            return None
        full = self.full.to("cpu").eval()
        for p in full.parameters():
            p.requires_grad_(False)
        return TrainedClassifier(full, self.encoder.tokenizer, self.labels, label_name, self.encoder.name, steps)


def _classifier_copy(encoder: Encoder, labels: tuple[str, ...]):
    """A fresh ``*ForSequenceClassification`` of the encoder's family holding a copy of its weights."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(encoder.model.config)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {name: i for i, name in enumerate(labels)}
    config.problem_type = "single_label_classification"
    try:
        full = AutoModelForSequenceClassification.from_config(config)
    except ValueError as exc:
        raise FinetuneError(
            f"transformers has no sequence-classification head for '{encoder.info.model_type}' models, so the "
            f"'{HEAD_POOLING}' pooling cannot run on '{encoder.name}'. Use 'cls' (a linear head on [CLS])."
        ) from exc
    missing, unexpected = full.base_model.load_state_dict(encoder.model.state_dict(), strict=False)
    if unexpected or any(".pooler." not in f".{k}" for k in missing):
        raise FinetuneError(
            f"The weights of '{encoder.name}' do not fit {type(full).__name__} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected), so the '{HEAD_POOLING}' pooling cannot run. Use 'cls'."
        )
    return full.to(encoder.device)


def _add_fresh_token(model) -> int:
    """Add one vocabulary entry to a private copy; its embedding starts at the mean word embedding."""
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    model.resize_token_embeddings(old + 1, mean_resizing=False)
    with torch.no_grad():
        weight = model.get_input_embeddings().weight
        weight[old] = weight[:old].mean(dim=0)
    return old


# --- saving ----------------------------------------------------------------------------------


def check_folder_name(name: str, root: Path) -> Path:
    """``root / name`` for a new checkpoint folder, or :class:`SaveError` saying what to change:
    a plain name (letters, digits, ``.``, ``_``, ``-``; no path) that does not exist yet."""
    text = str(name or "").strip()
    if not _FOLDER_NAME.match(text) or ".." in text:
        raise SaveError(
            f"{text!r} cannot be a folder name: use 1 to 80 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (no '/' and no '..'), e.g. 'minilm-topic'."
        )
    folder = Path(root) / text
    if folder.exists():
        raise SaveError(f"'{folder}' already exists; choose another name (nothing is overwritten).")
    return folder


@dataclass(frozen=True, eq=False)
class TrainedClassifier:
    """The trained ``cls_head`` copy: a ``*ForSequenceClassification`` model (eval, CPU) with the
    labels in id order, ready to save as a checkpoint folder that :func:`clsviz.load_encoder` opens."""

    model: object
    tokenizer: object
    labels: tuple[str, ...]
    label_name: str
    base_model: str
    steps: int
    training_texts: tuple[str, ...] = ()

    def save(self, folder) -> Path:
        """Write ``config.json`` (with ``id2label``), ``model.safetensors``, the tokenizer and a
        ``clsviz.json`` note of how it was made (with the SHA-256 digests of its training texts, see
        :func:`clsviz.provenance.training_texts`) into ``folder`` (created; it must not hold a
        model already). Returns the folder."""
        folder = Path(folder)
        if (folder / "config.json").exists():
            raise SaveError(f"'{folder}' already holds a model; choose another folder (nothing is overwritten).")
        if not folder.parent.is_dir():
            raise SaveError(f"The folder '{folder.parent}' does not exist; create it or choose another place.")
        note = {
            "made_by": "clsviz fine-tuning (pooling cls_head)",
            "base_model": self.base_model,
            "label": self.label_name,
            "labels": list(self.labels),
            "steps": self.steps,
            # Which texts it saw, as digests: probes and scores on this model leave them out.
            "training_texts_sha256": sorted({text_digest(t) for t in self.training_texts}),
        }
        try:  # written aside and renamed when complete: a save cut short never looks like a model
            with atomic_folder(folder) as staging:
                self.model.save_pretrained(str(staging))
                self.tokenizer.save_pretrained(str(staging))
                (staging / "clsviz.json").write_text(json.dumps(note, indent=1))
        except ArtifactError as exc:
            raise SaveError(str(exc)) from exc
        return folder
