"""What flows into [CLS]? Context mixing beyond raw attention, attributions, a faithfulness scoreboard."""

from __future__ import annotations

import streamlit as st

from clsviz import figures
from clsviz.attribution import ATTRIBUTION_METHODS, attribution_table
from clsviz.attribution import METHOD_NAMES as ATTRIBUTION_NAMES
from clsviz.faithfulness import MEASURE_NAMES, MEASURES, verdict
from clsviz.mixing import BARELY_MIXES, METHOD_NAMES, METHODS, MixingError, block_table, cls_row_table
from ui import jobs
from ui.mixing import (
    SCOREBOARD_JOB,
    VALUE_ZEROING_JOB,
    attributions,
    job_status,
    mixing_result,
    start_scoreboard,
    start_value_zeroing,
    stored_mixing,
)
from ui.report import report_download
from ui.state import current_encoder, current_max_tokens, current_traces, page_setup
from ui.text import plain
from ui.widgets import (
    download_csv,
    multiselect,
    number_input,
    radio,
    selectbox,
    sentence_picker,
    show,
    slider,
    text_input,
)

FAST = ("attention", "value_norm", "globenc", "alti")
AUTO_ATTRIBUTION_TOKENS = 64  # longer texts wait for a button: gradients cost one pass per step
AUTO_COMPARE_TOKENS = 128  # longer texts wait for a button: each decomposed measure costs seconds
SCOREBOARD_TEXTS = 10
SCOREBOARD_PARAMS = "mixing.scoreboard_params"

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
max_tokens = current_max_tokens()
t = sentence_picker(traces, key="mixing.sentence")
report_download(t, key="mixing.report")

# --- context mixing ---------------------------------------------------------------------------
st.subheader("Context mixing, block by block")
method = radio(
    st,
    "Measure",
    METHODS,
    index=METHODS.index("alti"),
    format_func=lambda m: METHOD_NAMES[m],
    horizontal=True,
    key="mixing.method",
    help="Raw attention: mean over heads. Value norm: Kobayashi et al. 2020. GlobEnc: Modarressi et al. 2022. "
    "ALTI: Ferrando et al. 2022. Value zeroing: Mohebbi et al. 2023 (reruns every block once per token).",
)
attention = mixing_result(t, max_tokens, "attention")
result = None
if method == "value_zeroing":
    result = stored_mixing(t, max_tokens, "value_zeroing")
    if result is None:
        job = job_status(VALUE_ZEROING_JOB, "Value zeroing")
        running = job is not None and job.active
        done = job is not None and not job.active and job.result is not None
        if done and (job.result.model_name, job.result.tokens) == (t.model_name, tuple(t.tokens)):
            result = job.result
        elif st.button("Compute value zeroing", key="mixing.vz_start", type="primary", disabled=running):
            if start_value_zeroing(encoder, t, max_tokens) is not None:
                st.rerun()
        elif not running:
            st.info(
                f"Value zeroing reruns every block once per token ({t.seq_len} tokens × {t.num_layers} blocks) in "
                f"float64; it runs in the background on {encoder.device.type.upper()} and other pages stay usable.",
                icon=":material/play_arrow:",
            )
else:
    try:
        result = mixing_result(t, max_tokens, method)
    except MixingError as exc:
        st.warning(plain(f"{exc} Showing raw attention instead."), icon=":material/warning:")
        result = attention

if result is not None:
    barely = [str(b + 1) for b, flag in enumerate(result.barely_mixes()) if flag]
    if barely:
        st.info(
            f"Block{'s' if len(barely) > 1 else ''} {', '.join(barely)} barely mix anything into [CLS]: zeroing any "
            f"single token's values changes the [CLS] output by less than 1 − cos = {BARELY_MIXES:g}. Their rows "
            "below are shares of almost nothing (computed in float64; in float32 they would be rounding noise).",
            icon=":material/info:",
        )
    show("mixing.cls_row", figures.mixing_cls_figure(result, attention), key="mixing.cls_row")
    download_csv(lambda: cls_row_table(result), f"cls_row_{result.method}.csv", key="mixing.cls_row.csv")
    show("mixing.rollout", figures.mixing_rollout_figure(result, attention), key="mixing.rollout")
    if result.method != "attention":
        show("mixing.raw", figures.mixing_raw_figure(result), key="mixing.raw")
    block = slider(st, "Block", 1, t.num_layers, t.num_layers, key="mixing.block")
    show("mixing.block", figures.mixing_block_figure(result, attention, block), key="mixing.block_figure")
    download_csv(lambda: block_table(result, block), f"block{block}_{result.method}.csv", key="mixing.block.csv")

with st.expander("Every fast measure side by side"):
    # Each decomposed measure of a long text costs seconds (T x T x D floats per block), so a
    # long text waits for a button instead of running all of them on every visit.
    if t.seq_len > AUTO_COMPARE_TOKENS and not st.button("Compare the fast measures", key="mixing.compare_start"):
        st.caption(f"This sentence has {t.seq_len} tokens: press the button to compute every fast measure for it.")
    else:
        try:
            compared = [mixing_result(t, max_tokens, m) for m in FAST]
        except MixingError as exc:
            st.caption(plain(str(exc)))
        else:
            show("mixing.compare", figures.mixing_compare_figure(compared), key="mixing.compare")

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
how = radio(c2, "Method", ATTRIBUTION_METHODS, format_func=ATTRIBUTION_NAMES.get, horizontal=True, key="mixing.attr_method")
steps = number_input(c3, "Steps", 4, 256, 32, step=4, key="mixing.steps", disabled=how != "integrated_gradients",
                        help="Integrated-gradients path points (Gauss-Legendre).")  # fmt: skip
options = {"method": how, "target": target, "steps": int(steps)}
if target == "similarity":
    others = [x.text for x in traces if x.text != t.text]
    other = text_input(st, "Compare with", value=others[0] if others else "A cat was chasing a dog.", key="mixing.other")
    options["other"] = other
if t.seq_len <= AUTO_ATTRIBUTION_TOKENS or st.button("Compute the attributions", key="mixing.attr_start"):
    try:
        with st.spinner("Attributing…"):
            found = attributions(t, max_tokens, ("cls", "mean"), **options)
    except ValueError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
    else:
        gaps = "; ".join(
            f"{a.pooling}: value {a.value:.4f}, baseline {a.baseline_value:.4f}, completeness gap {a.completeness_gap:+.2e}"
            for a in found
        )
        show("attribution.tokens", figures.attribution_tokens_figure(found), key="mixing.attribution", note=gaps)
        download_csv(attribution_table(found), "attributions.csv", key="mixing.attribution.csv")
else:
    st.info(f"This sentence has {t.seq_len} tokens: press the button to attribute it.", icon=":material/play_arrow:")

# --- faithfulness scoreboard ------------------------------------------------------------------
st.subheader("Faithfulness scoreboard: which measure predicts removals?")
st.caption(
    "Each measure ranks the words; removing them in that order (replaced by the mask token) shows whether the "
    "words it names really matter for the pooled vector (its cosine to itself unperturbed) or for the model's "
    "classifier logit. Runs in the background."
)
current = jobs.get(SCOREBOARD_JOB)
running = current is not None and current.active
d1, d2, d3 = st.columns([3, 1, 1])
chosen = multiselect(d1, "Measures", MEASURES, default=list(MEASURES), format_func=MEASURE_NAMES.get,
                     key="mixing.measures", disabled=running)  # fmt: skip
pooling = selectbox(d2, "Pooling", ("cls", "mean"), key="mixing.pooling", disabled=running)
board_targets = ["self_similarity"] + (["classifier"] if encoder.classifier is not None else [])
board_target = selectbox(d3, "Target", board_targets, key="mixing.board_target", disabled=running,
                         format_func=lambda x: "cosine to itself" if x == "self_similarity" else "classifier logit",
                         help="What removing tokens is measured on: the pooled vector's cosine to its unperturbed "
                         "self, or the logit of the class the model's own head predicts.")  # fmt: skip
sample = traces[:SCOREBOARD_TEXTS]
params = (encoder.name, tuple(x.text for x in sample), tuple(chosen), pooling, board_target)
if len(traces) > SCOREBOARD_TEXTS:
    st.caption(f"The first {SCOREBOARD_TEXTS} sentences are used.")
if st.button("Run the scoreboard", key="mixing.score_start", type="primary", disabled=running or not chosen):
    st.session_state[SCOREBOARD_PARAMS] = params
    if start_scoreboard(encoder, sample, measures=tuple(chosen), pooling=pooling, target=board_target) is not None:
        st.rerun()
job = job_status(SCOREBOARD_JOB, "The scoreboard")
if job is not None and not job.active and job.result is not None:
    board = job.result
    if st.session_state.get(SCOREBOARD_PARAMS) != params:
        st.caption("The sentences or settings changed since this run: press **Run the scoreboard** to update.")
    st.info(plain(verdict(board)), icon=":material/lightbulb:")
    for note in board.notes:
        st.caption(plain(note))
    show("faithfulness.ranking", figures.faithfulness_ranking_figure(board), key="mixing.ranking")
    show("faithfulness.curves", figures.faithfulness_curves_figure(board), key="mixing.curves")
    download_csv(board.table, "faithfulness.csv", key="mixing.board.csv", label="Download the scores (CSV)")
    download_csv(board.curves, "deletion_curves.csv", key="mixing.curves.csv", label="Download the curves (CSV)")
elif job is None:
    st.info("Choose the measures and press **Run the scoreboard**.", icon=":material/play_arrow:")
