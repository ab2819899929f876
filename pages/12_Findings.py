"""Published findings about [CLS], checked live on the current model."""

import streamlit as st

from ui import runner
from ui.corpus import corpus_picker
from ui.literature import (
    claims_preview,
    findings,
    finetuned_picker,
    interval_column,
    is_demo,
    page_links,
    session_results,
    with_session,
)
from ui.similarity import pairs_picker
from ui.state import current_encoder, page_setup
from ui.text import plain
from ui.widgets import download_csv

ICONS = {"reproduces": ":material/check_circle:", "differs": ":material/cancel:",
         "inconclusive": ":material/help:", "not measurable on this model": ":material/block:"}  # fmt: skip
KEY_COLUMNS = ("source", "verdict", "interval", "threshold", "sample")
"""The table's columns: short enough to read without scrolling sideways; each finding's claim,
numbers, reason and caveat are in its own box below."""

page_setup("Published findings", icon=":material/fact_check:")
st.title("Published findings, checked live")
st.caption(
    "What the literature says about [CLS], stated with its source and the model it was measured on, measured "
    "again on the model in the sidebar by the same protocol as far as the model allows, on fixed, stated samples. "
    "Each verdict rests on one number with its 95% interval: reproduces or differs only when the interval clears "
    "the rule's threshold, inconclusive when it straddles it; not measurable on this model when the claim is about "
    "another kind of model (the reason says which would do); not measured yet when an input is missing."
)
encoder = current_encoder()
st.text(f"Model: {encoder.name} ({encoder.info.num_layers} layers, {encoder.info.hidden_size} dims)")

with st.expander("Sentences, pairs and a fine-tuned copy to measure on", expanded=False):
    corpus = corpus_picker(key="findings.corpus")
    picked = pairs_picker("findings.pairs")
    second = finetuned_picker(encoder, key="findings.second")
if corpus is None or picked is None:
    st.stop()
corpus = None if is_demo(corpus) else corpus
pairs = None if picked[1] == "demo pairs" else picked[0]
if corpus is not None and len(corpus) < 20:
    st.error(f"The corpus has {len(corpus)} texts; the checks need at least 20. Use the demo corpus or a larger "
             "upload.", icon=":material/error:")  # fmt: skip
    st.stop()

result = findings(encoder, corpus, pairs, second)
if result is None:
    with st.expander("The findings that will be checked"):
        claims_preview()
    st.stop()

session = session_results()
table = with_session(result, session, encoder)  # live: results other pages produced since the check
st.info(plain(result.summary()[0]), icon=":material/fact_check:")
shown = table.assign(interval=interval_column(table), threshold=table["threshold"].astype(str))
st.dataframe(shown[list(KEY_COLUMNS)], hide_index=True, width="stretch", key="findings.table",
             column_config={"source": st.column_config.TextColumn("source", width="medium"),
                            "verdict": st.column_config.TextColumn("verdict", width="medium"),
                            "interval": st.column_config.TextColumn("95% interval", width="small"),
                            "threshold": st.column_config.TextColumn("rule threshold", width="small"),
                            "sample": st.column_config.TextColumn("sample", width="medium")})  # fmt: skip
download_csv(table, "published_findings.csv", key="findings.csv", label="Download the table (CSV)")
runner.draw(result, "findings.intervals")

st.subheader("Finding by finding")
for row in table.itertuples():
    with st.container(border=True):
        st.markdown(f"{ICONS.get(row.verdict, ':material/schedule:')} " + plain(row.sentence))
        if row.this_model:
            st.caption(plain(f"This model: {row.this_model} ({row.sample}). Published: {row.published}."))
        if row.caveat:
            st.caption(plain(f"Caveat: {row.caveat}"))
        if row.elsewhere:
            st.caption(plain(f"Elsewhere in this session: {row.elsewhere}"))
        page_links(row.pages)
        st.markdown(f"[{plain(row.source)}]({row.url})")
