"""Why first? Move, drop or replace [CLS], shift the positions, and compare."""

import streamlit as st

from ui import runner
from ui.corpus import corpus_picker
from ui.similarity import cached_baseline
from ui.state import current_encoder, current_traces, page_setup
from ui.text import plain
from ui.widgets import multiselect, number_input, selectbox, sentence_picker, text_input

MECHANISM = (
    "**Why would position 0 matter at all?** In every layer each token attends to every other token, in "
    "both directions: no slot is upstream of another, so the first slot sees exactly what the last one "
    "sees. Only two things make position 0 special: the learned embedding of the [CLS] token and the "
    "learned embedding of position 0 (plus, in BERT, the next-sentence objective trained on that slot "
    "through the pooler). The variants below change one of them at a time: moving [CLS] keeps the token "
    "and changes its position; [MASK] or a word keep position 0 and change the token; shifting the "
    "position ids keeps every token and changes every position."
)
DEFAULT_PROBE = ("standard", "cls_end", "cls_middle", "mask")

page_setup("Why first?", needs_summary="Why first? (moving [CLS])")
st.title("Why is [CLS] the first token?")
st.caption(
    "Would [CLS] work as well at the end, in the middle, or not at all? Move it, replace it, shift the "
    "positions, and measure what changes — on your sentence, then on a corpus."
)
st.info(MECHANISM, icon=":material/swap_horiz:")

traces = current_traces()
if not traces:
    st.stop()
encoder = current_encoder()

c_sentence, c_shift, c_word = st.columns([3, 1, 1])
with c_sentence:
    t = sentence_picker(traces, key="why_first.sentence")
with c_shift:
    shift = number_input(st,
        "Shift positions by k",
        min_value=1,
        max_value=max(1, encoder.info.max_tokens - 2),
        value=min(20, max(1, encoder.info.max_tokens - 2)),
        key="why_first.shift",
        help="For the 'position ids shifted' variant: every token keeps its place but gets position i + k.",
    )
with c_word:
    replacement = text_input(st,
        "Word replacing [CLS]",
        value="the",
        max_chars=30,
        key="why_first.word",
        help="For the 'replaced by a word' variant: this word (its first token) sits at position 0 instead of [CLS].",
    )

try:
    result = runner.run("position", encoder, t, cached_baseline(encoder), shift=int(shift), replacement=replacement)
except (ValueError, runner.NotApplicable) as exc:
    st.error(plain(f"The variants could not be run: {exc}"), icon=":material/error:")
    st.stop()

for note in result.notes:
    st.warning(plain(note), icon=":material/info:")

st.subheader("One sentence, seven inputs")
runner.draw(result, "position.tokens", chart_key="why_first.tokens")
with st.expander("What each variant changes"):
    for _, label, help_text in result.variants():
        st.markdown(f"- **{label}**: {help_text}")

runner.draw(result, "position.lines", chart_key="why_first.lines")
for sentence in result.summary():
    st.markdown(f"**For {plain(encoder.name)}:** {plain(sentence)}")
runner.download_table(result, "position_variants.csv", csv_key="why_first.csv")

# -- corpus ------------------------------------------------------------------------------------
st.divider()
st.subheader("On a corpus: can a probe read the label from a moved [CLS]?")
st.caption(
    "Each text is rebuilt as the chosen variants, the vector is read from the [CLS] slot wherever it sits, "
    "and a logistic-regression probe is cross-validated per layer. Same probe as the 'Could any token do?' page."
)
corpus = corpus_picker("why_first.corpus")
if corpus is None:
    st.stop()
if not corpus.labels:
    st.info(
        "This corpus has no label column, so there is nothing for a probe to predict. Pick the demo corpus "
        "or upload a CSV with a label column.",
        icon=":material/label_off:",
    )
    st.stop()

low, high = min(10, len(corpus)), len(corpus)
c_label, c_sample, c_folds = st.columns([2, 2, 1])
with c_label:
    label = selectbox(st, "Label to predict", corpus.label_names, key="why_first.label")
with c_sample:
    # The number belongs to this corpus: a new corpus starts again from its own default.
    sample = number_input(st,
        "Texts to use",
        min_value=low,
        max_value=high,
        value=min(300, high),
        step=50,
        key=f"why_first.sample.{corpus.content_hash[:16]}",
        help="The first texts (with a label) of the corpus; 300 by default to keep the run to a minute or two. "
        "Each variant re-embeds them, so more texts take longer.",
    )
with c_folds:
    folds = number_input(st, "Folds", min_value=2, max_value=10, value=5, key="why_first.folds")
variants = multiselect(st,
    "Variants",
    tuple(result.labels),
    default=list(DEFAULT_PROBE),
    format_func=result.labels.get,
    key="why_first.variants",
)
if not variants:
    st.info("Pick at least one variant.", icon=":material/checklist:")
    st.stop()

params = dict(label=label, texts=int(sample), variants=",".join(dict.fromkeys(variants)), folds=int(folds),
              shift=int(shift), replacement=replacement)  # fmt: skip
ran_key = (encoder.name, corpus.content_hash, *sorted(params.items()))
ran = st.session_state.get("why_first.ran") == ran_key or runner.stored("position.probe", encoder, corpus, **params) is not None
if st.button("Run the corpus probe", key="why_first.run", type="primary", disabled=ran):
    st.session_state["why_first.ran"] = ran_key
    ran = True
if not ran:
    st.caption(
        f"About {len(variants)} × {int(sample)} short forward passes and {len(variants) * (encoder.info.num_layers + 1)} "
        "cross-validated probes; a minute or two on a laptop CPU for the defaults."
    )
    st.stop()

try:
    probe = runner.run("position.probe", encoder, corpus, wait="Reading [CLS] from its moved positions", **params)
except (ValueError, runner.NotApplicable) as exc:
    st.error(plain(f"The probe could not run: {exc}"), icon=":material/error:")
    st.stop()
for note in probe.notes:
    st.warning(plain(note), icon=":material/info:")
if probe.table().empty:
    st.stop()
runner.draw(probe, "position.probe", chart_key="why_first.probe")
for sentence in probe.summary():
    st.markdown(f"**For {plain(encoder.name)}:** {plain(sentence)}")
runner.download_table(probe, "position_probe.csv", csv_key="why_first.probe.csv")
