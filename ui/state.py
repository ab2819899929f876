"""Shared app state: the sidebar (model, sentences, max tokens), cached encoders and traces.

Every page calls :func:`page_setup` first. Choices live in ``st.session_state`` under
``clsviz.*`` keys that are not widget keys, so they survive page switches (Streamlit
forgets a widget's value when a page without that widget runs).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from clsviz import DEFAULT_MODEL, Encoder, ModelLoadError, Trace, load_encoder, trace
from clsviz.encoder import allowed_models, local_models, model_unavailable
from clsviz.heads import predict
from clsviz.tracing import no_summary_message, tokenize, trace_bytes

from . import holds, preload
from .cache import cached, nbytes, request_bytes, shared_cache
from .models import OTHER, SUGGESTED_MODELS, describe_saved, model_choices
from .text import plain

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
    ("pages/8_Causal_tests.py", "Causal tests", ":material/biotech:"),
    ("pages/9_How_it_learns.py", "How does [CLS] learn?", ":material/school:"),
    ("pages/10_Classifier.py", "Classifier", ":material/label:"),
    ("pages/11_Compare.py", "Compare two models", ":material/difference:"),
    ("pages/12_Findings.py", "Published findings", ":material/fact_check:"),
    ("pages/13_Lab.py", "The [CLS] lab", ":material/experiment:"),
)


# Plain sentences that show the phenomena without tripping over tokenization (a literal "[CLS]"
# in the text is split into pieces and then dominates what [CLS] looks closest to): a negation,
# and the same word "bank" in two senses.
DEFAULT_SENTENCES = (
    "The film was not bad at all.\n"
    "She sat on the river bank and watched the boats.\n"
    "The bank raised its interest rates again."
)
DEFAULT_MAX_TOKENS = 128
MIN_TOKENS, MAX_TOKENS_LIMIT = 8, 512
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
    """Load a model once per process (the bundled one may already be loading since the server
    started: see ui.preload). Shared by every session: never mutate it."""
    if name == DEFAULT_MODEL:
        encoder = preload.take(timeout=preload.WAIT_S)
        return encoder if encoder is not None else load_encoder(None)
    return load_encoder(name)


def cached_trace(encoder: Encoder, text: str, max_tokens: int) -> Trace:
    """The Trace of ``text`` on ``encoder``, computed once per (model, text, max tokens) and kept
    in the shared byte-budgeted cache; the Trace is immutable, so every session may share it."""
    return cached("trace", (encoder.name, text, int(max_tokens)), lambda: trace(encoder, text, max_tokens=int(max_tokens)))


def _init_state() -> None:
    """The sidebar's remembered choices, each put back to its default when it is not a value the
    sidebar could have produced (the session state can be set by a crafted request)."""
    defaults = {MODEL: DEFAULT_MODEL, CUSTOM: "", SENTENCES: DEFAULT_SENTENCES, MAX_TOKENS: DEFAULT_MAX_TOKENS}
    for key, default in defaults.items():
        value = st.session_state.get(key, default)
        if key == MAX_TOKENS:
            ok = isinstance(value, int) and not isinstance(value, bool) and MIN_TOKENS <= value <= MAX_TOKENS_LIMIT
        else:
            ok = isinstance(value, str)
        st.session_state[key] = value if ok else default
    if not isinstance(st.session_state.get(FAILED), dict):
        st.session_state[FAILED] = {}


def bind_widget(widget_key: str, store_key: str) -> None:
    """Seed a widget from the persistent store (before the widget is created)."""
    st.session_state[widget_key] = st.session_state[store_key]


def store_widget(widget_key: str, store_key: str) -> None:
    st.session_state[store_key] = st.session_state[widget_key]


def use_model(name: str) -> None:
    """Make ``name`` (a listed model or a folder) the sidebar's model from a page, then rerun the
    page with it: picked in the list when the list offers it, else typed under Other."""
    if name in model_choices():
        st.session_state[MODEL] = name
    else:
        st.session_state[MODEL], st.session_state[CUSTOM] = OTHER, name
    st.rerun()


def _keep_choice_offered() -> list[str]:
    """The model choices; a session holding a model that is not offered (an allow-list, a model
    no longer in the cache) is put back on the first choice."""
    choices = model_choices()
    if st.session_state[MODEL] not in choices:
        st.session_state[MODEL] = choices[0]
    return choices


def _unavailable_suggestions() -> dict[str, str]:
    """Suggested hub models this machine cannot load now, with the reason."""
    if allowed_models() is not None:
        return {}
    reasons = {name: model_unavailable(name) for name in SUGGESTED_MODELS}
    return {name: why for name, why in reasons.items() if why}


def _describe_model_in_use() -> None:
    """The caption under the model list: what the model actually in use is (the bundled model's
    description when the selected one failed to load)."""
    name = _selected_model_name()
    failed = st.session_state[FAILED]
    if name in failed:
        st.caption(f"Could not load {plain(name)}; the bundled model is in use: {SUGGESTED_MODELS[DEFAULT_MODEL]}")
    elif name in SUGGESTED_MODELS:
        st.caption(SUGGESTED_MODELS[name])
    elif name in local_models():
        st.caption("installed with `clsviz models fetch` (or `make models`); works offline")
    elif describe_saved(name) is not None:
        st.caption(plain(describe_saved(name)))
    missing = _unavailable_suggestions()
    if missing:
        st.caption(
            f"Not offered on this machine: {', '.join(missing)} ({next(iter(missing.values()))}). "
            "Any local folder with a saved model works under *Other*."
        )


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
        choices = _keep_choice_offered()
        bind_widget("sidebar.model", MODEL)
        st.selectbox(
            "Model",
            choices,
            key="sidebar.model",
            on_change=store_widget,
            args=("sidebar.model", MODEL),
            help="The bundled model works offline. Any Hugging Face encoder id or local folder "
            "with a saved model also works where the machine can reach it.",
        )
        _describe_model_in_use()
        if st.session_state[MODEL] == OTHER:
            bind_widget("sidebar.custom_model", CUSTOM)
            st.text_input(
                "Hugging Face id or local folder",
                key="sidebar.custom_model",
                on_change=store_widget,
                args=("sidebar.custom_model", CUSTOM),
                placeholder="e.g. bert-base-uncased or /models/my-bert",
            )
        bind_widget("sidebar.sentences", SENTENCES)
        st.text_area(
            "Sentences (one per line)",
            key="sidebar.sentences",
            on_change=store_widget,
            args=("sidebar.sentences", SENTENCES),
            height=140,
            help="Each line is traced on its own. Press Ctrl+Enter (or click outside) to apply.",
        )
        bind_widget("sidebar.max_tokens", MAX_TOKENS)
        st.number_input(
            "Max tokens",
            min_value=MIN_TOKENS,
            max_value=MAX_TOKENS_LIMIT,
            step=8,
            key="sidebar.max_tokens",
            on_change=store_widget,
            args=("sidebar.max_tokens", MAX_TOKENS),
            help="Longer sentences are cut to this many tokens (and to the model's own limit).",
        )
        sidebar_prediction()


# The sidebar lists at most this many labels per sentence (the most probable first).
TOP_LABELS = 3


def _sidebar_encoder() -> Encoder | None:
    """The encoder the page will use, loaded through the shared loader; None when it fails (the
    page itself then says why and falls back to the bundled model, which has no head)."""
    name = _selected_model_name()
    if name in st.session_state.get(FAILED, {}):
        name = DEFAULT_MODEL
    holds.note_main_model(name)
    try:
        with st.spinner(f"Loading {name}…"):
            return cached_encoder(name)
    except Exception:
        return None


def sidebar_prediction() -> None:
    """In the sidebar: the model's predicted label and probabilities for each typed sentence,
    when the model has a classification head (nothing otherwise). Never breaks the sidebar."""
    encoder = _sidebar_encoder()
    # A lab model's sentence head (NSP / SOP) judges a pair of segments, not one sentence: not shown here.
    if encoder is None or encoder.classifier is None or encoder.info.summary is not None:
        return
    sentences = current_sentences()[:MAX_SENTENCES]
    if not sentences:
        return
    with st.expander(f"Prediction ({encoder.info.num_labels} labels)", expanded=True):
        try:
            for i, text in enumerate(sentences, start=1):
                try:
                    t = cached_trace(encoder, text, current_max_tokens())
                except ValueError:
                    continue  # the page warns about a sentence that cannot be traced
                # "1\." keeps Markdown from turning the lines into a numbered list.
                st.caption(f"{i}\\. " + plain(predict(encoder, t).summary(TOP_LABELS)))
        except Exception as exc:  # a prediction must never take the sidebar down
            st.caption(plain(f"The prediction could not be computed ({type(exc).__name__}: {exc})."))


def page_setup(title: str, icon: str = ":material/token:", needs_summary: str | None = None) -> None:
    """Page config, the shared sidebar, and - at the top of every page, until the person picks
    another model - the reason the selected model could not be loaded; call first on every page.

    ``needs_summary`` names what the page shows about the summary token ([CLS]): on a lab model
    pretrained without one, the page says so and stops instead of failing."""
    st.set_page_config(page_title=f"{title} · clsviz", page_icon=icon, layout="wide")
    st.session_state[ERRORS_SHOWN] = set()
    _init_state()
    _keep_choice_offered()
    encoder = current_encoder()  # load (or fail to load) the selected model before anything describes it
    sidebar()
    if needs_summary and encoder.info.summary == "none":
        st.title(title)
        stop_without_summary(needs_summary, encoder)


def stop_without_summary(what: str, encoder: Encoder) -> None:
    """On a lab model pretrained without a summary token: say that ``what`` needs one, and stop
    the page here. Nothing otherwise."""
    if encoder.info.summary == "none":
        st.info(plain(no_summary_message(what, encoder.name)), icon=":material/info:")
        st.stop()


def current_encoder() -> Encoder:
    """The selected encoder; when it fails to load, an error is shown and the default is used."""
    _init_state()
    name = _selected_model_name()
    failed: dict = st.session_state[FAILED]
    if name != DEFAULT_MODEL and name not in failed:
        try:
            with st.spinner(f"Loading {plain(name)}: once per server start (large models take a while); every page "
                            "and visitor shares it afterwards…"):
                return cached_encoder(name)
        except ModelLoadError as exc:
            failed[name] = str(exc)
        except Exception as exc:  # any other failure must not reach the page as a traceback
            failed[name] = f"'{name}' could not be loaded ({type(exc).__name__}: {exc})."
    shown = st.session_state.setdefault(ERRORS_SHOWN, set())
    if name != DEFAULT_MODEL and name not in shown:
        shown.add(name)
        st.error(
            f"{plain(failed[name])}  \nShowing the bundled default model instead: every result on this page "
            "comes from it until you pick another model in the sidebar.",
            icon=":material/error:",
        )
    with st.spinner("Loading the bundled model (all-MiniLM-L6-v2): once per server start, a few seconds; every "
                    "page and visitor shares it afterwards…"):
        return cached_encoder(DEFAULT_MODEL)


def current_sentences() -> list[str]:
    """The non-empty lines of the sentence box."""
    _init_state()
    return [line.strip() for line in str(st.session_state[SENTENCES]).splitlines() if line.strip()]


def current_max_tokens() -> int:
    _init_state()
    return int(st.session_state[MAX_TOKENS])


def _trace_size(encoder: Encoder, text: str, max_tokens: int) -> int:
    """Bytes the trace of ``text`` holds (measured when cached, else estimated from its tokens)."""
    held = shared_cache().get(("trace", encoder.name, text, int(max_tokens)))
    if held is not None:
        return nbytes(held)
    return trace_bytes(encoder.info, len(tokenize(encoder, text, int(max_tokens)).tokens))


def _say_cut(first_cut: int, total: int, used: int, limit: int) -> None:
    cut = f"Sentence {first_cut}" if first_cut == total else f"Sentences {first_cut}–{total}"
    st.warning(
        f"{cut} {'was' if first_cut == total else 'were'} not traced: the first {first_cut - 1} already hold "
        f"{used / 1e6:,.0f} MB of attention maps and hidden states, the most one request may use on this server "
        f"({limit / 1e6:,.0f} MB, a quarter of its cache; CLSVIZ_CACHE_MB sets the cache). Trace fewer or shorter "
        "sentences, or lower *Max tokens* in the sidebar.",
        icon=":material/memory:",
    )


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
    traces, used, limit = [], 0, request_bytes()
    for i, text in enumerate(sentences, start=1):
        try:
            size = _trace_size(encoder, text, current_max_tokens())
            if traces and used + size > limit:
                _say_cut(i, len(sentences), used, limit)
                break
            traces.append(cached_trace(encoder, text, current_max_tokens()))
            used += size
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


def _evict(name: str) -> None:
    cached_encoder.clear(name)


def hold_second_model(name: str | None) -> tuple[Encoder | None, str | None]:
    """Make ``name`` this session's second model (None: no second model) and load it through
    ``ui.state.cached_encoder``. Returns (the encoder or None, the previous second model when it
    changed, else None). The previous one is released (evicted when nobody else uses it). A
    model that fails to load is not held; its error propagates for the page to show."""
    session = holds.session_id()
    previous = holds.USES.set(session, holds.SECOND, name)
    changed = previous if previous is not None and previous != name else None
    if changed is not None:
        holds.forget_ended_sessions()
        holds.USES.release(changed, _evict)
    if name is None:
        return None, changed
    try:
        return cached_encoder(name), changed
    except BaseException:
        holds.USES.set(session, holds.SECOND, None)
        raise
