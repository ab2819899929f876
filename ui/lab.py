"""The lab page's helpers: the corpus (read once per process), the saved runs, the variant names."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clsviz.lab import lab_dir, lab_texts, open_run, saved_runs
from clsviz.lab.config import OBJECTIVE_HELP, SUMMARY_HELP

__all__ = ["corpus", "describe_variant", "lab_model_folders", "load_runs", "new_set_folder"]


@st.cache_resource(show_spinner=False)
def corpus() -> tuple[tuple[str, ...], str]:
    """(texts, description) of the lab corpus: the installed Austen novels or the shipped excerpt."""
    texts, description = lab_texts()
    return tuple(texts), description


def describe_variant(variant: str) -> str:
    """``"first+nsp"`` in words, for the variant picker."""
    summary, _, objective = variant.partition("+")
    return f"{variant}: {SUMMARY_HELP.get(summary, summary)}; {OBJECTIVE_HELP.get(None if objective == 'mlm' else objective, objective)}"


def lab_model_folders() -> list[str]:
    """The saved lab models (newest first) as folder paths, the names the model list offers."""
    return [str(p) for p in saved_runs()]


def load_runs(folders) -> tuple[list, list[str]]:
    """(runs, notes): the saved runs in ``folders``; a folder that cannot be read gives a note."""
    runs, notes = [], []
    for folder in folders:
        try:
            runs.append(open_run(folder))
        except (OSError, ValueError) as exc:
            notes.append(f"{folder}: {exc}")
    return runs, notes


def new_set_folder(stamp: str) -> Path:
    """A new folder for one start of the page's pretraining (its variants go inside)."""
    return lab_dir() / f"app-{stamp}"
