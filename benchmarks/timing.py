"""Timing helpers every benchmark shares: runs timed side by side, percentiles, the exponent of
a growth curve.

A figure is never one timing: :func:`repeat` and :func:`side_by_side` return one value per run
(warm-up runs excluded), and the results writer keeps their median, min and max.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "check_targets", "emit_json", "growth_exponent", "pair_ratios", "percentile", "repeat", "side_by_side",
           "timed"]


@dataclass(frozen=True)
class Settings:
    """How a benchmark run is sized: ``runs`` per figure (at least 3 in a full run), ``quick``
    (tiny sizes for a smoke run on a busy machine; its figures are not for comparison) and which
    ``parts`` of a group run."""

    quick: bool = False
    runs: int = 3
    parts: frozenset = frozenset()
    """Growth operations or other areas' modules named by ``--only``; empty: every part."""

    def pick(self, full, quick):
        """``full`` in a full run, ``quick`` in a quick one."""
        return quick if self.quick else full

    def wants(self, name: str, among) -> bool:
        """Whether part ``name`` of a group whose parts are ``among`` runs: every part unless
        ``--only`` named some of ``among``."""
        chosen = self.parts & set(among)
        return not chosen or name in chosen


def timed(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> float:
    """Wall seconds of one call of ``fn`` (``sync`` waits for a GPU before each clock read)."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def repeat(fn: Callable[[], object], runs: int, warmup: int = 1, sync=None) -> list[float]:
    """Seconds of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn, sync) for _ in range(runs)]


def side_by_side(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 1, sync=None) -> dict[str, list[float]]:
    """Seconds of each function, ``runs`` times each, interleaved: every run times every function
    once, in an order that reverses from one run to the next, so drift in the machine's speed
    (other processes, clock changes) falls on all sides alike. Each side is warmed up
    ``warmup`` times first and the warm-up is not timed."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            out[name].append(timed(fns[name], sync))
    return out


def pair_ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Run-by-run ratios of two side-by-side timings (each pair shared the same moment)."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, linearly interpolated (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def growth_exponent(sizes: list[float], seconds: list[float]) -> float | None:
    """k of ``seconds ~ c * size**k``: the least-squares slope of log(seconds) on log(size).
    None when fewer than two sizes have a positive time."""
    points = [(math.log(s), math.log(t)) for s, t in zip(sizes, seconds) if s and t and s > 0 and t > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def check_targets(figures: dict, targets: dict[str, tuple[str, float]]) -> dict:
    """{key: {"target": "<= 5.0", "met": bool}} for each target ``(op, value)`` whose key is in
    ``figures`` (an area module's ``"targets"`` entry)."""
    return {k: {"target": f"{op} {v}", "met": (figures[k] <= v) if op == "<=" else (figures[k] >= v)}
            for k, (op, v) in targets.items() if k in figures}  # fmt: skip


def emit_json(result: dict, out: str | Path | None) -> None:
    """Print an area module's result as JSON, and write it to ``out`` too when given."""
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
