"""How does [CLS] learn? Where the training signal enters, and [CLS] watched while it learns."""

from __future__ import annotations

import re

import streamlit as st

from ui import runner
from ui.corpus import corpus_picker
from ui.learning import (
    DEFAULT_LABEL,
    TRAINABLE_POOLINGS,
    TRAINING_LABELS,
    WATCH_SETTINGS,
    labelled_count,
    save_classifier,
)
from ui.state import current_encoder, current_sentences, current_traces, page_setup
from ui.text import plain
from ui.widgets import download_csv, multiselect, number_input, selectbox, sentence_picker, slider

ANALYSIS, SLOT = "finetune.watch", "how_it_learns.finetune"
SEED = 0
# Page defaults: 2 poolings + 2 moved tokens on the demo corpus finish within 5 minutes on a
# 2-core CPU (benchmarks/dynamics.py measures these settings).
DEFAULT_POOLINGS = WATCH_SETTINGS["poolings"]
DEFAULT_TEXTS, DEFAULT_EPOCHS = WATCH_SETTINGS["max_texts"], WATCH_SETTINGS["epochs"]
DEFAULT_CHECKPOINTS = WATCH_SETTINGS["checkpoints"]

page_setup("How does [CLS] learn?", needs_summary="How does [CLS] learn? (fine-tuning while watching [CLS])")
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
    try:
        flows = runner.run("gradient_flow", encoder, t)
    except (runner.NotApplicable, ValueError) as exc:  # a family whose blocks clsviz cannot run, a text with no tokens
        st.error(plain(f"The gradient flow cannot be computed here: {exc}"), icon=":material/error:")
    else:
        runner.draw(flows, "dynamics.gradient_flow", chart_key="how_it_learns.flow", csv="gradient_flow.csv",
                    csv_key="how_it_learns.flow_csv")

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
active = runner.running(ANALYSIS, slot=SLOT)
label = selectbox(st, "Label to learn", corpus.label_names, key="how_it_learns.label", disabled=active,
                  index=list(corpus.label_names).index(DEFAULT_LABEL) if DEFAULT_LABEL in corpus.label_names else 0,
                  help=f"'{DEFAULT_LABEL}' by default on the demo corpus: the bundled model does not already solve it "
                  "(a label at ceiling before training cannot show what fine-tuning adds).")  # fmt: skip
labelled = labelled_count(corpus, label)
poolings = multiselect(st, "Poolings", TRAINABLE_POOLINGS, default=list(DEFAULT_POOLINGS), key="how_it_learns.poolings",
                          format_func=lambda p: f"{p}: {TRAINING_LABELS[p]}", disabled=active)  # fmt: skip
c1, c2, c3, c4 = st.columns(4)
epochs = slider(c1, "Epochs", 1, 5, DEFAULT_EPOCHS, key="how_it_learns.epochs", disabled=active)
n_texts = int(number_input(c2, "Texts", min_value=min(10, labelled), max_value=max(1, labelled),
                              value=max(1, min(labelled, DEFAULT_TEXTS)), step=50, key="how_it_learns.texts",
                              disabled=active, help="A stratified sample; 20% are held out and measured at every checkpoint."))  # fmt: skip
checkpoints = slider(c3, "Checkpoints", 1, 20, DEFAULT_CHECKPOINTS, key="how_it_learns.checkpoints", disabled=active,
                        help="The run is cut into this many equal parts; step 0 and every boundary are measured.")  # fmt: skip
sentences = current_sentences()[:50] or ["Why is the [CLS] token always first?"]
flow_text = selectbox(c4, "Sentence for the gradient flow", sentences, key="how_it_learns.flow_text", disabled=active)
result = runner.background(
    ANALYSIS, encoder, corpus, button="Start fine-tuning", what="Fine-tuning", slot=SLOT, disabled=not poolings,
    label_name=label, poolings=",".join(poolings) or ",".join(DEFAULT_POOLINGS), epochs=int(epochs),
    max_texts=n_texts if n_texts < labelled else None, checkpoints=int(checkpoints), flow_text=flow_text, seed=SEED,
)  # fmt: skip
if result is None:
    st.stop()
ft = result.run
st.caption(plain(f"{ft.model_name} · label '{ft.label}' · {ft.device} · {ft.table['seconds'].sum():.0f} s"))
for note in ft.messages:
    st.caption(plain(note))
st.info(plain(ft.summary()), icon=":material/lightbulb:")
run_sentence = result.run_sentence()
if run_sentence:
    st.info(plain(run_sentence), icon=":material/timeline:")
st.dataframe(ft.table, hide_index=True, width="stretch")
runner.draw(result, "finetune.curves", chart_key="how_it_learns.curves")

if "dynamics.checkpoint" in result.figure_keys():
    steps = result.steps()
    step = st.select_slider("Checkpoint (training step)", options=steps, value=steps[-1], key="how_it_learns.step")
    runner.draw(result, "dynamics.checkpoint", chart_key="how_it_learns.checkpoint", step=step)
    if "dynamics.checkpoint_flow" in result.figure_keys():
        runner.draw(result, "dynamics.checkpoint_flow", chart_key="how_it_learns.checkpoint_flow",
                    note=plain(f"Sentence: {ft.flow_text}"), step=step)  # fmt: skip
    top_layer, top_block = int(ft.layer_metrics["layer"].max()), int(ft.block_metrics["block"].max())
    m1, m2 = st.columns(2)
    layer = int(m1.number_input("Across the steps: layer", 0, top_layer, top_layer, key="how_it_learns.at_layer",
                                help="For the per-layer measures; 0 = embeddings."))  # fmt: skip
    block = int(m2.number_input("Across the steps: block", 1, top_block, top_block, key="how_it_learns.at_block",
                                help="For the per-block measures (attention)."))  # fmt: skip
    runner.draw(result, "dynamics.steps", chart_key="how_it_learns.steps", layer=layer, block=block)

if "dynamics.moved" in result.figure_keys():
    st.subheader("Does position matter when [CLS] is trained?")
    runner.draw(result, "dynamics.moved", chart_key="how_it_learns.moved")
    moved_sentence = result.moved_sentence()
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
