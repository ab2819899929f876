"""Embeddings: do sentences with the same label sit together when read through [CLS], through
the mean of the tokens, or through another token — layer by layer?"""

import streamlit as st

from clsviz import figures
from clsviz.figures import pooling_title
from clsviz.projection import MIN_UMAP_SAMPLES, coordinates_table
from clsviz.separation import label_baselines, score_text, scores_at
from ui.corpus import corpus_vectors
from ui.embeddings import (
    NAMED_EXTRA,
    TOKEN_K,
    corpus_poolings,
    corpus_source,
    fitted_projection,
    label_scores,
    prefetch_projections,
    projection_key,
    seen_before,
    start_umap_warmup,
    trajectory,
    typed_vectors,
    warmup_running,
)
from ui.state import current_encoder, current_sentences, current_traces, page_setup
from ui.text import plain
from ui.vectors import saved_mismatch
from ui.widgets import checkbox, download_csv, number_input, radio, selectbox, sentence_picker, show, slider

SEED = 42
NO_LABEL = "(no colour)"
MAX_SCORED_CLASSES = 50

page_setup("Embeddings")
start_umap_warmup()
st.title("Embeddings: [CLS] or the mean, layer by layer")
st.caption(
    "The same corpus read three ways — the [CLS] vector, the mean of all tokens, and a pooling you pick — "
    "projected to 2-D at any layer. Do sentences with the same label sit together, and where do yours land?"
)

encoder = current_encoder()
info = encoder.info
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
if len(corpus) < MIN_UMAP_SAMPLES:
    st.warning(
        f"The corpus has {len(corpus)} text(s); a projection needs at least {MIN_UMAP_SAMPLES}. "
        "Upload more sentences or pick the demo corpus.",
        icon=":material/warning:",
    )
    st.stop()

# -- controls --------------------------------------------------------------------------------
c_layer, c_third, c_label, c_method = st.columns([3, 2, 2, 2])
with c_layer:
    top = saved.num_layers if saved is not None else info.num_layers
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
    if saved is not None:
        # Saved vectors are shown as they are: only the poolings the file holds are offered.
        offered = [s for s in saved.poolings if s not in ("cls", "mean")] or ["mean"]
    else:
        offered = [s for s in NAMED_EXTRA if s != "pooler" or info.has_pooler] + [TOKEN_K]
    third = selectbox(st,
        "Third panel",
        offered,
        format_func=lambda s: "token K (pick K)" if s == TOKEN_K else pooling_title(s),
        key="embeddings.third" if saved is None else "embeddings.third_saved",
        help="How the third panel reads one vector out of the sentence. 'pooler' appears only for models "
        "with a pooler head." if saved is None else "The poolings saved in the vectors file besides [CLS] and "
        "the mean (embed with more --poolings to see others).",
    )
    if third == TOKEN_K:
        k = number_input(st,
            "K (token position; 0 is [CLS])", min_value=0, max_value=info.max_length - 1, value=1,
            key="embeddings.k", help="Texts shorter than K+1 tokens use their last token. Re-embeds the corpus.",
        )
        third = f"token:{int(k)}"
with c_label:
    label_names = list(corpus.label_names)
    label_name = selectbox(st,
        "Colour by", label_names + [NO_LABEL], key="embeddings.label",
        help="A label column of the corpus; the scores below measure how well it separates.",
    )
    labels = corpus.labels.get(label_name) if label_name != NO_LABEL else None
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

vectors = saved if saved is not None else corpus_vectors(encoder, corpus, corpus_poolings(encoder, corpus, third))
if vectors is None:
    st.stop()
if third not in vectors.poolings:
    extra = corpus_vectors(encoder, corpus, (third,))
    if extra is None:
        st.stop()
else:
    extra = vectors


def source(pooling: str):
    return extra if pooling == third and third not in vectors.poolings else vectors


# The person's own sentences (from the sidebar), placed into every projection.
# Not with vectors from another model: its layers and space are not the selected model's.
traces = current_traces() if current_sentences() and not mismatch else []
typed_texts = [t.text for t in traces]

subtitles = {}  # per panel: its label scores, once they are measured (below)


def draw(method_name: str) -> tuple:
    """Fit (cached) and draw the three panels; returns the figure, coords and typed coords."""
    coords, typed, fitted = {}, {}, len(corpus)
    for s in poolings:
        p = fitted_projection(source(s), corpus, layer, s, method_name, seed)
        coords[s] = p.embedding_
        fitted = len(getattr(p, "fit_rows_", coords[s]))
        if traces:
            typed[s] = p.transform(typed_vectors(traces, s, layer))
    fig = figures.embedding_panels(
        {pooling_title(s): coords[s] for s in poolings},
        corpus.texts,
        labels=labels,
        label_name=label_name,
        typed={pooling_title(s): typed[s] for s in typed},
        typed_texts=typed_texts,
        subtitles=subtitles,
        title=f"{method_name.upper()} of {len(corpus):,} texts after layer {layer}"
        + (f" (fitted on a sample of {fitted:,}; the rest placed with transform)" if fitted < len(corpus) else ""),
    )
    return fig, coords, typed


st.subheader(f"{'Three' if len(poolings) == 3 else 'Two'} poolings of the same {len(corpus):,} sentences")
status = st.empty()
panel = st.empty()
downloads = st.empty()

try:
    fig, coords, typed = draw("pca")
except ValueError as exc:
    st.error(plain(f"The projection failed: {exc}"), icon=":material/error:")
    st.stop()
keys = [projection_key(source(s), corpus, layer, s, "umap", seed, 15, 0.1) for s in poolings]
want_umap = method == "UMAP"
if not (want_umap and seen_before(keys)):
    # Drawn as soon as the vectors exist: the label scores and UMAP follow while it is on screen.
    with panel.container():
        show("embeddings.panels", fig, key="embeddings.preview",
             note="PCA preview: UMAP replaces it when ready." if want_umap else None)
    if want_umap:  # the other panels' UMAP fits start in the job worker while this page goes on
        prefetch_projections(source, corpus, layer, poolings, "umap", seed)

# -- scores in the original space ------------------------------------------------------------
table, score_error = None, None
if labels is not None:
    table, score_error = label_scores({s: source(s) for s in poolings}, corpus, label_name, MAX_SCORED_CLASSES)
if table is not None:
    for s in poolings:
        sc = scores_at(table, s, layer)
        subtitles[pooling_title(s)] = (
            f"kNN acc {score_text(sc['knn_accuracy'], '.2f')} · silhouette {score_text(sc['silhouette'], '.2f')}"
        )
    if not want_umap:  # the PCA picture again, now with each panel's scores under its title
        fig, coords, typed = draw("pca")
        with panel.container():
            show("embeddings.panels", fig)

# -- numbers beside the pictures -------------------------------------------------------------
st.markdown("**How well the label separates in the original space** (before any projection)")
if labels is None:
    st.info("Pick a label column under *Colour by* to score the three poolings.", icon=":material/info:")
elif score_error:
    st.warning(plain(score_error), icon=":material/warning:")
else:
    for col, s in zip(st.columns(3), poolings):
        sc = scores_at(table, s, layer)
        col.metric(f"{pooling_title(s)} · kNN accuracy", score_text(sc["knn_accuracy"]), border=True,
                   help="5-fold cross-validated accuracy of a 5-nearest-neighbour classifier (cosine). Undefined "
                   "when every sentence has the same vector here (e.g. [CLS] at the embedding layer).")
        col.metric(f"{pooling_title(s)} · silhouette", score_text(sc["silhouette"]), border=True,
                   help="-1..1: how much closer a sentence is to its own label group than to the nearest other "
                   "group (cosine). Near 0: groups overlap. Undefined when every sentence has the same vector here.")
    _, majority, _ = label_baselines(labels)
    show("embeddings.separation", figures.separation_figure(table, layer=layer, chance=majority))
    download_csv(table.assign(label_column=label_name), "clsviz-embedding-scores.csv", key="embeddings.scores_csv",
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
        paths, backgrounds = {}, {}
        for s in poolings:
            path, background, background_texts = trajectory(source(s), corpus, chosen, s, t_method.lower(), seed)
            paths[pooling_title(s)] = path
            backgrounds[pooling_title(s)] = background
        show("embeddings.trajectory",
             figures.trajectory_figure(paths, backgrounds, text=chosen.text, background_texts=background_texts))
    except Exception as exc:  # too few points, or a failure inside umap-learn: say so, keep the page
        st.warning(plain(f"The trajectory could not be drawn ({type(exc).__name__}: {exc})."), icon=":material/warning:")

# -- UMAP last, so the preview and the numbers show while it runs ------------------------------
shown_method = "pca"
if want_umap:
    note = " The first UMAP in a fresh app compiles its code (about 30 s)." if warmup_running() else ""
    try:
        with status.container(), st.spinner(f"Fitting UMAP to {len(corpus):,} points × 3 poolings…{note}"):
            fig, coords, typed = draw("umap")
        shown_method = "umap"
        with panel.container():
            show("embeddings.panels", fig)
    except Exception as exc:  # a failure inside umap-learn must not reach the page as a traceback
        status.warning(plain(f"UMAP failed ({type(exc).__name__}: {exc}); showing PCA."), icon=":material/warning:")
        fig, coords, typed = draw("pca")
        with panel.container():
            show("embeddings.panels", fig, key="embeddings.fallback", note="UMAP failed, so this is the PCA picture.")
with downloads.container():
    download_csv(
        coordinates_table(
            corpus.texts, labels, label_name if labels is not None else "", coords, typed_texts, typed, layer, shown_method
        ),
        f"clsviz-embedding-{shown_method}-layer{layer}.csv",
        key="embeddings.coords_csv",
        label="Download the 2-D coordinates (CSV)",
    )

if vectors.truncated.any():
    st.caption(f"Note: {int(vectors.truncated.sum())} corpus text(s) were longer than the model's limit and were cut.")
