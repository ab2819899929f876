"""Loading vectors saved by ``clsviz embed`` (or ``save_vectors``) into the app: one file, the
files of a shard folder uploaded together, or a shard folder on the server under the data
directory (``CLSVIZ_DATA_DIR``; no other folder can be opened)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import streamlit as st

from clsviz import PooledVectors
from clsviz.artifacts import ArtifactError, atomic_folder
from clsviz.shards import MANIFEST, ShardedVectors, open_shards
from clsviz.vectors_io import load_vectors, vectors_mismatch
from ui.cache import cached

from .widgets import radio, text_input

DATA_DIR_ENV = "CLSVIZ_DATA_DIR"
"""Environment variable: the folder under which shard folders may be opened by path."""
FILE = "A file (.npz / .parquet)"
FOLDER_UPLOAD = "A shard folder (upload its files)"
FOLDER_PATH = "A shard folder on the server"
_SHARD_NAME = re.compile(r"(manifest\.json|shard-\d{5}\.parquet)")

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


def saved_mismatch(saved, encoder) -> str | None:
    """Why ``saved`` vectors cannot be placed beside ``encoder``'s own (another model's name, or
    another model's shape under this model's name), or None when they can."""
    return None if saved is None else vectors_mismatch(saved, encoder.info)


def data_dir() -> Path | None:
    """The resolved ``CLSVIZ_DATA_DIR``, or None when it is unset or not a folder."""
    raw = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(raw).resolve() if raw and Path(raw).is_dir() else None


def resolve_data_path(typed: str, root: Path) -> Path:
    """The folder ``typed`` (relative to ``root`` or absolute), which must lie under ``root``.
    Raises ValueError otherwise (``..`` and symbolic links are resolved first)."""
    typed = typed.strip()
    if not typed or "\x00" in typed:
        raise ValueError("Type the path of a shard folder, relative to the data directory.")
    path = (root / typed).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"Only folders under the data directory ({DATA_DIR_ENV}) can be opened; '{typed}' is "
                         "outside it. Give a path relative to it.")
    if not path.is_dir():
        raise ValueError(f"There is no folder '{typed}' under the data directory.")
    return path


def _open_folder(path: Path) -> ShardedVectors:
    """The shard folder opened once per (path, manifest content); texts and labels read up
    front, so the size the cache counts is what the reader keeps."""
    manifest = hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest() if (path / MANIFEST).is_file() else ""

    def compute() -> ShardedVectors:
        shards = open_shards(path)
        shards.texts  # noqa: B018 - load now, so nbytes counts it
        return shards

    return cached("vectors.folder", (str(path), manifest), compute)


def _describe(vectors) -> None:
    layers = getattr(vectors, "layers", range(vectors.num_layers + 1))
    st.text(  # file contents are shown as plain text, never as markdown
        f"{len(vectors.texts):,} texts from {vectors.model_name}: {len(layers)} layers × "
        f"{len(vectors.poolings)} poolings ({', '.join(vectors.poolings)})"
        + (f"; labels: {', '.join(vectors.labels)}" if vectors.labels else "")
    )


def _folder_upload(key: str) -> ShardedVectors | None:
    files = st.file_uploader(
        "The files of a shard folder (manifest.json and shard-*.parquet)", type=["json", "parquet"],
        accept_multiple_files=True, key=key,
        help="Select every file of a folder written by 'clsviz embed corpus.csv --out FOLDER'.",
    )
    if not files:
        return None
    named = {}
    for f in files:
        name = os.path.basename(f.name)
        if not _SHARD_NAME.fullmatch(name):
            st.error(f"'{name}' is not a file of a shard folder (manifest.json, shard-00000.parquet, ...).",
                     icon=":material/error:")
            return None
        named[name] = f.getvalue()
    digest = hashlib.sha256(b"".join(hashlib.sha256(n.encode() + d).digest() for n, d in sorted(named.items())))
    folder = Path(tempfile.gettempdir()) / "clsviz-uploads" / digest.hexdigest()[:32]
    if not (folder / MANIFEST).is_file():
        # Whole or not at all: a server stopped half-way leaves no folder that looks complete.
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.is_dir():
            shutil.rmtree(folder)  # an unfinished copy written before the folders were written atomically
        try:
            with atomic_folder(folder) as staging:
                for name, data in named.items():
                    (staging / name).write_bytes(data)
        except ArtifactError:
            if not (folder / MANIFEST).is_file():  # not a second session writing the same upload
                raise
    return _open_folder(folder)


def _folder_path(key: str, root: Path) -> ShardedVectors | None:
    typed = text_input(st,
        "Shard folder (a path under the data directory)", key=key,
        help=f"A folder written by 'clsviz embed corpus.csv --out FOLDER', below {DATA_DIR_ENV} on the server.",
    )
    if not typed:
        return None
    return _open_folder(resolve_data_path(typed, root))


def saved_vectors_picker(key: str):
    """Saved vectors: a file (:func:`vectors_uploader`), an uploaded shard folder, or a shard
    folder under ``CLSVIZ_DATA_DIR``. Returns PooledVectors / ShardedVectors, or None (after a
    message a person can act on) when nothing usable was given."""
    root = data_dir()
    options = (FILE, FOLDER_UPLOAD, FOLDER_PATH) if root is not None else (FILE, FOLDER_UPLOAD)
    kind = radio(st, "Saved vectors", options, key=f"{key}.kind", horizontal=True)
    if kind == FILE:
        return vectors_uploader(key)
    try:
        vectors = _folder_upload(f"{key}.folder_files") if kind == FOLDER_UPLOAD else _folder_path(f"{key}.path", root)
    except (ValueError, OSError) as exc:  # ShardError included; OSError: the upload could not be written
        st.error("These vectors could not be used:", icon=":material/error:")
        st.text(str(exc))
        return None
    if vectors is not None:
        _describe(vectors)
    return vectors
