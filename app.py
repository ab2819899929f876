"""clsviz: the Overview page (entry file). Other pages live in pages/; the shared sidebar
(model, sentences, page links) comes from ui.state.page_setup."""

import pandas as pd
import streamlit as st

from clsviz import figures
from clsviz.narrative import findings
from clsviz.tracing import literal_specials
from ui.state import PAGES, ROOT, current_encoder, current_traces, page_setup
from ui.text import plain
from ui.warmup import after_first_draw, baseline_note, ready_baseline
from ui.widgets import download_csv, figure_caption, show

page_setup("Overview", icon=":material/token:")

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
typed_specials = sorted({s for t in traces for s in literal_specials(t, encoder.tokenizer)})
if typed_specials:
    st.info(
        plain(
            f"Your text contains {', '.join(repr(s) for s in typed_specials)} as characters. The tokenizer reads them "
            "as ordinary text, split into pieces (see above), never as the special token: only the tokenizer "
            f"adds the real {info.cls_token}, at position {traces[0].cls_index}."
        ),
        icon=":material/info:",
    )

st.subheader("Four questions, answered for your first sentence")
labels = {path: label for path, label, _ in PAGES}
targets = {
    "aggregate": ("pages/2_Similarity.py", "pages/3_Embeddings.py"),
    "first": ("pages/5_Why_first.py", "pages/1_Attention.py"),
    "learn": ("pages/1_Attention.py", "pages/4_Any_token.py"),
    "recover": ("pages/6_Inversion.py",),
}
# The first page never waits for the unrelated-sentence baseline or UMAP's compilation: both run
# in the background once this page has drawn, and the findings are redrawn with the baseline.
baseline = ready_baseline(encoder)
after_first_draw(encoder)
rows = []
for f in findings(traces[0], baseline):
    with st.container(border=True):
        st.markdown(f"**{f.question}**")
        st.text(f.answer)
        links = [p for p in targets[f.key] if p in labels and (ROOT / p).is_file()]
        for col, path in zip(st.columns(max(1, len(links))), links):
            col.page_link(path, label=f"Explore: {labels[path]}", icon=":material/arrow_forward:")
    rows.append({"question": f.question, "finding": f.answer, "value": f.value})
if baseline is None:
    baseline_note(encoder)
download_csv(pd.DataFrame(rows), "clsviz-overview.csv", key="overview.csv")
