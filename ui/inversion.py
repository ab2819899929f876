"""Streamlit helpers of the "Recover the sentence?" page: paraphrase recall on scored pairs,
the bag-of-words table and the masked-LM head, each cached."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from clsviz import Corpus, Encoder, PooledVectors, figures, pool
from clsviz.benchmark import COMPARE_POOLINGS
from clsviz.experiments.inversion import MLMHead, bow_f1, load_mlm_head
from clsviz.experiments.neighbours import neighbour_agreement, pair_set, paraphrase_recall
from clsviz.knn import NeighbourIndex, build_index, neighbour_search
from ui.cache import cached
from ui.corpus import corpus_vectors
from ui.text import plain
from ui.widgets import download_csv, show

from .vectors import saved_mismatch
from .widgets import number_input, selectbox

POOLING_NAMES = {"cls": "[CLS]", "mean": "mean of all tokens"}


def pair_recall(encoder: Encoder, pairs: pd.DataFrame, name: str):
    """(recall table, PairSet) for the paraphrase pairs of ``pairs``; the sentences are embedded
    through the shared corpus-vector cache (the Similarity benchmark reuses the same vectors).
    None after a message when the pairs hold no usable paraphrase."""
    try:
        ps = pair_set(pairs)
    except ValueError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return None
    vectors = corpus_vectors(encoder, Corpus(texts=ps.texts, name=name), poolings=COMPARE_POOLINGS)
    if vectors is None:
        return None
    try:
        return paraphrase_recall(vectors, ps.pairs, ("cls", "mean")), ps
    except ValueError as exc:
        st.error(plain(f"recall@1 could not be computed: {exc}"), icon=":material/error:")
        return None


def bow_table(vectors: PooledVectors, vectors_key: str, vocab_size: int):
    """(table, vocabulary) of :func:`bow_f1` for cls and mean, cached per vectors and vocabulary
    size; None after a message when the corpus cannot be decoded."""
    key = (vectors_key, int(vocab_size))
    try:
        with st.spinner("Training one decoder per layer…"):
            return cached("bow_f1", key, lambda: bow_f1(vectors, ("cls", "mean"), vocab_size=int(vocab_size)))
    except ValueError as exc:
        st.error(plain(f"The decoder could not be trained: {exc}"), icon=":material/error:")
        return None


def cached_mlm_head(encoder: Encoder) -> MLMHead:
    """The encoder's masked-LM head (or the note saying there is none), loaded once per model."""
    try:
        with st.spinner("Looking for a masked-LM head in the checkpoint…"):
            return cached("mlm_head", (encoder.name,), lambda: load_mlm_head(encoder))
    except Exception as exc:  # a broken checkpoint must not reach the page as a traceback
        return MLMHead(None, f"The masked-LM head could not be loaded ({type(exc).__name__}: {exc}).")


def saved_sample(saved, n: int) -> PooledVectors:
    """The first ``n`` rows of saved vectors in memory (a shard folder reads only those), cached."""
    if isinstance(saved, PooledVectors):
        return saved if n >= len(saved.texts) else PooledVectors(
            vectors=saved.vectors[:n], poolings=saved.poolings, texts=saved.texts[:n], model_name=saved.model_name,
            truncated=saved.truncated[:n], labels={k: v[:n] for k, v in saved.labels.items()})

    def compute() -> PooledVectors:
        rows = np.arange(min(n, len(saved)))
        out = np.full((len(rows), saved.num_layers + 1, len(saved.poolings), saved.hidden_size), np.nan, np.float32)
        for p, pooling in enumerate(saved.poolings):
            for layer in saved.layers:
                out[:, layer, p] = saved.get(pooling, layer, rows)
        return PooledVectors(vectors=out, poolings=saved.poolings, texts=saved.texts[: len(rows)],
                             model_name=saved.model_name, truncated=saved.truncated[: len(rows)],
                             labels={k: v[: len(rows)] for k, v in saved.labels.items()})

    return cached("inversion.saved_sample", (saved.content_key, int(n)), compute)


def _index(saved, pooling: str, layer: int) -> NeighbourIndex:
    key = getattr(saved, "content_key", None) or f"{saved.model_name}|{id(saved)}"
    return cached("knn.index", (key, pooling, int(layer)), lambda: build_index(saved, pooling, layer))


def saved_neighbours(saved, trace, layer: int, encoder) -> None:
    """Nearest saved sentences of the typed sentence by two poolings side by side (default [CLS]
    and mean), from faiss indexes built once per (vectors, layer, pooling)."""
    mismatch = saved_mismatch(saved, encoder)
    if mismatch:
        st.warning(plain(f"{mismatch} Select the model that made them in the sidebar to search them with your "
                         "sentence (another model reads it differently)."), icon=":material/warning:")
        return
    layers = list(getattr(saved, "layers", range(saved.num_layers + 1)))
    if layer not in layers:
        st.info(f"Layer {layer} was not saved; saved layers: {', '.join(map(str, layers))}.", icon=":material/info:")
        return
    options = list(saved.poolings)
    c_left, c_right, c_k = st.columns([2, 2, 1])
    left = selectbox(c_left, "Left", options, index=options.index("cls") if "cls" in options else 0,
                            key="inversion.nn_left")
    right = selectbox(c_right, "Right", options, index=options.index("mean") if "mean" in options else 0,
                              key="inversion.nn_right")
    k = int(number_input(c_k, "Neighbours", 1, 50, 5, key="inversion.nn_k"))

    trace_queries = {p: pool(trace, p, layer) for p in dict.fromkeys((left, right))}
    try:
        with st.spinner(f"Building the neighbour index of {len(saved):,} vectors (once per layer and pooling)…"):
            indexes = {p: _index(saved, p, layer) for p in trace_queries}
        table = neighbour_search(indexes, trace_queries, saved.texts, k=k, exclude_text=trace.text, layer=layer)
    except ValueError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return
    show("inversion.neighbours", figures.neighbours_figure(table, title=f"Nearest saved sentences at layer {layer}"))
    for col, p in zip(st.columns(2), dict.fromkeys((left, right))):
        with col:
            st.markdown(f"**{plain(POOLING_NAMES.get(p, p))}**")
            st.dataframe(table[table["pooling"] == p][["rank", "text", "cosine"]], hide_index=True, width="stretch")
    if left != right:
        st.caption(plain(f"{left} and {right} agree on {neighbour_agreement(table, left, right)} of their top {k}."))
    download_csv(table, f"neighbours_layer{layer}.csv", key="inversion.saved_neighbours.csv")
