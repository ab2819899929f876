"""Corpus widgets: pick the demo corpus or an upload (:func:`corpus_picker`), and embed it
once per (model, corpus, poolings) with a progress bar (:func:`corpus_vectors`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import streamlit as st

from clsviz import Corpus, Encoder, PooledVectors, demo_corpus, extract
from clsviz.readers import CorpusError, limits_from_env, load_corpus

from . import jobs
from .cache import cached
from .text import plain
from .widgets import multiselect, radio, selectbox

__all__ = ["DEMO", "PREVIEW_ROWS", "UPLOAD", "corpus_picker", "corpus_vectors", "show_messages", "vectors_key"]

DEMO = "Demo corpus"
UPLOAD = "Upload a file"
PREVIEW_ROWS = 200


def _load(
    data: bytes,
    filename: str,
    text_column: str | None,
    label_columns: tuple[str, ...] | None,
    max_rows: int,
    max_bytes: int,
    max_chars: int,
) -> Corpus:
    """The corpus in an upload, read once per (content, file name, columns, limits)."""
    digest = hashlib.sha256(data).hexdigest()
    key = (digest, filename, text_column, label_columns, max_rows, max_bytes, max_chars)
    return cached("corpus.upload", key, lambda: load_corpus(
        data, filename, text_column=text_column, max_rows=max_rows, max_bytes=max_bytes,
        max_chars=max_chars, label_columns=label_columns,
    ))


def show_messages(corpus: Corpus) -> None:
    """The notes made while loading: limits and decoding as warnings, the rest as info."""
    for message in corpus.messages:
        if "raise" in message or "UTF-8" in message:
            st.warning(plain(message), icon=":material/warning:")
        else:
            st.info(plain(message), icon=":material/info:")


def _describe(corpus: Corpus) -> str:
    labels = ", ".join(corpus.label_names) if corpus.labels else "none"
    source = f" · text column: {corpus.text_column}" if corpus.text_column and corpus.name != "demo corpus" else ""
    return plain(f"{corpus.name}: {len(corpus):,} texts{source} · label columns: {labels}")


def _upload(key: str) -> Corpus | None:
    file = st.file_uploader(
        "Corpus file (CSV, TSV, TXT, Parquet or JSON Lines)",
        type=["csv", "tsv", "txt", "parquet", "jsonl", "ndjson", "json"],
        key=f"{key}.file",
        help="CSV/TSV: a header line, one column of sentences and optional label columns. "
        "TXT: one sentence per line. UTF-8, UTF-16 and Latin-1 files are read. Parquet and JSON Lines "
        "(one object per line): a column of sentences and optional label columns.",
    )
    if file is None:
        st.info(
            "Upload a CSV (a column of sentences, optional label columns) or a TXT file "
            "(one sentence per line), or pick the demo corpus.",
            icon=":material/upload_file:",
        )
        return None
    data = file.getvalue()
    limits = limits_from_env()
    digest = hashlib.sha256(data).hexdigest()[:12]
    try:
        corpus = _load(data, file.name, None, None, **limits)
        if corpus.columns:
            columns = list(corpus.columns)
            text_column = selectbox(st,
                "Text column",
                columns,
                index=columns.index(corpus.text_column),
                key=f"{key}.text_column.{digest}",
                help="Detected: the mostly non-numeric column with the longest values.",
            )
            if text_column != corpus.text_column:
                corpus = _load(data, file.name, text_column, None, **limits)
            chosen = multiselect(st,
                "Label columns",
                [c for c in columns if c != text_column],
                default=list(corpus.label_names),
                key=f"{key}.labels.{digest}.{columns.index(text_column)}",
                help="Columns to colour and score by. Detected: columns with few distinct values.",
            )
            if list(chosen) != list(corpus.label_names):
                corpus = _load(data, file.name, text_column, tuple(chosen), **limits)
    except CorpusError as exc:
        st.error(plain(str(exc)), icon=":material/error:")
        return None
    except Exception as exc:  # an unexpected failure must not reach the page as a traceback
        st.error(plain(f"'{file.name}' could not be read ({type(exc).__name__}: {exc})."), icon=":material/error:")
        return None
    return corpus


def corpus_picker(key: str, source: str | None = None) -> Corpus | None:
    """The demo corpus or an uploaded CSV / TSV / TXT (text and label columns chosen here).

    ``source`` (DEMO or UPLOAD) skips the choice, for a page that offers more sources itself.
    Shows the corpus's notes; returns None, after a message, when there is nothing usable."""
    source = source or radio(st,
        "Corpus",
        (DEMO, UPLOAD),
        key=f"{key}.source",
        horizontal=True,
        help="The demo corpus: sentences written for clsviz, labelled by topic, sentiment (with "
        "negations and contrasts), form (question / statement / command) and word order (pairs "
        "such as 'the dog chased the boy' / 'the boy chased the dog'). Or upload your own CSV / TXT.",
    )
    if source == DEMO:
        try:
            corpus = demo_corpus()
        except Exception as exc:  # a broken installation: say so instead of a traceback
            st.error(plain(f"The demo corpus could not be read ({type(exc).__name__}: {exc})."))
            return None
    else:
        corpus = _upload(key)
        if corpus is None:
            return None
    show_messages(corpus)
    st.caption(_describe(corpus))
    with st.expander("Preview the corpus"):
        # st.dataframe shows cells as plain text, so HTML in a file stays text.
        st.dataframe(corpus.to_frame().head(PREVIEW_ROWS), hide_index=True, width="stretch")
        if len(corpus) > PREVIEW_ROWS:
            st.caption(f"The first {PREVIEW_ROWS} of {len(corpus):,} rows.")
    return corpus


def vectors_key(
    encoder: Encoder, corpus: Corpus, poolings: Sequence[str], max_tokens: int | None = None
) -> str:
    """The cache key: model name, corpus content hash, poolings, max tokens."""
    parts = (encoder.name, corpus.content_hash, ",".join(poolings), str(max_tokens))
    return "|".join(parts)


def corpus_vectors(
    encoder: Encoder,
    corpus: Corpus,
    poolings: Sequence[str] = ("cls", "mean", "max"),
    max_tokens: int | None = None,
    batch_size: int = 32,
    random_token_seed: int | None = None,
) -> PooledVectors | None:
    """Pooled vectors of every corpus text at every layer (see :func:`clsviz.extract`),
    with a progress bar while they are computed; cached per (model, corpus content, poolings,
    max tokens, random-token seed). The corpus labels are copied into ``PooledVectors.labels``;
    ``random_token_seed`` also reads each text's random content token from the same pass (the
    probe's "random" reading). On failure an error is shown and None is returned."""
    poolings = tuple(poolings)
    key = vectors_key(encoder, corpus, poolings, max_tokens)
    if random_token_seed is not None:
        key += f"|random:{int(random_token_seed)}"
    total = len(corpus)

    def compute() -> PooledVectors:
        return jobs.compute(
            f"Embedding {total:,} texts with {encoder.name}", extract, encoder, corpus.texts, poolings=poolings,
            batch_size=batch_size, max_tokens=max_tokens, labels=dict(corpus.labels),
            random_token_seed=random_token_seed,
        )

    try:
        return cached("corpus.vectors", (key,), compute)
    except ValueError as exc:
        st.error(plain(f"The corpus could not be embedded: {exc}"), icon=":material/error:")
        return None
