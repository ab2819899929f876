"""Streamlit helpers of the "How does [CLS] learn?" page: the choices its widgets offer, how many
texts a label column has, and saving the fine-tuned classifier into the models folder. The
evidence itself is the ``finetune.watch`` and ``gradient_flow`` analyses, drawn through
:mod:`ui.runner`."""

from __future__ import annotations

import streamlit as st

from clsviz import Corpus
from clsviz.catalog import models_dir
from clsviz.corpus import is_missing
from clsviz.experiments import TRAINABLE_POOLINGS, WATCH_SETTINGS
from clsviz.experiments.finetune import DEFAULT_LABEL
from clsviz.experiments.learners import TRAINING_LABELS, check_folder_name

from .text import plain

__all__ = ["DEFAULT_LABEL", "TRAINABLE_POOLINGS", "TRAINING_LABELS", "WATCH_SETTINGS", "labelled_count", "save_classifier"]


def labelled_count(corpus: Corpus, label: str) -> int:
    """How many texts of ``corpus`` have a value in label column ``label``."""
    return sum(not is_missing(v) for v in corpus.labels[label])


def save_classifier(result, name: str) -> None:
    """Save ``result``'s fine-tuned classifier as ``models_dir() / name``, saying where or why not."""
    try:
        root = models_dir()
        root.mkdir(parents=True, exist_ok=True)
        folder = result.save_classifier(check_folder_name(name, root))
    except (ValueError, OSError) as exc:
        st.error(plain(f"Not saved: {exc}"), icon=":material/error:")
        return
    st.success(
        plain(f"Saved to {folder}. Load it as a model by that folder (it keeps its classification head); "
              "every model list now offers it."),
        icon=":material/save:",
    )
