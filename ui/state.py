"""Shared app state: the sidebar (model, sentences, max tokens), cached encoders and traces.

Every page calls :func:`page_setup` first. Choices live in ``st.session_state`` under
``clsviz.*`` keys that are not widget keys, so they survive page switches (Streamlit
forgets a widget's value when a page without that widget runs).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clsviz import DEFAULT_MODEL, Encoder, ModelLoadError, Trace, load_encoder, trace
from clsviz.encoder import allowed_models

from .cache import cached
from .corpus import plain

ROOT = Path(__file__).resolve().parent.parent

# (file relative to the app root, label, icon). Links are shown for files that exist.
PAGES = (
    ("app.py", "Overview", ":material/home:"),
    ("pages/1_Attention.py", "Attention", ":material/visibility:"),
    ("pages/2_Similarity.py", "Similarity", ":material/compare_arrows:"),
    ("pages/3_Embeddings.py", "Embeddings", ":material/scatter_plot:"),
    ("pages/4_Any_token.py", "Could any token do?", ":material/science:"),
    ("pages/5_Why_first.py", "Why first?", ":material/swap_horiz:"),
    ("pages/6_Inversion.py", "Recover the sentence?", ":material/undo:"),
    ("pages/7_What_flows_in.py", "What flows into [CLS]?", ":material/merge:"),
)

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

DEFAULT_SENTENCES = (
    "Why is the [CLS] token always first?\n"
    "The film was not bad at all.\n"
    "The cat chased the dog."
)
DEFAULT_MAX_TOKENS = 128
# Each sentence is its own model run: a pasted file of thousands of lines would hold the
# server's CPU for minutes and slow every other session, so only the first ones are traced.
MAX_SENTENCES = 50

MODEL = "clsviz.model"
CUSTOM = "clsviz.custom_model"
SENTENCES = "clsviz.sentences"
MAX_TOKENS = "clsviz.max_tokens"
FAILED = "clsviz.failed_models"
ERRORS_SHOWN = "clsviz.errors_shown"  # model errors already shown in this run (show each once)


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_encoder(name: str) -> Encoder:
    """Load a model once per process. Shared by every session: never mutate it."""
    return load_encoder(None if name == DEFAULT_MODEL else name)


def cached_trace(encoder: Encoder, text: str, max_tokens: int) -> Trace:
    """The Trace of ``text`` on ``encoder``, computed once per (model, text, max tokens) and kept
    in the shared byte-budgeted cache; the Trace is immutable, so every session may share it."""
    return cached("trace", (encoder.name, text, int(max_tokens)), lambda: trace(encoder, text, max_length=int(max_tokens)))


def _init_state() -> None:
    st.session_state.setdefault(MODEL, DEFAULT_MODEL)
    st.session_state.setdefault(CUSTOM, "")
    st.session_state.setdefault(SENTENCES, DEFAULT_SENTENCES)
    st.session_state.setdefault(MAX_TOKENS, DEFAULT_MAX_TOKENS)
    st.session_state.setdefault(FAILED, {})


def _bind(widget_key: str, store_key: str) -> None:
    """Seed a widget from the persistent store (before the widget is created)."""
    st.session_state[widget_key] = st.session_state[store_key]


def _store(widget_key: str, store_key: str) -> None:
    st.session_state[store_key] = st.session_state[widget_key]


def _model_choices() -> list[str]:
    allowed = allowed_models()
    if allowed is None:
        return [*SUGGESTED_MODELS, OTHER]
    return list(allowed)


def _selected_model_name() -> str:
    choice = st.session_state[MODEL]
    if choice == OTHER:
        return st.session_state[CUSTOM].strip() or DEFAULT_MODEL
    return choice


def sidebar() -> None:
    """The shared sidebar: page links, model picker, sentences, max tokens."""
    _init_state()
    with st.sidebar:
        for path, label, icon in PAGES:
            if (ROOT / path).is_file():
                st.page_link(path, label=label, icon=icon)
        st.divider()
        choices = _model_choices()
        if st.session_state[MODEL] not in choices:
            st.session_state[MODEL] = choices[0]
        _bind("sidebar.model", MODEL)
        st.selectbox(
            "Model",
            choices,
            key="sidebar.model",
            on_change=_store,
            args=("sidebar.model", MODEL),
            help="The bundled model works offline. Any Hugging Face encoder id or local folder "
            "with a saved model also works where the machine can reach it.",
        )
        if st.session_state[MODEL] in SUGGESTED_MODELS:
            st.caption(SUGGESTED_MODELS[st.session_state[MODEL]])
        if st.session_state[MODEL] == OTHER:
            _bind("sidebar.custom_model", CUSTOM)
            st.text_input(
                "Hugging Face id or local folder",
                key="sidebar.custom_model",
                on_change=_store,
                args=("sidebar.custom_model", CUSTOM),
                placeholder="e.g. bert-base-uncased or /models/my-bert",
            )
        _bind("sidebar.sentences", SENTENCES)
        st.text_area(
            "Sentences (one per line)",
            key="sidebar.sentences",
            on_change=_store,
            args=("sidebar.sentences", SENTENCES),
            height=140,
            help="Each line is traced on its own. Press Ctrl+Enter (or click outside) to apply.",
        )
        _bind("sidebar.max_tokens", MAX_TOKENS)
        st.number_input(
            "Max tokens",
            min_value=8,
            max_value=512,
            step=8,
            key="sidebar.max_tokens",
            on_change=_store,
            args=("sidebar.max_tokens", MAX_TOKENS),
            help="Longer sentences are cut to this many tokens (and to the model's own limit).",
        )


def page_setup(title: str, icon: str = ":material/token:") -> None:
    """Page config and the shared sidebar; call first on every page."""
    st.set_page_config(page_title=f"{title} · clsviz", page_icon=icon, layout="wide")
    st.session_state[ERRORS_SHOWN] = set()
    sidebar()


def current_encoder() -> Encoder:
    """The selected encoder; when it fails to load, an error is shown and the default is used."""
    _init_state()
    name = _selected_model_name()
    failed: dict = st.session_state[FAILED]
    if name != DEFAULT_MODEL and name not in failed:
        try:
            with st.spinner(f"Loading {name}…"):
                return cached_encoder(name)
        except ModelLoadError as exc:
            failed[name] = str(exc)
        except Exception as exc:  # any other failure must not reach the page as a traceback
            failed[name] = f"'{name}' could not be loaded ({type(exc).__name__}: {exc})."
    shown = st.session_state.setdefault(ERRORS_SHOWN, set())
    if name != DEFAULT_MODEL and name not in shown:
        shown.add(name)
        st.error(f"{plain(failed[name])}  \nShowing the bundled default model instead.", icon=":material/error:")
    with st.spinner("Loading the bundled model…"):
        return cached_encoder(DEFAULT_MODEL)


def current_sentences() -> list[str]:
    """The non-empty lines of the sentence box."""
    _init_state()
    return [line.strip() for line in str(st.session_state[SENTENCES]).splitlines() if line.strip()]


def current_max_tokens() -> int:
    _init_state()
    return int(st.session_state[MAX_TOKENS])


def current_traces() -> list[Trace]:
    """Traces of the typed sentences (cached). Prompts when there are none; warns per bad line."""
    encoder = current_encoder()
    sentences = current_sentences()
    if not sentences:
        st.info("Type a sentence in the sidebar (one per line) to see how the model reads it.", icon=":material/edit:")
        return []
    if len(sentences) > MAX_SENTENCES:
        st.warning(
            f"{len(sentences):,} sentences were typed; the first {MAX_SENTENCES} are used "
            "(each one is a separate model run).",
            icon=":material/warning:",
        )
        sentences = sentences[:MAX_SENTENCES]
    traces = []
    for i, text in enumerate(sentences, start=1):
        try:
            traces.append(cached_trace(encoder, text, current_max_tokens()))
        except ValueError as exc:
            st.warning(f"Sentence {i} was skipped: {exc}", icon=":material/warning:")
    for t in traces:
        if t.truncated:
            st.caption(
                f"Note: a sentence was longer than {t.seq_len} tokens and was cut "
                "(raise *Max tokens* in the sidebar, up to the model's limit)."
            )
            break
    return traces
