"""Corpus formats beyond CSV / TXT: Parquet, JSON Lines and Hugging Face ``datasets``.

Every reader here ends in the same :class:`~clsviz.corpus.Corpus` as :func:`clsviz.readers.load_corpus`
(which hands ``.parquet`` / ``.jsonl`` uploads to this module): the text column and label columns
are detected the same way, empty texts are dropped, limits are applied with the same notes.
Class labels keep their names: a ``datasets`` ``ClassLabel`` column (or a Parquet file written by
``datasets``, whose schema remembers the names) gives ``"positive"``, not ``1``.

* :func:`load_table_corpus` - the bytes of a ``.parquet`` / ``.jsonl`` / ``.ndjson`` / ``.json`` file;
* :func:`load_dataset_corpus` - a Hugging Face data set: a hub id (with config and split) or a
  local folder (written by ``save_to_disk``, or holding data files). Offline, an id that is not
  in the local cache fails with a message, as models do.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .corpus import Corpus
from .corpus_rules import (
    CorpusError,
    check_label_columns,
    detect_label_columns,
    detect_text_column,
    size_text,
    table_corpus,
)

__all__ = ["TABLE_FORMATS", "columns_corpus", "load_dataset_corpus", "load_table_corpus"]

TABLE_FORMATS = (".parquet", ".jsonl", ".ndjson", ".json")
"""File endings read by :func:`load_table_corpus`."""

_DETECT_ROWS = 5000


def _cell(value, names: Sequence[str] | None = None) -> str:
    """A cell as the text a CSV would hold: None / NaN -> "", class ids -> their names."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if names is not None and isinstance(value, int) and not isinstance(value, bool):
        return names[value] if 0 <= value < len(names) else ""  # datasets marks a missing class as -1
    return str(value)


def _scalar(values: Sequence) -> bool:
    """True when a column holds plain values (not lists or dicts), so it can be text or a label."""
    return all(v is None or isinstance(v, (str, int, float, bool)) for v in values[:_DETECT_ROWS])


def columns_corpus(
    columns: Mapping[str, Sequence],
    name: str,
    text_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    class_names: Mapping[str, Sequence[str]] | None = None,
    max_rows: int | None = None,
    max_chars: int = 10**9,
    notes: list[str] | None = None,
) -> Corpus:
    """A :class:`Corpus` from columns (name -> N values of any plain type).

    ``class_names`` maps a column of class ids to the names of its classes (kept as the labels).
    Columns of lists or dicts are never the text or a label. Raises :class:`CorpusError` when
    there is no text column or a named column is missing.
    """
    class_names = dict(class_names or {})
    notes = list(notes or [])
    scalar = [c for c, v in columns.items() if _scalar(v)]
    if not columns or not any(len(v) for v in columns.values()):
        raise CorpusError(f"'{name}' has no rows: there is nothing to read.")
    n = len(next(iter(columns.values())))
    sample = {c: [_cell(v, class_names.get(c)) for v in columns[c][:_DETECT_ROWS]] for c in scalar}
    sample_rows = list(zip(*(sample[c] for c in scalar))) if scalar else []
    listed = ", ".join(columns)
    if text_column is None:
        candidates = [c for c in scalar if c not in class_names]
        text_column = detect_text_column(candidates, [[r[scalar.index(c)] for c in candidates] for r in sample_rows])
        if text_column is None:
            raise CorpusError(
                f"'{name}' has no text column: no column ({listed}) holds sentences. The corpus needs a "
                "column of sentences; name it with --text-column (the app picks it from the list)."
            )
    elif text_column not in columns:
        raise CorpusError(f"'{name}' has no column {text_column!r}; its columns are: {listed}.")
    elif text_column not in scalar:
        raise CorpusError(f"'{name}': column {text_column!r} holds lists or records, not sentences.")
    if label_columns is None:
        detected = detect_label_columns(scalar, sample_rows, text_column)
        label_columns = [c for c in scalar if c != text_column and (c in class_names or c in detected)]
    else:
        label_columns = check_label_columns(name, label_columns, columns, text_column)
    texts = [_cell(v) for v in columns[text_column]]
    labels = {c: [_cell(v, class_names.get(c)) for v in columns[c]] for c in label_columns}
    return table_corpus(name, columns, text_column, texts, list(range(1, n + 1)), labels, max_rows or n, max_chars,
                        notes)


# -- files ---------------------------------------------------------------------------------------


def _parquet_columns(data: bytes, filename: str) -> tuple[dict, dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorpusError(f"'{filename}' is not a readable Parquet file ({exc}).") from None
    names = {}
    raw = (table.schema.metadata or {}).get(b"huggingface")
    if raw:  # written by datasets: its features remember the ClassLabel names
        try:
            features = json.loads(raw).get("info", {}).get("features", {})
            names = {c: f["names"] for c, f in features.items() if isinstance(f, dict) and f.get("_type") == "ClassLabel"}
        except (ValueError, AttributeError, TypeError):
            names = {}
    columns = {}
    for column, field in zip(table.column_names, table.schema):
        chunked = table.column(column)
        if pa.types.is_dictionary(field.type):  # pandas categoricals: their values, not their codes
            chunked = chunked.cast(field.type.value_type)
        columns[column] = chunked.to_pylist()
    return columns, names


def _jsonl_columns(text: str, filename: str) -> dict:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a JSON array of records is read too
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"'{filename}' is not valid JSON ({exc}).") from None
        numbered = list(enumerate(records, start=1))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"'{filename}' line {number} is not valid JSON ({exc.msg}). JSON Lines holds one "
                    'object per line, such as {"text": "A sentence.", "label": "positive"}.'
                ) from None
    bad = [number for number, record in numbered if not isinstance(record, dict)]
    if bad:
        raise CorpusError(
            f"'{filename}': line(s) {', '.join(map(str, bad[:10]))} hold a JSON value that is not an object; "
            'each line must be an object such as {"text": "A sentence."}.'
        )
    keys: dict[str, None] = {}
    for _, record in numbered:
        keys.update(dict.fromkeys(record))
    return {k: [record.get(k) for _, record in numbered] for k in keys}


def load_table_corpus(
    data: bytes,
    filename: str,
    text_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    max_rows: int | None = None,
    max_bytes: int | None = None,
    max_chars: int = 10**9,
) -> Corpus:
    """A corpus from the bytes of a Parquet or JSON Lines file (see :data:`TABLE_FORMATS`).

    Columns are detected as for CSV (:func:`columns_corpus`). Raises :class:`CorpusError` for
    files that cannot be read or used."""
    filename = os.path.basename(str(filename)) or "upload"
    suffix = Path(filename).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise CorpusError(f"'{filename}': expected one of {', '.join(TABLE_FORMATS)}.")
    data = bytes(data)
    if max_bytes is not None and len(data) > max_bytes:
        raise CorpusError(f"'{filename}' is {size_text(len(data))}; the limit is {size_text(max_bytes)}.")
    if not data.strip():
        raise CorpusError(f"'{filename}' is empty: there is nothing to read.")
    names: dict = {}
    if suffix == ".parquet":
        if not data.startswith(b"PAR1"):
            raise CorpusError(f"'{filename}' does not start like a Parquet file; is it another format renamed?")
        columns, names = _parquet_columns(data, filename)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CorpusError(f"'{filename}' is not UTF-8 text; JSON Lines files are UTF-8.") from None
        columns = _jsonl_columns(text, filename)
    return columns_corpus(columns, filename, text_column, label_columns, names, max_rows, max_chars)


# -- Hugging Face datasets -------------------------------------------------------------------------


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"


def _open_dataset(source: str, config: str | None, split: str | None):
    """The ``datasets.Dataset`` (or DatasetDict when no split is given) of a folder or hub id."""
    import datasets

    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    path = Path(source)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():  # save_to_disk of several splits
            splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
            if split is None:
                raise ValueError(f"several splits ({', '.join(splits)}); pick one with --split")
            if split not in splits:
                raise ValueError(f'Unknown split "{split}". Should be one of {splits}.')
            path = path / split
        if (path / "state.json").is_file():
            try:
                return datasets.load_from_disk(str(path))
            except IndexError:  # datasets cannot concatenate zero tables: a split saved without rows
                return []
        return datasets.load_dataset(str(path), config, split=split)
    attempts = [(source, config)]
    if config is None and source.count("/") == 1:  # "glue/sst2": the data set "glue", config "sst2"
        attempts.append(tuple(source.split("/")))
    error: Exception | None = None
    for name, conf in attempts:
        try:
            return datasets.load_dataset(name, conf, split=split)
        except (ConnectionError, FileNotFoundError) as exc:
            error = error or exc
    raise error


def _split_error(source: str, exc: Exception) -> CorpusError:
    return CorpusError(f"'{source}': {' '.join(str(exc).split())} Pick one of them with --split.")


def load_dataset_corpus(
    source: str,
    config: str | None = None,
    split: str | None = None,
    text_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    max_rows: int | None = None,
    max_chars: int = 10**9,
) -> Corpus:
    """A corpus from a Hugging Face data set: ``source`` is a hub id (``"nyu-mll/glue"`` with
    ``config="sst2"``; ``"glue/sst2"`` is read as id ``glue``, config ``sst2`` when the first
    does not exist) or a local folder (``save_to_disk`` output or a folder of data files).

    ``split`` is needed when the data set has several (``train``, ``validation``...). Class labels
    keep their names. Raises :class:`CorpusError` for an id that cannot be reached (offline and
    not cached), an unknown split or config, an empty split, or no text column.
    """
    import datasets

    source = str(source).strip()
    if not source:
        raise CorpusError("No data set was named: give a hub id such as nyu-mll/glue or a local folder.")
    try:
        ds = _open_dataset(source, config, split)
    except (ConnectionError, FileNotFoundError) as exc:
        if _offline():
            raise CorpusError(
                f"'{source}' is not in the local data set cache and downloads are off (HF_HUB_OFFLINE=1). "
                "Load it once where the hub is reachable, or give a local folder or file."
            ) from exc
        raise CorpusError(
            f"Could not find a data set called '{source}' ({' '.join(str(exc).split())[:200]}). Check the "
            "id, or give a local folder (save_to_disk output or data files) or a file."
        ) from exc
    except ValueError as exc:
        if str(exc).startswith("several splits"):
            raise CorpusError(f"'{source}' has {exc} (e.g. --split train).") from exc
        if "split" in str(exc).lower():
            raise _split_error(source, exc) from exc
        if "config" in str(exc).lower():
            raise CorpusError(f"'{source}': {' '.join(str(exc).split())} Pick one with --config.") from exc
        raise CorpusError(f"'{source}' could not be read as a data set: {exc}") from exc
    except datasets.exceptions.DatasetNotFoundError as exc:
        raise CorpusError(f"No data set called '{source}': check the id or give a local folder.") from exc
    if isinstance(ds, datasets.DatasetDict):
        raise CorpusError(
            f"'{source}' has several splits ({', '.join(ds)}); pick one with --split (e.g. --split {next(iter(ds))})."
        )
    label = f"{source}{f' ({config})' if config else ''}{f' [{split}]' if split else ''}"
    if len(ds) == 0 or not ds.column_names:
        raise CorpusError(f"{label} is empty: the split has no rows. Pick another split.")
    if max_rows is not None and len(ds) > max_rows:
        ds = ds.select(range(int(max_rows)))
    names = {c: f.names for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)}
    table = ds.with_format("arrow")[:]  # honours a selection's index mapping
    columns = {c: table.column(c).to_pylist() for c in ds.column_names}
    return columns_corpus(columns, label, text_column, label_columns, names, None, max_chars)
