"""A standalone, offline HTML report of every per-sentence figure for one text.

The report is one HTML file: plotly.js is embedded inline (no CDN, no network at all), the
user's text and tokens are HTML-escaped, and the figures are the same ``clsviz.figures``
calls the app shows. Figure modules that are not installed are left out, so the report
works with whatever part of clsviz is present.

>>> from clsviz import load_encoder, trace
>>> from clsviz.report import write_report
>>> enc = load_encoder()
>>> write_report(trace(enc, "The cat chased the dog."), "report.html", encoder=enc)
"""

from __future__ import annotations

import html
import importlib
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .tracing import Trace

__all__ = ["NotApplicable", "ReportSection", "layer_stats", "report_sections", "build_report", "write_report"]


@dataclass(frozen=True)
class ReportSection:
    """One figure of the report: a stable ``key``, a heading, a caption and the figure itself.

    ``figure`` is None when drawing failed under ``strict=False`` (``error`` says why) or when
    the section does not apply to this model (``note`` says why, e.g. no masked-LM head).
    """

    key: str
    title: str
    caption: str
    figure: object | None
    error: str | None = None
    note: str | None = None


class NotApplicable(Exception):
    """Raised by a section builder when its figure does not apply to this model or text; the
    message becomes the section's ``note``."""


class _Context:
    """What a section builder may use: the Trace, the encoder and the anisotropy baseline (each
    None when not given) and a memo for results several sections share (one attention summary)."""

    def __init__(self, trace: Trace, encoder=None, baseline=None):
        self.trace = trace
        self.encoder = encoder
        self.baseline = baseline
        self._memo: dict = {}

    def memo(self, key: str, compute: Callable[[], object]):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


@dataclass(frozen=True)
class _Spec:
    key: str
    title: str
    caption: str
    requires: tuple[str, ...]  # "module:attribute" names that must exist in this install
    build: Callable[..., object]  # build(context, *required objects) -> go.Figure
    needs_encoder: bool = False
    needs_baseline: bool = False


def _summary(ctx: _Context, summarize):
    return ctx.memo("attention", lambda: summarize(ctx.trace))


def _value_norm_summary(ctx: _Context, summarize, attention_weights):
    def compute():
        weights = attention_weights(ctx.encoder, ctx.trace, "value-norm")
        return summarize(ctx.trace, weights=weights, kind="value-norm")

    return ctx.memo("value-norm", compute)


def _position(ctx: _Context, position_experiment):
    # The trace's own length keeps a cut text cut the same way in every variant.
    return ctx.memo(
        "position", lambda: position_experiment(ctx.encoder, ctx.trace.text, max_length=ctx.trace.seq_len)
    )


def _mlm_table(ctx: _Context, load_mlm_head, mlm_reading):
    head = load_mlm_head(ctx.encoder)
    if not head.available:
        raise NotApplicable(head.note)
    cls_vectors = ctx.trace.hidden_states[:, ctx.trace.cls_index]
    return mlm_reading(head, cls_vectors, ctx.encoder.tokenizer)


def _top(ctx: _Context, top_dimensions):
    return ctx.memo("top_dimensions", lambda: top_dimensions(ctx.trace))


def _massive_figure(ctx: _Context, dimension_figure, top_dimensions, massive_dimensions, dimension_values):
    dimension = massive_dimensions(_top(ctx, top_dimensions))[0]
    return dimension_figure(ctx.trace, dimension_values(ctx.trace, dimension), dimension)


_INVERSION = "clsviz.experiments.inversion:"
_SUMMARIZE = "clsviz.attention:summarize"
_POSITION = "clsviz.experiments.position:position_experiment"

# The curated sections, in reading order, with the captions the app shows. Each names what
# it needs; a section whose module or function is missing from this install is skipped.
_SPECS: tuple[_Spec, ...] = (
    _Spec(
        "tokens",
        "Tokens",
        "The text as the model sees it; red tokens were added by the tokenizer ([CLS] first).",
        ("clsviz.figures:tokens_figure",),
        lambda ctx, fig: fig(ctx.trace),
    ),
    _Spec(
        "attention_to_cls",
        "Attention to [CLS]",
        "How much every query token attends to [CLS], per layer and head. Bright upper layers are the "
        "'attention sink': heads parking their weight on [CLS] when they have nothing to do.",
        ("clsviz.figures:cls_attention_heatmap", _SUMMARIZE),
        lambda ctx, fig, summarize: fig(_summary(ctx, summarize)),
    ),
    _Spec(
        "cls_entropy",
        "How broadly [CLS] reads",
        "Entropy of [CLS]'s own attention row per layer and head: high means it reads the whole "
        "sentence, low means it fixes on a few tokens (often itself or [SEP]).",
        ("clsviz.figures:cls_entropy_heatmap", _SUMMARIZE),
        lambda ctx, fig, summarize: fig(_summary(ctx, summarize)),
    ),
    _Spec(
        "attention_breakdown",
        "Where attention goes",
        "Per layer, the share of all attention landing on [CLS], [SEP], punctuation and the other "
        "tokens (Clark et al. 2019): large [CLS]/[SEP] shares in middle layers are typical of BERT.",
        ("clsviz.figures:attention_breakdown_bars", _SUMMARIZE),
        lambda ctx, fig, summarize: fig(_summary(ctx, summarize)),
    ),
    _Spec(
        "cls_row",
        "What [CLS] reads",
        "The [CLS] row of attention (mean over heads) in every layer: which tokens feed the [CLS] vector.",
        ("clsviz.figures:cls_row_heatmap", _SUMMARIZE),
        lambda ctx, fig, summarize: fig(_summary(ctx, summarize)),
    ),
    _Spec(
        "rollout",
        "Raw attention vs rollout",
        "Left: what [CLS] reads in each layer alone. Right: attention rollout (Abnar & Zuidema 2020), "
        "which follows the residual stream through the layers and spreads more evenly over the words.",
        ("clsviz.figures:rollout_comparison", _SUMMARIZE),
        lambda ctx, fig, summarize: fig(_summary(ctx, summarize)),
    ),
    _Spec(
        "token_attention",
        "Token × token attention, last layer",
        "Every query (row) against every key (column) in the last layer, mean over heads; the [CLS] "
        "and [SEP] columns show the sink.",
        ("clsviz.figures:token_attention_heatmap",),
        lambda ctx, fig: fig(ctx.trace.attention(-1), ctx.trace.tokens, layer=ctx.trace.num_layers - 1),
    ),
    _Spec(
        "cls_token_cosine",
        "[CLS] against each token",
        "Cosine between [CLS] and every token, layer by layer: does [CLS] drift toward the words as "
        "layers go up? Contextual vectors are anisotropic, so compare with the baseline on the "
        "Similarity page before reading a high cosine as 'similar'.",
        ("clsviz.figures:cls_token_cosine_figure", "clsviz.similarity:cls_token_cosines"),
        lambda ctx, fig, cosines: fig(ctx.trace, cosines(ctx.trace)),
    ),
    _Spec(
        "cls_vs_means",
        "[CLS] against the sentence's averages",
        "Per layer, the cosine of [CLS] with the mean of the text's tokens, with the mean of all "
        "tokens, and with the pooler output where the model has one; with a baseline, the dashed lines "
        "are the same cosines between unrelated sentences.",
        ("clsviz.figures:cls_summary_figure", "clsviz.similarity:cls_summary"),
        lambda ctx, fig, summary: fig(summary(ctx.trace), baseline=ctx.baseline),
    ),
    _Spec(
        "anisotropy",
        "The anisotropy baseline",
        "Mean cosine between unrelated tokens and unrelated sentences at each layer (Ethayarajh 2019): "
        "the level a cosine must clear before it says 'similar'.",
        ("clsviz.figures:anisotropy_figure",),
        lambda ctx, fig: fig(ctx.baseline),
        needs_baseline=True,
    ),
    _Spec(
        "token_norms",
        "Vector norms",
        "The length of every token's vector per layer; a few tokens ([CLS], [SEP], punctuation) "
        "often grow far longer than the rest.",
        ("clsviz.figures:token_norms_figure", "clsviz.similarity:token_norms"),
        lambda ctx, fig, norms: fig(ctx.trace, norms(ctx.trace)),
    ),
    _Spec(
        "top_dimensions",
        "Massive activations, last layer",
        "The hidden dimensions with the largest values on [CLS] and [SEP] (Sun et al. 2024): a few "
        "huge coordinates dominate cosines and go with the attention sink.",
        ("clsviz.figures:top_dimensions_figure", "clsviz.similarity:top_dimensions"),
        lambda ctx, fig, top: fig(_top(ctx, top), layer=ctx.trace.num_layers),
    ),
    _Spec(
        "massive_dimension",
        "The largest dimension, followed everywhere",
        "The single hidden dimension with the largest value (times the median) on [CLS] or [SEP], at "
        "every token and layer: is it a property of those tokens only, or of every position?",
        ("clsviz.figures:dimension_figure", "clsviz.similarity:top_dimensions",
         "clsviz.similarity:massive_dimensions", "clsviz.similarity:dimension_values"),
        lambda ctx, fig, top, massive, values: _massive_figure(ctx, fig, top, massive, values),
    ),
    _Spec(
        "value_norm_breakdown",
        "Where attention goes, weighted by value norms",
        "The same breakdown with value-norm weighted attention ||αf(x)|| (Kobayashi et al. 2020): "
        "[CLS] and [SEP] get much weight but write little, so their share shrinks.",
        ("clsviz.figures:attention_breakdown_bars", _SUMMARIZE, "clsviz.attention:attention_weights"),
        lambda ctx, fig, summarize, weights: fig(_value_norm_summary(ctx, summarize, weights)),
        needs_encoder=True,
    ),
    _Spec(
        "position_variants",
        "Why first? The variants",
        "The same text with [CLS] moved, removed or replaced; the highlighted slot is the one read "
        "as [CLS] in the next figure.",
        ("clsviz.figures:variant_tokens_figure", _POSITION),
        lambda ctx, fig, experiment: fig([r.variant for r in _position(ctx, experiment).runs]),
        needs_encoder=True,
    ),
    _Spec(
        "position",
        "Why first? What changes when [CLS] moves",
        "Per layer and variant: how close the slot's vector stays to the standard [CLS], how much "
        "attention it receives, and how close it is to the mean of the words. Attention is "
        "bidirectional, so only the learned token and position embeddings make position 0 special.",
        ("clsviz.figures:position_figure", _POSITION),
        lambda ctx, fig, experiment: fig(_position(ctx, experiment).table),
        needs_encoder=True,
    ),
    _Spec(
        "mlm_reading",
        "Can the sentence be read back? The masked-LM head on [CLS]",
        "The tokens the model's own masked-LM head reads from the [CLS] vector at each layer. The head "
        "was trained on the last layer only; words of the sentence showing up is a first sign that "
        "[CLS] carries them.",
        ("clsviz.figures:mlm_reading_figure", _INVERSION + "load_mlm_head", _INVERSION + "mlm_reading"),
        lambda ctx, fig, load_head, reading: fig(_mlm_table(ctx, load_head, reading)),
        needs_encoder=True,
    ),
)


def _resolve(name: str):
    """The object ``module:attribute`` names, or None when that module/attribute is absent."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing clsviz module means "not installed here"; a missing third-party
        # dependency inside a present module is a real error.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            return None
        raise
    return getattr(module, attr, None)


def _is_trace_figure(fn) -> bool:
    """True for a figure function drawable from a Trace alone: ``fn(trace, <defaults>...) -> go.Figure``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    returns = signature.return_annotation
    if not (isinstance(returns, type) and issubclass(returns, go.Figure)) and returns not in ("go.Figure", "Figure"):
        return False
    params = list(signature.parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        return False
    annotation = params[0].annotation
    if annotation is not Trace and annotation != "Trace":
        return False
    rest = params[1:]
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in rest)


def _first_line(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n", 1)[0].split())


def _discovered_specs(taken: set[str]) -> list[_Spec]:
    """Per-sentence figure functions in ``clsviz.figures`` that no curated section covers."""
    figures = importlib.import_module("clsviz.figures")
    specs = []
    for name in getattr(figures, "__all__", ()):
        fn = getattr(figures, name, None)
        if name in taken or not callable(fn) or not _is_trace_figure(fn):
            continue
        title = name.replace("_figure", "").replace("_", " ").strip().capitalize()
        specs.append(_Spec(name, title, _first_line(fn.__doc__), (), lambda ctx, _fn=fn: _fn(ctx.trace)))
    return specs


def _all_specs(with_encoder: bool, with_baseline: bool) -> list[_Spec]:
    specs = []
    taken = set()
    for spec in _SPECS:
        # Figures a curated section draws are not rediscovered, even when it is skipped.
        taken.update(name.partition(":")[2] for name in spec.requires)
        taken.add(spec.key)
        if (spec.needs_encoder and not with_encoder) or (spec.needs_baseline and not with_baseline):
            continue
        if any(_resolve(name) is None for name in spec.requires):
            continue
        specs.append(spec)
    return specs + _discovered_specs(taken)


def report_sections(
    trace: Trace,
    encoder=None,
    baseline=None,
    only: Sequence[str] | None = None,
    strict: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[ReportSection]:
    """Build every available per-sentence figure for ``trace``.

    ``encoder`` (the Encoder that made ``trace``) adds the sections that need model weights
    (value-norm weighted attention, the position experiment); without it they are left out.
    ``baseline`` (a :class:`clsviz.similarity.Baseline`, e.g. ``measure_baseline(encoder)``)
    adds the anisotropy reference to the cosine figures. ``only`` keeps the sections with those keys. With ``strict=False`` a figure that fails
    becomes a section with ``figure=None`` and the reason in ``error``; with ``strict=True``
    (the default) the exception propagates. ``progress(done, total)`` is called per figure.
    """
    specs = _all_specs(encoder is not None, baseline is not None)
    if only is not None:
        unknown = sorted(set(only) - {s.key for s in specs})
        if unknown:
            raise ValueError(
                f"unknown report section(s): {', '.join(unknown)}; available: {', '.join(s.key for s in specs)}"
            )
        specs = [s for s in specs if s.key in set(only)]
    ctx = _Context(trace, encoder, baseline)
    sections = []
    for i, spec in enumerate(specs, start=1):
        needed = [_resolve(name) for name in spec.requires]
        try:
            figure = spec.build(ctx, *needed)
            if not isinstance(figure, go.Figure):
                raise TypeError(f"the '{spec.key}' section returned {type(figure).__name__}, not a plotly Figure")
            sections.append(ReportSection(spec.key, spec.title, spec.caption, figure))
        except NotApplicable as exc:
            sections.append(ReportSection(spec.key, spec.title, spec.caption, None, note=str(exc)))
        except Exception as exc:
            if strict:
                raise
            sections.append(ReportSection(spec.key, spec.title, spec.caption, None, f"{type(exc).__name__}: {exc}"))
        if progress is not None:
            progress(i, len(specs))
    return sections


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else float("nan")


def layer_stats(trace: Trace) -> pd.DataFrame:
    """Per-layer numbers about [CLS] for one Trace (row 0 = embeddings, then each layer).

    Columns: ``layer``; ``cls_norm`` (L2 norm of the [CLS] vector); ``cos_cls_mean`` (cosine of
    [CLS] with the mean of the text's own tokens, or NaN for a text without any);
    ``attention_to_cls`` (share of attention [CLS] receives, mean over heads and over the
    other tokens as queries; NaN for the embeddings row); ``cls_entropy`` (entropy in nats of
    [CLS]'s own attention row, mean over heads; NaN for the embeddings row).
    """
    cls_i = trace.cls_index
    content = trace.content_mask
    others = np.arange(trace.seq_len) != cls_i
    rows = []
    for layer in range(trace.num_layers + 1):
        hidden = trace.hidden(layer)
        mean = hidden[content].mean(axis=0) if content.any() else None
        row = {
            "layer": layer,
            "cls_norm": float(np.linalg.norm(hidden[cls_i])),
            "cos_cls_mean": _cos(hidden[cls_i], mean) if mean is not None else float("nan"),
            "attention_to_cls": float("nan"),
            "cls_entropy": float("nan"),
        }
        if layer > 0:
            att = trace.attentions[layer - 1]  # [H, T, T]
            queries = att[:, others, cls_i] if others.any() else att[:, :, cls_i]
            row["attention_to_cls"] = float(queries.mean())
            p = np.clip(att[:, cls_i, :], 1e-12, 1.0)
            row["cls_entropy"] = float((-(p * np.log(p)).sum(axis=-1)).mean())
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
.error{color:#b91c1c}.note{color:#6b7280;font-style:italic}nav ol{columns:2}footer{margin-top:3rem;color:#9ca3af;font-size:.8rem}
"""


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _findings_html(trace: Trace) -> str:
    findings = _resolve("clsviz.overview:findings")
    if findings is None:
        return ""
    items = "".join(f"<li><b>{_esc(f.question)}</b> {_esc(f.answer)}</li>" for f in findings(trace))
    return f"<h2 id='findings'>Four questions, first answers</h2><ul>{items}</ul>"


def build_report(
    trace: Trace,
    encoder=None,
    baseline=None,
    title: str | None = None,
    sections: Sequence[ReportSection] | None = None,
    strict: bool = True,
) -> str:
    """The report for ``trace`` as one self-contained HTML document (a string).

    ``sections`` defaults to :func:`report_sections` (trace, encoder, baseline, strict=strict). plotly.js is
    embedded once, inline, before the first figure; nothing is loaded from the network.
    """
    from . import __version__

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
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
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
        f"{_findings_html(trace)}"
        "<h2 id='summary'>[CLS] layer by layer</h2>"
        "<p class='caption'>Norm of [CLS]; its cosine with the mean of the text's tokens; the share of "
        "attention it receives (mean over heads and the other tokens); the entropy of its own attention "
        "row (higher = reads more broadly). Row 0 is the embedding layer.</p>"
        f"{summary}"
        f"<nav><h2>Figures</h2><ol>{toc}</ol></nav>"
        f"{''.join(parts)}"
        f"<footer>Made by clsviz {_esc(__version__)} on {created}. Works offline: plotly.js is embedded in "
        "this file.</footer></body></html>\n"
    )


def write_report(
    trace: Trace,
    path: str | os.PathLike,
    encoder=None,
    baseline=None,
    title: str | None = None,
    sections: Sequence[ReportSection] | None = None,
    strict: bool = True,
) -> Path:
    """Write :func:`build_report` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"the report is HTML: give a file name ending in .html, not '{path.name}'")
    document = build_report(trace, encoder, baseline, title=title, sections=sections, strict=strict)
    path.write_text(document, encoding="utf-8")
    return path
