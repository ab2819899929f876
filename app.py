"""clsviz: the Overview page (entry file). Other pages live in pages/; the shared sidebar
(model, sentences, page links) comes from ui.state.page_setup."""

import pandas as pd
import streamlit as st

from clsviz import figures
from clsviz.overview import findings
from ui.embeddings import start_umap_warmup
from ui.state import PAGES, ROOT, current_encoder, current_traces, page_setup
from ui.widgets import download_csv, figure_caption, show

page_setup("Overview", icon=":material/token:")
# UMAP's first fit compiles with numba (~30 s): start that once per process in the background
# so the Embeddings page does not make the first person wait.
start_umap_warmup()

st.title("clsviz — what is the [CLS] token doing?")
st.caption(
    "Type sentences in the sidebar. Every number below is computed live on the model you picked, "
    "for your sentences."
)

encoder = current_encoder()
info = encoder.info
st.markdown(
    f"**Model:** `{info.name}` — {info.model_type}, {info.num_layers} layers, {info.num_heads} heads, "
    f"{info.hidden_size} dims; `{info.cls_token}` plays [CLS]; "
    f"{'has a pooler head' if info.has_pooler else 'no pooler head'}; runs on {info.device}."
)

traces = current_traces()
if not traces:
    st.stop()

st.subheader("The tokens, as the model sees them")
for i, t in enumerate(traces):
    st.text(f"{i + 1}. {t.text}")
    show("overview.tokens", figures.tokens_figure(t), key=f"overview.tokens.{i}", caption=False)
figure_caption("overview.tokens")

st.subheader("Four questions, answered for your first sentence")
links = {key: (path, label) for key, (path, label, _) in zip(
    ("home", "attention", "similarity", "embeddings", "any", "first", "recover"), PAGES)}
targets = {
    "aggregate": ("similarity", "embeddings"),
    "first": ("first", "attention"),
    "learn": ("attention", "any"),
    "recover": ("recover",),
}
rows = []
for f in findings(traces[0]):
    with st.container(border=True):
        st.markdown(f"**{f.question}**")
        st.text(f.answer)
        cols = st.columns(len(targets[f.key]))
        for col, name in zip(cols, targets[f.key]):
            path, label = links[name]
            if (ROOT / path).is_file():
                col.page_link(path, label=f"Explore: {label}", icon=":material/arrow_forward:")
    rows.append({"question": f.question, "finding": f.answer, "value": f.value})
download_csv(pd.DataFrame(rows), "clsviz-overview.csv", key="overview.csv")
