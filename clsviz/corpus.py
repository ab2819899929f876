"""Corpora: the :class:`Corpus` object (texts and label columns), the demo corpus and pairs,
and label-aware sampling. Files are read by :mod:`clsviz.readers`; vectors come from
:func:`clsviz.extract` (:mod:`clsviz.vectors`)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import numpy as np

__all__ = ["DEMO_LABELS", "FINETUNE_LABEL", "Corpus", "demo_corpus", "demo_pairs", "is_missing", "labelled_rows", "stratified_rows"]

DEMO_LABELS = ("topic", "sentiment", "form", "order")
FINETUNE_LABEL = "sentiment"
"""The demo label fine-tuning starts from (``clsviz.experiments.finetune.DEFAULT_LABEL``): the bundled
model does not already solve it, where "topic" and "form" are at ceiling before any training."""


@dataclass(frozen=True, eq=False)
class Corpus:
    """Texts to embed, with optional label columns.

    * ``texts``: the N texts (stripped, non-empty)
    * ``labels``: label column name -> N values (strings; "" where a row has no value)
    * ``name``: a short name to show (the file name, or "demo corpus")
    * ``messages``: notes made while loading (rows dropped or cut, limits applied)
    * ``text_column``: the CSV column the texts came from (None for TXT and hand-made corpora)
    * ``columns``: every column of the CSV, in file order (empty for TXT)
    """

    texts: tuple[str, ...]
    labels: dict = field(default_factory=dict)
    name: str = "corpus"
    messages: tuple[str, ...] = ()
    text_column: str | None = None
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        texts = tuple(self.texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("Corpus texts must be strings.")
        labels = {}
        for column, values in dict(self.labels).items():
            values = tuple(values)
            if len(values) != len(texts):
                raise ValueError(f"label column {column!r}: expected {len(texts)} values, got {len(values)}")
            labels[str(column)] = values
        object.__setattr__(self, "texts", texts)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "columns", tuple(self.columns))

    def __len__(self) -> int:
        return len(self.texts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Corpus):
            return NotImplemented
        return self.content_hash == other.content_hash

    def __hash__(self) -> int:
        return hash(self.content_hash)

    @cached_property
    def content_hash(self) -> str:
        """sha256 (hex) of the texts and label columns: equal content, equal hash."""
        payload = json.dumps(
            {"texts": list(self.texts), "labels": {k: list(v) for k, v in sorted(self.labels.items())}},
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def __repr__(self) -> str:
        return (
            f"Corpus(name={self.name!r}, texts={len(self.texts)}, labels={list(self.labels)}, "
            f"messages={len(self.messages)})"
        )

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(self.labels)

    def labelled(self, column: str) -> Corpus:
        """The rows that have a value in label ``column`` (e.g. the word-order pairs of the demo)."""
        if column not in self.labels:
            raise KeyError(f"no label column {column!r}; available: {', '.join(self.labels) or 'none'}")
        return self.subset([i for i, v in enumerate(self.labels[column]) if str(v).strip()])

    def subset(self, rows: Sequence[int] | slice, name: str | None = None) -> Corpus:
        """A corpus of some rows (indices or a slice), labels kept row by row."""
        index = list(range(len(self.texts)))[rows] if isinstance(rows, slice) else [int(r) for r in rows]
        return Corpus(
            texts=tuple(self.texts[i] for i in index),
            labels={k: tuple(v[i] for i in index) for k, v in self.labels.items()},
            name=self.name if name is None else name,
            messages=self.messages,
            text_column=self.text_column,
            columns=self.columns,
        )

    def to_frame(self):
        """pandas.DataFrame with a ``text`` column and one column per label."""
        import pandas as pd

        return pd.DataFrame({"text": list(self.texts), **{k: list(v) for k, v in self.labels.items()}})


def _data_path(name: str):
    from importlib.resources import files

    return files("clsviz").joinpath("data", name)


@lru_cache(maxsize=1)
def _demo_rows() -> tuple[tuple[str, ...], dict]:
    text = _data_path("demo_corpus.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    texts = tuple(r["text"] for r in rows)
    labels = {k: tuple(r[k] for r in rows) for k in DEMO_LABELS}
    return texts, labels


def demo_corpus() -> Corpus:
    """The demo corpus shipped with clsviz (see ``clsviz/data/README.md``).

    Label columns: ``topic``, ``sentiment`` (positive / negative), ``form`` (question /
    statement / command) and ``order`` (who acts in the word-order pairs; "" elsewhere).
    """
    texts, labels = _demo_rows()
    return Corpus(texts=texts, labels=dict(labels), name="demo corpus", text_column="text",
                  columns=("text", *DEMO_LABELS))


def demo_pairs():
    """pandas.DataFrame of the scored demo pairs: ``sentence1, sentence2, score`` (0-5), ``kind``
    (paraphrase / related / unrelated)."""
    import pandas as pd

    with _data_path("demo_pairs.csv").open("r", encoding="utf-8") as fh:
        frame = pd.read_csv(fh, dtype={"sentence1": str, "sentence2": str, "kind": str}, keep_default_na=False)
    frame["score"] = frame["score"].astype(float)
    return frame[["sentence1", "sentence2", "score", "kind"]]




def is_missing(value) -> bool:
    """True for a label cell with no value: None, NaN, or blank text."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def labelled_rows(texts, labels, label: str, error: type[Exception] = ValueError) -> tuple[list[int], list[str]]:
    """(indices of the rows that have a label, the note when some were left out); raises
    ``error`` when there is not one label per text."""
    if len(labels) != len(texts):
        raise error(f"{len(labels)} labels for {len(texts)} texts: give one label per text.")
    keep = [i for i, v in enumerate(labels) if not is_missing(v)]
    dropped = len(texts) - len(keep)
    notes = [f"{dropped} of {len(texts)} texts have no '{label}' label and were left out."] if dropped else []
    return keep, notes


def stratified_rows(labels: Sequence, n: int, seed: int = 0) -> np.ndarray:
    """int64 [min(n, N)]: the indexes of ``n`` of the N ``labels``, stratified by label value
    where every class can be split (else a plain seeded random sample), in ascending order.
    All indexes when ``n >= N``."""
    total = len(labels)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    values = np.asarray([str(v) for v in labels], dtype=object)
    try:
        from sklearn.model_selection import train_test_split

        picked, _ = train_test_split(np.arange(total), train_size=int(n), stratify=values, random_state=seed)
    except ValueError:  # a class too small to stratify: a plain random sample
        picked = np.random.default_rng(seed).choice(total, size=int(n), replace=False)
    return np.sort(np.asarray(picked, dtype=np.int64))
