"""Attention page: how attention flows into and out of [CLS], layer by layer."""

import streamlit as st

from clsviz import figures
from clsviz.attention import (
    block_map,
    breakdown_table,
    cls_row_table,
    entropy_table,
    rollout_table,
    to_cls_table,
    token_matrix_table,
)
from ui.attention import attention_arrays, summary_figure
from ui.report import report_download
from ui.state import current_max_tokens, current_traces, page_setup
from ui.widgets import download_csv, selectbox, sentence_picker, show, slider, toggle

page_setup("Attention", needs_summary="The Attention page (attention to and from [CLS])")
st.title("Attention around [CLS]")
st.caption(
    "Who attends to [CLS], what [CLS] reads, and how much of that attention actually moves information."
)

traces = current_traces()
if not traces:
    st.stop()
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

kind = "value-norm" if value_norm else "attention"
try:
    weights, summary = attention_arrays(t, current_max_tokens(), kind, include_self=not exclude_self)
except ValueError as exc:
    st.warning(f"{exc} Showing plain attention weights instead.", icon=":material/warning:")
    kind = "attention"
    weights, summary = attention_arrays(t, current_max_tokens(), kind, include_self=not exclude_self)
if kind == "value-norm":
    st.info(
        "Every map below now shows value-norm weighted attention: each row is ‖α·f(x)‖ over the keys, "
        "rescaled to sum to 1, so it compares with plain attention on the same scale.",
        icon=":material/info:",
    )

fig_args = (t, current_max_tokens(), kind, not exclude_self)

st.subheader("Into [CLS] and out of it, every block and head")
left, right = st.columns(2)
with left:
    show("attention.to_cls", summary_figure("to_cls", *fig_args))
    download_csv(to_cls_table(summary), "attention_to_cls.csv", key="attention.to_cls.csv")
with right:
    show("attention.entropy", summary_figure("entropy", *fig_args))
    download_csv(entropy_table(summary), "cls_entropy.csv", key="attention.entropy.csv")

st.subheader("One block, token by token")
matrix = block_map(weights, block, head)
show("attention.matrix", figures.token_attention_heatmap(matrix, t.tokens, block, head, kind=kind))
download_csv(
    lambda: token_matrix_table(matrix, t.tokens),  # built on click: T x T rows is large for long inputs
    f"attention_block{block}_{'mean' if head is None else f'head{head + 1}'}.csv",
    key="attention.matrix.csv",
)

st.subheader("Where attention goes, block by block")
show("attention.breakdown", summary_figure("breakdown", *fig_args, head))
download_csv(breakdown_table(summary, per_head=True), "attention_breakdown.csv", key="attention.breakdown.csv")

st.subheader("What [CLS] reads")
show("attention.cls_row", summary_figure("cls_row", *fig_args, head))
download_csv(cls_row_table(summary, head), "cls_row.csv", key="attention.cls_row.csv")

st.subheader("Rollout: what can have reached [CLS]")
show("attention.rollout", summary_figure("rollout", *fig_args))
download_csv(rollout_table(summary), "cls_rollout.csv", key="attention.rollout.csv")
