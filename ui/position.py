"""Streamlit helpers of the "Why first?" page: cached per-sentence runs and the corpus probe,
and a small shared store for results that are computed with a progress bar."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import streamlit as st

from clsviz.corpus import Corpus
from clsviz.experiments.position import PositionResult, position_experiment, position_probe
from ui.corpus import plain
from ui.state import cached_encoder

MAX_RESULTS = 16


@st.cache_resource(show_spinner=False)
def _store() -> tuple[OrderedDict, threading.Lock]:
    # Shared by every session: results are immutable tables. st.cache_data cannot hold these
    # computations because they update a progress bar created outside them.
    return OrderedDict(), threading.Lock()


def remembered(key: str, compute: Callable[[], object]) -> object:
    """``compute()`` once per ``key`` (a string naming every input), kept for every session."""
    store, lock = _store()
    with lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
    value = compute()
    with lock:
        store[key] = value
        while len(store) > MAX_RESULTS:
            store.popitem(last=False)
    return value


def has_result(key: str) -> bool:
    store, lock = _store()
    with lock:
        return key in store


@st.cache_resource(show_spinner=False, max_entries=64)
def _experiment(model_name: str, text: str, shift: int, replacement: str, max_tokens: int) -> PositionResult:
    return position_experiment(cached_encoder(model_name), text, shift=shift, replacement=replacement, max_length=max_tokens)


def cached_position_experiment(encoder, text: str, shift: int, replacement: str, max_tokens: int) -> PositionResult:
    """Every variant of one sentence (seven small eager runs), cached per inputs."""
    return _experiment(encoder.name, text, int(shift), str(replacement), int(max_tokens))


def probe_key(encoder, corpus: Corpus, label: str, sample: int, variants, folds: int, shift: int, replacement: str) -> str:
    return "|".join(
        ("position_probe", encoder.name, corpus.content_hash, label, str(sample), ",".join(variants), str(folds),
         str(shift), replacement)
    )


def corpus_probe(encoder, corpus: Corpus, label: str, sample: int, variants, folds: int, shift: int, replacement: str):
    """(table, notes) of :func:`position_probe` on the first ``sample`` labelled texts, with a
    progress bar; None after an error message when the labels cannot be probed."""
    key = probe_key(encoder, corpus, label, sample, variants, folds, shift, replacement)
    labels = corpus.labels[label]
    rows = [i for i, v in enumerate(labels) if str(v).strip()][:sample]
    texts = [corpus.texts[i] for i in rows]
    values = [labels[i] for i in rows]

    def compute():
        bar = st.progress(0.0, text="Reading [CLS] from its moved positions…")
        try:
            return position_probe(
                encoder,
                texts,
                values,
                variants=variants,
                folds=folds,
                shift=shift,
                replacement=replacement,
                label_name=label,
                progress=lambda f, msg: bar.progress(min(1.0, f), text=msg),
            )
        finally:
            bar.empty()

    try:
        return remembered(key, compute)
    except ValueError as exc:
        st.error(plain(f"The probe could not run: {exc}"), icon=":material/error:")
        return None
