"""Tidy tables that results hand out: a :class:`Table` is a ``pandas.DataFrame`` that can also be
called.

The analysis layer's results show their numbers through ``result.table()`` (a method), while
some results fixed earlier expose ``result.table`` as a data frame attribute (the causal sweeps'
``knockout_sweep(...).table``, the tuned lens's ``.table``). A :class:`Table` serves both
readings: ``result.table["layer"]`` and ``result.table()["layer"]`` are the same column, because
calling a Table returns the Table itself.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["Table", "as_table"]


class Table(pd.DataFrame):
    """A ``pandas.DataFrame`` that returns itself when called (``t() is t``)."""

    @property
    def _constructor(self):
        return Table

    def __call__(self) -> Table:
        return self


def as_table(frame: pd.DataFrame) -> Table:
    """``frame`` as a :class:`Table` (the same columns and rows; a copy only when it is not one)."""
    return frame if isinstance(frame, Table) else Table(frame)
