"""Classifier: a fine-tuned model's own head read through every layer of [CLS]."""

import streamlit as st

from ui import runner
from ui.classifier import classifier_offer, no_head_message
from ui.lens import lens_block
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import sentence_picker

page_setup("Classifier", icon=":material/label:")
st.title("At which layer does the prediction form in [CLS]?")
st.caption(
    "A fine-tuned classifier reads only the last layer's [CLS] vector. Its own head, applied to the [CLS] "
    "vector after every layer, shows when the answer appears."
)

encoder = current_encoder()
if encoder.classifier is None:
    st.info(plain(no_head_message(encoder)), icon=":material/label_off:")
    classifier_offer(encoder, key="classifier.offer")
    st.stop()

info = encoder.info
st.text(f"Head: {info.head_pooling}\nLabels: {', '.join(info.labels)}")
traces = current_traces()
if not traces:
    st.stop()

t = sentence_picker(traces, key="classifier.sentence")
try:
    result = runner.run("classifier.lens", encoder, t)
except (runner.NotApplicable, ValueError) as exc:
    st.warning(plain(str(exc)), icon=":material/warning:")
    st.stop()
prediction, settled = result.summary()
st.info(plain(prediction), icon=":material/label:")
st.markdown(plain(settled))
runner.draw(result, "classifier.lens", chart_key="classifier.lens")
st.caption(
    "Which tokens the prediction draws on is the attribution question: open *What flows into \\[CLS\\]?* "
    "in the sidebar, with this model and sentence."
)
runner.draw(result, "classifier.mean_lens", chart_key="classifier.mean_lens")
runner.download_table(result, "classifier_lens.csv", csv_key="classifier.csv", label="Download both lenses (CSV)")

# The tuned lens through this classifier's head: a separate block, run on request.
lens_block(encoder, target="logits", key="classifier.tuned_lens")
