"""Reading corpus and sentence-pair files: decoding, CSV dialects, column detection, limits.

Uploaded bytes become a :class:`~clsviz.corpus.Corpus` (:func:`load_corpus`) or a pairs table
(:func:`load_pairs`). Everything that can be wrong with a file a person uploads - binary data,
a wrong encoding, broken quoting, no text column, too many rows - is a :class:`CorpusError`
whose message says what was wrong and what to do.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .corpus import Corpus
from .corpus_rules import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_ROWS,
    MAX_BYTES_ENV,
    CorpusError,
    check_label_columns,
    detect_label_columns,
    detect_text_column,
    finish_corpus,
    have,
    limits_from_env,
    rows_text,
    size_text,
    table_corpus,
)
from .formats import load_table_corpus
from .tracing import has_content

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CorpusError",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_ROWS",
    "PAIR_COLUMNS",
    "detect_label_columns",
    "detect_text_column",
    "limits_from_env",
    "load_corpus",
    "load_pairs",
]


PAIR_COLUMNS = ("sentence1", "sentence2", "score")

_DELIMITERS = (",", ";", "\t", "|")
_NO_DELIMITER = "\x1f"  # a one-column CSV: no character in the text splits it
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # control characters but tab / newlines
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx or .ods workbook is one); save the sheet as CSV"),
    (b"%PDF", "a PDF document; copy the sentences into a .txt file, one per line"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive; unpack it first"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls / .doc); save the sheet as CSV"),
    (b"SQLite format 3", "a SQLite database"),
    (b"PAR1", "a Parquet file; give it a .parquet name"),
)


def _looks_utf16(data: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' for BOM-less UTF-16 text (every other byte is zero), else None."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    half = len(sample) // 2
    odd_zero = sum(1 for b in sample[1::2] if b == 0) / half
    even_zero = sum(1 for b in sample[0::2] if b == 0) / half
    if odd_zero > 0.9 and even_zero < 0.1:
        return "utf-16-le"
    if even_zero > 0.9 and odd_zero < 0.1:
        return "utf-16-be"
    return None


def _decode(data: bytes, filename: str) -> tuple[str, list[str]]:
    """Text of a file (UTF-8 with or without BOM, UTF-16, else Windows-1252 / Latin-1).

    Raises CorpusError for empty and binary files. Returns (text, notes)."""
    if not data or not data.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        raise CorpusError(f"'{filename}' is empty: there is nothing to read.")
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise CorpusError(f"'{filename}' is {what}, not a text file. Upload a CSV or a TXT file.")
    notes: list[str] = []
    if data.startswith(b"\xef\xbb\xbf"):
        encodings = ["utf-8-sig"]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encodings = ["utf-16"]
    elif (guess := _looks_utf16(data)) is not None:
        encodings = [guess]
    elif b"\x00" in data:
        raise CorpusError(
            f"'{filename}' looks like a binary file (it contains NUL bytes), not text. "
            "Upload a CSV or a TXT file saved as UTF-8."
        )
    else:
        encodings = ["utf-8", "cp1252", "latin-1"]
    text = None
    for encoding in encodings:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        name = encodings[0].upper().replace("-SIG", "")
        raise CorpusError(f"'{filename}' starts like {name} but is not valid {name}; save it as UTF-8.")
    if encodings[0] == "utf-8" and encoding != "utf-8":
        notes.append(
            f"The file is not valid UTF-8; it was read as {'Windows-1252' if encoding == 'cp1252' else 'Latin-1'}. "
            "Check accented letters, or save the file as UTF-8."
        )
    text = text.lstrip("\ufeff")
    controls = len(_CONTROL.findall(text))
    if controls > max(8, len(text) // 100):
        raise CorpusError(
            f"'{filename}' looks like a binary file ({controls:,} control characters), not text. "
            "Upload a CSV or a TXT file."
        )
    if not has_content(text):
        raise CorpusError(f"'{filename}' is empty: it holds only spaces or blank lines.")
    return text, notes


def _kind(filename: str) -> str:
    suffix = os.path.splitext(filename.lower())[1]
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix in (".txt", ".text", ""):
        return "txt"
    if suffix in (".parquet", ".jsonl", ".ndjson", ".json"):
        return "table"
    raise CorpusError(
        f"'{filename}': files ending in '{suffix}' are not read; upload a .csv, .tsv, .txt, .parquet or .jsonl file."
    )


def _delimiter(text: str, kind: str) -> tuple[str, str]:
    """(delimiter, text): Excel's "sep=;" first line is honoured (and removed); otherwise the
    delimiter is the candidate that occurs most often in the header line outside quotes."""
    first, _, rest = text.partition("\n")
    hint = re.fullmatch(r"\s*sep=(.)\s*", first)
    if hint:
        return hint.group(1), rest
    if kind == "tsv":
        return "\t", text
    outside = re.sub(r'"[^"]*"', "", first)
    counts = {d: outside.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return (best if counts[best] else _NO_DELIMITER), text


def _read_table(text: str, filename: str, kind: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and each row's line number in the file (header = line 1)."""
    delimiter, body_text = _delimiter(text, kind)
    offset = 1 if body_text is not text else 0
    # One cell may hold the whole file (it is cut to max_chars later); the csv module's default
    # limit (128 KiB) would refuse it. Raising the process-wide limit only ever allows more.
    if csv.field_size_limit() < len(body_text) + 1:
        csv.field_size_limit(len(body_text) + 1)
    reader = csv.reader(io.StringIO(body_text, newline=""), delimiter=delimiter, strict=True)
    rows, lines = [], []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line; rows of empty cells are kept and dropped later with a note
            rows.append(row)
            lines.append(reader.line_num + offset)
    except csv.Error as exc:
        raise CorpusError(
            f"'{filename}' is not a well-formed CSV (near line {reader.line_num + offset}: {exc}). "
            'Check the quotes: a field that contains the delimiter or a line break must be wrapped in "...".'
        ) from None
    if not rows:
        raise CorpusError(f"'{filename}' is empty: there is nothing to read.")
    header = [h.strip() for h in rows[0]]
    body, body_lines = rows[1:], lines[1:]
    if not body:
        raise CorpusError(f"'{filename}' has a header line but no rows under it.")
    bad = [line for row, line in zip(body, body_lines) if len(row) != len(header)]
    if bad:
        counts = sorted({len(row) for row in body if len(row) != len(header)})
        sep = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}.get(delimiter, "single column")
        raise CorpusError(
            f"'{filename}' is not a well-formed CSV: the header has {len(header)} field(s) "
            f"({sep}-separated) but {rows_text(bad, 'lines')} {have(bad)} {'/'.join(map(str, counts))}. "
            'Wrap fields that contain the delimiter in double quotes ("...").'
        )
    # Unnamed or repeated column names get unique names a person can still recognise.
    seen: dict[str, int] = {}
    names = []
    for i, h in enumerate(header, start=1):
        name = h or f"column {i}"
        if name in seen:
            seen[name] += 1
            name = f"{name} ({seen[name]})"
        else:
            seen[name] = 1
        names.append(name)
    return names, body, body_lines


def load_corpus(
    data: bytes,
    filename: str,
    text_column: str | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_chars: int = DEFAULT_MAX_CHARS,
    label_columns: Sequence[str] | None = None,
) -> Corpus:
    """Read a corpus from the bytes of a CSV / TSV (a header line, a text column, label columns),
    a TXT file (one text per line), or a Parquet / JSON Lines file (:mod:`clsviz.formats`).

    The text column is ``text_column``, else the mostly non-numeric column with the longest
    average value; label columns are ``label_columns``, else the other columns with few
    distinct values. Empty texts are dropped, at most ``max_rows`` texts are kept and each is
    cut to ``max_chars`` characters, each with a note in ``Corpus.messages``. Raises
    :class:`CorpusError` for files that cannot be used (empty, binary, malformed, too large,
    no text column).
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    filename = os.path.basename(str(filename)) or "upload"
    if max_rows < 1 or max_chars < 1 or max_bytes < 1:
        raise ValueError("max_rows, max_bytes and max_chars must be at least 1")
    if len(data) > max_bytes:
        raise CorpusError(
            f"'{filename}' is {size_text(len(data))}; the limit is {size_text(max_bytes)}. Upload a smaller file "
            f"or raise max_bytes ({MAX_BYTES_ENV} for the app)."
        )
    kind = _kind(filename)
    if kind == "table":  # Parquet / JSON Lines: clsviz.formats reads them into the same Corpus

        return load_table_corpus(data, filename, text_column, label_columns, max_rows, max_bytes, max_chars)
    text, notes = _decode(data, filename)
    if kind == "txt":
        if text_column is not None:
            raise CorpusError(f"'{filename}' is a TXT file (one text per line); it has no columns to choose.")
        lines = text.splitlines()
        texts, _ = finish_corpus(lines, list(range(1, len(lines) + 1)), {}, "lines", max_rows, max_chars, notes)
        return Corpus(texts=tuple(texts), labels={}, name=filename, messages=tuple(notes))

    columns, rows, numbers = _read_table(text, filename, kind)
    if len(columns) == 1 and (len(columns[0]) > 40 or columns[0][-1:] in ".?!"):
        notes.append(
            f"The first line ({columns[0][:60]!r}) was read as the column name, not as a text: a CSV starts "
            "with a header line. To use every line as a text, upload it as a .txt file."
        )
    if text_column is None:
        text_column = detect_text_column(columns, rows)
        if text_column is None:
            raise CorpusError(
                f"'{filename}' has no text column: every column ({', '.join(columns)}) holds numbers or is "
                "empty. The corpus needs a column of sentences."
            )
    elif text_column not in columns:
        raise CorpusError(f"'{filename}' has no column {text_column!r}; its columns are: {', '.join(columns)}.")
    if label_columns is None:
        label_columns = detect_label_columns(columns, rows, text_column)
    else:
        label_columns = check_label_columns(filename, label_columns, columns, text_column)
    j = columns.index(text_column)
    labels = {c: [r[columns.index(c)] for r in rows] for c in label_columns}
    return table_corpus(filename, columns, text_column, [r[j] for r in rows], numbers, labels, max_rows, max_chars,
                        notes)


def load_pairs(
    data: bytes,
    filename: str,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> pd.DataFrame:
    """Read scored sentence pairs from a CSV / TSV with columns ``sentence1, sentence2, score``
    (any numeric scale; an optional ``kind`` column is kept). Returns a pandas.DataFrame.

    Raises :class:`CorpusError` naming the rows with an empty sentence or a score that is not
    a number, and for empty, binary, malformed or too large files."""
    import pandas as pd

    if isinstance(data, str):
        data = data.encode("utf-8")
    data = bytes(data)
    filename = os.path.basename(str(filename)) or "upload"
    if len(data) > max_bytes:
        raise CorpusError(f"'{filename}' is {size_text(len(data))}; the limit is {size_text(max_bytes)}.")
    kind = _kind(filename)
    if kind in ("txt", "table"):
        raise CorpusError(f"'{filename}': sentence pairs need a CSV with columns sentence1, sentence2, score.")
    text, _ = _decode(data, filename)
    columns, rows, numbers = _read_table(text, filename, kind)
    lower = {c.lower(): i for i, c in enumerate(columns)}
    missing = [c for c in PAIR_COLUMNS if c not in lower]
    if missing:
        raise CorpusError(
            f"'{filename}' needs the columns sentence1, sentence2, score; {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing (found: {', '.join(columns)})."
        )
    if len(rows) > max_rows:
        raise CorpusError(f"'{filename}' has {len(rows):,} pairs; the limit is {max_rows:,}.")
    s1 = [r[lower["sentence1"]].strip() for r in rows]
    s2 = [r[lower["sentence2"]].strip() for r in rows]
    raw = [r[lower["score"]].strip() for r in rows]
    scores = []
    for value in raw:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        scores.append(score if math.isfinite(score) else math.nan)
    empty = [n for n, a, b in zip(numbers, s1, s2) if not (has_content(a) and has_content(b))]
    nonnumeric = [n for n, s in zip(numbers, scores) if math.isnan(s)]
    problems = []
    if empty:
        problems.append(f"{rows_text(empty)} {have(empty)} an empty sentence")
    if nonnumeric:
        problems.append(f"{rows_text(nonnumeric)} {have(nonnumeric)} a score that is not a number")
    if problems:
        raise CorpusError(f"'{filename}': {'; '.join(problems)} (line numbers of the file, header = 1).")
    frame = pd.DataFrame({"sentence1": s1, "sentence2": s2, "score": np.array(scores, dtype=float)})
    if "kind" in lower:
        frame["kind"] = [r[lower["kind"]].strip() for r in rows]
    return frame
