"""The Compare page's pieces: picking and holding the second model (B), and the choices its
widgets offer. The evidence itself is declared in :mod:`clsviz.analyses.comparison` and drawn
through :mod:`ui.runner`."""

from __future__ import annotations

import streamlit as st

from clsviz import Encoder, ModelLoadError
from clsviz.compare import ATTENTION_MEASURES, CKA_READINGS

from . import models, runner
from .state import bind_widget, hold_second_model, store_widget
from .text import plain
from .widgets import selectbox, text_input

__all__ = [
    "CKA_READINGS",
    "JOBS",
    "MEASURES",
    "NONE",
    "second_encoder",
    "second_model_choices",
    "second_model_picker",
]

MEASURES = ATTENTION_MEASURES
"""The per block x head measures of attention around [CLS], with what each is (the radio's help)."""
JOBS = (("compare.cka", "compare.cka"), ("compare.curves", "compare.curves"))
"""(analysis, slot) of the page's background jobs: they hold both models, so a change of B forgets them."""
NONE = "None (no second model)"
SECOND = "compare.second_model"  # the choice, kept across page switches (not a widget key)
SECOND_CUSTOM = "compare.second_custom"
FAILED_SECOND = "compare.failed"  # model name -> why it could not be loaded, for this session


def second_model_choices() -> list[str]:
    """The model list for B (:func:`ui.models.second_model_choices`), after "no second model"."""
    return models.second_model_choices(NONE)


def second_model_picker() -> str | None:
    """The second model ("B") a person picks: a listed model or a typed hub id / folder; None
    for no second model. The choice survives page switches."""
    choices = second_model_choices()
    st.session_state.setdefault(SECOND, NONE)
    st.session_state.setdefault(SECOND_CUSTOM, "")
    if st.session_state[SECOND] not in choices:
        st.session_state[SECOND] = NONE
    bind_widget("compare.model_b", SECOND)
    selectbox(st,
        "Second model (B)",
        choices,
        key="compare.model_b",
        on_change=store_widget,
        args=("compare.model_b", SECOND),
        help="Compared with the sidebar's model (A). Loaded once and shared like the sidebar's models; "
        "picking another one (or none) frees it when no one else uses it.",
    )
    choice = st.session_state[SECOND]
    if choice == models.OTHER:
        bind_widget("compare.custom_b", SECOND_CUSTOM)
        text_input(st,
            "Hugging Face id or local folder (B)",
            key="compare.custom_b",
            on_change=store_widget,
            args=("compare.custom_b", SECOND_CUSTOM),
            placeholder="e.g. /models/my-finetuned-bert",
        )
        return str(st.session_state[SECOND_CUSTOM]).strip() or None
    return None if choice == NONE else choice


def second_encoder(name: str | None) -> Encoder | None:
    """Hold ``name`` as this session's second model and return it; None (after a message saying
    why) when there is none or it cannot be loaded. The sidebar's model is never affected."""
    failed: dict = st.session_state.setdefault(FAILED_SECOND, {})
    if name is not None and name in failed:
        name_failed = name
        _, changed = hold_second_model(None)
    else:
        name_failed = None
        try:
            with st.spinner(f"Loading {name}…"):
                encoder, changed = hold_second_model(name)
        except ModelLoadError as exc:
            failed[name] = str(exc)
            name_failed, changed, encoder = name, None, None
        except Exception as exc:  # any other failure must not reach the page as a traceback
            failed[name] = f"'{name}' could not be loaded ({type(exc).__name__}: {exc})."
            name_failed, changed, encoder = name, None, None
    if changed is not None:
        # The jobs hold both encoders; forget them so the old model can leave memory.
        for name, slot in JOBS:
            runner.clear(name, slot)
    if name_failed is not None:
        st.error(
            plain(f"The second model could not be loaded: {failed[name_failed]}")
            + "  \nThe sidebar's model keeps working; pick another second model.",
            icon=":material/error:",
        )
        return None
    return encoder
