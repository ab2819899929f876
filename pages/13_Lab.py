"""The [CLS] lab: pretrain small encoders from scratch that differ in one thing, and watch [CLS] form."""

from __future__ import annotations

import streamlit as st

from ui import runner
from ui.lab import VARIANTS, corpus, default, describe_size, describe_variant, lab_model_folders
from ui.state import page_setup
from ui.text import plain
from ui.widgets import multiselect, number_input, selectbox, slider

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


def show_result(result, key: str) -> None:
    """Every figure of a lab result, its sentences, and its numbers as CSV."""
    for figure_key in result.figure_keys():
        runner.draw(result, figure_key, chart_key=f"{key}.{figure_key}")
    for sentence in result.summary():
        st.markdown(f"- {plain(sentence)}")
    runner.download_table(result, "lab_metrics.csv", csv_key=f"{key}.csv")


# --- 1. start a run ---------------------------------------------------------------------------
st.subheader("Pretrain")
variants = multiselect(st, "Variants", list(VARIANTS), default=[VARIANTS[0]], key="lab.variants",
                       format_func=describe_variant)  # fmt: skip
c0, c1, c2 = st.columns(3)
size = selectbox(c0, "Model size", runner.choices("lab.pretrain", "size"), key="lab.size", format_func=describe_size,
                 help="default: the app's standard run; small: what make lab trains; tiny: a quick try.")  # fmt: skip
steps = int(number_input(c1, "Steps per variant", min_value=10, max_value=20000, value=default("steps"), step=100,
                         key="lab.steps",
                         help=f"Batches of 32 sentence pairs. {default('steps')} steps of the default size take about "
                         "10 minutes per variant on 2 CPU cores (benchmarks/lab.py)."))  # fmt: skip
checkpoints = slider(c2, "Checkpoints", 2, 12, default("checkpoints"), key="lab.checkpoints",
                     help="Measurement points from step 0 (the untrained model) to the last step.")  # fmt: skip
finished = None
if variants:
    finished = runner.background(
        "lab.pretrain", texts, button="Start pretraining", what="Pretraining", variants=",".join(variants), size=size,
        steps=steps, checkpoints=int(checkpoints), corpus_name=corpus_name,
        hint="Each variant is saved as a model folder; it then appears in the sidebar's model list and below.",
    )  # fmt: skip
if finished is not None:
    st.success(plain(f"Saved: {', '.join(finished.folders)}. Pick one in the sidebar to open it on every page."),
               icon=":material/check_circle:")  # fmt: skip

# --- 2. the variants side by side ------------------------------------------------------------------
st.subheader("The variants side by side")
saved = lab_model_folders()
if not saved:
    st.info("No lab model yet: start a run above (or run `make lab` for the reference set).", icon=":material/info:")
    st.stop()
latest = list(finished.folders) if finished is not None else saved[:4]
picked = multiselect(st, "Saved runs", saved, default=[f for f in latest if f in saved], key="lab.compare")
if not picked:
    st.stop()
try:
    compared = runner.run("lab.compare", tuple(picked))
except (OSError, ValueError) as exc:
    st.warning(plain(str(exc)), icon=":material/warning:")
    st.stop()
show_result(compared, "lab.side")
st.caption(
    "These are small models trained for minutes on one author's novels: the curves show how the variants differ "
    "at this scale, not what a BERT trained for days would do."
)
