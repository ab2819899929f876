"""What every corpus reader shares: the error a person can act on, the upload limits, how the
text and label columns are detected, and the final checks every corpus goes through (empty texts
dropped, row and length limits applied, each with a note).

:mod:`clsviz.readers` (CSV, TSV, TXT) and :mod:`clsviz.formats` (Parquet, JSON Lines, Hugging Face
data sets) both end here, so a corpus reads the same whatever its file format.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from .corpus import Corpus
from .tracing import has_content

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MAX_ROWS",
    "MAX_BYTES_ENV",
    "MAX_CHARS_ENV",
    "MAX_ROWS_ENV",
    "CorpusError",
    "check_label_columns",
    "detect_label_columns",
    "detect_text_column",
    "finish_corpus",
    "have",
    "limits_from_env",
    "rows_text",
    "size_text",
    "table_corpus",
]

MAX_ROWS_ENV = "CLSVIZ_MAX_ROWS"
MAX_BYTES_ENV = "CLSVIZ_MAX_BYTES"
MAX_CHARS_ENV = "CLSVIZ_MAX_CHARS"
DEFAULT_MAX_ROWS = 5000
DEFAULT_MAX_BYTES = 20_000_000
DEFAULT_MAX_CHARS = 2000

# A label column has at most this many distinct values (and fewer than the rows).
_MAX_LABEL_VALUES = 50
_DETECT_ROWS = 5000  # column detection looks at the first rows only
_NUMBER = re.compile(r"^\s*[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?\s*%?\s*$")


class CorpusError(ValueError):
    """A corpus or pairs file that cannot be used; the message says what is wrong and what to do."""



def limits_from_env() -> dict:
    """``max_rows`` / ``max_bytes`` / ``max_chars`` for uploads, from ``CLSVIZ_MAX_ROWS`` etc."""
    out = {}
    for key, env, default in (
        ("max_rows", MAX_ROWS_ENV, DEFAULT_MAX_ROWS),
        ("max_bytes", MAX_BYTES_ENV, DEFAULT_MAX_BYTES),
        ("max_chars", MAX_CHARS_ENV, DEFAULT_MAX_CHARS),
    ):
        raw = os.environ.get(env, "").strip().replace("_", "").replace(",", "")
        out[key] = int(raw) if raw.isdigit() and int(raw) > 0 else default
    return out


def rows_text(numbers: Sequence[int], word: str = "rows", limit: int = 10) -> str:
    """'row 4' / 'rows 4, 9, 12 and 3 more' (word is the plural)."""
    shown = ", ".join(str(n) for n in numbers[:limit])
    more = f" and {len(numbers) - limit} more" if len(numbers) > limit else ""
    return f"{word if len(numbers) > 1 else word[:-1]} {shown}{more}"


def have(numbers: Sequence[int]) -> str:
    return "have" if len(numbers) > 1 else "has"


def size_text(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _text_like(values: Sequence[str]) -> bool:
    filled = [v for v in values if v.strip()]
    if not filled:
        return False
    wordy = sum(1 for v in filled if not _NUMBER.match(v) and any(ch.isalpha() for ch in v))
    return wordy / len(filled) > 0.5


def _mean_length(values: Sequence[str]) -> float:
    return sum(len(v.strip()) for v in values) / max(1, len(values))


def detect_text_column(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str | None:
    """The column with the longest average value among the mostly non-numeric ones, or None
    (judged on the first rows)."""
    rows = rows[:_DETECT_ROWS]
    best, best_len = None, -1.0
    for j, column in enumerate(columns):
        values = [r[j] for r in rows]
        if _text_like(values) and _mean_length(values) > best_len:
            best, best_len = column, _mean_length(values)
    return best


def detect_label_columns(columns: Sequence[str], rows: Sequence[Sequence[str]], text_column: str) -> list[str]:
    """Columns other than the text column with few distinct values: 2 to 50, and fewer than the
    rows (at most half of them from 20 rows on), so ids and free text are left out."""
    out = []
    rows = rows[:_DETECT_ROWS]
    n = len(rows)
    most = min(_MAX_LABEL_VALUES, n - 1 if n < 20 else n // 2)
    for j, column in enumerate(columns):
        if column == text_column:
            continue
        distinct = {r[j].strip() for r in rows}
        if 2 <= len(distinct) <= most:
            out.append(column)
    return out


def finish_corpus(
    texts: list[str],
    numbers: list[int],
    labels: dict[str, list[str]],
    unit: str,
    max_rows: int,
    max_chars: int,
    notes: list[str],
) -> tuple[list[str], dict[str, list[str]]]:
    """Drop empty texts, apply the row limit, cut long texts; notes for each."""
    keep, dropped = [], []
    stop = len(texts)
    for i, t in enumerate(texts):
        if len(keep) == max_rows:
            stop = i
            break
        (keep if has_content(t) else dropped).append(i)
    if not keep:
        raise CorpusError(f"Every {unit[:-1]} is empty: there are no texts to use.")
    if dropped:
        notes.append(f"{len(dropped):,} empty {unit if len(dropped) > 1 else unit[:-1]} dropped "
                     f"({rows_text([numbers[i] for i in dropped], unit)}).")
    # Past the limit only a count is needed; str.strip is a fast stand-in for _has_content.
    more = sum(1 for t in texts[stop:] if t.strip())
    if more:
        notes.append(f"{len(keep) + more:,} {unit}; the first {max_rows:,} are used — raise max_rows "
                     f"({MAX_ROWS_ENV} for the app) to use more.")
    out_texts = [texts[i].strip() for i in keep]
    cut = [numbers[keep[k]] for k, t in enumerate(out_texts) if len(t) > max_chars]
    if cut:
        out_texts = [t[:max_chars].rstrip() if len(t) > max_chars else t for t in out_texts]
        notes.append(f"{len(cut):,} text(s) longer than {max_chars:,} characters were cut to that length "
                     f"({rows_text(cut, unit)}) — raise max_chars ({MAX_CHARS_ENV} for the app) to keep more.")
    repeated = len(out_texts) - len(set(out_texts))
    if repeated:
        notes.append(f"{repeated:,} text(s) repeat an earlier one; each copy is kept.")
    return out_texts, {k: [v[i].strip() for i in keep] for k, v in labels.items()}


def check_label_columns(name: str, label_columns: Sequence[str], columns, text_column: str) -> list[str]:
    """The label columns asked for, less the text column; :class:`CorpusError` naming any that
    ``columns`` (the table's column names) lacks."""
    missing = [c for c in label_columns if c not in columns]
    if missing:
        raise CorpusError(f"'{name}' has no column(s) {', '.join(map(repr, missing))}; "
                          f"its columns are: {', '.join(columns)}.")
    return [c for c in label_columns if c != text_column]


def table_corpus(name: str, columns, text_column: str, texts: list[str], numbers: list[int],
                 labels: dict[str, list[str]], max_rows: int, max_chars: int, notes: list[str]) -> Corpus:
    """The :class:`Corpus` of a table's text column and label columns (rows ``numbers``), finished
    by :func:`finish_corpus` with ``notes``."""
    texts, labels = finish_corpus(texts, numbers, labels, "rows", max_rows, max_chars, notes)
    return Corpus(
        texts=tuple(texts),
        labels={k: tuple(v) for k, v in labels.items()},
        name=name,
        messages=tuple(notes),
        text_column=text_column,
        columns=tuple(columns),
    )
