"""Causal tests: cut [CLS]'s reads, swap it between sentences, ablate heads, zero the massive
dimensions, add registers - on the typed sentence at once, on a corpus in the background."""

from __future__ import annotations

import streamlit as st

from ui import runner
from ui.corpus import corpus_picker
from ui.interventions import DEFAULT_SOURCE, show_result
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import number_input, radio, selectbox, sentence_picker, slider, text_input

NO_LABEL = "(no label: effects on [CLS] only)"
EXPERIMENTS = {"knockout": "Cut [CLS]'s reads", "patching": "Patch [CLS] across labels", "heads": "Ablate heads",
               "massive": "Massive dimensions", "registers": "Registers"}  # fmt: skip
QUESTIONS = {
    "knockout": "Does [CLS] need to read the words, and from which block on?",
    "patching": "Where does the sentence live in [CLS], and when is it too late to change the outcome?",
    "heads": "Which heads matter for [CLS], and which only park attention on it?",
    "massive": "The sink's massive dimensions: what if they are zeroed, or set to their mean?",
    "registers": "Registers: do extra tokens after [CLS] take over the sink?",
}
REGISTERS = 4  # the most registers offered: runs with 0..k of them

page_setup("Causal tests", needs_summary="The causal tests (interventions on [CLS])")
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
t = sentence_picker(traces, key="causal.sentence")


def run_here(name: str, what: str, **options):
    """The analysis ``name`` on the typed sentence, with a progress bar while it runs; None after
    an error message a person can act on."""
    try:
        return runner.run(name, encoder, [t], wait=what, **options)
    except (ValueError, runner.NotApplicable) as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return None


# --- 1. knockout -------------------------------------------------------------------------------
st.subheader(f"1. {QUESTIONS['knockout']}")
st.caption("In each block b, [CLS]'s query may not attend to the sentence's tokens (from b upward, or at b "
           "only); its other reads and every other token's attention are unchanged.")  # fmt: skip
try:
    result = runner.run("interventions.knockout", encoder, [t], wait="Cutting [CLS]'s reads block by block")
except runner.NotApplicable as exc:  # a family whose blocks clsviz cannot run: no test on this page can
    st.error(plain(str(exc)), icon=":material/error:")
    st.stop()
show_result(result, key="causal.knockout")

# --- 2. patching ---------------------------------------------------------------------------------
st.subheader(f"2. {QUESTIONS['patching']}")
others = [x.text for x in traces if x.text != t.text]
source = selectbox(st, "Source sentence (its [CLS] goes into the one above)", [*others, "Type another…"],
                      key="causal.source") if others else "Type another…"  # fmt: skip
if source == "Type another…":
    source = text_input(st, "Source sentence", value=DEFAULT_SOURCE, max_chars=500, key="causal.source_text")
if source.strip():
    try:
        profile = runner.run("interventions.patch", encoder, t, source=source, wait="Patching [CLS] at each layer")
    except (ValueError, runner.NotApplicable) as exc:
        st.error(plain(str(exc)), icon=":material/error:")
    else:
        for sentence in profile.summary():
            st.info(plain(sentence), icon=":material/lightbulb:")
        runner.draw(profile, "interventions.patch_profile", chart_key="causal.patch.figure",
                    csv="causal_patch_profile.csv", csv_key="causal.patch.csv")  # fmt: skip
else:
    st.info("Type a source sentence.", icon=":material/edit:")

# --- 3. heads ----------------------------------------------------------------------------------------
st.subheader(f"3. {QUESTIONS['heads']}")
mode = radio(st, "Ablation", runner.choices("interventions.heads", "mode"), horizontal=True, key="causal.head_mode",
                format_func={"mean": "mean (the head's average output over demo sentences)",
                             "zero": "zero (the head's output removed)"}.get)  # fmt: skip
result = run_here("interventions.heads", "Ablating each head", mode=mode)
if result is not None:
    show_result(result, key="causal.heads")

# --- 4. massive dimensions -------------------------------------------------------------------------
st.subheader(f"4. {QUESTIONS['massive']}")
layer = slider(st, "Layer where the dimensions are set (0 = embeddings)", 0, encoder.info.num_layers - 1, 1,
                  key=f"causal.massive_layer.{encoder.info.num_layers}")  # fmt: skip
result = run_here("interventions.massive", "Setting the massive dimensions", layer=layer)
if result is not None:
    show_result(result, key="causal.massive")

# --- 5. registers ------------------------------------------------------------------------------------
st.subheader(f"5. {QUESTIONS['registers']}")
k = slider(st, "Registers k (runs 0..k)", 1, REGISTERS, REGISTERS, key="causal.registers_k")
result = run_here("interventions.registers", "Running with registers", registers=k)
if result is not None:
    show_result(result, key="causal.registers")

# --- on a corpus ---------------------------------------------------------------------------------------
st.divider()
st.header("On a corpus")
st.caption("The same tests on many sentences, with a probe fitted on clean [CLS] vectors when a label is "
           "chosen. They run in the background: other pages stay usable, and Cancel stops them.")  # fmt: skip
corpus = corpus_picker(key="causal.corpus")
if corpus is None:
    st.stop()
kind = selectbox(st, "Test", runner.choices("causal.corpus", "kind"),
                 format_func=lambda k_: f"{EXPERIMENTS[k_]}: {QUESTIONS[k_]}", key="causal.kind")  # fmt: skip
slot = f"causal.{kind}"  # one background run per test and session
active = runner.running("causal.corpus", slot=slot)
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
options = {"kind": kind, "label": label, "texts": n_texts, "folds": folds}
if kind == "patching":
    options["pairs"] = int(number_input(st, "Pairs", 1, 2000, 200, step=50, key="causal.pairs", disabled=active))
elif kind == "heads":
    options["mode"] = radio(st, "Ablation", runner.choices("causal.corpus", "mode"), horizontal=True,
                            key="causal.corpus_mode", disabled=active)  # fmt: skip
elif kind == "massive":
    options["layer"] = slider(st, "Layer", 0, encoder.info.num_layers - 1, 1, key=f"causal.corpus_layer.{encoder.info.num_layers}", disabled=active)
elif kind == "registers":
    options["registers"] = slider(st, "Registers k", 1, REGISTERS, REGISTERS, key="causal.corpus_k", disabled=active)

done = runner.background("causal.corpus", encoder, corpus, button="Run on the corpus", slot=slot, what="The corpus run",
                         **options)  # fmt: skip
if done is not None:
    run = done.sweep
    st.caption(plain(f"{run.model_name} · {run.n} texts · label: {run.label or 'none'} · {run.seconds:.0f} s"))
    show_result(done, key=f"causal.corpus.{kind}")
