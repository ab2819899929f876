"""Could any token do? A linear probe per layer x pooling, and fine-tuning per pooling."""

import streamlit as st

from ui import probing, runner
from ui.cache import budget_bytes
from ui.embeddings import corpus_source
from ui.similarity import cached_baseline
from ui.state import current_encoder, page_setup
from ui.text import plain
from ui.widgets import checkbox, multiselect, number_input, selectbox, slider

RESULT = "any_token.result"  # (settings, probe, extras) of the result shown last
PENDING = "any_token.pending"  # the settings the probe was last asked for
PROBE_JOB = "any_token.probe"  # the runner's slot for this page's probe job
SEED = 0

page_setup("Could any token do?", needs_summary="Could any token do? (each token against [CLS])")
st.title("Could any token do?")
st.caption(
    "Is [CLS] where the encoder keeps the sentence, or would a mean, the last word, or any token at all "
    "carry the same information? A linear probe tries to read a label from each reading at every layer."
)

encoder = current_encoder()
picked = corpus_source("any_token.corpus")  # the demo, an upload, or saved vectors (a shard folder too)
if picked is None:
    st.stop()
corpus, saved = picked
if not corpus.labels:
    st.info(
        "This corpus has no label column, so there is nothing for a probe to predict. Pick the demo corpus "
        "or upload a CSV with a column of labels (a topic, a sentiment, ...).",
        icon=":material/label_off:",
    )
    st.stop()

label = selectbox(st, "Label to predict", corpus.label_names, key="any_token.label")
labelled = probing.labelled_count(corpus, label)
if labelled < len(corpus):
    st.caption(f"{labelled:,} of {len(corpus):,} texts have a '{plain(label)}' label; the others are left out.")

# --- linear probe ------------------------------------------------------------------------
st.subheader("Linear probe, every layer x every reading")
left, middle, right = st.columns([3, 1, 1])
token_k = number_input(middle,
    "K for token:K", min_value=0, max_value=64, value=3, key="any_token.k", help="Position K, [CLS] counted as 0."
)
options = probing.offered_poolings(encoder, saved, int(token_k))
poolings = multiselect(left,
    "Poolings", options, default=options, key=f"any_token.poolings.{int(token_k)}", format_func=lambda s: s,
    help=probing.pooling_help(options),
)
folds = slider(right, "Folds", 2, 10, 5, key="any_token.folds", help="Stratified k-fold cross-validation.")
max_texts = int(
    number_input(st,
        "Texts to use",
        min_value=min(20, labelled),
        max_value=max(1, labelled),
        value=max(1, min(labelled, 1000)),
        step=50,
        key="any_token.max_texts",
        help="Fewer texts run faster; a stratified sample keeps the label balance.",
        disabled=saved is not None,
    )
)
if saved is not None:
    max_texts = labelled
    st.caption(plain(f"Saved vectors of {saved.model_name}: every labelled text is probed; a column larger than the "
                     "app's memory budget is streamed shard by shard."))
o1, o2 = st.columns(2)
with_control = checkbox(
    o1, "Control task (selectivity)", value=False, key="any_token.control", disabled=saved is not None,
    help="Also probe a control task - a random label per first word with the same class balance (Hewitt & Liang "
    "2019) - and show selectivity = accuracy - control accuracy: does the probe read the vector or memorise?",
)
with_mdl = checkbox(
    o2, "MDL probe (codelength)", value=False, key="any_token.mdl", disabled=saved is not None,
    help="Also measure how many bits the labels cost under an online code (Voita & Titov 2020): lower = easier to "
    "extract, and it keeps separating poolings that all reach the accuracy ceiling.",
)
settings = (encoder.name, corpus.content_hash, label, tuple(poolings), int(folds), max_texts, with_control, with_mdl)
params = dict(label_column=label, poolings=",".join(poolings), folds=int(folds), seed=SEED, control=with_control,
              mdl=with_mdl, memory_budget=budget_bytes() if saved is not None else None)


def inputs():
    """The probe's inputs for the current settings (made once, then taken from the cache)."""
    return probing.probe_inputs(encoder, corpus, saved, label, poolings, max_texts, folds, SEED)


busy = runner.running("probe", slot=PROBE_JOB)
if st.button("Run the probe", type="primary", key="any_token.run_saved" if saved is not None else "any_token.run",
             disabled=not poolings or busy):
    made = inputs()
    if made is None:
        st.stop()
    st.session_state[PENDING] = settings
    if runner.stored("probe", *made[0], **params) is not None or \
            runner.start("probe", *made[0], slot=PROBE_JOB, what="The probe", **params) is not None:
        st.rerun()

shown = st.session_state.get(RESULT)
if shown is not None and shown[0] != settings:
    # A result belongs to the corpus, label and settings that produced it: never show it for others.
    del st.session_state[RESULT]
    shown = None
    st.info(
        "The corpus, label, model or settings changed since the last probe, so its result was cleared. "
        "Press **Run the probe** for the current choice.",
        icon=":material/refresh:",
    )
result = note = None
if st.session_state.get(PENDING) == settings:
    made = inputs()
    if made is not None:
        (made_inputs, note) = made
        result = runner.collect("probe", *made_inputs, slot=PROBE_JOB, what="The probe", **params)
elif busy:
    runner.panel("probe", slot=PROBE_JOB, what="The probe")
if result is None:
    st.info("Choose a label and press **Run the probe**.", icon=":material/play_arrow:")
else:
    st.session_state[RESULT] = (settings, result.probe, result.extras)
    probing.show_result(result, cached_baseline(encoder), note)

# --- fine-tuning ---------------------------------------------------------------------------
st.subheader("Fine-tune: does the pooling still matter after training?")
st.caption(
    "The probe reads a frozen model. Fine-tuning a copy of the encoder per pooling - and watching [CLS] change "
    "while it learns, or moving it away from position 0 - lives on its own page."
)
st.page_link("pages/9_How_it_learns.py", label="How does [CLS] learn? Fine-tune and watch", icon=":material/school:")
