"""The "HTML report" download: the offline report of the current sentence, built on click."""

from __future__ import annotations

import re

import streamlit as st

from clsviz import Encoder, Trace
from clsviz.report import build_report

from .state import cached_encoder


def report_file_name(trace: Trace) -> str:
    """A safe file name from the first words of the text: ``clsviz-report-the-cat-sat.html``."""
    words = re.findall(r"[a-z0-9]+", trace.text.lower())[:6]
    return f"clsviz-report-{'-'.join(words) or 'text'}.html"


def report_bytes(trace: Trace, encoder: Encoder | None = None, baseline=None) -> bytes:
    """The report as UTF-8 bytes. A figure that cannot be drawn becomes a note in the report
    (``strict=False``) rather than a failed download."""
    return build_report(trace, encoder, baseline, strict=False).encode("utf-8")


def _encoder_of(trace: Trace) -> Encoder | None:
    """The cached encoder that made ``trace`` (for the sections that need model weights)."""
    try:
        return cached_encoder(trace.model_name)
    except Exception:  # the report is still useful without those sections
        return None


def report_download(trace: Trace, encoder: Encoder | None = None, key: str = "report", baseline=None) -> None:
    """A download button for the standalone HTML report of ``trace`` (every per-sentence
    figure, plotly.js inline, opens offline). The report is built only when clicked.

    ``encoder`` defaults to the app's cached encoder of ``trace.model_name``; a ``baseline``
    (:class:`clsviz.similarity.Baseline`) the page already has adds the anisotropy reference.
    """
    if encoder is None:
        encoder = _encoder_of(trace)
    st.download_button(
        "Download an HTML report",
        lambda: report_bytes(trace, encoder, baseline),
        file_name=report_file_name(trace),
        mime="text/html",
        key=key,
        icon=":material/description:",
        help="Every figure for this sentence in one HTML file that opens offline in any browser "
        "(the same report as `clsviz inspect \"text\" --html report.html`).",
    )
