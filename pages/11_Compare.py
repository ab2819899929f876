"""Compare two models: layer x layer CKA, attention around [CLS], probe and STS curves of both."""

import streamlit as st

from ui import runner
from ui.compare import CKA_READINGS, MEASURES, second_encoder, second_model_picker
from ui.corpus import corpus_picker
from ui.similarity import pairs_picker
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import figure_caption, multiselect, number_input, radio, selectbox, sentence_picker

TABS = ("Layer × layer CKA", "Attention around [CLS]", "Probe and similarity")
SEED = 0

page_setup("Compare two models", icon=":material/difference:")
st.title("Two models side by side")
st.caption(
    "Where did fine-tuning rewrite the model, and did [CLS] change more than the rest? Model A is the "
    "sidebar's model; pick model B here, for instance a fine-tuned copy of A saved as a folder."
)

encoder_a = current_encoder()
name_b = second_model_picker()
encoder_b = second_encoder(name_b)  # also releases the previous second model
if name_b is None:
    st.info("Pick a second model (B) to compare with the sidebar's model (A).", icon=":material/difference:")
if encoder_b is None:
    st.stop()
st.text(
    f"A: {encoder_a.name} ({encoder_a.info.num_layers} layers, {encoder_a.info.hidden_size} dims)\n"
    f"B: {encoder_b.name} ({encoder_b.info.num_layers} layers, {encoder_b.info.hidden_size} dims)"
)

cka_tab, attention_tab, curves_tab = st.tabs(TABS, key="compare.section", on_change="rerun")

with cka_tab:
    if cka_tab.open:
        corpus = corpus_picker(key="compare.corpus")
        if corpus is not None:
            left, right = st.columns([1, 2])
            size = int(number_input(left,
                "Texts", min_value=min(2, len(corpus)), max_value=max(2, len(corpus)), value=min(200, len(corpus)),
                step=50, key="compare.texts", help="A sample of the corpus (stratified by its first label column).",
            ))
            readings = multiselect(right,
                "Readings", CKA_READINGS, default=list(CKA_READINGS), key="compare.readings",
                help="tokens: every content token (needs both tokenizers to agree); cls: the [CLS]-like vector; "
                "mean: the mean of each text's tokens.",
            )
            result = runner.background(
                "compare.cka", encoder_a, encoder_b, corpus, button="Compare the layers", what="Compare the layers",
                slot="compare.cka", release=True, disabled=not readings, texts=size,
                readings=",".join(readings) or ",".join(CKA_READINGS), seed=SEED,
            )
            if result is not None:
                comparison = result.comparison
                for reading, why in comparison.skipped.items():
                    st.info(plain(f"No {reading} map: {why}"), icon=":material/info:")
                for note in comparison.messages:
                    st.caption(plain(note))
                runner.sentences(result, lambda s: st.info(s, icon=":material/lightbulb:"))
                columns = st.columns(len(comparison.cka) or 1)
                for column, reading in zip(columns, comparison.cka):
                    with column:
                        runner.draw(result, "compare.cka", chart_key=f"compare.cka.{reading}", caption=False,
                                    reading=reading)
                figure_caption("compare.cka")
                runner.draw(result, "compare.diagonal")
                d1, d2 = st.columns(2)
                with d1:
                    runner.download_table(result, "cka_layers.csv", csv_key="compare.cka.csv")
                with d2:
                    runner.download(result, "compare.diagonal", "cka_diagonal.csv", csv_key="compare.diagonal.csv",
                                    label="Download the diagonal (CSV)")

with attention_tab:
    if attention_tab.open:
        traces = current_traces()
        if traces:
            t = sentence_picker(traces, key="compare.sentence")
            measure = radio(st,
                "Measure", list(MEASURES), key="compare.measure", horizontal=True,
                format_func=lambda m: m.replace("_", " "), help="\n".join(f"- **{k}**: {v}" for k, v in MEASURES.items()),
            )
            try:
                change = runner.run("compare.attention", t, encoder_b)
            except ValueError as exc:  # different tokenizations or shapes, or B cannot trace this text
                st.info(plain(str(exc)), icon=":material/info:")
            else:
                runner.draw(change, "compare.attention", chart_key="compare.attention", measure=measure)
                runner.download_table(change, "attention_change.csv", csv_key="compare.attention.csv")

with curves_tab:
    if curves_tab.open:
        corpus = corpus_picker(key="compare.curves_corpus")
        if corpus is not None and not corpus.labels:
            st.info("This corpus has no label column for a probe to predict; pick the demo corpus or upload one "
                    "with labels.", icon=":material/label_off:")
        elif corpus is not None:
            left, right = st.columns(2)
            label = selectbox(left, "Label to predict", corpus.label_names, key="compare.label")
            size = int(number_input(right,
                "Texts", min_value=min(10, len(corpus)), max_value=max(10, len(corpus)), value=min(300, len(corpus)),
                step=50, key="compare.curve_texts", help="A stratified sample; 5-fold cross-validation.",
            ))
            picked = pairs_picker("compare.pairs")
            pairs = picked[0] if picked is not None else None
            result = runner.background(
                "compare.curves", encoder_a, encoder_b, corpus, pairs, button="Run the probe and the pairs on both",
                what="Run the probe and the pairs on both", slot="compare.curves", release=True, label_name=label,
                texts=size, seed=SEED,
            )
            if result is not None:
                for note in result.result.messages:
                    st.caption(plain(note))
                runner.sentences(result, lambda s: st.info(s, icon=":material/lightbulb:"))
                runner.draw(result, "compare.probe", csv="probe_both_models.csv", csv_key="compare.probe.csv")
                if "compare.sts" in result.figure_keys():
                    runner.draw(result, "compare.sts", csv="similarity_both_models.csv", csv_key="compare.sts.csv")
