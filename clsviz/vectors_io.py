"""Saving :class:`~clsviz.corpus.PooledVectors` to disk and loading them back.

Two formats, picked by the file name when saving and by the file's first bytes when loading:

* ``.npz`` (numpy, no pickles): the vectors array as is, and one JSON document holding the
  texts, labels, poolings and model name — exact for any label values JSON can hold
  (strings, numbers, booleans, None).
* ``.parquet`` (needs pyarrow): one row per text — ``text``, ``truncated``, one column per label,
  and ``vectors`` (a fixed-size list of ``(L + 1) * S * D`` float32 values, layer-major, then
  pooling, then dimension) — readable by pandas or any Parquet tool. The shape, pooling names
  and model name travel in the file's schema metadata under the key ``clsviz``.

``load_vectors(save_vectors(pv, path))`` gives back the same arrays, texts, labels and names.
Loading accepts a path, raw bytes or a binary file object (an uploaded file in the app).
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .artifacts import atomic_path
from .corpus import Corpus
from .shards import open_shards
from .vectors import PooledVectors

__all__ = ["VECTOR_FORMATS", "save_vectors", "load_vectors", "as_corpus", "vectors_mismatch"]

VECTOR_FORMATS = (".npz", ".parquet")
"""File name endings :func:`save_vectors` understands."""

_FORMAT_VERSION = 1
_META_KEY = "clsviz"
_NPZ_MAGIC = b"PK"  # an .npz file is a zip archive
_PARQUET_MAGIC = b"PAR1"


def _plain(value):
    """A label value as a JSON-able Python scalar (numpy scalars unwrapped)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _labels_json(labels: dict, n: int) -> dict[str, list]:
    out = {}
    for name, values in labels.items():
        values = [_plain(v) for v in values]
        if len(values) != n:
            raise ValueError(f"label column {name!r} has {len(values)} values for {n} texts")
        try:
            json.dumps(values, allow_nan=True)
        except TypeError as exc:
            raise ValueError(
                f"label column {name!r} holds values that cannot be saved ({exc}); "
                "use strings or numbers as labels"
            ) from exc
        out[str(name)] = values
    return out


def _meta(pv: PooledVectors) -> dict:
    return {
        "format_version": _FORMAT_VERSION,
        "model_name": pv.model_name,
        "poolings": list(pv.poolings),
        "shape": list(pv.vectors.shape),
    }


def save_vectors(pv: PooledVectors, path: str | os.PathLike) -> Path:
    """Write ``pv`` to ``path`` (``.npz`` or ``.parquet``, by its ending); returns the path.

    Raises ``ValueError`` for another ending, or for label values that are not strings,
    numbers, booleans or None.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VECTOR_FORMATS:
        raise ValueError(
            f"cannot save vectors as '{path.name}': the file name must end in "
            f"{' or '.join(VECTOR_FORMATS)}"
        )
    labels = _labels_json(pv.labels, len(pv.texts))
    # Written beside the target and renamed at the end, so a failure never leaves half a file.
    with atomic_path(path) as partial:
        if suffix == ".npz":
            _save_npz(pv, labels, partial)
        else:
            _save_parquet(pv, labels, partial)
    return path


def _save_npz(pv: PooledVectors, labels: dict, path: Path) -> None:
    doc = {**_meta(pv), "texts": list(pv.texts), "labels": labels}
    # Written through a file object so numpy does not append a second ".npz".
    with open(path, "wb") as fh:
        np.savez_compressed(
            fh,
            vectors=np.ascontiguousarray(pv.vectors, dtype=np.float32),
            truncated=np.asarray(pv.truncated, dtype=bool),
            meta=np.array(json.dumps(doc, ensure_ascii=True)),
        )


def _label_array(pa, values: list):
    """(arrow array, how it is stored): native when arrow holds the values exactly, else JSON text."""
    try:
        arr = pa.array(values)
        if arr.to_pylist() == values and all(type(a) is type(b) for a, b in zip(arr.to_pylist(), values)):
            return arr, "native"
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return pa.array([json.dumps(v) for v in values], type=pa.string()), "json"


def _require_pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow ships with streamlit
        raise ValueError("Parquet needs the 'pyarrow' package; install it or use .npz") from exc
    return pa, pq


def _save_parquet(pv: PooledVectors, labels: dict, path: Path) -> None:
    pa, pq = _require_pyarrow()
    n = len(pv.texts)
    flat = np.ascontiguousarray(pv.vectors, dtype=np.float32).reshape(n, -1)
    width = flat.shape[1]
    columns = {
        "text": pa.array(list(pv.texts), type=pa.string()),
        "truncated": pa.array(np.asarray(pv.truncated, dtype=bool)),
    }
    label_columns = []
    for name, values in labels.items():
        column = name if name not in ("text", "truncated", "vectors") else f"label:{name}"
        while column in columns:
            column = f"label:{column}"
        columns[column], how = _label_array(pa, values)
        label_columns.append({"name": name, "column": column, "stored": how})
    columns["vectors"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=pa.float32()), width)
    meta = {**_meta(pv), "labels": label_columns}
    table = pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(meta)})
    pq.write_table(table, path, compression="zstd")


def _read_source(source: str | os.PathLike | bytes | BinaryIO) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):
        data = source.read()
        return data.encode() if isinstance(data, str) else bytes(data)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no vectors file at '{path}'")
    return path.read_bytes()


def load_vectors(source: str | os.PathLike | bytes | BinaryIO, max_bytes: int | None = None,
                 verify: bool = True):
    """Read vectors written by :func:`save_vectors` from a path, bytes or a binary file object,
    or open a shard folder written by ``clsviz embed --out FOLDER``.

    A folder gives a :class:`clsviz.shards.ShardedVectors`, read lazily (only the (layer,
    pooling) columns asked for, memory-mapped; ``verify`` checks every shard's sha256 first).
    A file's format is recognised from the content. ``max_bytes`` refuses files whose vectors would
    take more memory than that once unpacked (for uploads). Raises ``ValueError`` (with what
    is wrong) for a file that is not a clsviz vectors file, ``FileNotFoundError`` for a
    missing path.
    """
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return open_shards(source, verify=verify)
    data = _read_source(source)
    if data.startswith(_PARQUET_MAGIC):
        return _load_parquet(data, max_bytes)
    if data.startswith(_NPZ_MAGIC):
        return _load_npz(data, max_bytes)
    raise ValueError(
        "this is not a clsviz vectors file: expected an .npz or .parquet file written by "
        "'clsviz embed' or clsviz.vectors_io.save_vectors"
    )


def _check_meta(meta: dict, keys: tuple[str, ...]) -> None:
    if not isinstance(meta, dict):
        raise ValueError("this file's clsviz metadata is not a JSON object")
    version = meta.get("format_version")
    if version != _FORMAT_VERSION:
        raise ValueError(
            f"this vectors file has format version {version!r}; this clsviz reads version {_FORMAT_VERSION}"
        )
    if "poolings" not in meta and "strategies" in meta:  # files written before the key was renamed
        meta["poolings"] = meta["strategies"]
    missing = [k for k in ("model_name", "poolings", "shape", *keys) if k not in meta]
    if missing:
        raise ValueError(f"this vectors file's metadata lacks: {', '.join(missing)}")


def _check_size(nbytes: int, max_bytes: int | None) -> None:
    if max_bytes is not None and nbytes > max_bytes:
        raise ValueError(
            f"these vectors take {nbytes / 2**20:,.0f} MB unpacked; the limit is {max_bytes / 2**20:,.0f} MB. "
            "Save fewer texts, layers or poolings."
        )


def _pooled(**fields) -> PooledVectors:
    """The file's contents as :class:`PooledVectors`; ValueError saying so when they disagree."""
    try:
        return PooledVectors(**fields)
    except ValueError as exc:
        raise ValueError(f"this vectors file does not hold together ({exc}): it is damaged or was altered. "
                         "Save the vectors again.") from None


def _check_npy_headers(archive) -> None:
    """Each array's header against the bytes its member holds; raises ValueError when they differ."""
    for info in archive.infolist():
        with archive.open(info) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
            except ValueError as exc:
                raise ValueError(f"this .npz file's {info.filename} is not a readable numpy array ({exc})") from None
            held = info.file_size - fh.tell()
        claimed = math.prod(shape) * dtype.itemsize
        if not dtype.hasobject and claimed != held:
            raise ValueError(
                f"this .npz file's {info.filename} says it holds an array of shape {list(shape)} ({claimed / 2**20:,.1f} MB), "
                f"but it holds {held / 2**20:,.1f} MB: the file is damaged or was altered. Save the vectors again."
            )


def _load_npz(data: bytes, max_bytes: int | None = None) -> PooledVectors:
    import zipfile

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = {"vectors", "truncated", "meta"} - set(npz.files)
            if missing:
                raise ValueError(
                    f"this .npz file is not a clsviz vectors file (missing: {', '.join(sorted(missing))})"
                )
            # Checked before unpacking: a small compressed file can hold a huge array, and an
            # array's header can claim more than its member holds (numpy allocates the claim).
            _check_size(sum(info.file_size for info in npz.zip.infolist()), max_bytes)
            _check_npy_headers(npz.zip)
            vectors = npz["vectors"]
            truncated = npz["truncated"]
            meta = json.loads(str(npz["meta"]))
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"this .npz file could not be read: {exc}") from exc
    _check_meta(meta, ("texts", "labels"))
    if vectors.dtype != np.float32 or vectors.ndim != 4:
        raise ValueError(f"vectors: expected a float32 [N, L + 1, S, D] array, got {vectors.dtype} {list(vectors.shape)}")
    return _pooled(
        vectors=vectors,
        poolings=tuple(meta["poolings"]),
        texts=tuple(meta["texts"]),
        model_name=meta["model_name"],
        truncated=truncated.astype(bool),
        labels={name: tuple(values) for name, values in meta["labels"].items()},
    )


def _load_parquet(data: bytes, max_bytes: int | None = None) -> PooledVectors:
    pa, pq = _require_pyarrow()
    try:
        schema = pq.read_schema(pa.BufferReader(data))
        raw = (schema.metadata or {}).get(_META_KEY.encode())
        if raw is None:
            raise ValueError("this .parquet file is not a clsviz vectors file (no 'clsviz' metadata)")
        meta = json.loads(raw)
        _check_meta(meta, ("labels",))
        shape = tuple(int(x) for x in meta["shape"])
        _check_size(4 * int(np.prod(shape)), max_bytes)
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"this .parquet file could not be read: {exc}") from exc
    for column in ("text", "truncated", "vectors"):
        if column not in table.column_names:
            raise ValueError(f"this .parquet file has no '{column}' column")
    flat = table.column("vectors").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    if flat.size != int(np.prod(shape)):
        raise ValueError(f"vectors: the file holds {flat.size} values, its metadata says shape {list(shape)}")
    labels = {}
    for entry in meta["labels"]:
        values = table.column(entry["column"]).to_pylist()
        if entry["stored"] == "json":
            values = [json.loads(v) for v in values]
        labels[entry["name"]] = tuple(values)
    return _pooled(
        vectors=np.asarray(flat, dtype=np.float32).reshape(shape),
        poolings=tuple(meta["poolings"]),
        texts=tuple(table.column("text").to_pylist()),
        model_name=meta["model_name"],
        truncated=np.asarray(table.column("truncated").to_pylist(), dtype=bool),
        labels=labels,
    )


def as_corpus(vectors, name: str | None = None) -> Corpus:
    """The texts and labels of saved vectors as a :class:`~clsviz.corpus.Corpus`, so pages and
    functions that take a corpus can use a file from ``clsviz embed`` without re-embedding.

    Label values become strings ("" for None), as in a corpus read from CSV.
    """
    labels = {k: tuple("" if v is None else str(v) for v in values) for k, values in vectors.labels.items()}
    layers = getattr(vectors, "layers", range(vectors.num_layers + 1))
    note = f"vectors from {vectors.model_name}: {len(layers)} layers × {', '.join(vectors.poolings)}"
    return Corpus(
        texts=tuple(vectors.texts),
        labels=labels,
        name=name or f"saved vectors ({vectors.model_name})",
        messages=(note,),
    )


def vectors_mismatch(vectors, info) -> str | None:
    """Why saved ``vectors`` cannot sit beside what the encoder described by ``info`` (an
    :class:`~clsviz.encoder.EncoderInfo`) makes now, or None when they can: another model's
    name, or the right name on vectors of another shape (made by another model, or edited)."""
    if vectors.model_name != info.name:
        return f"These vectors come from {vectors.model_name}, but the selected model is {info.name}."
    dims = int(getattr(vectors, "hidden_size", 0) or vectors.vectors.shape[-1])
    if (dims, int(vectors.num_layers)) != (int(info.hidden_size), int(info.num_layers)):
        return (f"These vectors name {info.name} as their model, but they hold {vectors.num_layers} layers of {dims} "
                f"dimensions, and {info.name} has {info.num_layers} layers of {info.hidden_size}: another model made "
                "them (or the file was changed). Embed the corpus again with this model.")
    return None
