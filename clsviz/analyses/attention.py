"""Evidence read from one trace's attention: the tokens, and attention into and out of [CLS]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .. import figures
from ..attention import (
    AttentionSummary,
    block_map,
    breakdown_table,
    cls_row_table,
    entropy_table,
    rollout_table,
    summarize,
    to_cls_table,
    token_matrix_table,
)
from ..layers import check_block
from ..mixing import attention_weights
from ..tracing import Trace, literal_specials
from .core import NotApplicable, Result, analysis

__all__ = ["AttentionResult", "TokensResult"]


@dataclass(frozen=True, eq=False)
class TokensResult(Result):
    """The tokens of one trace as the model sees them; ``typed_specials``: special-token strings
    the person typed as characters (read as ordinary text, never as the special token)."""

    trace: Trace
    typed_specials: tuple[str, ...] = ()

    def table(self) -> pd.DataFrame:
        t = self.trace
        return pd.DataFrame(
            {
                "position": np.arange(t.seq_len),
                "token": list(t.tokens),
                "special": t.special_mask.astype(bool),
                "start": t.offsets[:, 0],
                "end": t.offsets[:, 1],
            }
        )

    def figure_keys(self) -> tuple[str, ...]:
        return ("overview.tokens",)

    def figure(self, key: str, **view):
        if key != "overview.tokens":
            return super().figure(key)
        return figures.tokens_figure(self.trace)


    def summary(self) -> list[str]:
        if not self.typed_specials:
            return []
        return [
            f"The text contains {', '.join(repr(s) for s in self.typed_specials)} as characters. The tokenizer reads "
            "them as ordinary text, split into pieces, never as the special token: only the tokenizer adds the real "
            f"{self.trace.info.cls_token}, at position {self.trace.cls_index}."
        ]


@analysis("tokens", title="Tokens", inputs=("trace",), optional=("encoder",), figures=("overview.tokens",),
          report=True, questions=(1, 2, 3, 4))  # fmt: skip
def tokens_analysis(trace: Trace, encoder=None) -> TokensResult:
    """The tokens as the model sees them, special tokens marked (with the encoder: and which
    special-token strings were typed as plain characters)."""
    typed = () if encoder is None else tuple(sorted(set(literal_specials(trace, encoder.tokenizer))))
    return TokensResult(trace, typed)


_SUMMARY_FIGURES = ("attention.to_cls", "attention.entropy", "attention.breakdown", "attention.cls_row", "attention.rollout")


@dataclass(frozen=True, eq=False)
class AttentionResult(Result):
    """Attention around [CLS] for one trace: the [L, H, T, T] ``weights`` of one ``method`` and
    their :class:`~clsviz.attention.AttentionSummary`.

    View (changes nothing computed): ``block`` 1..L (default the last) picks the token x token
    map; ``head`` 0-based, or None for the mean over heads, picks the map, the breakdown and the
    [CLS] row.
    """

    trace: Trace
    weights: np.ndarray
    attention: AttentionSummary

    @property
    def method(self) -> str:
        return self.attention.method

    def table(self) -> pd.DataFrame:
        return to_cls_table(self.attention).merge(
            entropy_table(self.attention).drop(columns="method"), on=["block", "head"], validate="one_to_one"
        )

    def figure_keys(self) -> tuple[str, ...]:
        keys = ("attention.to_cls", "attention.entropy", "attention.matrix", "attention.breakdown",
                "attention.cls_row", "attention.rollout")  # fmt: skip
        return keys + (("attention.breakdown_value_norm",) if self.method == "value_norm" else ())

    def _view(self, block: int | None, head: int | None) -> tuple[int, int | None]:
        block = self.trace.num_layers if block is None else check_block(int(block), self.trace.num_layers)
        if head is not None and not 0 <= int(head) < self.trace.num_heads:
            raise ValueError(f"head {head} is outside 0..{self.trace.num_heads - 1}")
        return block, None if head is None else int(head)

    def matrix(self, block: int | None = None, head: int | None = None) -> np.ndarray:
        """float32 [T, T]: block ``block``'s map for ``head`` (None: mean over heads)."""
        block, head = self._view(block, head)
        return block_map(self.weights, block, head)

    def figure(self, key: str, block: int | None = None, head: int | None = None, **view):
        block, head = self._view(block, head)
        s = self.attention
        if key == "attention.to_cls":
            return figures.cls_attention_heatmap(s)
        if key == "attention.entropy":
            return figures.cls_entropy_heatmap(s)
        if key == "attention.matrix":
            return figures.token_attention_heatmap(self.matrix(block, head), self.trace.tokens, block, head,
                                                   method=self.method)  # fmt: skip
        if key in ("attention.breakdown", "attention.breakdown_value_norm"):
            if key == "attention.breakdown_value_norm" and self.method != "value_norm":
                return super().figure(key)
            return figures.attention_breakdown_bars(s, head)
        if key == "attention.cls_row":
            return figures.cls_row_heatmap(s, head)
        if key == "attention.rollout":
            return figures.rollout_comparison(s)
        return super().figure(key)

    def figure_table(self, key: str, block: int | None = None, head: int | None = None, **view) -> pd.DataFrame:
        block, head = self._view(block, head)
        s = self.attention
        tables = {
            "attention.to_cls": lambda: to_cls_table(s),
            "attention.entropy": lambda: entropy_table(s),
            "attention.matrix": lambda: token_matrix_table(self.matrix(block, head), self.trace.tokens),
            "attention.breakdown": lambda: breakdown_table(s, per_head=True),
            "attention.breakdown_value_norm": lambda: breakdown_table(s, per_head=True),
            "attention.cls_row": lambda: cls_row_table(s, head),
            "attention.rollout": lambda: rollout_table(s),
        }
        return tables[key]() if key in tables else self.table()

    def summary(self) -> list[str]:
        to_cls = self.attention.to_cls.mean(axis=1)  # [L]: mean over heads
        what = "value-norm weighted" if self.method == "value_norm" else "raw attention"
        return [
            f"Averaged over heads, the other tokens put between {to_cls.min():.0%} and {to_cls.max():.0%} of their "
            f"attention ({what}) on {self.trace.info.cls_token}, block by block; in the last block {to_cls[-1]:.0%}. "
            "One sentence: these are its own numbers, not an estimate for the model."
        ]


def _weights(trace: Trace, encoder, method: str) -> np.ndarray:
    if method == "attention":
        return trace.attentions
    if encoder is None:
        raise NotApplicable("Value-norm weighting needs the model's weights: pass the encoder that made the trace.")
    try:
        return attention_weights(encoder, trace, method)
    except ValueError as exc:  # a family whose value/output weights clsviz cannot locate
        raise NotApplicable(str(exc)) from exc


@analysis("attention", title="Attention around [CLS]", inputs=("trace",), optional=("encoder",),
          figures=("attention.to_cls", "attention.entropy", "attention.matrix", "attention.breakdown",
                   "attention.cls_row", "attention.rollout"),
          report=True, questions=(1, 3))  # fmt: skip
def attention_analysis(
    trace: Trace, encoder=None, *, method: Literal["attention", "value_norm"] = "attention", include_self: bool = True
) -> AttentionResult:
    """Who attends to [CLS], what [CLS] reads, and rollout, per block and head (Clark et al. 2019;
    Abnar & Zuidema 2020); ``method="value_norm"`` weights each attention by the size of what the
    head copies (Kobayashi et al. 2020) and needs the encoder."""
    weights = _weights(trace, encoder, method)
    return AttentionResult(trace, weights, summarize(trace, weights, include_self=include_self, method=method))


@analysis("attention.value_norm", title="Where attention goes, weighted by value norms", inputs=("encoder", "trace"),
          figures=("attention.breakdown_value_norm",), report=True, questions=(1,))  # fmt: skip
def value_norm_analysis(encoder, trace: Trace) -> AttentionResult:
    """The attention breakdown with value-norm weighting: [CLS] and [SEP] get much weight but write
    little (Kobayashi et al. 2020)."""
    return attention_analysis(trace, encoder, method="value_norm")
