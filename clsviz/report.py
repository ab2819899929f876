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

from .architectures import BlockStructureError
from .artifacts import atomic_path
from .attention import summarize
from .attribution import attribute
from .experiments.dynamics import gradient_flows
from .experiments.inversion import load_mlm_head, mlm_reading
from .experiments.position import position_experiment
from .faithfulness import rank_measures
from .figures import figure_spec
from .metrics import cosine, entropy
from .mixing import METHODS as MIXING_METHODS
from .mixing import attention_weights, measure
from .narrative import findings
from .norms import dimension_values, massive_dimensions, token_norms, top_dimensions
from .similarity import cls_summary, cls_token_cosines
from .tracing import Trace

__all__ = ["NotApplicable", "ReportSection", "build_report", "layer_stats", "report_sections", "section_keys", "write_report"]


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

    def summary(self):
        return self.memo("attention", lambda: summarize(self.trace))

    def value_norm_summary(self):
        def compute():
            weights = attention_weights(self.encoder, self.trace, "value-norm")
            return summarize(self.trace, weights=weights, kind="value-norm")

        return self.memo("value-norm", compute)

    def position(self):
        # The trace's own length keeps a cut text cut the same way in every variant.
        return self.memo(
            "position", lambda: position_experiment(self.encoder, self.trace.text, max_length=self.trace.seq_len)
        )

    def top(self):
        return self.memo("top_dimensions", lambda: top_dimensions(self.trace))

    def mixing(self, method: str):
        return self.memo(f"mixing.{method}", lambda: measure(self.encoder, self.trace, method))


@dataclass(frozen=True)
class _Section:
    """One report section: a registered figure key and the arguments its ``draw`` function
    takes for this context (title and caption come from :mod:`clsviz.figures.registry`)."""

    key: str
    args: Callable[[_Context], tuple]
    needs_encoder: bool = False
    needs_baseline: bool = False


def _mlm_args(ctx: _Context) -> tuple:
    head = load_mlm_head(ctx.encoder)
    if not head.available:
        raise NotApplicable(head.note)
    return (mlm_reading(head, ctx.trace.hidden_states[:, ctx.trace.cls_index], ctx.encoder.tokenizer),)


# The report's context-mixing measure (fast, whole-block) and the fast ones it compares.
_REPORT_MIXING = "alti"
_FAST_MIXING = tuple(m for m in MIXING_METHODS if m != "value_zeroing")


def _mixing_args(ctx: _Context, compare: bool = False) -> tuple:
    try:
        if compare:
            return ([ctx.mixing(m) for m in _FAST_MIXING],)
        return ctx.mixing(_REPORT_MIXING), ctx.mixing("attention")
    except ValueError as exc:  # a family whose blocks clsviz cannot run
        raise NotApplicable(str(exc)) from exc


def _block_args(ctx: _Context) -> tuple:
    # The last block token by token: what every token takes in just before the output is read.
    mix, attention = _mixing_args(ctx)
    return mix, attention, mix.num_layers


_SCOREBOARD_TOKENS = 48  # the deletion curves rerun the model twice per content token and measure


def _scoreboard(ctx: _Context):
    """Every measure ranked on this sentence (integrated gradients at 16 steps), computed once."""
    if ctx.trace.seq_len > _SCOREBOARD_TOKENS:
        raise NotApplicable(
            f"The text has {ctx.trace.seq_len} tokens; the report ranks the measures on texts of up to "
            f"{_SCOREBOARD_TOKENS}. The 'What flows into [CLS]?' page (or clsviz.faithfulness.rank_measures) "
            "ranks them on longer ones and on several sentences."
        )
    try:
        return ctx.memo("scoreboard", lambda: rank_measures(ctx.encoder, [ctx.trace], steps=16))
    except ValueError as exc:
        raise NotApplicable(str(exc)) from exc


_ATTRIBUTION_TOKENS = 128  # integrated gradients cost a forward and backward pass per step


def _attribution_args(ctx: _Context) -> tuple:
    # The [CLS] and mean vectors' cosine to themselves, split over the words (integrated gradients).
    if ctx.trace.seq_len > _ATTRIBUTION_TOKENS:
        raise NotApplicable(
            f"The text has {ctx.trace.seq_len} tokens; the report attributes texts of up to {_ATTRIBUTION_TOKENS}. "
            "The 'What flows into [CLS]?' page (or clsviz.attribution.attribute) attributes longer ones."
        )
    try:
        return ([attribute(ctx.encoder, ctx.trace.text, pooling=p, steps=16, max_length=ctx.trace.seq_len)
                 for p in ("cls", "mean")],)  # fmt: skip
    except ValueError as exc:
        raise NotApplicable(str(exc)) from exc


def _massive_args(ctx: _Context) -> tuple:
    dimension = massive_dimensions(ctx.top())[0]
    return ctx.trace, dimension_values(ctx.trace, dimension), dimension


def _causal(ctx: _Context, kind: str):
    """The causal test ``kind`` on this one sentence (no labels; means from a demo-corpus sample)."""
    from .blocks import BlockStructureError
    from .experiments import interventions as iv

    enc, text, n = ctx.encoder, ctx.trace.text, ctx.trace.seq_len
    runs = {
        "knockout": lambda: iv.knockout_sweep(enc, [text], max_length=n),
        "heads": lambda: iv.head_sweep(enc, [text], mode="mean", mean_from=iv.demo_sample(), max_length=n),
        "massive": lambda: iv.massive_sweep(enc, [text], layer=1, mean_from=iv.demo_sample(), max_length=n),
        "registers": lambda: iv.register_sweep(enc, [text], max_length=n),
    }
    try:
        return ctx.memo(f"causal.{kind}", runs[kind])
    except BlockStructureError as exc:
        raise NotApplicable(str(exc)) from None


def _patch_args(ctx: _Context) -> tuple:
    """The sentence as the target of a patch profile; the source is the first reference
    sentence (:data:`~clsviz.experiments.patching.REFERENCE_SOURCES`) that is not the sentence."""
    from .blocks import BlockStructureError
    from .experiments import interventions as iv

    enc, text = ctx.encoder, ctx.trace.text
    for source in iv.REFERENCE_SOURCES:
        try:
            table = ctx.memo(f"causal.patch.{source}", lambda s=source: iv.patch_profile(enc, s, text, max_length=ctx.trace.seq_len))
        except iv.InterventionError:
            continue  # the sentence is this reference: take the next one
        except BlockStructureError as exc:
            raise NotApplicable(str(exc)) from None
        return table, source
    raise NotApplicable("The sentence is every reference source; there is nothing else to patch from.")


def _flow_args(ctx: _Context) -> tuple:
    try:
        flows = gradient_flows(ctx.encoder, ctx.trace.text, max_length=ctx.trace.seq_len)
    except BlockStructureError as exc:
        raise NotApplicable(str(exc)) from None
    return flows, list(ctx.trace.tokens)


# The sections, in reading order.
_SECTIONS: tuple[_Section, ...] = (
    _Section("overview.tokens", lambda ctx: (ctx.trace,)),
    _Section("attention.to_cls", lambda ctx: (ctx.summary(),)),
    _Section("attention.entropy", lambda ctx: (ctx.summary(),)),
    _Section("attention.breakdown", lambda ctx: (ctx.summary(),)),
    _Section("attention.cls_row", lambda ctx: (ctx.summary(),)),
    _Section("attention.rollout", lambda ctx: (ctx.summary(),)),
    _Section("attention.matrix", lambda ctx: (ctx.trace.attention(-1), ctx.trace.tokens, ctx.trace.num_layers)),
    _Section("similarity.cls_tokens", lambda ctx: (ctx.trace, cls_token_cosines(ctx.trace))),
    _Section("similarity.summary", lambda ctx: (cls_summary(ctx.trace), ctx.baseline)),
    _Section("similarity.baseline", lambda ctx: (ctx.baseline,), needs_baseline=True),
    _Section("similarity.norms", lambda ctx: (ctx.trace, token_norms(ctx.trace))),
    _Section("similarity.massive", lambda ctx: (ctx.top(), ctx.trace.num_layers)),
    _Section("similarity.dimension", _massive_args),
    _Section("attention.breakdown_value_norm", lambda ctx: (ctx.value_norm_summary(),), needs_encoder=True),
    _Section("position.tokens", lambda ctx: ([r.variant for r in ctx.position().runs],), needs_encoder=True),
    _Section("position.lines", lambda ctx: (ctx.position().table,), needs_encoder=True),
    _Section("inversion.mlm", _mlm_args, needs_encoder=True),
    _Section("mixing.cls_row", _mixing_args, needs_encoder=True),
    _Section("mixing.rollout", _mixing_args, needs_encoder=True),
    _Section("mixing.block", _block_args, needs_encoder=True),
    _Section("mixing.compare", lambda ctx: _mixing_args(ctx, compare=True), needs_encoder=True),
    _Section("attribution.tokens", _attribution_args, needs_encoder=True),
    _Section("faithfulness.ranking", lambda ctx: (_scoreboard(ctx),), needs_encoder=True),
    _Section("faithfulness.curves", lambda ctx: (_scoreboard(ctx),), needs_encoder=True),
    _Section("interventions.knockout", lambda ctx: (_causal(ctx, "knockout").table,), needs_encoder=True),
    _Section("interventions.patch_profile", _patch_args, needs_encoder=True),
    _Section("interventions.heads", lambda ctx: (_causal(ctx, "heads").table,), needs_encoder=True),
    _Section("interventions.massive", lambda ctx: (_causal(ctx, "massive").table, _causal(ctx, "massive").attention),
             needs_encoder=True),
    _Section("interventions.registers",
             lambda ctx: (_causal(ctx, "registers").table, _causal(ctx, "registers").attention), needs_encoder=True),
    _Section("dynamics.gradient_flow", _flow_args, needs_encoder=True),
)


def section_keys(with_encoder: bool = True, with_baseline: bool = True) -> list[str]:
    """The keys of the report's sections (what ``only=`` accepts), in reading order."""
    return [
        s.key for s in _SECTIONS
        if (with_encoder or not s.needs_encoder) and (with_baseline or not s.needs_baseline)
    ]


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
    sections = [
        s for s in _SECTIONS
        if (encoder is not None or not s.needs_encoder) and (baseline is not None or not s.needs_baseline)
    ]
    if only is not None:
        unknown = sorted(set(only) - {s.key for s in sections})
        if unknown:
            raise ValueError(
                f"unknown report section(s): {', '.join(unknown)}; available: {', '.join(s.key for s in sections)}"
            )
        sections = [s for s in sections if s.key in set(only)]
    ctx = _Context(trace, encoder, baseline)
    out = []
    for i, section in enumerate(sections, start=1):
        spec = figure_spec(section.key)
        try:
            figure = spec.draw(*section.args(ctx))
            if not isinstance(figure, go.Figure):
                raise TypeError(f"the '{spec.key}' section returned {type(figure).__name__}, not a plotly Figure")
            out.append(ReportSection(spec.key, spec.title, spec.caption, figure))
        except NotApplicable as exc:
            out.append(ReportSection(spec.key, spec.title, spec.caption, None, note=str(exc)))
        except Exception as exc:
            if strict:
                raise
            out.append(ReportSection(spec.key, spec.title, spec.caption, None, f"{type(exc).__name__}: {exc}"))
        if progress is not None:
            progress(i, len(sections))
    return out


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
            "cos_cls_mean": float(cosine(hidden[cls_i], mean)) if mean is not None else float("nan"),
            "attention_to_cls": float("nan"),
            "cls_entropy": float("nan"),
        }
        if layer > 0:
            att = trace.attentions[layer - 1]  # [H, T, T]
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
padding:4px 8px;vertical-align:top;text-align:left}.error{color:#b91c1c}.note{color:#6b7280;font-style:italic}nav ol{columns:2}footer{margin-top:3rem;color:#9ca3af;font-size:.8rem}
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
    from .literature import claims_html

    return claims_html(claims, model_name)


def build_report(trace: Trace, encoder=None, baseline=None, title: str | None = None,
                 sections: Sequence[ReportSection] | None = None, strict: bool = True,
                 claims: pd.DataFrame | None = None) -> str:
    """The report for ``trace`` as one self-contained HTML document (a string).

    ``sections`` defaults to :func:`report_sections` (trace, encoder, baseline, strict=strict). plotly.js is
    embedded once, inline, before the first figure; nothing is loaded from the network. ``claims`` (a
    :func:`clsviz.literature.check_claims` table) adds the published findings checked on the model.
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
