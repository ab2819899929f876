"""What flows into [CLS]? Context mixing beyond raw attention, attributions, a faithfulness scoreboard."""

from __future__ import annotations

import streamlit as st

from ui import runner
from ui.mixing import (
    ATTRIBUTION_NAMES,
    BARELY_MIXES,
    MEASURE_NAMES,
    METHOD_NAMES,
    SCOREBOARD_MEASURES,
    SCOREBOARD_SLOT,
    TARGET_NAMES,
    VALUE_ZEROING_SLOT,
    board_targets,
)
from ui.report import report_download
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import multiselect, number_input, radio, selectbox, sentence_picker, slider, text_input

AUTO_ATTRIBUTION_TOKENS = 64  # longer texts wait for a button: gradients cost one pass per step
AUTO_COMPARE_TOKENS = 128  # longer texts wait for a button: each decomposed measure costs seconds
SCOREBOARD_TEXTS = 10

page_setup("What flows into [CLS]?")
st.title("What flows into [CLS]?")
st.caption(
    "Raw attention says where a head looks, not what it moves: it ignores how large the copied vectors are, "
    "the residual stream and the LayerNorms. Here the whole-block measures (GlobEnc, ALTI, value zeroing) "
    "and gradient attributions answer the same question, and a scoreboard checks which of them predicts what "
    "removing tokens really does on this model."
)

traces = current_traces()
if not traces:
    st.stop()
encoder = current_encoder()
t = sentence_picker(traces, key="mixing.sentence")
report_download(t, key="mixing.report")

# --- context mixing ---------------------------------------------------------------------------
st.subheader("Context mixing, block by block")
methods = runner.choices("mixing", "method")
method = radio(
    st,
    "Measure",
    methods,
    index=methods.index("alti"),
    format_func=METHOD_NAMES.get,
    horizontal=True,
    key="mixing.method",
    help="Raw attention: mean over heads. Value norm: Kobayashi et al. 2020. GlobEnc: Modarressi et al. 2022. "
    "ALTI: Ferrando et al. 2022. Value zeroing: Mohebbi et al. 2023 (reruns every block once per token).",
)
result = None
if method == "value_zeroing":
    result = runner.background(
        "mixing.value_zeroing", encoder, t, button="Compute value zeroing", slot=VALUE_ZEROING_SLOT,
        what="Value zeroing",
        hint=f"Value zeroing reruns every block once per token ({t.seq_len} tokens × {t.num_layers} blocks) in "
             f"float64; it runs in the background on {encoder.device.type.upper()} and other pages stay usable.",
    )  # fmt: skip
else:
    try:
        result = runner.run("mixing", encoder, t, method=method)
    except runner.NotApplicable as exc:
        st.warning(plain(f"{exc} Showing raw attention instead."), icon=":material/warning:")
        result = runner.run("mixing", encoder, t, method="attention")

if result is not None:
    barely = [str(b) for b in result.barely_mixing_blocks()]
    if barely:
        st.info(
            f"Block{'s' if len(barely) > 1 else ''} {', '.join(barely)} barely mix anything into [CLS]: zeroing any "
            f"single token's values changes the [CLS] output by less than 1 − cos = {BARELY_MIXES:g}. Their rows "
            "below are shares of almost nothing (computed in float64; in float32 they would be rounding noise).",
            icon=":material/info:",
        )
    runner.draw(result, "mixing.cls_row", csv=f"cls_row_{method}.csv", chart_key="mixing.cls_row")
    runner.draw(result, "mixing.rollout", chart_key="mixing.rollout")
    if "mixing.raw" in result.figure_keys():
        runner.draw(result, "mixing.raw", chart_key="mixing.raw")
    block = slider(st, "Block", 1, t.num_layers, t.num_layers, key="mixing.block")
    runner.draw(result, "mixing.block", csv=f"block{block}_{method}.csv", chart_key="mixing.block_figure",
                csv_key="mixing.block.csv", block=block)  # fmt: skip

with st.expander("Every fast measure side by side"):
    # Each decomposed measure of a long text costs seconds (T x T x D floats per block), so a
    # long text waits for a button instead of running all of them on every visit.
    if t.seq_len > AUTO_COMPARE_TOKENS and not st.button("Compare the fast measures", key="mixing.compare_start"):
        st.caption(f"This sentence has {t.seq_len} tokens: press the button to compute every fast measure for it.")
    else:
        try:
            runner.draw(runner.run("mixing.compare", encoder, t), "mixing.compare", chart_key="mixing.compare")
        except runner.NotApplicable as exc:
            st.caption(plain(str(exc)))

# --- attribution ------------------------------------------------------------------------------
st.subheader("Attribution: which words the target depends on, [CLS] vs mean pooling")
targets = ["similarity"] + (["classifier"] if encoder.classifier is not None else [])
c1, c2, c3 = st.columns([2, 2, 1])
target = radio(
    c1,
    "Target",
    targets,
    format_func=lambda x: "cosine to another sentence" if x == "similarity" else "the model's classifier",
    horizontal=True,
    key="mixing.target",
)
how = radio(c2, "Method", runner.choices("attribution", "method"), format_func=ATTRIBUTION_NAMES.get, horizontal=True,
            key="mixing.attr_method")  # fmt: skip
steps = number_input(c3, "Steps", 4, 256, 32, step=4, key="mixing.steps", disabled=how != "integrated_gradients",
                     help="Integrated-gradients path points (Gauss-Legendre).")  # fmt: skip
options = {"method": how, "target": target, "steps": int(steps), "length_limit": max(t.seq_len, 1)}
if target == "similarity":
    others = [x.text for x in traces if x.text != t.text]
    options["other"] = text_input(st, "Compare with", value=others[0] if others else "A cat was chasing a dog.",
                                  key="mixing.other")  # fmt: skip
if t.seq_len <= AUTO_ATTRIBUTION_TOKENS or st.button("Compute the attributions", key="mixing.attr_start"):
    try:
        with st.spinner("Attributing…"):
            found = runner.run("attribution", encoder, t, **options)
    except (runner.NotApplicable, ValueError) as exc:
        st.error(plain(str(exc)), icon=":material/error:")
    else:
        runner.draw(found, "attribution.tokens", chart_key="mixing.attribution", note="; ".join(found.summary()),
                    csv="attributions.csv", csv_key="mixing.attribution.csv")  # fmt: skip
else:
    st.info(f"This sentence has {t.seq_len} tokens: press the button to attribute it.", icon=":material/play_arrow:")

# --- faithfulness scoreboard ------------------------------------------------------------------
st.subheader("Faithfulness scoreboard: which measure predicts removals?")
st.caption(
    "Each measure ranks the words; removing them in that order (replaced by the mask token) shows whether the "
    "words it names really matter for the target: by default the logit of a sentiment probe fitted on this "
    "model (the model's own classifier logit when it has one), a target every family of measures gets a real "
    "signal from. Context-mixing measures come rolled out and as the last block alone, so each is compared "
    "with raw attention like with like. Runs in the background; AOPC carries its 95% interval over the sentences."
)
d1, d2, d3 = st.columns([3, 1, 1])
chosen = multiselect(d1, "Measures", SCOREBOARD_MEASURES, default=list(SCOREBOARD_MEASURES),
                     format_func=MEASURE_NAMES.get, key="mixing.measures")  # fmt: skip
pooling = selectbox(d2, "Pooling", runner.choices("faithfulness", "pooling"), key="mixing.pooling")
board_target = selectbox(d3, "Target", board_targets(encoder), key="mixing.board_target", format_func=TARGET_NAMES.get,
                         help="What removing tokens is measured on: a probe's or the model's classifier logit (a "
                         "real gradient for every method), or the pooled vector's cosine to its unperturbed self "
                         "(no gradient at the input: gradient × input is then left out).")  # fmt: skip
sample = traces[:SCOREBOARD_TEXTS]
if len(traces) > SCOREBOARD_TEXTS:
    st.caption(f"The first {SCOREBOARD_TEXTS} sentences are used.")
if not chosen:
    st.info("Choose at least one measure.", icon=":material/checklist:")
    st.stop()
try:
    board = runner.background(
        "faithfulness", encoder, sample, button="Run the scoreboard", slot=SCOREBOARD_SLOT, what="The scoreboard",
        hint="Choose the measures and press **Run the scoreboard**.", measures=",".join(chosen), pooling=pooling,
        target=board_target, length_limit=max(x.seq_len for x in sample),
    )  # fmt: skip
except runner.NotApplicable as exc:
    st.error(plain(str(exc)), icon=":material/error:")
    board = None
if board is not None:
    sentences = board.summary()
    st.info(plain(sentences[0]), icon=":material/lightbulb:")
    for note in sentences[1:]:
        st.caption(plain(note))
    runner.draw(board, "faithfulness.ranking", chart_key="mixing.ranking", csv="faithfulness_ranking.csv",
                csv_key="mixing.ranking.csv", download_label="Download the ranking (CSV)")  # fmt: skip
    runner.draw(board, "faithfulness.curves", chart_key="mixing.curves", csv="deletion_curves.csv",
                csv_key="mixing.curves.csv", download_label="Download the curves (CSV)")  # fmt: skip
    runner.download_table(board, "faithfulness.csv", csv_key="mixing.board.csv", label="Download the scores (CSV)")
