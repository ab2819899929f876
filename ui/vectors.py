"""Loading vectors saved by ``clsviz embed`` (or ``save_vectors``) into the app."""

from __future__ import annotations

import hashlib

import streamlit as st

from clsviz import PooledVectors
from clsviz.vectors_io import load_vectors
from ui.cache import cached

MAX_UNPACKED_BYTES = 2 * 2**30
"""Uploaded vectors may take at most this much memory once unpacked."""


def _load(digest: str, data: bytes) -> PooledVectors:
    # Keyed on the content hash; the loaded vectors are never mutated, so sharing them is safe.
    return cached("vectors.upload", (digest,), lambda: load_vectors(data, max_bytes=MAX_UNPACKED_BYTES))


def vectors_uploader(key: str) -> PooledVectors | None:
    """An upload box for a ``.npz`` / ``.parquet`` vectors file; returns the vectors, or None
    (after an error message a person can act on) when nothing usable was uploaded."""
    upload = st.file_uploader(
        "Vectors saved by `clsviz embed` (.npz or .parquet)",
        type=["npz", "parquet"],
        key=key,
        help="Embed a corpus once from the command line — clsviz embed corpus.csv --out vectors.npz — "
        "and explore it here without running the model again.",
    )
    if upload is None:
        return None
    data = upload.getvalue()
    try:
        vectors = _load(hashlib.sha256(data).hexdigest(), data)
    except ValueError as exc:
        st.error("This vectors file could not be used:", icon=":material/error:")
        st.text(str(exc))
        return None
    # File contents are shown as plain text, never as markdown.
    st.text(
        f"{len(vectors.texts):,} texts from {vectors.model_name}: {vectors.num_layers + 1} layers × "
        f"{len(vectors.poolings)} poolings ({', '.join(vectors.poolings)})"
        + (f"; labels: {', '.join(vectors.labels)}" if vectors.labels else "")
    )
    return vectors
