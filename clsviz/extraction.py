"""Embedding a corpus of any size into a shard folder (:mod:`clsviz.shards`), resumably.

:func:`embed_to_shards` cuts the corpus into shards of a fixed number of rows (in corpus order),
embeds each with :func:`clsviz.extract` and writes it atomically (:mod:`clsviz.artifacts`): the
Parquet bytes go to a hidden staging file, are flushed to disk and renamed; only then is the shard
entered in the manifest (itself replaced atomically). Memory is one shard's vectors whatever the corpus size.

Killed at any moment and started again with the same arguments, it keeps the shards the
manifest lists (after checking their checksums), deletes anything else it finds (a renamed shard
the manifest never heard of, partial files) and goes on; the finished folder is byte for byte the
one an uninterrupted run writes, because each shard's bytes depend only on its rows and the
settings. ``engine="ray"`` runs the shards on Ray Data actors (:mod:`clsviz.ray_engine`) and
writes the same folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .artifacts import is_partial, write_bytes_atomic
from .corpus import Corpus
from .encoder import Encoder
from .keywords import accepts_max_length
from .layers import check_layer
from .progress import check_cancel
from .ray_engine import run_ray_shards
from .shards import (
    KIND,
    MANIFEST,
    SHARD_DTYPES,
    SHARD_FORMAT_VERSION,
    ShardedVectors,
    ShardError,
    embed_shard,
    file_sha256,
    open_shards,
    read_manifest,
    shard_bytes,
    shard_file,
)
from .vectors import PooledVectors, check_poolings

__all__ = [
    "ENGINES",
    "SHARD_TARGET_BYTES",
    "default_shard_rows",
    "embed_shard",
    "embed_to_shards",
    "run_settings",
    "save_shards",
]

ENGINES = ("local", "ray")
SHARD_TARGET_BYTES = 64 * 2**20
"""A shard's float32 working set (all layers x poolings x dims of its rows) stays near this."""

_SETTING_KEYS = ("model", "tokenizer", "max_length", "poolings", "layers", "num_layers", "hidden_size", "dtype",
                 "rows", "shard_rows", "batch_size", "corpus_sha256", "labels")


def default_shard_rows(num_layers: int, num_poolings: int, hidden_size: int) -> int:
    """Rows per shard: :data:`SHARD_TARGET_BYTES` of float32 vectors, between 64 and 8192."""
    per_row = (num_layers + 1) * num_poolings * hidden_size * 4
    return int(min(8192, max(64, SHARD_TARGET_BYTES // per_row)))


def _tokenizer_id(encoder: Encoder) -> dict:
    """The tokenizer's class and a fingerprint of its vocabulary and rules (not its path)."""
    tok = encoder.tokenizer
    backend = getattr(tok, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tok.get_vocab().items()))
    return {"class": type(tok).__name__, "sha256": hashlib.sha256(text.encode()).hexdigest()[:32]}


def run_settings(
    encoder: Encoder,
    corpus: Corpus,
    poolings: Sequence[str] = ("cls", "mean", "max"),
    layers: Sequence[int] | None = None,
    dtype: str = "float16",
    batch_size: int = 32,
    max_tokens: int | None = None,
    shard_rows: int | None = None,
) -> dict:
    """Everything that decides a shard folder's bytes (the manifest without its shard list).
    Raises ``ValueError`` for unknown poolings or layers, a bad dtype, batch or shard size."""
    info = encoder.info
    poolings = check_poolings(encoder, poolings)
    if dtype not in SHARD_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(SHARD_DTYPES)}, got {dtype!r}")
    layers = sorted({check_layer(layer, info.num_layers) for layer in (layers if layers is not None
                                                                         else range(info.num_layers + 1))})
    if not layers:
        raise ValueError("No layers were asked for; give at least one (0 = embeddings).")
    if batch_size < 1 or (shard_rows is not None and shard_rows < 1):
        raise ValueError("batch_size and shard_rows must be at least 1")
    if len(corpus) == 0:
        raise ValueError("The corpus is empty: there is nothing to embed.")
    limit = info.token_limit(max_tokens)
    return {
        "kind": KIND,
        "format_version": SHARD_FORMAT_VERSION,
        "model": encoder.name,
        "tokenizer": _tokenizer_id(encoder),
        "max_length": int(limit),
        "poolings": list(poolings),
        "layers": layers,
        "num_layers": int(info.num_layers),
        "hidden_size": int(info.hidden_size),
        "dtype": dtype,
        "rows": len(corpus),
        "shard_rows": int(shard_rows or default_shard_rows(info.num_layers, len(poolings), info.hidden_size)),
        "batch_size": int(batch_size),
        "corpus_sha256": corpus.content_hash,
        "labels": list(corpus.labels),
    }


def _plan(settings: dict) -> list[tuple[int, int, int]]:
    """(index, first row, rows) of every shard."""
    n, size = settings["rows"], settings["shard_rows"]
    return [(i, start, min(size, n - start)) for i, start in enumerate(range(0, n, size))]


def _save_manifest(folder: Path, manifest: dict) -> None:
    manifest["shards"] = sorted(manifest["shards"], key=lambda s: s["index"])
    write_bytes_atomic(folder / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def _prepare(folder: Path, settings: dict) -> dict:
    """The manifest to continue from: a fresh one, or the folder's own after checking that it
    was written with the same settings; shards that fail their checksum and stray files go."""
    if folder.exists() and not folder.is_dir():
        raise ShardError(f"'{folder}' is a file; give a folder name for the shards")
    if folder.is_dir() and (folder / MANIFEST).is_file():
        manifest = read_manifest(folder)
        differ = [k for k in _SETTING_KEYS if manifest.get(k) != settings[k]]
        if differ:
            shown = ", ".join(f"{k}: {manifest.get(k)!r} there, {settings[k]!r} now" for k in differ[:3])
            raise ShardError(
                f"'{folder}' holds vectors of another run ({shown}). Resume only with the same corpus, model "
                "and options; otherwise pick a new --out folder or delete this one."
            )
        kept = []
        for shard in manifest["shards"]:
            path = folder / shard["file"]
            if path.is_file() and path.stat().st_size == shard["bytes"] and file_sha256(path) == shard["sha256"]:
                kept.append(shard)
        manifest["shards"] = kept
    elif folder.is_dir() and any(folder.iterdir()):
        raise ShardError(f"'{folder}' is not empty and holds no clsviz manifest; give a new or empty folder.")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {**settings, "shards": []}
    manifest["complete"] = False
    listed = {s["file"] for s in manifest["shards"]}
    for path in folder.iterdir():  # anything the manifest does not list is unfinished work
        if path.name != MANIFEST and path.name not in listed and (path.suffix == ".parquet" or is_partial(path)):
            path.unlink()
    _save_manifest(folder, manifest)
    return manifest


@accepts_max_length
def embed_to_shards(
    encoder: Encoder,
    corpus: Corpus,
    out: str | os.PathLike,
    *,
    poolings: Sequence[str] = ("cls", "mean", "max"),
    layers: Sequence[int] | None = None,
    dtype: str = "float16",
    batch_size: int = 32,
    max_tokens: int | None = None,
    shard_rows: int | None = None,
    engine: str = "local",
    engine_options: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> ShardedVectors:
    """Pool every text of ``corpus`` at ``layers`` (default: all) with ``poolings`` into the shard
    folder ``out`` (created; resumed when it holds an unfinished run with the same settings).

    ``dtype``: "float16" (default, half the disk) or "float32". ``engine``: "local" (this
    process) or "ray" (Ray Data actors; ``engine_options`` go to
    :func:`clsviz.ray_engine.run_ray_shards`). ``progress(done_rows, rows)`` after each shard.
    Returns the finished folder opened lazily. Raises ``ValueError`` (:class:`ShardError`) for
    bad settings or a folder of another run.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    folder = Path(out)
    settings = run_settings(encoder, corpus, poolings, layers, dtype, batch_size, max_tokens, shard_rows)
    manifest = _prepare(folder, settings)
    done = {s["index"] for s in manifest["shards"]}
    todo = [p for p in _plan(settings) if p[0] not in done]
    rows_done = settings["rows"] - sum(rows for _, _, rows in todo)
    if progress is not None:
        progress(rows_done, settings["rows"])

    def commit(index: int, start: int, rows: int, data: bytes) -> None:
        nonlocal rows_done
        name = shard_file(index)
        write_bytes_atomic(folder / name, data)
        manifest["shards"].append({"index": index, "file": name, "start": start, "rows": rows, "bytes": len(data),
                                   "sha256": hashlib.sha256(data).hexdigest()})
        _save_manifest(folder, manifest)
        rows_done += rows
        if progress is not None:
            progress(rows_done, settings["rows"])

    def payload(start: int, rows: int) -> tuple[list[str], dict]:
        stop = start + rows
        return list(corpus.texts[start:stop]), {k: list(v[start:stop]) for k, v in corpus.labels.items()}

    if engine == "ray":
        run_ray_shards(settings, todo, payload, commit, cancel=cancel, **(engine_options or {}))
    else:
        for index, start, rows in todo:
            check_cancel(cancel, "Embedding")
            texts, labels = payload(start, rows)
            commit(index, start, rows, embed_shard(encoder, settings, index, start, texts, labels))
    manifest["complete"] = True
    _save_manifest(folder, manifest)
    return open_shards(folder, verify=False)


def save_shards(
    chunks: Iterable[PooledVectors],
    out: str | os.PathLike,
    rows: int,
    dtype: str = "float16",
    layers: Sequence[int] | None = None,
) -> ShardedVectors:
    """Write vectors already in memory as a shard folder, one shard per chunk (for vectors made
    elsewhere, tests and benchmarks; :func:`embed_to_shards` embeds and resumes). ``rows``: the
    total of the chunks' rows. The folder must not exist yet."""
    folder = Path(out)
    if folder.exists():
        raise ShardError(f"'{folder}' exists; save_shards writes a new folder")
    folder.mkdir(parents=True)
    manifest, start = None, 0
    for index, pv in enumerate(chunks):
        if manifest is None:
            keep = sorted(range(pv.num_layers + 1) if layers is None else layers)
            manifest = {"kind": KIND, "format_version": SHARD_FORMAT_VERSION, "model": pv.model_name,
                        "tokenizer": None, "max_length": None, "poolings": list(pv.poolings), "layers": keep,
                        "num_layers": pv.num_layers, "hidden_size": int(pv.vectors.shape[-1]), "dtype": dtype,
                        "rows": int(rows), "shard_rows": len(pv.texts), "batch_size": None, "corpus_sha256": None,
                        "labels": list(pv.labels), "shards": [], "complete": False}
        meta = {"format_version": SHARD_FORMAT_VERSION, "model": pv.model_name, "index": index, "start": start,
                "rows": len(pv.texts)}
        data = shard_bytes(pv, manifest["layers"], dtype, manifest["labels"], meta)
        name = shard_file(index)
        write_bytes_atomic(folder / name, data)
        manifest["shards"].append({"index": index, "file": name, "start": start, "rows": len(pv.texts),
                                   "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        start += len(pv.texts)
    if manifest is None or start != rows:
        raise ShardError(f"the chunks hold {start} rows, not the {rows} announced")
    manifest["complete"] = True
    _save_manifest(folder, manifest)
    return open_shards(folder, verify=False)
