"""The lab page's pieces: the corpus (read once per process), the saved runs, the variants in words,
and the settings the page offers (read from the ``lab.pretrain`` declaration)."""

from __future__ import annotations

import streamlit as st

from clsviz.analyses import get
from clsviz.lab import lab_texts, saved_runs
from clsviz.lab.config import MODEL_SIZES, OBJECTIVE_HELP, SUMMARY_HELP, LabConfig
from clsviz.lab.reference import REFERENCE_VARIANTS

__all__ = ["VARIANTS", "corpus", "default", "describe_size", "describe_variant", "lab_model_folders"]

VARIANTS = REFERENCE_VARIANTS
"""The variants the page offers: the reference set, each differing in one thing from first+nsp."""


@st.cache_resource(show_spinner=False)
def corpus() -> tuple[tuple[str, ...], str]:
    """(texts, description) of the lab corpus: the installed Austen novels or the shipped excerpt."""
    texts, description = lab_texts()
    return tuple(texts), description


def default(param: str):
    """The default of a ``lab.pretrain`` parameter (steps, checkpoints, ...), for a widget."""
    return get("lab.pretrain").param(param).default


def describe_variant(variant: str) -> str:
    """``"first+nsp"`` in words, for the variant picker."""
    summary, _, objective = variant.partition("+")
    words = OBJECTIVE_HELP.get(None if objective == "mlm" else objective, objective)
    return f"{variant}: {SUMMARY_HELP.get(summary, summary)}; {words}"


def describe_size(name: str) -> str:
    """A model size in words: ``"small: 4 layers × 64 dims"``."""
    cfg = LabConfig.from_any(MODEL_SIZES[name])
    return f"{name}: {cfg.layers} layers × {cfg.hidden} dims"


def lab_model_folders() -> list[str]:
    """The saved lab models (newest first) as folder paths, the names the model list offers."""
    return [str(p) for p in saved_runs()]
