"""How close a recovered sentence is to the real one: token F1, BLEU and exact match, per sentence
and over a set of sentences with bootstrap intervals.

Both strings are compared as the encoder's tokenizer writes them back (its word pieces decoded:
an uncased tokenizer lower-cases and strips accents, so nothing it discards is asked for).

* **token F1**: the multiset F1 of the *words* of the two strings - lower-cased runs of letters
  and digits, and each punctuation mark on its own (``\\w+|[^\\w\\s]``). Words rather than word
  pieces, so that models with different tokenizers are scored on the same units.
* **BLEU**: sacrebleu's (Post 2018; the standard implementation, ``13a`` tokenisation, 0-100).
  Per sentence with exponential smoothing and effective order (sacrebleu's sentence-level
  recommendation); over a set, corpus BLEU from the summed n-gram counts (no smoothing), as
  inversion papers report it. Its interval resamples the sentences' counts.
* **exact**: the two strings equal after collapsing white space.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sacrebleu.metrics import BLEU

from ..metrics import bootstrap_interval, resample_rows

__all__ = [
    "SCORES",
    "bleu_counts",
    "corpus_bleu",
    "exact_match",
    "score_interval",
    "score_pairs",
    "sentence_bleu",
    "token_f1",
    "words",
]

SCORES = ("token_f1", "bleu", "exact")
"""The per-sentence scores of :func:`score_pairs`, in the order tables show them."""

_WORDS = re.compile(r"\w+|[^\w\s]")
_SENTENCE_BLEU = BLEU(effective_order=True)


def words(text: str) -> list[str]:
    """The lower-cased words and punctuation marks of ``text`` (the units of token F1)."""
    return _WORDS.findall(str(text).lower())


def token_f1(output: str, reference: str) -> float:
    """Multiset F1 of the words of ``output`` against ``reference``, in [0, 1] (1 when both are empty)."""
    out, ref = Counter(words(output)), Counter(words(reference))
    if not out and not ref:
        return 1.0
    common = sum((out & ref).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(out.values()), common / sum(ref.values())
    return float(2 * precision * recall / (precision + recall))


def sentence_bleu(output: str, reference: str) -> float:
    """Smoothed sentence BLEU (0-100) of ``output`` against ``reference``."""
    return float(np.clip(_SENTENCE_BLEU.sentence_score(str(output), [str(reference)]).score, 0.0, 100.0))


def exact_match(output: str, reference: str) -> bool:
    """True when the two strings are equal after collapsing white space."""
    return " ".join(str(output).split()) == " ".join(str(reference).split())


def bleu_counts(outputs: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """int64 [N, 10]: per sentence the matched and total 1..4-gram counts, then the output's and
    the reference's length (what corpus BLEU sums)."""
    rows = []
    for o, r in zip(outputs, references, strict=True):
        s = _SENTENCE_BLEU.sentence_score(str(o), [str(r)])
        rows.append([*s.counts, *s.totals, s.sys_len, s.ref_len])
    return np.asarray(rows, dtype=np.int64).reshape(-1, 10)


def corpus_bleu(counts: np.ndarray) -> float:
    """Corpus BLEU (0-100) from :func:`bleu_counts` rows (summed over the rows)."""
    total = np.asarray(counts, dtype=np.int64).sum(axis=0)
    score = BLEU.compute_bleu(total[:4].tolist(), total[4:8].tolist(), int(total[8]), int(total[9])).score
    return float(np.clip(score, 0.0, 100.0))


def score_pairs(outputs: Sequence[str], references: Sequence[str]) -> pd.DataFrame:
    """Per sentence: columns ``token_f1`` (0-1), ``bleu`` (sentence BLEU, 0-100), ``exact`` (bool)."""
    outputs, references = [str(o) for o in outputs], [str(r) for r in references]
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs for {len(references)} references; give one output per reference.")
    return pd.DataFrame(
        {
            "token_f1": [token_f1(o, r) for o, r in zip(outputs, references)],
            "bleu": [sentence_bleu(o, r) for o, r in zip(outputs, references)],
            "exact": [exact_match(o, r) for o, r in zip(outputs, references)],
        }
    )


def score_interval(scores: pd.DataFrame, outputs: Sequence[str], references: Sequence[str], n_boot: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """Each score over a set of sentences with its 95% bootstrap interval (sentences resampled).

    ``scores`` is :func:`score_pairs`' table for ``outputs`` / ``references``. Rows: ``token_f1``
    (mean), ``bleu`` (corpus BLEU, 0-100), ``exact`` (share); columns metric, estimate, low, high, n.
    """
    n = len(scores)
    rows = []
    for metric in ("token_f1", "exact"):
        values = scores[metric].to_numpy(dtype=np.float64)
        est, low, high = bootstrap_interval(np.mean, values, n_boot=n_boot, seed=seed) if n > 1 else (
            float(values.mean()) if n else float("nan"), float("nan"), float("nan"))
        rows.append({"metric": metric, "estimate": est, "low": low, "high": high, "n": n})
    counts = bleu_counts(outputs, references)
    bleu = corpus_bleu(counts) if n else float("nan")
    if n > 1:
        values = np.array([corpus_bleu(counts[r]) for r in resample_rows(n, n_boot, seed)])
        low, high = (float(v) for v in np.percentile(values, [2.5, 97.5]))
    else:
        low = high = float("nan")
    rows.insert(1, {"metric": "bleu", "estimate": bleu, "low": low, "high": high, "n": n})
    return pd.DataFrame(rows)
