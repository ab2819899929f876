"""Classifier: a fine-tuned model's own head read through every layer of [CLS]."""

import streamlit as st

from clsviz import figures
from clsviz.heads import classifier_lens, describe_settled, predict, settled_layer
from ui.classifier import cached_lens_table, no_head_message
from ui.lens import lens_block
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import download_csv, sentence_picker, show

page_setup("Classifier", icon=":material/label:")
st.title("At which layer does the prediction form in [CLS]?")
st.caption(
    "A fine-tuned classifier reads only the last layer's [CLS] vector. Its own head, applied to the [CLS] "
    "vector after every layer, shows when the answer appears."
)

encoder = current_encoder()
if encoder.classifier is None:
    st.info(plain(no_head_message(encoder)), icon=":material/label_off:")
    st.stop()

info = encoder.info
st.text(f"Head: {info.head_pooling}\nLabels: {', '.join(info.labels)}")
traces = current_traces()
if not traces:
    st.stop()

t = sentence_picker(traces, key="classifier.sentence")
prediction = predict(encoder, t)
st.info(plain(f"Prediction: {prediction.summary(top=5)}"), icon=":material/label:")

table = cached_lens_table(encoder, t)
lens = classifier_lens(encoder, t)
settled = settled_layer(lens) if prediction.problem_type != "regression" else None
st.markdown(plain(describe_settled(lens, info.labels, prediction.problem_type, info.cls_token)))
show("classifier.lens", figures.lens_figure(table, "cls", settled, info.cls_token), key="classifier.lens")
st.caption(
    "Which tokens the prediction draws on is the attribution question: open *What flows into \\[CLS\\]?* "
    "in the sidebar, with this model and sentence."
)
show("classifier.mean_lens", figures.mean_lens_figure(table, info.cls_token), key="classifier.mean_lens")
download_csv(table, "classifier_lens.csv", key="classifier.csv", label="Download both lenses (CSV)")

# The tuned lens through this classifier's head: a separate block, run on request.
lens_block(encoder, target="logits", key="classifier.tuned_lens")
