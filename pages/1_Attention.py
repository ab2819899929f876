"""Attention page: how attention flows into and out of [CLS], layer by layer."""

import streamlit as st

from ui import runner
from ui.report import report_download
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import selectbox, sentence_picker, slider, toggle

page_setup("Attention")
st.title("Attention around [CLS]")
st.caption(
    "Who attends to [CLS], what [CLS] reads, and how much of that attention actually moves information."
)

traces = current_traces()
if not traces:
    st.stop()
encoder = current_encoder()
t = sentence_picker(traces, key="attention.sentence")
report_download(t, key="attention.report")

# A different model can have fewer layers or heads than a value kept from before: clamp it.
if st.session_state.get("attention.layer", 1) > t.num_layers:
    st.session_state["attention.layer"] = t.num_layers
MEAN = -1
head_options = [MEAN, *range(t.num_heads)]
if st.session_state.get("attention.head", MEAN) not in head_options:
    st.session_state["attention.head"] = MEAN

col_layer, col_head, col_toggles = st.columns([2, 1, 2])
with col_layer:
    block = slider(st,
        "Block", 1, t.num_layers, t.num_layers, key="attention.layer",
        help="Encoder block 1 reads the embeddings; block L writes the last layer.",
    )
with col_head:
    choice = selectbox(st,
        "Head",
        head_options,
        format_func=lambda h: "mean over heads" if h == MEAN else f"head {h + 1}",
        key="attention.head",
    )
    head = None if choice in (None, MEAN) else int(choice)
with col_toggles:
    exclude_self = toggle(st,
        "Leave out [CLS]'s attention to itself",
        key="attention.exclude_self",
        help="In the 'attention to [CLS]' map, average only over the other query tokens.",
    )
    value_norm = toggle(st,
        "Value-norm weighted attention ‖α·f(x)‖",
        key="attention.value_norm",
        help="Kobayashi et al. (2020): weight each attention α by the size of the vector the head "
        "actually copies from that token, then show each row's shares. A token can get a large "
        "weight and still contribute little.",
    )

method = "value_norm" if value_norm else "attention"
try:
    result = runner.run("attention", t, encoder, method=method, include_self=not exclude_self)
except runner.NotApplicable as exc:
    st.warning(plain(f"{exc} Showing plain attention weights instead."), icon=":material/warning:")
    method = "attention"
    result = runner.run("attention", t, encoder, method=method, include_self=not exclude_self)
if method == "value_norm":
    st.info(
        "Every map below now shows value-norm weighted attention: each row is ‖α·f(x)‖ over the keys, "
        "rescaled to sum to 1, so it compares with plain attention on the same scale.",
        icon=":material/info:",
    )
head_name = "mean" if head is None else f"head{head + 1}"

st.subheader("Into [CLS] and out of it, every block and head")
left, right = st.columns(2)
with left:
    runner.draw(result, "attention.to_cls", csv="attention_to_cls.csv")
with right:
    runner.draw(result, "attention.entropy", csv="cls_entropy.csv")

st.subheader("One block, token by token")
runner.draw(result, "attention.matrix", csv=f"attention_block{block}_{head_name}.csv", block=block, head=head)

st.subheader("Where attention goes, block by block")
runner.draw(result, "attention.breakdown", csv="attention_breakdown.csv", head=head)

st.subheader("What [CLS] reads")
runner.draw(result, "attention.cls_row", csv="cls_row.csv", head=head)

st.subheader("Rollout: what can have reached [CLS]")
runner.draw(result, "attention.rollout", csv="cls_rollout.csv")
