"""Causal tests: cut [CLS]'s reads, swap it between sentences, ablate heads, zero the massive
dimensions, add registers - on the typed sentence at once, on a corpus in the background."""

from __future__ import annotations

import streamlit as st

from clsviz import figures
from clsviz.blocks import BlockStructureError, block_weights
from clsviz.experiments.causal_runs import labelled_texts
from clsviz.experiments.interventions import REFERENCE_SOURCES, summarize_patch_profile
from clsviz.experiments.registers import REGISTER_COUNTS
from ui import jobs
from ui.corpus import corpus_picker
from ui.interventions import QUESTIONS, corpus_rows, job_key, sentence_run, show_result, start_corpus_run
from ui.state import current_encoder, current_max_tokens, current_traces, page_setup
from ui.text import plain
from ui.widgets import download_csv, number_input, radio, selectbox, sentence_picker, show, slider, text_input

NO_LABEL = "(no label: effects on [CLS] only)"
DEFAULT_SOURCE = REFERENCE_SOURCES[0]
EXPERIMENTS = {"knockout": "Cut [CLS]'s reads", "patching": "Patch [CLS] across labels", "heads": "Ablate heads",
               "massive": "Massive dimensions", "registers": "Registers"}  # fmt: skip

page_setup("Causal tests")
st.title("Causal tests: what does [CLS] do?")
st.caption(
    "The other pages show what [CLS] looks like. Here the model runs with one thing changed on purpose: [CLS] "
    "may not read the words, gets another sentence's state, loses a head, loses its huge dimensions, or gets "
    "registers beside it. Each run drives the blocks from the model's weights with per-call masks, so the "
    "shared model is never changed and other sessions see it as it is."
)

traces = current_traces()
if not traces:
    st.stop()
encoder = current_encoder()
try:
    block_weights(encoder)
except BlockStructureError as exc:
    st.error(plain(str(exc)), icon=":material/error:")
    st.stop()
t = sentence_picker(traces, key="causal.sentence")
tokens = min(current_max_tokens(), t.seq_len)


def run_here(kind: str, **options):
    """The per-sentence run, or None after an error message a person can act on."""
    try:
        return sentence_run(kind, encoder, t.text, tokens, **options)
    except ValueError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return None


# --- 1. knockout -------------------------------------------------------------------------------
st.subheader(f"1. {QUESTIONS['knockout']}")
st.caption("In each block b, [CLS]'s query may not attend to the sentence's tokens (from b upward, or at b "
           "only); its other reads and every other token's attention are unchanged.")  # fmt: skip
result = run_here("knockout")
if result is not None:
    show_result("knockout", result, key="causal.knockout")

# --- 2. patching ---------------------------------------------------------------------------------
st.subheader(f"2. {QUESTIONS['patching']}")
others = [x.text for x in traces if x.text != t.text]
source = selectbox(st, "Source sentence (its [CLS] goes into the one above)", [*others, "Type another…"],
                      key="causal.source") if others else "Type another…"  # fmt: skip
if source == "Type another…":
    source = text_input(st, "Source sentence", value=DEFAULT_SOURCE, max_chars=500, key="causal.source_text")
if source.strip():
    try:
        profile = sentence_run("patch_profile", encoder, t.text, tokens, source=source)
    except ValueError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
    else:
        st.info(plain(summarize_patch_profile(profile)), icon=":material/lightbulb:")
        show("interventions.patch_profile", figures.patch_profile_figure(profile, source), key="causal.patch.figure")
        download_csv(profile, "causal_patch_profile.csv", key="causal.patch.csv")
else:
    st.info("Type a source sentence.", icon=":material/edit:")

# --- 3. heads ----------------------------------------------------------------------------------------
st.subheader(f"3. {QUESTIONS['heads']}")
mode = radio(st, "Ablation", ("mean", "zero"), horizontal=True, key="causal.head_mode",
                format_func={"mean": "mean (the head's average output over demo sentences)",
                             "zero": "zero (the head's output removed)"}.get)  # fmt: skip
result = run_here("heads", mode=mode)
if result is not None:
    show_result("heads", result, key="causal.heads")

# --- 4. massive dimensions -------------------------------------------------------------------------
st.subheader(f"4. {QUESTIONS['massive']}")
layer = slider(st, "Layer where the dimensions are set (0 = embeddings)", 0, encoder.info.num_layers - 1, 1,
                  key=f"causal.massive_layer.{encoder.info.num_layers}")  # fmt: skip
result = run_here("massive", layer=layer)
if result is not None:
    show_result("massive", result, key="causal.massive")

# --- 5. registers ------------------------------------------------------------------------------------
st.subheader(f"5. {QUESTIONS['registers']}")
k = slider(st, "Registers k (runs 0..k)", 1, max(REGISTER_COUNTS), max(REGISTER_COUNTS), key="causal.registers_k")
result = run_here("registers", k=k)
if result is not None:
    show_result("registers", result, key="causal.registers")

# --- on a corpus ---------------------------------------------------------------------------------------
st.divider()
st.header("On a corpus")
st.caption("The same tests on many sentences, with a probe fitted on clean [CLS] vectors when a label is "
           "chosen. They run in the background: other pages stay usable, and Cancel stops them.")  # fmt: skip
corpus = corpus_picker(key="causal.corpus")
if corpus is None:
    st.stop()
kind = selectbox(st, "Test", tuple(EXPERIMENTS), format_func=lambda k_: f"{EXPERIMENTS[k_]}: {QUESTIONS[k_]}",
                    key="causal.kind")  # fmt: skip
job = jobs.get(job_key(kind))
active = job is not None and job.active
c1, c2, c3 = st.columns([2, 1, 1])
labels = [NO_LABEL, *corpus.label_names] if kind != "patching" else list(corpus.label_names)
if not labels:
    st.info("Patching is read by a probe: pick a corpus with a label column.", icon=":material/label_off:")
    st.stop()
label = selectbox(c1, "Label for the probe", labels, key=f"causal.label.{kind}", disabled=active)
label = None if label == NO_LABEL else label
# A smaller corpus (a new upload) drops a remembered count outside the new range.
n_texts = int(number_input(c2, "Texts", min_value=1, max_value=len(corpus), value=min(200, len(corpus)), step=50,
                           key="causal.texts", disabled=active,
                           help="A stratified sample by label when fewer than all."))  # fmt: skip
folds = int(number_input(c3, "Folds", min_value=2, max_value=10, value=5, key="causal.folds", disabled=active or label is None,
                            help="The probe is fitted on clean [CLS] vectors fold by fold and reads each text "
                            "with the fold that never saw it."))  # fmt: skip
options = {"folds": folds}
if kind == "patching":
    options["pairs"] = int(number_input(st, "Pairs", 1, 2000, 200, step=50, key="causal.pairs", disabled=active))
elif kind == "heads":
    options["mode"] = radio(st, "Ablation", ("mean", "zero"), horizontal=True, key="causal.corpus_mode", disabled=active)
elif kind == "massive":
    options["layer"] = slider(st, "Layer", 0, encoder.info.num_layers - 1, 1, key=f"causal.corpus_layer.{encoder.info.num_layers}", disabled=active)
elif kind == "registers":
    options["ks"] = tuple(range(slider(st, "Registers k", 1, 4, 4, key="causal.corpus_k", disabled=active) + 1))

b1 = st.columns([1, 5])[0]
if b1.button("Run on the corpus", type="primary", key="causal.start", disabled=active):
    rows = corpus_rows(corpus, label, n_texts)
    try:
        if label is not None:
            labelled_texts([corpus.texts[i] for i in rows], [corpus.labels[label][i] for i in rows], folds, label)
    except ValueError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
    else:
        if start_corpus_run(kind, encoder, corpus, label, rows, **options) is not None:
            st.rerun()
finished = jobs.panel(job_key(kind), "The corpus run")
if finished is not None and finished.result is not None:
    done = finished.result
    st.caption(plain(f"{done.model_name} · {done.n} texts · label: {done.label or 'none'} · {finished.elapsed:.0f} s"))
    show_result(kind, done, key=f"causal.corpus.{kind}")
