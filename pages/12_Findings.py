"""Published findings about [CLS], checked live on the current model."""

import streamlit as st

from clsviz.literature import VERDICTS, count_verdicts, load_claims, with_elsewhere
from ui.corpus import corpus_picker
from ui.literature import findings_table, is_demo, page_links, session_results
from ui.similarity import pairs_picker
from ui.state import current_encoder, page_setup
from ui.text import plain
from ui.widgets import download_csv

SHOWN = ("source", "verdict", "reason", "this_model", "published", "model", "sample", "claim")
ICONS = {VERDICTS[0]: ":material/check_circle:", VERDICTS[1]: ":material/cancel:"}

page_setup("Published findings", icon=":material/fact_check:")
st.title("Published findings, checked live")
st.caption(
    "What the literature says about [CLS], stated with its source and the model it was measured on, measured "
    "again on the model in the sidebar by the same protocol as far as the model allows, and given a verdict: "
    "reproduces, differs, or not measurable on this model, with the reason."
)
encoder = current_encoder()
st.text(f"Model: {encoder.name} ({encoder.info.num_layers} layers, {encoder.info.hidden_size} dims)")

with st.expander("Sentences and pairs to measure on", expanded=False):
    corpus = corpus_picker(key="findings.corpus")
    picked = pairs_picker("findings.pairs")
if corpus is None or picked is None:
    st.stop()
corpus = None if is_demo(corpus) else corpus
pairs = None if picked[1] == "demo pairs" else picked[0]
if corpus is not None and len(corpus) < 20:
    st.error(f"The corpus has {len(corpus)} texts; the checks need at least 20. Use the demo corpus or a larger "
             "upload.", icon=":material/error:")  # fmt: skip
    st.stop()

session = session_results()
table = findings_table(encoder, corpus, pairs, session)
if table is None:
    with st.expander("The findings that will be checked"):
        for claim in load_claims():
            st.markdown(plain(f"**{claim.source}** ({claim.model}): {claim.claim}"))
    st.stop()

table = with_elsewhere(table, session, encoder.name)  # live: results other pages produced since the check
st.info(plain(count_verdicts(table, encoder.name)), icon=":material/fact_check:")
st.dataframe(table[list(SHOWN)], hide_index=True, width="stretch", key="findings.table",
             column_config={"this_model": "this model", "reason": st.column_config.TextColumn("reason", width="large")})
download_csv(table, "published_findings.csv", key="findings.csv", label="Download the table (CSV)")

st.subheader("Finding by finding")
for row in table.itertuples():
    with st.container(border=True):
        st.markdown(f"{ICONS.get(row.verdict, ':material/help:')} " + plain(row.sentence))
        if row.this_model:
            st.caption(plain(f"This model: {row.this_model} ({row.sample}). Published: {row.published}."))
        if row.elsewhere:
            st.caption(plain(f"Elsewhere in this session: {row.elsewhere}"))
        page_links(row.pages)
        st.markdown(f"[{plain(row.source)}]({row.url})")
