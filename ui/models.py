"""The model lists the app offers, built in one place so every list shows the same models: the
sidebar's (:func:`model_choices`), the second model's on Compare (:func:`second_model_choices`),
the classifiers a page can open (:func:`classifier_choices`), and what a model saved by clsviz
is, in words (:func:`describe_saved`).

Besides the bundled model, the installed extras and the suggested hub models this machine can
load, every list holds the models clsviz made here: the lab's pretrained models
(``CLSVIZ_LAB_DIR``) and the fine-tuned classifiers saved into the models folder
(``CLSVIZ_MODELS_DIR``: the demo classifier, a copy kept on 'How does [CLS] learn?'), by folder,
so nobody types a path to open them. Where a deployment sets an allow-list, the lists hold only
that.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from clsviz import DEFAULT_MODEL
from clsviz.catalog import is_classifier, saved_models, saved_note
from clsviz.encoder import allowed_models, local_models, model_unavailable
from clsviz.pretraining_heads import LAYOUT_KEY, pretraining_layout

from .lab import lab_model_folders

__all__ = ["OTHER", "SUGGESTED_MODELS", "classifier_choices", "copies_of", "describe_saved", "model_choices", "saved_model_folders",
           "second_model_choices"]

SUGGESTED_MODELS = {
    DEFAULT_MODEL: "bundled, works offline; trained with a mean-pooling contrastive objective, "
    "so its [CLS] was never trained as the sentence vector",
    "bert-base-uncased": "[CLS] trained by next-sentence prediction (NSP) through the pooler",
    "roberta-base": "<s> plays [CLS]; no sentence-level objective at all (no NSP)",
    "distilbert-base-uncased": "distilled from BERT without NSP; no pooler",
    "google/electra-small-discriminator": "replaced-token detection per token; no sentence objective",
    "BAAI/bge-small-en-v1.5": "contrastive training that uses the [CLS] vector as the sentence embedding",
}
OTHER = "Other (hub id or local folder)…"


def saved_model_folders() -> list[str]:
    """The models clsviz saved here, as folder paths: the fine-tuned ones in the models folder,
    then the lab's pretrained ones (each group newest first)."""
    return list(dict.fromkeys([*(str(p) for p in saved_models()), *lab_model_folders()]))


def model_choices() -> list[str]:
    """What the sidebar's model list offers: the allow-list when one is set; else the bundled
    model, the extra models installed here, the suggested hub models this machine can load, the
    models saved here, and Other."""
    allowed = allowed_models()
    if allowed is not None:
        return list(allowed)
    installed = [name for name in local_models() if name not in SUGGESTED_MODELS]
    usable = [name for name in SUGGESTED_MODELS if model_unavailable(name) is None]
    return list(dict.fromkeys([DEFAULT_MODEL, *installed, *usable, *saved_model_folders(), OTHER]))


def second_model_choices(none: str) -> list[str]:
    """The sidebar's choices after ``none`` (the choice meaning "no second model"); the
    installed extra models are listed even where the sidebar leaves them out."""
    choices = model_choices()
    if allowed_models() is None:
        extras = [name for name in local_models() if name not in choices]
        at = choices.index(OTHER) if OTHER in choices else len(choices)
        choices[at:at] = extras
    return [none, *choices]


def copies_of(model_name: str) -> list[str]:
    """The fine-tuned copies of ``model_name`` saved in the models folder (their ``clsviz.json``
    names it as the base model), newest first, as folder paths."""
    return [str(p) for p in saved_models() if saved_note(p).get("base_model") == model_name]


def _sentence_objective(folder: str) -> str | None:
    """The sentence objective a lab model was pretrained with ("nsp", "sop"), read from its config
    by :func:`clsviz.pretraining_heads.pretraining_layout`; None otherwise (or unreadable)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
        layout = pretraining_layout(SimpleNamespace(**{LAYOUT_KEY: config.get(LAYOUT_KEY)}))
    except (OSError, ValueError, AttributeError):
        return None
    objective = layout.get("sentence_objective") if layout is not None else None
    return objective if objective in ("nsp", "sop") else None


def classifier_choices() -> list[str]:
    """The models saved here that have a head to read through their layers: the fine-tuned
    classifiers, then the lab models with a sentence-objective head (NSP or SOP). Offered only
    where the sidebar's list offers them (no allow-list, or listed in it)."""
    offered = set(model_choices())
    folders = [str(p) for p in saved_models() if is_classifier(p)]
    folders += [f for f in lab_model_folders() if _sentence_objective(f) is not None]
    return [f for f in dict.fromkeys(folders) if f in offered]


def describe_saved(name: str) -> str | None:
    """A model saved here in words, for the caption under a model list; None for other models."""
    if name in lab_model_folders():
        objective = _sentence_objective(name)
        head = f"with its {objective.upper()} head" if objective else "masked-LM only"
        return f"pretrained from scratch in the [CLS] lab ({Path(name).name}, {head}); see The [CLS] lab page"
    if name not in (str(p) for p in saved_models()):
        return None
    note = saved_note(name)
    base, label = note.get("base_model", "a model"), note.get("label", "a label")
    return f"fine-tuned by clsviz from {base} on '{label}' ({note.get('steps', '?')} steps); saved in the models folder"
