"""Vectors of a large corpus on disk: a folder of Parquet shards and a manifest, read lazily.

A shard folder (written by ``clsviz embed`` / :func:`clsviz.extraction.embed_to_shards`) holds

* ``manifest.json``: format version, model, tokenizer, max length, poolings, layers, dtype,
  hidden size, rows, the corpus's content hash, and one entry per finished shard (file, first
  row, rows, bytes, sha256). ``complete`` turns true only when every shard is there.
* ``shard-00000.parquet``, ...: one row per text - ``text``, ``truncated``, one column per label,
  and one fixed-size-list column per (layer, pooling) named ``"{pooling}@{layer}"`` (``cls@6``)
  holding ``D`` float16 (default) or float32 values. Each shard's schema metadata repeats the
  model, the shard's index and first row, so a shard copied into the wrong folder is noticed.

:class:`ShardedVectors` reads such a folder lazily: ``get(pooling, layer)`` reads only that
column of every shard (memory-mapped), and :attr:`ShardedVectors.stats` counts what was read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .encoder import Encoder
from .layers import check_layer
from .vectors import PooledVectors, extract

__all__ = [
    "MANIFEST",
    "SHARD_DTYPES",
    "SHARD_FORMAT_VERSION",
    "ReaderStats",
    "ShardError",
    "ShardedVectors",
    "column_name",
    "embed_shard",
    "file_sha256",
    "is_shard_folder",
    "open_shards",
    "read_manifest",
    "shard_bytes",
    "shard_file",
]

SHARD_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KIND = "clsviz-shards"
SHARD_DTYPES = ("float16", "float32")
META_KEY = b"clsviz-shard"
FLOAT16_MAX = 65504.0


class ShardError(ValueError):
    """A shard folder that cannot be written to or read; the message says why and what to do."""


def column_name(pooling: str, layer: int) -> str:
    """The Parquet column of one (layer, pooling): ``"cls@6"``."""
    return f"{pooling}@{int(layer)}"


def shard_file(index: int) -> str:
    """The file name of shard ``index``: ``shard-00003.parquet``."""
    return f"shard-{int(index):05d}.parquet"


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file, read in 8 MB pieces (memory stays flat)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_shard_folder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder with a clsviz manifest."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of a shard folder (checked for its kind and version). Raises :class:`ShardError`."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(f"'{folder}' has no {MANIFEST}: it is not a folder written by 'clsviz embed'.") from None
    except (OSError, ValueError) as exc:
        raise ShardError(f"'{path}' could not be read as JSON ({exc}); the folder is damaged.") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise ShardError(f"'{path}' is not a clsviz shard manifest.")
    if manifest.get("format_version") != SHARD_FORMAT_VERSION:
        raise ShardError(
            f"'{folder}' has shard format version {manifest.get('format_version')!r}; this clsviz reads "
            f"version {SHARD_FORMAT_VERSION}. Embed the corpus again with this version."
        )
    missing = [k for k in ("model", "poolings", "layers", "dtype", "hidden_size", "rows", "shards", "labels")
               if k not in manifest]
    if missing:
        raise ShardError(f"'{path}' lacks {', '.join(missing)}; the folder is damaged.")
    return manifest


# -- writing one shard ----------------------------------------------------------------------------


def shard_bytes(
    pv: PooledVectors, layers: Sequence[int], dtype: str, label_columns: Sequence[str], meta: dict
) -> bytes:
    """The Parquet bytes of one shard: the texts of ``pv`` with their labels (as strings) and one
    column per (layer in ``layers``, pooling of ``pv``) in ``dtype``. Deterministic: the same
    vectors give the same bytes. Raises :class:`ShardError` when float16 cannot hold a value."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if dtype not in SHARD_DTYPES:
        raise ShardError(f"dtype must be one of {', '.join(SHARD_DTYPES)}, got {dtype!r}")
    arrow_type = pa.float16() if dtype == "float16" else pa.float32()
    columns = {
        "text": pa.array(list(pv.texts), type=pa.string()),
        "truncated": pa.array(np.asarray(pv.truncated, dtype=bool)),
    }
    for name in label_columns:
        columns[f"label:{name}"] = pa.array([str(v) for v in pv.labels[name]], type=pa.string())
    d = pv.vectors.shape[-1]
    for layer in layers:
        for p, pooling in enumerate(pv.poolings):
            values = np.ascontiguousarray(pv.vectors[:, layer, p])
            if dtype == "float16" and np.abs(values).max(initial=0.0) > FLOAT16_MAX:
                raise ShardError(
                    f"{pooling} at layer {layer} holds values beyond float16's range (|x| > 65504); "
                    "embed with --dtype float32."
                )
            flat = pa.array(values.astype(dtype).reshape(-1), type=arrow_type)
            columns[column_name(pooling, layer)] = pa.FixedSizeListArray.from_arrays(flat, d)
    table = pa.table(columns).replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True)})
    sink = io.BytesIO()
    # One row group per shard; zstd keeps texts small and costs little on float vectors.
    pq.write_table(table, sink, compression="zstd", row_group_size=max(1, len(pv.texts)))
    return sink.getvalue()


def embed_shard(encoder: Encoder, settings: dict, index: int, start: int, texts: Sequence[str],
                labels: dict) -> bytes:
    """The Parquet bytes of shard ``index`` (rows ``start`` ..): ``texts`` pooled by ``encoder``
    as ``settings`` say (see :func:`clsviz.extraction.run_settings`). The same inputs give the same bytes."""
    pv = extract(encoder, texts, poolings=settings["poolings"], batch_size=settings["batch_size"],
                 max_tokens=settings["max_length"], labels=labels)
    meta = {"format_version": SHARD_FORMAT_VERSION, "model": settings["model"], "index": index, "start": start,
            "rows": len(texts)}
    return shard_bytes(pv, settings["layers"], settings["dtype"], settings["labels"], meta)


# -- reading ---------------------------------------------------------------------------------------


@dataclass
class ReaderStats:
    """What a :class:`ShardedVectors` has read so far.

    * ``columns``: column name -> how many shard reads touched it
    * ``bytes_read``: compressed bytes of the column chunks read (from the Parquet footers)
    * ``shard_reads``: shard files opened for data
    """

    columns: Counter = field(default_factory=Counter)
    bytes_read: int = 0
    shard_reads: int = 0


class ShardedVectors:
    """A shard folder, read lazily. The same read interface as :class:`~clsviz.vectors.PooledVectors`
    (``get``, ``texts``, ``labels``, ``poolings``, ``num_layers``, ``model_name``, ``truncated``)
    without the full array in memory.

    * ``layers``: the hidden-state indexes stored (0 = embeddings); ``dtype``: how vectors are stored
    * ``stats``: a :class:`ReaderStats` of what was read
    * ``nbytes``: the memory this object holds (texts, labels and flags once read), for a budget
    """

    def __init__(self, folder: str | os.PathLike, manifest: dict):
        self.folder = Path(folder)
        self.manifest = manifest
        self.model_name: str = manifest["model"]
        self.poolings: tuple[str, ...] = tuple(manifest["poolings"])
        self.layers: tuple[int, ...] = tuple(int(x) for x in manifest["layers"])
        self.num_layers: int = int(manifest["num_layers"])
        self.hidden_size: int = int(manifest["hidden_size"])
        self.dtype: str = manifest["dtype"]
        self.rows: int = int(manifest["rows"])
        self.label_names: tuple[str, ...] = tuple(manifest["labels"])
        self._shards = sorted(manifest["shards"], key=lambda s: s["start"])
        self._starts = np.array([s["start"] for s in self._shards], dtype=np.int64)
        self.stats = ReaderStats()
        self._lock = threading.Lock()
        self._text: tuple | None = None
        self._labels: dict | None = None
        self._truncated: np.ndarray | None = None

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        return (f"ShardedVectors('{self.folder}', rows={self.rows}, model={self.model_name!r}, "
                f"layers={list(self.layers)}, poolings={list(self.poolings)}, dtype={self.dtype})")

    @property
    def content_key(self) -> str:
        """A key naming these vectors (the manifest's checksums): equal folders, equal keys."""
        digest = hashlib.sha256(json.dumps([s["sha256"] for s in self._shards]).encode())
        return f"shards:{self.model_name}:{digest.hexdigest()[:32]}"

    @property
    def nbytes(self) -> int:
        from sys import getsizeof

        held = 4096
        if self._text is not None:
            held += sum(getsizeof(t) for t in self._text) + 8 * len(self._text)
        if self._labels is not None:
            held += sum(getsizeof(v) + 8 for values in self._labels.values() for v in values)
        if self._truncated is not None:
            held += int(self._truncated.nbytes)
        return held

    def _read(self, shard: dict, columns: list[str]):
        import pyarrow.parquet as pq

        path = self.folder / shard["file"]
        pf = pq.ParquetFile(path, memory_map=True)
        table = pf.read(columns=columns)
        meta = pf.metadata
        names = [meta.schema.column(i).path.split(".")[0] for i in range(meta.num_columns)]
        size = sum(
            meta.row_group(g).column(i).total_compressed_size
            for g in range(meta.num_row_groups)
            for i, name in enumerate(names)
            if name in columns
        )
        with self._lock:
            self.stats.columns.update(columns)
            self.stats.bytes_read += int(size)
            self.stats.shard_reads += 1
        return table

    def _load_rows_meta(self) -> None:
        if self._text is not None:
            return
        columns = ["text", "truncated", *(f"label:{n}" for n in self.label_names)]
        texts, truncated, labels = [], [], {n: [] for n in self.label_names}
        for shard in self._shards:
            table = self._read(shard, columns)
            texts += table.column("text").to_pylist()
            truncated += table.column("truncated").to_pylist()
            for n in self.label_names:
                labels[n] += table.column(f"label:{n}").to_pylist()
        self._labels = {n: tuple(v) for n, v in labels.items()}
        self._truncated = np.asarray(truncated, dtype=bool)
        self._text = tuple(texts)

    @property
    def texts(self) -> tuple[str, ...]:
        self._load_rows_meta()
        return self._text

    @property
    def labels(self) -> dict:
        self._load_rows_meta()
        return self._labels

    @property
    def truncated(self) -> np.ndarray:
        self._load_rows_meta()
        return self._truncated

    def _column(self, pooling: str, layer: int) -> str:
        if pooling not in self.poolings:
            raise KeyError(f"{pooling!r} was not extracted; available: {', '.join(self.poolings)}")
        layer = check_layer(layer, self.num_layers)
        if layer not in self.layers:
            raise KeyError(f"layer {layer} was not saved; saved layers: {', '.join(map(str, self.layers))}")
        return column_name(pooling, layer)

    def get(self, pooling: str, layer: int = -1, rows: Sequence[int] | None = None) -> np.ndarray:
        """float32 [N, D] (or [len(rows), D]): one pooling at one layer, read from that column
        of the shards only (shards without a requested row are not opened)."""
        name = self._column(pooling, layer)
        d = self.hidden_size
        if rows is None:
            out = np.empty((self.rows, d), dtype=np.float32)
            for shard in self._shards:
                start = shard["start"]
                out[start : start + shard["rows"]] = self._values(shard, name, d)
            return out
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.rows):
            raise IndexError(f"rows must lie in 0..{self.rows - 1}")
        out = np.empty((len(rows), d), dtype=np.float32)
        which = np.searchsorted(self._starts, rows, side="right") - 1
        for s in np.unique(which):
            shard = self._shards[int(s)]
            picked = np.flatnonzero(which == s)
            out[picked] = self._values(shard, name, d)[rows[picked] - shard["start"]]
        return out

    def _values(self, shard: dict, name: str, d: int) -> np.ndarray:
        chunked = self._read(shard, [name]).column(name)
        flat = chunked.combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(-1, d).astype(np.float32, copy=False)

    def sample(self, n: int, seed: int = 0, poolings: Sequence[str] | None = None) -> PooledVectors:
        """In-memory :class:`PooledVectors` of ``n`` seeded random rows (all rows when fewer), at
        every saved layer; layers not saved hold NaN. For measures that only need a sample."""
        poolings = tuple(poolings or self.poolings)
        rows = np.arange(self.rows) if n >= self.rows else np.sort(
            np.random.default_rng(seed).choice(self.rows, n, replace=False))
        out = np.full((len(rows), self.num_layers + 1, len(poolings), self.hidden_size), np.nan, dtype=np.float32)
        for p, pooling in enumerate(poolings):
            for layer in self.layers:
                out[:, layer, p] = self.get(pooling, layer, rows)
        texts = self.texts
        return PooledVectors(
            vectors=out, poolings=poolings, texts=tuple(texts[i] for i in rows), model_name=self.model_name,
            truncated=self.truncated[rows], labels={k: tuple(v[i] for i in rows) for k, v in self.labels.items()},
        )


def _check_shards(folder: Path, manifest: dict, verify: bool) -> None:
    """Every shard listed, present, with the manifest's size, checksum, rows and columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = sorted(manifest["shards"], key=lambda s: s["start"])
    expected = 0
    for shard in shards:
        if shard["start"] != expected:
            raise ShardError(
                f"'{folder}': the manifest does not match its shards (rows {expected}..{shard['start'] - 1} "
                "are in no shard). Embed the corpus again into a new folder."
            )
        expected += int(shard["rows"])
    if expected != int(manifest["rows"]):
        raise ShardError(f"'{folder}': the manifest lists {expected:,} rows in its shards but says "
                         f"{int(manifest['rows']):,}; the folder is damaged. Embed the corpus again.")
    want = {"text", "truncated", *(f"label:{n}" for n in manifest["labels"]),
            *(column_name(p, layer) for layer in manifest["layers"] for p in manifest["poolings"])}
    for shard in shards:
        path = folder / shard["file"]
        if not path.is_file():
            raise ShardError(f"'{folder}' lacks {shard['file']}, listed in its manifest; the folder is incomplete.")
        if path.stat().st_size != shard["bytes"] or (verify and file_sha256(path) != shard["sha256"]):
            raise ShardError(
                f"'{path}' does not match the checksum in the manifest: the file was changed or damaged. "
                "Embed the corpus again (or restore the file)."
            )
        try:
            pf = pq.ParquetFile(path)
            meta = json.loads((pf.schema_arrow.metadata or {}).get(META_KEY, b"{}"))
        except (pa.ArrowInvalid, OSError, ValueError) as exc:
            raise ShardError(f"'{path}' is not a readable shard ({exc}).") from None
        if meta.get("model") != manifest["model"] or meta.get("start") != shard["start"]:
            raise ShardError(
                f"'{path}' belongs to another run (model {meta.get('model')!r}, first row {meta.get('start')!r}; "
                f"the manifest says {manifest['model']!r}, {shard['start']}): the manifest does not match its shards."
            )
        if pf.metadata.num_rows != shard["rows"] or set(pf.schema_arrow.names) != want:
            raise ShardError(f"'{path}' has other rows or columns than its manifest lists: the manifest does not "
                             "match its shards. Embed the corpus again.")


def open_shards(folder: str | os.PathLike, verify: bool = True) -> ShardedVectors:
    """Open a finished shard folder for lazy reading.

    Checks the manifest against every shard (presence, size, rows, columns, model and, with
    ``verify``, the sha256 of each file - read in pieces, memory stays flat). Raises
    :class:`ShardError` for an unfinished run, a damaged or mismatched folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ShardError(f"no shard folder at '{folder}'")
    manifest = read_manifest(folder)
    if not manifest.get("complete"):
        done = sum(int(s["rows"]) for s in manifest["shards"])
        raise ShardError(
            f"'{folder}' is an unfinished run ({done:,} of {int(manifest['rows']):,} rows embedded). Run the same "
            "'clsviz embed' command again to finish it; an unfinished folder is never read."
        )
    _check_shards(folder, manifest, verify)
    return ShardedVectors(folder, manifest)
