"""The [CLS] lab: pretrain small encoders from scratch that differ in one thing, and watch [CLS] form."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from clsviz import figures
from clsviz.lab import DEFAULT_CHECKPOINTS, DEFAULT_STEPS, REFERENCE_VARIANTS, LabConfig, compare_runs, pretrain_set
from clsviz.lab.config import MODEL_SIZES
from clsviz.lab.reference import comparisons
from ui import jobs
from ui.corpus import plain
from ui.lab import corpus, describe_variant, lab_model_folders, load_runs, new_set_folder
from ui.state import page_setup
from ui.widgets import download_csv, multiselect, number_input, selectbox, show, slider

JOB = "lab.pretrain"

page_setup("The [CLS] lab", icon=":material/experiment:")
st.title("The [CLS] lab: pretrain, then watch [CLS] form")
st.caption(
    "Why is [CLS] first, and how does it come to stand for the sentence when it is trained like every other token? "
    "Run the experiment: pretrain small BERT encoders from scratch on real running text that differ in exactly one "
    "thing - the summary token first, last or absent; next-sentence prediction, sentence order or no sentence "
    "objective - and measure each at checkpoints with the instruments of the other pages."
)

texts, corpus_name = corpus()
st.caption(plain(f"Corpus: {corpus_name}. Held-out labelled texts for the probes: the demo corpus (topic)."))

# --- 1. start a run ---------------------------------------------------------------------------
st.subheader("Pretrain")
job = jobs.get(JOB)
active = job is not None and job.active
variants = multiselect(st, "Variants", list(REFERENCE_VARIANTS), default=["first+nsp"], key="lab.variants",
                       format_func=describe_variant, disabled=active)  # fmt: skip
c0, c1, c2 = st.columns(3)


def _size_label(name: str) -> str:
    cfg = LabConfig.from_any(MODEL_SIZES[name])
    return f"{name}: {cfg.layers} layers × {cfg.hidden} dims"


size = selectbox(c0, "Model size", list(MODEL_SIZES), key="lab.size", format_func=_size_label, disabled=active,
                 help="default: the app's standard run; small: what make lab trains; tiny: a quick try.")  # fmt: skip
steps = int(number_input(c1, "Steps per variant", min_value=10, max_value=20000, value=DEFAULT_STEPS, step=100,
                         key="lab.steps", disabled=active,
                         help=f"Batches of 32 sentence pairs. {DEFAULT_STEPS} steps take about 10 minutes per variant "
                         "on 2 CPU cores (benchmarks/lab.py)."))  # fmt: skip
checkpoints = slider(c2, "Checkpoints", 2, 12, DEFAULT_CHECKPOINTS, key="lab.checkpoints", disabled=active,
                     help="Measurement points from step 0 (the untrained model) to the last step.")  # fmt: skip
if st.button("Start pretraining", key="lab.start", type="primary", disabled=active or not variants):
    folder = new_set_folder(datetime.now().strftime("%Y%m%d-%H%M%S"))
    started = jobs.launch(JOB, pretrain_set, list(texts), tuple(variants), folder, steps=steps,
                          checkpoints=int(checkpoints), config=MODEL_SIZES[size] or None, corpus_name=corpus_name,
                          label="Pretraining")  # fmt: skip
    if started is not None:
        st.session_state["lab.folder"] = str(folder)
        st.rerun()
finished = jobs.panel(JOB, "Pretraining")
if finished is not None:
    for run in finished.result:
        with st.container(border=True):
            for sentence in run.summary():
                st.markdown(plain(sentence))
            st.caption(plain(f"Saved to {run.folder}: pick it in the sidebar's model list to open it on every page."))

# --- 2. the variants side by side ------------------------------------------------------------------
st.subheader("The variants side by side")
saved = lab_model_folders()
if not saved:
    st.info("No lab model yet: start a run above (or run `make lab` for the reference set).", icon=":material/info:")
    st.stop()
latest = [str(r.folder) for r in finished.result] if finished is not None else saved[:4]
picked = multiselect(st, "Saved runs", saved, default=[f for f in latest if f in saved], key="lab.compare")
runs, notes = load_runs(picked)
for note in notes:
    st.warning(plain(note), icon=":material/warning:")
if not runs:
    st.stop()
table = compare_runs(runs)
drawn = figures.lab_figures(table)
for key in ("lab.probe", "lab.sink", "lab.sentence", "lab.curves"):
    if key in drawn:
        show(key, drawn[key], key=f"lab.figure.{key}")
for sentence in comparisons(runs):
    st.info(plain(sentence), icon=":material/compare_arrows:")
with st.expander("What each run showed, in words"):
    for run in runs:
        st.markdown("\n".join(f"- {plain(s)}" for s in run.summary()))
st.caption(
    "These are small models trained for minutes on one author's novels: the curves show how the variants differ "
    "at this scale, not what a BERT trained for days would do."
)
download_csv(table, "lab_metrics.csv", key="lab.csv")
