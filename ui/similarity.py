"""Streamlit helpers of the Similarity page: the cached per-model baseline, the scored-pairs
picker (demo pairs or an upload), the pairs' vectors, and the help texts of the cosine views
(:data:`VIEW_HELP`) and of the baseline's references (:data:`REFERENCE_HELP`)."""

from __future__ import annotations

import hashlib
import os

import pandas as pd
import streamlit as st

from clsviz import Corpus, Encoder, PooledVectors, demo_pairs
from clsviz.baseline import REFERENCE_HELP, VIEW_HELP, Baseline, measure_baseline
from clsviz.benchmark import COMPARE_POOLINGS, pair_texts
from clsviz.readers import CorpusError, limits_from_env, load_pairs
from ui.cache import cached
from ui.corpus import corpus_vectors
from ui.text import plain

from .widgets import radio

__all__ = ["REFERENCE_HELP", "VIEW_HELP", "benchmark_vectors", "cached_baseline", "pairs_picker", "read_pairs_upload"]

DEMO_PAIRS = "Demo pairs"
UPLOAD_PAIRS = "Upload a CSV"

BASELINE_SAMPLE_ENV = "CLSVIZ_BASELINE_SAMPLE"
"""Environment variable: how many texts the per-model baseline samples (default 200)."""
DEFAULT_BASELINE_SAMPLE = 200


def baseline_sample() -> int:
    """Texts sampled for the baseline: ``CLSVIZ_BASELINE_SAMPLE`` (at least 8), else 200."""
    raw = os.environ.get(BASELINE_SAMPLE_ENV, "").strip()
    return max(8, int(raw)) if raw.isdigit() else DEFAULT_BASELINE_SAMPLE


def cached_baseline(encoder: Encoder) -> Baseline | None:
    """The anisotropy baseline of ``encoder`` (measured once per model); None, after a
    warning, when it cannot be measured."""
    try:
        with st.spinner(f"Measuring how similar unrelated sentences look to {encoder.name} (once per model)…"):
            sample = baseline_sample()
            return cached("baseline", (encoder.name, sample), lambda: measure_baseline(encoder, sample=sample))
    except Exception as exc:  # the page still works without a baseline: raw cosines only
        st.warning(
            plain(f"The unrelated-sentence baseline could not be measured ({type(exc).__name__}: {exc}). "
                  "Only raw cosines are shown."),
            icon=":material/warning:",
        )
        return None


def _load_pairs(data: bytes, filename: str, max_rows: int, max_bytes: int) -> pd.DataFrame:
    key = (hashlib.sha256(data).hexdigest(), filename, max_rows, max_bytes)
    return cached("pairs.upload", key, lambda: load_pairs(data, filename, max_rows=max_rows, max_bytes=max_bytes))


def read_pairs_upload(data: bytes, filename: str) -> tuple[pd.DataFrame | None, str | None]:
    """(pairs, None) for a usable pairs file, else (None, a message a person can act on)."""
    limits = limits_from_env()
    try:
        pairs = _load_pairs(data, filename, limits["max_rows"], limits["max_bytes"])
    except CorpusError as exc:
        return None, str(exc)
    except Exception as exc:  # an unexpected failure must not reach the page as a traceback
        return None, f"'{filename}' could not be read ({type(exc).__name__}: {exc})."
    if len(pairs) < 3:
        return None, f"'{filename}' has {len(pairs)} pair(s); a rank correlation needs at least 3."
    return pairs, None


def pairs_picker(key: str) -> tuple[pd.DataFrame, str] | None:
    """The demo pairs or an uploaded ``sentence1,sentence2,score`` CSV; returns (pairs, name),
    or None after a message when there is nothing usable."""
    source = radio(st, "Scored pairs", (DEMO_PAIRS, UPLOAD_PAIRS), key=f"{key}.source", horizontal=True)
    if source == DEMO_PAIRS:
        try:
            return demo_pairs(), "demo pairs"
        except Exception as exc:  # a broken installation: say so instead of a traceback
            st.error(plain(f"The demo pairs could not be read ({type(exc).__name__}: {exc})."))
            return None
    file = st.file_uploader(
        "Pairs file (CSV or TSV with columns sentence1, sentence2, score)",
        type=["csv", "tsv"],
        key=f"{key}.file",
        help="One pair per row; score is any number (e.g. 0–5 as in STS-B). An optional 'kind' column "
        "colours the scatter plot.",
    )
    if file is None:
        st.info(
            "Upload a CSV with a header line and the columns sentence1, sentence2, score, "
            "or pick the demo pairs.",
            icon=":material/upload_file:",
        )
        return None
    pairs, problem = read_pairs_upload(file.getvalue(), file.name)
    if problem:
        st.error(plain(problem), icon=":material/error:")
        return None
    return pairs, file.name


def benchmark_vectors(encoder: Encoder, pairs: pd.DataFrame, name: str) -> PooledVectors | None:
    """The vectors of every sentence of ``pairs`` (embedded once per model and content, with a
    progress bar, through the shared corpus-vector cache); None after a message on failure."""
    return corpus_vectors(encoder, Corpus(texts=pair_texts(pairs), name=name), poolings=COMPARE_POOLINGS)
