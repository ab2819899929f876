"""The analysis layer: every piece of evidence clsviz shows, declared once.

Each analysis is a function declared with :func:`analysis` (see :mod:`clsviz.analyses.core` for
the rules): its inputs by role, its parameters as typed keyword arguments, whether it is long,
and the figures its :class:`Result` draws. The app (``ui.runner``), the command line
(``clsviz run``, ``clsviz analyses``) and the HTML report (:mod:`clsviz.report`) read the same
results.

Adding an analysis: write the function and its result class in the module of its area below
(or a new module listed here), declare it, register its figures in
:mod:`clsviz.figures.registry` with a title and caption, and it appears in ``clsviz analyses``,
runs with ``clsviz run NAME``, joins the report when ``report=True`` (inputs from one trace),
and a page draws it with ``ui.runner.run(NAME, ...)`` and ``ui.runner.draw(result, key)``.

>>> from clsviz import load_encoder, trace
>>> from clsviz.analyses import run
>>> enc = load_encoder()
>>> result = run("attention", trace(enc, "The film was not bad."), enc, method="value_norm")
>>> result.table().head(); result.figures(block=3); result.summary()
"""

from __future__ import annotations

import importlib

from . import core
from .core import *  # noqa: F403 - the package re-exports the machinery (core.__all__)

__all__ = ["DECLARATION_MODULES", *core.__all__]

DECLARATION_MODULES = (
    "overview", "attention", "similarity", "model_runs", "embeddings", "probing", "findings", "decoding", "recovery", "lab",
    "learning", "comparison",
)
"""The modules that declare analyses, in reading order (the report's and ``clsviz analyses``'):
importing them declares their analyses. A new area's module is added here."""

for _module in DECLARATION_MODULES:
    importlib.import_module(f"{__name__}.{_module}")
