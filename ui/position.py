"""Streamlit helpers of the "Why first?" page: cached per-sentence runs and the corpus probe,
and :func:`remembered` for results that are computed with a progress bar."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from clsviz import Corpus
from clsviz.experiments.moved_cls import position_probe
from clsviz.experiments.position import PositionResult, position_experiment
from ui.cache import cached, shared_cache
from ui.text import plain


def remembered(key: str, compute: Callable[[], object]) -> object:
    """``compute()`` once per ``key`` (a string naming every input), kept for every session in the
    shared cache. Unlike Streamlit's caches, ``compute`` may draw a progress bar."""
    return cached("remembered", (key,), compute)


def has_result(key: str) -> bool:
    """True when :func:`remembered` holds a result for ``key`` now."""
    return ("remembered", key) in shared_cache()


def cached_position_experiment(encoder, text: str, shift: int, replacement: str, max_tokens: int) -> PositionResult:
    """Every variant of one sentence (seven small eager runs), cached per inputs."""
    key = (encoder.name, text, int(shift), str(replacement), int(max_tokens))
    return cached("position", key, lambda: position_experiment(
        encoder, text, shift=int(shift), replacement=str(replacement), max_length=int(max_tokens)))


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
