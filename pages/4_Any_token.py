"""Could any token do? A linear probe per layer x pooling, and fine-tuning per pooling."""

from __future__ import annotations

import dataclasses

import streamlit as st

from clsviz import figures
from clsviz.corpus import is_missing, stratified_rows
from clsviz.experiments import (
    RANDOM_TOKEN,
    ProbeError,
    check_labels,
    default_poolings,
    summarize_selectivity,
)
from clsviz.pooling import POOLING_HELP
from ui import jobs
from ui.cache import budget_bytes, shared_cache
from ui.corpus import corpus_vectors
from ui.embeddings import corpus_source
from ui.probing import probe_suite
from ui.similarity import cached_baseline
from ui.state import current_encoder, page_setup
from ui.text import plain
from ui.widgets import checkbox, download_csv, multiselect, number_input, selectbox, show, slider

RESULT = "any_token.result"
PROBE_JOB = "any_token.probe"
PENDING = "any_token.pending"  # the settings, random-token cache key and sample note of the job under way
SEED = 0
HELP = {**POOLING_HELP, RANDOM_TOKEN: "one content token per text, picked at random (seeded by the text)"}

page_setup("Could any token do?")
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
labelled = [i for i, v in enumerate(corpus.labels[label]) if not is_missing(v)]
if len(labelled) < len(corpus):
    st.caption(f"{len(labelled):,} of {len(corpus):,} texts have a '{plain(label)}' label; the others are left out.")


def _sample(rows: list[int], n: int) -> tuple[list[int], str | None]:
    """At most n of ``rows``, stratified by label where possible, in corpus order."""
    if len(rows) <= n:
        return rows, None
    picked = stratified_rows([corpus.labels[label][i] for i in rows], n, seed=SEED)
    return [rows[i] for i in picked], f"A stratified sample of {n:,} of the {len(rows):,} labelled texts is used."


# --- linear probe ------------------------------------------------------------------------
st.subheader("Linear probe, every layer x every reading")
available = default_poolings(encoder.info.has_pooler) if saved is None else list(saved.poolings)
left, middle, right = st.columns([3, 1, 1])
token_k = number_input(middle,
    "K for token:K", min_value=0, max_value=64, value=3, key="any_token.k", help="Position K, [CLS] counted as 0."
)
options = [f"token:{int(token_k)}" if s.startswith("token:") else s for s in available]
poolings = multiselect(left,
    "Poolings",
    options,
    default=options,
    key=f"any_token.poolings.{int(token_k)}",
    format_func=lambda s: s,
    help="\n".join(f"- **{s}**: {HELP.get(s if not s.startswith('token:') else 'token:K', '')}" for s in options),
)
folds = slider(right, "Folds", 2, 10, 5, key="any_token.folds", help="Stratified k-fold cross-validation.")


def texts_input(where, label: str, key: str, smallest: int, default: int, help: str, disabled: bool = False) -> int:
    """How many labelled texts to use (a stratified sample when fewer than all)."""
    return int(
        number_input(where,
            label,
            min_value=min(smallest, len(labelled)),
            max_value=max(1, len(labelled)),
            value=max(1, min(len(labelled), default)),
            step=50,
            key=key,
            help=help,
            disabled=disabled,
        )
    )


max_texts = texts_input(
    st, "Texts to use", "any_token.max_texts", 20, 1000, "Fewer texts run faster; a stratified sample keeps the label balance.",
    disabled=saved is not None,
)
if saved is not None:
    max_texts = len(labelled)
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
params = (encoder.name, corpus.content_hash, label, tuple(poolings), int(folds), int(max_texts), with_control, with_mdl)

def _launch(vectors, labels, texts, poolings, random_key: str | None, note: str | None) -> None:
    """Start the probe (and the controls asked for) as this session's background job."""
    rnd = shared_cache().get(("random_token", random_key)) if random_key else None
    job = jobs.launch(
        PROBE_JOB, probe_suite, vectors, labels, poolings=list(poolings), texts=list(texts), encoder=encoder,
        random_vectors=rnd, folds=int(folds), seed=SEED, label_name=label, control=with_control, mdl=with_mdl,
        memory_budget=budget_bytes() if saved is not None else None, label="The probe",
    )
    if job is not None:
        st.session_state[PENDING] = (params, random_key, note)
        st.rerun()


if saved is not None and st.button("Run the probe", type="primary", key="any_token.run_saved", disabled=not poolings):
    _launch(saved, label, (), poolings, None, None)
if saved is None and st.button("Run the probe", type="primary", key="any_token.run", disabled=not poolings):
    rows, sample_note = _sample(labelled, int(max_texts))
    try:
        check_labels([corpus.labels[label][i] for i in rows], folds, label)
        if len(set(corpus.texts[i] for i in rows)) == 1:
            raise ProbeError("All the texts are the same sentence, so a probe can only guess. Use different sentences.")
    except ProbeError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        st.stop()
    # The whole corpus when it fits (its vectors are shared with other labels and pages).
    sub = corpus if len(rows) == len(labelled) and len(labelled) == len(corpus) else corpus.subset(rows)
    named = tuple(s for s in poolings if s != RANDOM_TOKEN)
    vectors = corpus_vectors(encoder, sub, named) if named else None
    if named and vectors is None:
        st.stop()
    _launch(vectors if vectors is not None else {}, list(sub.labels[label]), sub.texts, poolings,
            f"{encoder.name}|{sub.content_hash}" if RANDOM_TOKEN in poolings else None, sample_note)

finished = jobs.panel(PROBE_JOB, "The probe")
pending = st.session_state.get(PENDING)
if finished is not None and pending is not None:
    # The job's result becomes this page's result for the settings it was started with.
    job_params, random_key, sample_note = st.session_state.pop(PENDING)
    suite = finished.result
    if suite.random_vectors is not None and random_key:
        shared_cache().put(("random_token", random_key), suite.random_vectors)
    result = suite.result
    if sample_note:
        result = dataclasses.replace(result, messages=(*result.messages, sample_note))
    st.session_state[RESULT] = (job_params, result, suite.extras)
    jobs.clear(PROBE_JOB)
elif finished is not None:  # a finished job this page did not start (a reloaded tab): its settings are unknown
    jobs.clear(PROBE_JOB)

stored = st.session_state.get(RESULT)
if stored is not None and stored[0] != params:
    # A result belongs to the corpus, label and settings that produced it: never show it for others.
    del st.session_state[RESULT]
    stored = None
    st.info(
        "The corpus, label, model or settings changed since the last probe, so its result was cleared. "
        "Press **Run the probe** for the current choice.",
        icon=":material/refresh:",
    )
if stored is None:
    st.info("Choose a label and press **Run the probe**.", icon=":material/play_arrow:")
else:
    _, result, extras = stored
    for note in result.messages:
        st.caption(plain(note))
    st.info(plain(result.summary(cached_baseline(encoder))), icon=":material/lightbulb:")
    show("probe.accuracy", figures.probe_figure(result), key="any_token.probe_figure")
    table = result.table.assign(label=result.label, chance=result.chance, majority=result.majority)
    st.caption(f"Probed in {result.seconds:.1f} s.")
    with st.expander("The numbers"):
        st.dataframe(table, hide_index=True, width="stretch")
    download_csv(table, "probe_accuracy.csv", key="any_token.csv")
    if "selectivity" in extras:
        st.info(plain(summarize_selectivity(extras["selectivity"])), icon=":material/rule:")
        show("probe.selectivity", figures.selectivity_figure(extras["selectivity"]), key="any_token.selectivity")
        download_csv(extras["selectivity"], "probe_selectivity.csv", key="any_token.selectivity_csv")
    if "mdl" in extras:
        show("probe.mdl", figures.mdl_figure(extras["mdl"]), key="any_token.mdl_figure")
        download_csv(extras["mdl"], "probe_mdl.csv", key="any_token.mdl_csv")

# --- fine-tuning ---------------------------------------------------------------------------
st.subheader("Fine-tune: does the pooling still matter after training?")
st.caption(
    "The probe reads a frozen model. Fine-tuning a copy of the encoder per pooling - and watching [CLS] change "
    "while it learns, or moving it away from position 0 - lives on its own page."
)
st.page_link("pages/9_How_it_learns.py", label="How does [CLS] learn? Fine-tune and watch", icon=":material/school:")
