"""What the causal tests and the moved-[CLS] runs show: their results, and the demo-corpus means
the mean ablations put in place of a head or a dimension.

:class:`CausalResult` wraps one causal test of :mod:`clsviz.experiments.interventions` (on the
typed sentences or on a corpus sample): its figure, its table and the table of where the words'
attention goes, the notes of the run and one plain sentence of what this model does.
:class:`PositionView` is a drawn result with the notes of a run that could not go exactly as
asked (a shift cut to fit, a word of several tokens, a variant left out) and the names of the
variants. :func:`demo_head_means` and :func:`demo_dimension_means` are computed once per model and
process: every sentence's mean ablation uses the same means.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..experiments import interventions as iv
from ..experiments.causal_runs import SweepResult
from ..experiments.position import POSITION_VARIANTS, VARIANT_HELP, VARIANT_LABELS
from ..figures import figure_spec
from .core import Drawn, Result

__all__ = ["CAUSAL_FIGURES", "CausalResult", "PositionView", "demo_dimension_means", "demo_head_means"]

CAUSAL_FIGURES = {
    "knockout": "interventions.knockout",
    "patching": "interventions.patching",
    "heads": "interventions.heads",
    "massive": "interventions.massive",
    "registers": "interventions.registers",
}
"""The figure each kind of causal test draws."""


@dataclass(frozen=True, eq=False)
class CausalResult(Result):
    """One causal test (``sweep``, a :class:`clsviz.experiments.causal_runs.SweepResult`): its
    figure, its ``table()`` and, for the massive-dimension and register tests, the
    :meth:`attention_table` beside it; ``summary()`` holds the run's notes, then the finding."""

    sweep: SweepResult

    @property
    def finding(self) -> str:
        """One plain sentence of what this model does (with its interval where it compares)."""
        return self.sweep.finding

    @property
    def messages(self) -> tuple[str, ...]:
        """Notes of the run: rows left out, texts cut."""
        return self.sweep.messages

    @property
    def note(self) -> str | None:
        """What a reader needs beside the figure: the rule that names a head's role."""
        return f"Rule: {iv.HEAD_ROLE_RULE}" if self.sweep.kind == "heads" else None

    def table(self) -> pd.DataFrame:
        return self.sweep.table

    def attention_table(self) -> pd.DataFrame | None:
        """Where the words' attention goes in each block (mode or k, block, role, share); None for
        the tests that do not look at it."""
        return self.sweep.attention

    def figure_keys(self) -> tuple[str, ...]:
        return (CAUSAL_FIGURES[self.sweep.kind],)

    def figure(self, key: str, **view):
        if key not in self.figure_keys():
            return super().figure(key)
        with_attention = self.sweep.kind in ("massive", "registers")
        return figure_spec(key).draw(self.sweep.table, *((self.sweep.attention,) if with_attention else ()))

    def summary(self) -> list[str]:
        return [*self.sweep.messages, self.sweep.finding]


@dataclass(frozen=True, eq=False)
class PositionView(Drawn):
    """A drawn result of [CLS] moved, removed or replaced, with the ``notes`` of what could not
    run as asked; :attr:`labels` and :meth:`variants` name the variants for a reader."""

    notes: tuple[str, ...] = ()

    @property
    def labels(self) -> dict[str, str]:
        """Variant name -> the words a reader sees (every variant, in display order)."""
        return dict(VARIANT_LABELS)

    def variants(self) -> list[tuple[str, str, str]]:
        """(name, label, what it changes) of every variant, in display order."""
        return [(name, VARIANT_LABELS[name], VARIANT_HELP[name]) for name in POSITION_VARIANTS]


# Per model (keyed weakly by the model object, so a dropped model takes its means with it) and
# per process: a worker process keeps its models loaded, so the means are computed once there too.
_MEANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MEANS_LOCK = threading.Lock()


def _memo(encoder, key: tuple, compute) -> np.ndarray:
    with _MEANS_LOCK:
        hit = _MEANS.get(encoder.model, {}).get(key)
    if hit is None:
        hit = compute()
        with _MEANS_LOCK:
            hit = _MEANS.setdefault(encoder.model, {}).setdefault(key, hit)
    return hit


def demo_head_means(encoder, progress=None, cancel=None) -> np.ndarray:
    """float32 [L, H, dh]: each head's output averaged over a seeded sample of the demo corpus
    (:func:`clsviz.experiments.interventions.demo_sample`, texts at full length), once per model."""
    return _memo(encoder, ("heads", iv.MEAN_SAMPLE),
                 lambda: iv.head_means(encoder, iv.demo_sample(), progress=progress, cancel=cancel))  # fmt: skip


def demo_dimension_means(encoder, dims: tuple[int, ...], layer: int) -> np.ndarray:
    """float32 [2, K]: the special tokens' values of ``dims`` at ``layer``, averaged over the same
    demo sample ([CLS], then the other special tokens), once per model, dimensions and layer."""
    return _memo(encoder, ("dimensions", iv.MEAN_SAMPLE, tuple(dims), int(layer)),
                 lambda: iv.dimension_means(encoder, iv.demo_sample(), list(dims), int(layer)))  # fmt: skip
