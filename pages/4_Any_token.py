"""Could any token do? A linear probe per layer x pooling, and fine-tuning per pooling."""

from __future__ import annotations

import dataclasses

import streamlit as st

from clsviz import figures
from clsviz.corpus import is_missing, stratified_rows
from clsviz.experiments import (
    FINETUNE_POOLINGS,
    RANDOM_TOKEN,
    ProbeError,
    check_labels,
    default_poolings,
    random_token_vectors,
    run_finetune,
    run_probe,
)
from clsviz.pooling import POOLING_HELP
from ui import jobs
from ui.cache import budget_bytes, cached
from ui.corpus import corpus_vectors, plain
from ui.embeddings import corpus_source
from ui.similarity import cached_baseline
from ui.state import current_encoder, page_setup
from ui.widgets import checkbox, download_csv, multiselect, number_input, selectbox, show, slider

FINETUNE_JOB = "any_token.finetune"
RESULT = "any_token.result"
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


def _random_vectors(texts, key: str):
    def compute():
        bar = st.progress(0.0, text="Reading a random token of every text…")
        try:
            return random_token_vectors(
                encoder, texts, seed=SEED,
                progress=lambda d, t: bar.progress(d / t, text=f"Random tokens: {d:,} of {t:,}…"),
            )
        finally:
            bar.empty()

    return cached("random_token", (key,), compute)


# --- linear probe ------------------------------------------------------------------------
st.subheader("Linear probe, every layer x every reading")
available = default_poolings(encoder.info.has_pooler) if saved is None else list(saved.poolings)
left, middle, right = st.columns([3, 1, 1])
token_k = number_input(middle,
    "K for token:K", min_value=0, max_value=64, value=3, key="any_token.k", help="Position K, [CLS] counted as 0."
)
options = [f"token:{int(token_k)}" if s.startswith("token:") else s for s in available]
poolings = multiselect(left,
    "Readings",
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
params = (encoder.name, corpus.content_hash, label, tuple(poolings), int(folds), int(max_texts))

if saved is not None and st.button("Run the probe", type="primary", key="any_token.run_saved", disabled=not poolings):
    try:
        bar = st.progress(0.0, text="Probing…")
        result = run_probe(saved, label, poolings=list(poolings), folds=int(folds), seed=SEED, memory_budget=budget_bytes(),
                           progress=lambda d, t: bar.progress(d / t, text=f"Probing: {d} of {t} layer x reading cells…"))
        bar.empty()
        st.session_state[RESULT] = (params, result)
    except ValueError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        st.stop()
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
    try:
        rnd = _random_vectors(sub.texts, f"{encoder.name}|{sub.content_hash}") if RANDOM_TOKEN in poolings else None
        bar = st.progress(0.0, text="Probing…")
        result = run_probe(
            vectors if vectors is not None else {},
            list(sub.labels[label]),
            poolings=list(poolings),
            random_token=rnd,
            folds=int(folds),
            seed=SEED,
            label_name=label,
            progress=lambda d, t: bar.progress(d / t, text=f"Probing: {d} of {t} layer x reading cells…"),
        )
        bar.empty()
    except ValueError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        st.stop()
    if sample_note:
        result = dataclasses.replace(result, messages=(*result.messages, sample_note))
    st.session_state[RESULT] = (params, result)

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
    _, result = stored
    for note in result.messages:
        st.caption(plain(note))
    st.info(plain(result.summary(cached_baseline(encoder))), icon=":material/lightbulb:")
    show("probe.accuracy", figures.probe_figure(result), key="any_token.probe_figure")
    table = result.table.assign(label=result.label, chance=result.chance, majority=result.majority)
    st.caption(f"Probed in {result.seconds:.1f} s.")
    with st.expander("The numbers"):
        st.dataframe(table, hide_index=True, width="stretch")
    download_csv(table, "probe_accuracy.csv", key="any_token.csv")

# --- fine-tuning ---------------------------------------------------------------------------
st.subheader("Fine-tune: does the reading still matter after training?")
st.caption(
    "The probe reads a frozen model. Here a copy of the encoder is trained with a linear head on one "
    "pooling at a time, with the same seed, split, batches and budget, to see whether [CLS] catches up once "
    f"it is trained for the task. Runs in the background on {encoder.device.type.upper()}: other pages stay "
    "usable, and the shared model is never changed."
)
job = jobs.get(FINETUNE_JOB)
active = job is not None and job.active
c1, c2, c3 = st.columns([2, 1, 1])
poolings = multiselect(c1,
    "Poolings", FINETUNE_POOLINGS, default=list(FINETUNE_POOLINGS), key="any_token.ft_poolings", disabled=active
)
epochs = slider(c2, "Epochs", 1, 5, 2, key="any_token.ft_epochs", disabled=active)
ft_texts = texts_input(
    c3,
    "Texts",
    "any_token.ft_texts",
    10,
    400,
    "A stratified sample when fewer than all; 20% are held out for the accuracy. With the bundled "
    "model, 400 texts and 2 epochs take about a minute per pooling on two CPU cores (measured: 3 CPU-seconds "
    "per step of 16 texts); a GPU is used when there is one.",
    disabled=active,
)
from_probe = checkbox(st,
    "Start the head from the frozen-model probe",
    value=False,
    key="any_token.ft_from_probe",
    disabled=active,
    help="Linear probing, then fine-tuning: step 0 then scores the probe's accuracy. Where the probe already "
    "separates the training texts, the loss starts near zero and training changes little.",
)
b1, b2 = st.columns([1, 5])
if b1.button("Start fine-tuning", key="any_token.ft_start", disabled=active or not poolings, type="primary"):
    texts = [corpus.texts[i] for i in labelled]
    values = [corpus.labels[label][i] for i in labelled]
    jobs.start(
        FINETUNE_JOB,
        run_finetune,
        encoder,
        texts,
        values,
        poolings=tuple(poolings),
        epochs=int(epochs),
        max_texts=int(ft_texts) if ft_texts < len(texts) else None,
        seed=SEED,
        head_init="probe" if from_probe else "random",
        label_name=label,
    )
    st.rerun()
if active and b2.button("Cancel", key="any_token.ft_cancel"):
    jobs.cancel(FINETUNE_JOB)


@st.fragment(run_every=1.0 if active else None)
def finetune_status() -> None:
    current = jobs.get(FINETUNE_JOB)
    if current is None:
        return
    if current.active:
        st.progress(current.fraction, text=plain(f"{current.message} ({current.elapsed:.0f} s)"))
    elif active:
        st.rerun()  # finished while polling: redraw the whole page to show the results


finetune_status()
job = jobs.get(FINETUNE_JOB)
if job is not None and not job.active:
    if job.status == jobs.CANCELLED:
        st.warning("Fine-tuning was cancelled.", icon=":material/cancel:")
    elif job.status == jobs.FAILED:
        st.error(plain(f"Fine-tuning failed: {job.error}"), icon=":material/error:")
    elif job.result is not None:
        ft = job.result
        st.caption(plain(f"{ft.model_name} · label '{ft.label}' · {ft.device} · {job.elapsed:.0f} s"))
        for note in ft.messages:
            st.caption(plain(note))
        st.info(plain(ft.summary()), icon=":material/lightbulb:")
        st.dataframe(ft.table, hide_index=True, width="stretch")
        show("finetune.curves", figures.finetune_figure(ft), key="any_token.ft_figure")
        d1, d2 = st.columns(2)
        with d1:
            download_csv(ft.table, "finetune_accuracy.csv", key="any_token.ft_csv", label="Download the accuracies (CSV)")
        with d2:
            download_csv(ft.curves, "finetune_curves.csv", key="any_token.ft_curves_csv", label="Download the curves (CSV)")
