"""Streamlit helpers of the "Recover the sentence?" page: paraphrase recall on scored pairs,
the bag-of-words table and the masked-LM head, each cached."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clsviz import Corpus, Encoder, PooledVectors
from clsviz.benchmark import COMPARE_POOLINGS
from clsviz.experiments.inversion import MLMHead, bow_f1, load_mlm_head
from clsviz.experiments.neighbours import pair_set, paraphrase_recall
from ui.cache import cached
from ui.corpus import corpus_vectors, plain
from ui.position import remembered


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
    key = f"bow_f1|{vectors_key}|{int(vocab_size)}"
    try:
        with st.spinner("Training one decoder per layer…"):
            return remembered(key, lambda: bow_f1(vectors, ("cls", "mean"), vocab_size=int(vocab_size)))
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
