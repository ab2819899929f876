"""Embeddings: do sentences with the same label sit together when read through [CLS], through
the mean of the tokens, or through another token — layer by layer?"""

import streamlit as st

from ui import embeddings, runner
from ui.embeddings import big_enough, corpus_source, third_panel
from ui.state import current_encoder, current_sentences, current_traces, page_setup
from ui.text import plain
from ui.vectors import saved_mismatch
from ui.widgets import checkbox, radio, selectbox, sentence_picker, slider

SEED = 42
NO_LABEL = "(no colour)"

page_setup("Embeddings", needs_summary="The Embeddings page ([CLS] beside the other poolings)")
embeddings.start_umap_warmup()
st.title("Embeddings: [CLS] or the mean, layer by layer")
st.caption(
    "The same corpus read three ways — the [CLS] vector, the mean of all tokens, and a pooling you pick — "
    "projected to 2-D at any layer. Do sentences with the same label sit together, and where do yours land?"
)

encoder = current_encoder()
picked = corpus_source("embeddings.corpus")
if picked is None:
    st.stop()
corpus, saved = picked
mismatch = saved_mismatch(saved, encoder)  # why the typed sentences cannot join these vectors, or None
if saved is not None:
    missing = [s for s in ("cls", "mean") if s not in saved.poolings]
    if missing:
        st.error(
            plain(
                f"This vectors file holds {', '.join(saved.poolings)}; the [CLS] and mean panels need "
                f"{' and '.join(missing)} too. Save it again with: clsviz embed corpus.csv --poolings cls,mean,max"
            ),
            icon=":material/error:",
        )
        st.stop()
    if mismatch:
        st.warning(
            plain(
                f"{mismatch} The corpus is shown from the file; your typed sentences are not placed among them "
                "(another model reads them differently). Select the file's model in the sidebar to place them."
            ),
            icon=":material/warning:",
        )
if not big_enough(corpus):
    st.stop()

# -- controls --------------------------------------------------------------------------------
c_layer, c_third, c_label, c_method = st.columns([3, 2, 2, 2])
with c_layer:
    top = saved.num_layers if saved is not None else encoder.info.num_layers
    kept = list(getattr(saved, "layers", range(top + 1)))
    if kept == list(range(top + 1)):
        layer = slider(st,
            "Layer", 0, top, top, key="embeddings.layer",
            help="0 = the embedding layer (before any attention), then the output of each transformer layer.",
        )
    else:  # a shard folder that kept some layers only
        layer = st.select_slider("Layer", kept, kept[-1], key="embeddings.layer_saved",
                                 help="The layers saved in the shard folder (0 = the embedding layer).")
with c_third:
    third = third_panel(encoder, saved)
with c_label:
    label_name = selectbox(st,
        "Colour by", list(corpus.label_names) + [NO_LABEL], key="embeddings.label",
        help="A label column of the corpus; the scores below measure how well it separates.",
    )
    colour = label_name if label_name != NO_LABEL else None
with c_method:
    method = radio(st,
        "Projection", ("UMAP", "PCA"), key="embeddings.method", horizontal=True,
        help="UMAP (cosine) keeps neighbourhoods; PCA keeps the largest directions and is instant. "
        "PCA is shown first as a preview while UMAP runs.",
    )
    fixed = checkbox(st,
        "Fixed seed", value=True, key="embeddings.seed",
        help="Same picture every time (UMAP then runs on one core). Off: a new layout per fit, a bit faster.",
    )
seed = SEED if fixed else None
poolings = tuple(dict.fromkeys(("cls", "mean", third)))

sources = embeddings.pooled_sources(encoder, corpus, saved, poolings)  # pooling -> the vectors holding it
if sources is None:
    st.stop()
# The person's own sentences (from the sidebar), placed into every projection.
# Not with vectors from another model: its layers and space are not the selected model's.
traces = current_traces() if current_sentences() and not mismatch else []

st.subheader(f"{'Three' if len(poolings) == 3 else 'Two'} poolings of the same {len(corpus):,} sentences")
status = st.empty()
panel = st.empty()
downloads = st.empty()

try:
    preview = embeddings.projections(corpus, sources, layer, "pca", seed)
except ValueError as exc:
    st.error(plain(f"The projection failed: {exc}"), icon=":material/error:")
    st.stop()
shown = embeddings.panels(preview, traces)
want_umap = method == "UMAP"
if not (want_umap and embeddings.fitted(corpus, sources, layer, "umap", seed)):
    # Drawn as soon as the vectors exist: the label scores and UMAP follow while it is on screen.
    with panel.container():
        runner.draw(shown, "embeddings.panels", chart_key="embeddings.preview",
                    note="PCA preview: UMAP replaces it when ready." if want_umap else None, colour=colour)
    if want_umap:  # the other panels' UMAP fits start in the job worker while this page goes on
        embeddings.prefetch(corpus, sources, layer, "umap", seed)

# -- scores in the original space ------------------------------------------------------------
scores, score_error = None, None
if colour is not None:
    scores, score_error = embeddings.label_scores(corpus, sources, colour)
if scores is not None:
    shown = embeddings.panels(preview, traces, scores)
    if not want_umap:  # the PCA picture again, now with each panel's scores under its title
        with panel.container():
            runner.draw(shown, "embeddings.panels", colour=colour)

# -- numbers beside the pictures -------------------------------------------------------------
st.markdown("**How well the label separates in the original space** (before any projection)")
if colour is None:
    st.info("Pick a label column under *Colour by* to score the three poolings.", icon=":material/info:")
elif score_error:
    st.warning(plain(score_error), icon=":material/warning:")
else:
    embeddings.score_metrics(scores, poolings, layer)
    runner.draw(scores, "embeddings.separation", layer=layer)
    runner.download_table(scores, "clsviz-embedding-scores.csv", csv_key="embeddings.scores_csv",
                          label="Download the scores (CSV)")

# -- trajectory ------------------------------------------------------------------------------
st.subheader("One sentence across layers")
if mismatch:
    st.info(plain(f"{mismatch} Select the model that made them in the sidebar to follow your sentences among them."),
            icon=":material/info:")
elif not traces:
    st.info("Type a sentence in the sidebar to follow it through the layers.", icon=":material/edit:")
else:
    t_left, t_right = st.columns([3, 1])
    with t_left:
        chosen = sentence_picker(traces, key="embeddings.trajectory_sentence")
    with t_right:
        t_method = radio(st,
            "Trajectory projection", ("PCA", "UMAP"), key="embeddings.trajectory_method", horizontal=True,
            help="One projection is fit on the corpus at every layer together, so positions at different "
            "layers can be compared. PCA keeps the large drift between layers visible.",
        )
    try:
        runner.draw(embeddings.trajectory(corpus, sources, chosen, t_method.lower(), seed), "embeddings.trajectory")
    except Exception as exc:  # too few points, or a failure inside umap-learn: say so, keep the page
        st.warning(plain(f"The trajectory could not be drawn ({type(exc).__name__}: {exc})."), icon=":material/warning:")

# -- UMAP last, so the preview and the numbers show while it runs ------------------------------
if want_umap:
    note = " The first UMAP in a fresh app compiles its code (about 30 s)." if embeddings.warmup_running() else ""
    try:
        with status.container(), st.spinner(f"Fitting UMAP to {len(corpus):,} points × 3 poolings…{note}"):
            shown = embeddings.panels(embeddings.projections(corpus, sources, layer, "umap", seed), traces, scores)
            runner.figure(shown, "embeddings.panels", colour=colour)
        with panel.container():
            runner.draw(shown, "embeddings.panels", colour=colour)
    except Exception as exc:  # a failure inside umap-learn must not reach the page as a traceback
        status.warning(plain(f"UMAP failed ({type(exc).__name__}: {exc}); showing PCA."), icon=":material/warning:")
        shown = embeddings.panels(preview, traces, scores)
        with panel.container():
            runner.draw(shown, "embeddings.panels", chart_key="embeddings.fallback",
                        note="UMAP failed, so this is the PCA picture.", colour=colour)
with downloads.container():
    runner.download(shown, "embeddings.panels", f"clsviz-embedding-{shown.method}-layer{layer}.csv",
                    csv_key="embeddings.coords_csv", label="Download the 2-D coordinates (CSV)", colour=colour)

truncated = int(sources["cls"].truncated.sum())
if truncated:
    st.caption(f"Note: {truncated} corpus text(s) were longer than the model's limit and were cut.")
