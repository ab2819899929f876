"""How does [CLS] learn? Where the training signal enters, and [CLS] watched while it learns."""

from __future__ import annotations

import re

import streamlit as st

from clsviz import figures
from clsviz.corpus import is_missing
from clsviz.experiments import TRAINABLE_POOLINGS, WATCH_SETTINGS, run_finetune
from clsviz.experiments.dynamics import flow_table, summarize_moved, summarize_run
from clsviz.experiments.finetune import DEFAULT_LABEL
from clsviz.experiments.learners import MOVED_POOLINGS, TRAINING_LABELS
from ui import jobs
from ui.corpus import corpus_picker
from ui.learning import cached_flows, save_classifier
from ui.state import current_encoder, current_sentences, current_traces, page_setup
from ui.text import plain
from ui.widgets import download_csv, multiselect, number_input, selectbox, sentence_picker, show, slider

JOB = "how_it_learns.finetune"
SEED = 0
# Page defaults: 2 poolings + 2 moved tokens on the demo corpus finish within 5 minutes on a
# 2-core CPU (benchmarks/dynamics.py measures these settings).
DEFAULT_POOLINGS = WATCH_SETTINGS["poolings"]
DEFAULT_TEXTS, DEFAULT_EPOCHS = WATCH_SETTINGS["max_texts"], WATCH_SETTINGS["epochs"]
DEFAULT_CHECKPOINTS = WATCH_SETTINGS["checkpoints"]

page_setup("How does [CLS] learn?")
st.title("How does [CLS] learn?")
st.caption(
    "[CLS] is not trained like the other tokens: a loss on the [CLS] vector enters the last layer through the "
    "[CLS] position only, and attention carries it to the other tokens further down. See where the signal "
    "enters, then watch [CLS] become a summary while a copy of the model is fine-tuned."
)
encoder = current_encoder()

# --- 1. gradient flow -----------------------------------------------------------------------
st.subheader("Where the training signal enters")
traces = current_traces()
if traces:
    t = sentence_picker(traces, key="how_it_learns.sentence")
    flows = cached_flows(encoder, t.text, t.seq_len)
    if flows is not None:
        show("dynamics.gradient_flow", figures.gradient_flow_figure(flows, list(t.tokens)), key="how_it_learns.flow")
        download_csv(lambda: flow_table(flows, list(t.tokens)), "gradient_flow.csv", key="how_it_learns.flow_csv")

# --- 2. fine-tuning, watched ------------------------------------------------------------------
st.subheader("[CLS] watched while it learns")
st.caption(
    "A copy of the encoder is fine-tuned once per pooling with the same seed, split, batches and budget; at "
    "every checkpoint the run measures the fixed held-out texts. The moved tokens ask whether position 0 "
    f"matters. Runs in the background on {encoder.device.type.upper()}; the shared model is never changed."
)
corpus = corpus_picker(key="how_it_learns.corpus")
if corpus is None:
    st.stop()
if not corpus.labels:
    st.info("This corpus has no label column, so there is nothing to fine-tune on. Pick the demo corpus or "
            "upload a CSV with a label column.", icon=":material/label_off:")  # fmt: skip
    st.stop()
job = jobs.get(JOB)
active = job is not None and job.active
label = selectbox(st, "Label to learn", corpus.label_names, key="how_it_learns.label", disabled=active,
                  index=list(corpus.label_names).index(DEFAULT_LABEL) if DEFAULT_LABEL in corpus.label_names else 0,
                  help=f"'{DEFAULT_LABEL}' by default on the demo corpus: the bundled model does not already solve it "
                  "(a label at ceiling before training cannot show what fine-tuning adds).")  # fmt: skip
labelled = [i for i, v in enumerate(corpus.labels[label]) if not is_missing(v)]
poolings = multiselect(st, "Poolings", TRAINABLE_POOLINGS, default=list(DEFAULT_POOLINGS), key="how_it_learns.poolings",
                          format_func=lambda p: f"{p}: {TRAINING_LABELS[p]}", disabled=active)  # fmt: skip
c1, c2, c3, c4 = st.columns(4)
epochs = slider(c1, "Epochs", 1, 5, DEFAULT_EPOCHS, key="how_it_learns.epochs", disabled=active)
n_texts = int(number_input(c2, "Texts", min_value=min(10, len(labelled)), max_value=max(1, len(labelled)),
                              value=max(1, min(len(labelled), DEFAULT_TEXTS)), step=50, key="how_it_learns.texts",
                              disabled=active, help="A stratified sample; 20% are held out and measured at every checkpoint."))  # fmt: skip
checkpoints = slider(c3, "Checkpoints", 1, 20, DEFAULT_CHECKPOINTS, key="how_it_learns.checkpoints", disabled=active,
                        help="The run is cut into this many equal parts; step 0 and every boundary are measured.")  # fmt: skip
sentences = current_sentences()[:50] or ["Why is the [CLS] token always first?"]
flow_text = selectbox(c4, "Sentence for the gradient flow", sentences, key="how_it_learns.flow_text", disabled=active)
b1 = st.columns([1, 5])[0]
if b1.button("Start fine-tuning", key="how_it_learns.start", disabled=active or not poolings, type="primary"):
    started = jobs.launch(JOB, run_finetune, encoder, [corpus.texts[i] for i in labelled],
                          [corpus.labels[label][i] for i in labelled], poolings=tuple(poolings), epochs=int(epochs),
                          max_texts=n_texts if n_texts < len(labelled) else None, seed=SEED,
                          checkpoints=int(checkpoints), flow_text=flow_text, label_name=label, label="Fine-tuning")  # fmt: skip
    if started is not None:
        st.rerun()
job = jobs.panel(JOB, "Fine-tuning")
if job is None:
    st.stop()
ft = job.result
st.caption(plain(f"{ft.model_name} · label '{ft.label}' · {ft.device} · {job.elapsed:.0f} s"))
for note in ft.messages:
    st.caption(plain(note))
st.info(plain(ft.summary()), icon=":material/lightbulb:")
run_sentence = summarize_run(ft)
if run_sentence:
    st.info(plain(run_sentence), icon=":material/timeline:")
st.dataframe(ft.table, hide_index=True, width="stretch")
show("finetune.curves", figures.finetune_figure(ft), key="how_it_learns.curves")

if len(ft.checkpoints):
    steps = sorted(int(s) for s in ft.checkpoints["step"].unique())
    step = st.select_slider("Checkpoint (training step)", options=steps, value=steps[-1], key="how_it_learns.step")
    show("dynamics.checkpoint", figures.checkpoint_figure(ft, step), key="how_it_learns.checkpoint")
    if len(ft.gradient_flow):
        show("dynamics.checkpoint_flow", figures.checkpoint_flow_figure(ft, step), key="how_it_learns.checkpoint_flow",
             note=plain(f"Sentence: {ft.flow_text}"))  # fmt: skip
    top_layer, top_block = int(ft.layer_metrics["layer"].max()), int(ft.block_metrics["block"].max())
    m1, m2 = st.columns(2)
    layer = int(m1.number_input("Across the steps: layer", 0, top_layer, top_layer, key="how_it_learns.at_layer",
                                help="For the per-layer measures; 0 = embeddings."))  # fmt: skip
    block = int(m2.number_input("Across the steps: block", 1, top_block, top_block, key="how_it_learns.at_block",
                                help="For the per-block measures (attention)."))  # fmt: skip
    show("dynamics.steps", figures.steps_figure(ft, layer, block), key="how_it_learns.steps")

if any(p in set(ft.table["pooling"]) for p in MOVED_POOLINGS):
    st.subheader("Does position matter when [CLS] is trained?")
    show("dynamics.moved", figures.moved_token_figure(ft), key="how_it_learns.moved")
    moved_sentence = summarize_moved(ft)
    if moved_sentence:
        st.info(plain(moved_sentence), icon=":material/swap_horiz:")

if ft.classifier is not None:
    st.subheader("Keep the fine-tuned classifier")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{ft.model_name.split(' ')[0]}-{ft.label}").strip("-.")[:60] or "classifier"
    s1, s2 = st.columns([3, 1])
    name = s1.text_input("Folder name (in the models folder)", value=slug, max_chars=80, key="how_it_learns.save_name")
    if s2.button("Save", key="how_it_learns.save"):
        save_classifier(ft, name)

with st.expander("Downloads"):
    for table_name, table in ft.tables().items():
        download_csv(table, f"finetune_{table_name}.csv", key=f"how_it_learns.csv.{table_name}",
                     label=f"{table_name} (CSV)")  # fmt: skip
    st.download_button("Everything (JSON)", ft.to_json(), file_name="finetune.json", mime="application/json",
                       key="how_it_learns.json", icon=":material/download:")  # fmt: skip
