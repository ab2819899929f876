"""Compare two models: layer x layer CKA, attention around [CLS], probe and STS curves of both."""

import streamlit as st

from clsviz import figures
from clsviz.compare import (
    ATTENTION_MEASURES,
    CKA_READINGS,
    TokenizationMismatch,
    attention_change,
    compare_encoders,
)
from clsviz.experiments import describe_change, diagonal_table, run_side_by_side, sample_corpus
from ui.compare import (
    CKA_JOB,
    CURVES_JOB,
    background_result,
    pairs_hash,
    second_encoder,
    second_model_picker,
)
from ui.corpus import corpus_picker
from ui.similarity import pairs_picker
from ui.state import cached_trace, current_encoder, current_max_tokens, current_traces, page_setup
from ui.text import plain
from ui.widgets import (
    download_csv,
    figure_caption,
    multiselect,
    number_input,
    radio,
    selectbox,
    sentence_picker,
    show,
)

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
            sample = sample_corpus(corpus, size, corpus.label_names[0] if corpus.labels else None, SEED)
            params = (encoder_a.name, encoder_b.name, sample.content_hash, tuple(readings), SEED)
            comparison = background_result(
                CKA_JOB, params, "Compare the layers", compare_encoders, encoder_a, encoder_b, sample.texts,
                tuple(readings), seed=SEED, disabled=not readings,
            )
            if comparison is not None:
                for reading, why in comparison.skipped.items():
                    st.info(plain(f"No {reading} map: {why}"), icon=":material/info:")
                for note in comparison.messages:
                    st.caption(plain(note))
                st.info(plain(describe_change(comparison)), icon=":material/lightbulb:")
                columns = st.columns(len(comparison.cka) or 1)
                for column, reading in zip(columns, comparison.cka):
                    with column:
                        show("compare.cka", figures.cka_heatmap(comparison, reading), key=f"compare.cka.{reading}",
                             caption=False)
                figure_caption("compare.cka")
                diagonal = diagonal_table(comparison)
                show("compare.diagonal", figures.cka_diagonal_figure(diagonal, comparison.model_a, comparison.model_b))
                d1, d2 = st.columns(2)
                with d1:
                    download_csv(comparison.table(), "cka_layers.csv", key="compare.cka.csv")
                with d2:
                    download_csv(diagonal, "cka_diagonal.csv", key="compare.diagonal.csv",
                                 label="Download the diagonal (CSV)")

with attention_tab:
    if attention_tab.open:
        traces = current_traces()
        if traces:
            t = sentence_picker(traces, key="compare.sentence")
            measure = radio(st,
                "Measure", list(ATTENTION_MEASURES), key="compare.measure", horizontal=True,
                format_func=lambda m: m.replace("_", " "), help="\n".join(f"- **{k}**: {v}" for k, v in ATTENTION_MEASURES.items()),
            )
            try:
                change = attention_change(t, cached_trace(encoder_b, t.text, current_max_tokens()))
            except TokenizationMismatch as exc:
                st.info(plain(str(exc)), icon=":material/info:")
            except ValueError as exc:  # different shapes, or B cannot trace this text
                st.info(plain(str(exc)), icon=":material/info:")
            else:
                show("compare.attention", figures.attention_change_figure(change, measure), key="compare.attention")
                download_csv(change.table(), "attention_change.csv", key="compare.attention.csv")

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
            sample = sample_corpus(corpus.labelled(label), size, label, SEED)
            pairs = picked[0] if picked is not None else None
            params = (encoder_a.name, encoder_b.name, sample.content_hash, label, pairs_hash(pairs), SEED)
            result = background_result(
                CURVES_JOB, params, "Run the probe and the pairs on both", run_side_by_side, encoder_a, encoder_b,
                sample.texts, list(sample.labels[label]), pairs, seed=SEED, label_name=label,
            )
            if result is not None:
                for note in result.messages:
                    st.caption(plain(note))
                st.info(plain(result.summary()), icon=":material/lightbulb:")
                show("compare.probe", figures.side_by_side_probe_figure(result))
                download_csv(result.probe, "probe_both_models.csv", key="compare.probe.csv")
                if result.sts is not None:
                    show("compare.sts", figures.side_by_side_sts_figure(result))
                    download_csv(result.sts, "similarity_both_models.csv", key="compare.sts.csv")
