"""A standalone, offline HTML report of every per-sentence figure for one text.

The report is one HTML file: plotly.js is embedded inline (no CDN, no network at all), the
user's text and tokens are HTML-escaped, and the figures are the same ``clsviz.figures``
calls the app shows, with the titles and captions of :mod:`clsviz.figures.registry`.

>>> from clsviz import load_encoder, trace
>>> from clsviz.report import write_report
>>> enc = load_encoder()
>>> write_report(trace(enc, "The cat chased the dog."), "report.html", encoder=enc)
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .analyses import ANALYSES, Analysis, NotApplicable
from .artifacts import atomic_path
from .figures import figure_spec
from .layers import block_row
from .literature import claims_html
from .metrics import cosine, entropy
from .narrative import findings
from .tracing import Trace, summary_index
from .version import __version__

__all__ = ["NotApplicable", "ReportSection", "build_report", "layer_stats", "report_analyses", "report_sections",
           "result_sections", "section_keys", "write_report"]


@dataclass(frozen=True)
class ReportSection:
    """One figure of the report: a stable ``key``, a heading, a caption and the figure itself.

    ``figure`` is None when drawing failed under ``strict=False`` (``error`` says why) or when
    the section does not apply to this model (``note`` says why, e.g. no masked-LM head).
    ``sentences`` are what the numbers show, in words (a result's summary).
    """

    key: str
    title: str
    caption: str
    figure: object | None
    error: str | None = None
    note: str | None = None
    sentences: tuple[str, ...] = ()


def result_sections(result, title: str | None = None) -> list[ReportSection]:
    """Sections for an analysis result computed on a corpus rather than on the report's sentence
    (the tuned lens, the inversion ladder: ``clsviz inspect --lens / --ladder``, or a page's
    finished job): each of its figures, the result's summary sentences under the first. ``title``
    replaces the first figure's registered title."""
    out = []
    for i, key in enumerate(result.figure_keys()):
        spec = figure_spec(key)
        sentences = tuple(result.summary()) if i == 0 else ()
        out.append(ReportSection(key, (title if i == 0 and title else spec.title), spec.caption, result.figure(key),
                                 sentences=sentences))
    return out


def report_analyses() -> list[Analysis]:
    """The analyses of the report, in reading order: every declared one with ``report=True``."""
    return [a for a in ANALYSES.values() if a.report]


def _inputs(analysis: Analysis, available: dict) -> list | None:
    """The analysis's inputs from what the report has (None when a required one is missing)."""
    if any(available.get(role) is None for role in analysis.inputs):
        return None
    return [available.get(role) for role in (*analysis.inputs, *analysis.optional)]


def _available(trace: Trace, encoder=None, baseline=None) -> dict:
    return {"trace": trace, "traces": [trace], "texts": [trace.text], "encoder": encoder, "baseline": baseline}


def section_keys(with_encoder: bool = True, with_baseline: bool = True) -> list[str]:
    """The keys of the report's sections (what ``only=`` accepts), in reading order."""
    available = {"trace": True, "traces": True, "texts": True, "encoder": with_encoder or None,
                 "baseline": with_baseline or None}  # fmt: skip
    return [key for a in report_analyses() if _inputs(a, available) is not None for key in a.figures]


def report_sections(
    trace: Trace,
    encoder=None,
    baseline=None,
    only: Sequence[str] | None = None,
    strict: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[ReportSection]:
    """Build every available per-sentence figure for ``trace`` from the declared analyses
    (:mod:`clsviz.analyses`, those with ``report=True``), each analysis run once.

    ``encoder`` (the Encoder that made ``trace``) adds the analyses that need model weights;
    without it they are left out. ``baseline`` (a :class:`clsviz.baseline.Baseline`, e.g.
    ``measure_baseline(encoder)``) adds the anisotropy reference. ``only`` keeps the sections with
    those figure keys. With ``strict=False`` a figure that fails becomes a section with
    ``figure=None`` and the reason in ``error``; with ``strict=True`` (the default) the exception
    propagates. An analysis that does not apply (:class:`NotApplicable`) becomes sections with a
    ``note``. ``progress(done, total)`` is called per figure.
    """
    available = _available(trace, encoder, baseline)
    planned = [(a, inputs) for a in report_analyses() if (inputs := _inputs(a, available)) is not None]
    keys = [key for a, _ in planned for key in a.figures]
    if only is not None:
        unknown = sorted(set(only) - set(keys))
        if unknown:
            raise ValueError(f"unknown report section(s): {', '.join(unknown)}; available: {', '.join(keys)}")
        wanted = set(only)
        planned = [(a, inputs) for a, inputs in planned if wanted & set(a.figures)]
        keys = [k for k in keys if k in wanted]
    out, done = [], 0
    for analysis, inputs in planned:
        try:
            result, problem = analysis(*inputs), None
        except NotApplicable as exc:
            result, problem = None, ("note", str(exc))
        except Exception as exc:
            if strict:
                raise
            result, problem = None, ("error", f"{type(exc).__name__}: {exc}")
        for key in analysis.figures:
            if key not in keys:
                continue
            spec = figure_spec(key)
            section = _section(spec, result, problem, strict)
            out.append(section)
            done += 1
            if progress is not None:
                progress(done, len(keys))
    return out


def _section(spec, result, problem, strict: bool) -> ReportSection:
    if problem is not None:
        kind, message = problem
        return ReportSection(spec.key, spec.title, spec.caption, None, **{kind: message})
    try:
        figure = result.figure(spec.key)
        if not isinstance(figure, go.Figure):
            raise TypeError(f"the '{spec.key}' section returned {type(figure).__name__}, not a plotly Figure")
        return ReportSection(spec.key, spec.title, spec.caption, figure)
    except NotApplicable as exc:
        return ReportSection(spec.key, spec.title, spec.caption, None, note=str(exc))
    except Exception as exc:
        if strict:
            raise
        return ReportSection(spec.key, spec.title, spec.caption, None, f"{type(exc).__name__}: {exc}")


def layer_stats(trace: Trace) -> pd.DataFrame:
    """Per-layer numbers about [CLS] for one Trace (row 0 = embeddings, then each layer).

    Columns: ``layer``; ``cls_norm`` (L2 norm of the [CLS] vector); ``cos_cls_mean`` (cosine of
    [CLS] with the mean of the text's own tokens, or NaN for a text without any);
    ``attention_to_cls`` (share of attention [CLS] receives, mean over heads and over the
    other tokens as queries; NaN for the embeddings row); ``cls_entropy`` (entropy in nats of
    [CLS]'s own attention row, mean over heads; NaN for the embeddings row).
    """
    cls_i = summary_index(trace, "The [CLS] statistics per layer")
    content = trace.content_mask
    others = np.arange(trace.seq_len) != cls_i
    rows = []
    for layer in range(trace.num_layers + 1):
        hidden = trace.hidden(layer)
        mean = hidden[content].mean(axis=0) if content.any() else None
        row = {
            "layer": layer,
            "cls_norm": float(np.linalg.norm(hidden[cls_i])),
            "cos_cls_mean": float(cosine(hidden[cls_i], mean)) if mean is not None else float("nan"),
            "attention_to_cls": float("nan"),
            "cls_entropy": float("nan"),
        }
        if layer > 0:
            att = trace.attentions[block_row(layer)]  # [H, T, T]
            queries = att[:, others, cls_i] if others.any() else att[:, :, cls_i]
            row["attention_to_cls"] = float(queries.mean())
            row["cls_entropy"] = float(entropy(att[:, cls_i, :]).mean())
        rows.append(row)
    return pd.DataFrame(rows)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:1.5rem;color:#1f2937;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #e5e7eb}
.meta{color:#6b7280;font-size:.9rem}blockquote{background:#f3f4f6;margin:1rem 0;padding:.8rem 1rem;
border-left:4px solid #6366f1;white-space:pre-wrap;word-break:break-word}
.tok{display:inline-block;font-family:ui-monospace,monospace;font-size:.85rem;background:#e0e7ff;
border-radius:4px;padding:1px 5px;margin:2px}.tok.special{background:#fecaca}
table.summary{border-collapse:collapse;font-size:.85rem}table.summary td,table.summary th{
border:1px solid #e5e7eb;padding:3px 8px;text-align:right}.caption{color:#374151}
table.claims{border-collapse:collapse;font-size:.85rem}table.claims td,table.claims th{border:1px solid #e5e7eb;
padding:4px 8px;vertical-align:top;text-align:left}.error{color:#b91c1c}.finding{font-weight:500}.note{color:#6b7280;font-style:italic}nav ol{columns:2}footer{margin-top:3rem;color:#9ca3af;font-size:.8rem}
"""


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _findings_html(trace: Trace, baseline=None) -> str:
    items = "".join(f"<li><b>{_esc(f.question)}</b> {_esc(f.answer)}</li>" for f in findings(trace, baseline))
    return f"<h2 id='findings'>Four questions, first answers</h2><ul>{items}</ul>"


def _claims_section(claims: pd.DataFrame | None, model_name: str) -> str:
    """The published findings checked on the model (escaped), or "" without a claims table."""
    if claims is None:
        return ""

    return claims_html(claims, model_name)


def build_report(trace: Trace, encoder=None, baseline=None, title: str | None = None,
                 sections: Sequence[ReportSection] | None = None, strict: bool = True,
                 claims: pd.DataFrame | None = None) -> str:
    """The report for ``trace`` as one self-contained HTML document (a string).

    ``sections`` defaults to :func:`report_sections` (trace, encoder, baseline, strict=strict). plotly.js is
    embedded once, inline, before the first figure; nothing is loaded from the network. ``claims`` (a
    :func:`clsviz.literature.check_claims` table) adds the published findings checked on the model.
    """
    summary_index(trace, "The report about [CLS]")
    if sections is None:
        sections = report_sections(trace, encoder, baseline, strict=strict)
    info = trace.info
    title = title or "clsviz report"
    tokens = "".join(
        f"<span class='tok{' special' if special else ''}' title='position {i}'>{_esc(tok)}</span>"
        for i, (tok, special) in enumerate(zip(trace.tokens, trace.special_mask))
    )
    summary = layer_stats(trace).to_html(
        index=False, escape=True, float_format=lambda x: f"{x:.4f}", na_rep="–", classes="summary", border=0
    )
    toc = "".join(f"<li><a href='#sec-{_esc(s.key)}'>{_esc(s.title)}</a></li>" for s in sections)
    parts = []
    drawn = 0  # figures so far: the first one carries plotly.js, ids number the figures
    for section in sections:
        body = f"<p class='caption'>{_esc(section.caption)}</p>" if section.caption else ""
        body += "".join(f"<p class='finding'>{_esc(sentence)}</p>" for sentence in section.sentences)
        if section.note is not None:
            body += f"<p class='note'>{_esc(section.note)}</p>"
        elif section.figure is None:
            body += f"<p class='error'>This figure could not be drawn for this text: {_esc(section.error)}</p>"
        else:
            body += section.figure.to_html(
                full_html=False,
                include_plotlyjs=drawn == 0,
                div_id=f"clsviz-figure-{drawn}",
                config={"displaylogo": False, "responsive": True},
            )
            drawn += 1
        parts.append(f"<section id='sec-{_esc(section.key)}'><h2>{_esc(section.title)}</h2>{body}</section>")
    truncated = " The text was longer than the limit and was cut." if trace.truncated else ""
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        # The report loads nothing: this policy makes any accidental remote load fail closed.
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
        "font-src data:\">"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1>"
        f"<p class='meta'>Model <b>{_esc(info.name)}</b> ({_esc(info.model_type)}: {info.num_layers} layers, "
        f"{info.num_heads} heads, {info.hidden_size} dims); [CLS] role: <code>{_esc(info.cls_token)}</code> at "
        f"position {trace.cls_index}; {trace.seq_len} tokens.{truncated}</p>"
        f"<blockquote>{_esc(trace.text)}</blockquote>"
        f"<h2 id='tokens-list'>Tokens</h2><div>{tokens}</div>"
        f"{_findings_html(trace, baseline)}"
        "<h2 id='summary'>[CLS] layer by layer</h2>"
        "<p class='caption'>Norm of [CLS]; its cosine with the mean of the text's tokens; the share of "
        "attention it receives (mean over heads and the other tokens); the entropy of its own attention "
        "row (higher = reads more broadly). Row 0 is the embedding layer.</p>"
        f"{summary}"
        f"{_claims_section(claims, info.name)}"
        f"<nav><h2>Figures</h2><ol>{toc}</ol></nav>"
        f"{''.join(parts)}"
        f"<footer>Made by clsviz {_esc(__version__)} on {created}. Works offline: plotly.js is embedded in "
        "this file.</footer></body></html>\n"
    )


def write_report(trace: Trace, path: str | os.PathLike, encoder=None, baseline=None, title: str | None = None,
                 sections: Sequence[ReportSection] | None = None, strict: bool = True,
                 claims: pd.DataFrame | None = None) -> Path:
    """Write :func:`build_report` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the report is HTML: give a file name ending in .html, not '{path.name}'")
    document = build_report(trace, encoder, baseline, title=title, sections=sections, strict=strict, claims=claims)
    with atomic_path(path) as partial:  # a report cut short never stands under its name
        partial.write_text(document, encoding="utf-8")
    return path
