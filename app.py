"""clsviz: the Overview page (entry file). Other pages live in pages/; the shared sidebar
(model, sentences, page links) comes from ui.state.page_setup."""

import streamlit as st

from ui import runner
from ui.lens import lens_block
from ui.state import PAGES, ROOT, current_encoder, current_traces, page_setup, stop_without_summary
from ui.text import plain
from ui.warmup import after_first_draw, baseline_note, ready_baseline
from ui.widgets import figure_caption

page_setup("Overview", icon=":material/token:")

st.title("clsviz — what is the [CLS] token doing?")
st.caption(
    "Type sentences in the sidebar. Every number below is computed live on the model you picked, "
    "for your sentences."
)

encoder = current_encoder()
info = encoder.info
summary_role = ("no summary token (pretrained in the lab without one)" if info.summary == "none"
                else f"`{info.cls_token}` plays [CLS]")
st.markdown(
    f"**Model:** `{info.name}` — {info.model_type}, {info.num_layers} layers, {info.num_heads} heads, "
    f"{info.hidden_size} dims; {summary_role}; "
    f"{'has a pooler head' if info.has_pooler else 'no pooler head'}; runs on {info.device}."
)

traces = current_traces()
if not traces:
    st.stop()

st.subheader("The tokens, as the model sees them")
notes = []
for i, t in enumerate(traces):
    st.text(f"{i + 1}. {t.text}")
    tokens = runner.run("tokens", t, encoder)
    runner.draw(tokens, "overview.tokens", chart_key=f"overview.tokens.{i}", caption=False)
    notes += [n for n in tokens.summary() if n not in notes]
figure_caption("overview.tokens")
for note in notes:
    st.info(plain(note), icon=":material/info:")

stop_without_summary("The four questions about [CLS]", encoder)
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
overview = runner.run("overview", traces[0], baseline)
for f in overview.findings:
    with st.container(border=True):
        st.markdown(f"**{f.question}**")
        st.text(f.answer)
        links = [p for p in targets[f.key] if p in labels and (ROOT / p).is_file()]
        for col, path in zip(st.columns(max(1, len(links))), links):
            col.page_link(path, label=f"Explore: {labels[path]}", icon=":material/arrow_forward:")
if baseline is None:
    baseline_note(encoder)
runner.download_table(overview, "clsviz-overview.csv", csv_key="overview.csv")

# The tuned lens: a separate block below the four questions, run on request.
lens_block(encoder, target="final", key="overview.lens")
