"""Vector norms and massive activations: the few huge hidden dimensions on [CLS] and [SEP]
(Sun et al. 2024, "Massive activations in large language models"; Kovaleva et al. 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .tracing import Trace

__all__ = ["dimension_values", "massive_dimensions", "token_norms", "top_dimensions"]


def token_norms(trace: Trace) -> np.ndarray:
    """float64 [L + 1, T]: the L2 norm of every token's hidden vector at every layer."""
    return np.linalg.norm(trace.hidden_states.astype(np.float64), axis=-1)


def top_dimensions(trace: Trace, k: int = 5, layers: Sequence[int] | None = None) -> pd.DataFrame:
    """The ``k`` hidden dimensions of largest magnitude on [CLS] and on [SEP], per layer (on [SEP]
    only for a model pretrained without a summary token, whose ``cls_index`` is None).

    One row per (layer, role, rank): ``layer``, ``role`` (``"cls"``/``"sep"``), ``token``,
    ``position``, ``rank`` (1 = largest), ``dimension``, ``value``, and ``times_median``:
    |value| divided by the median |value| over every token and dimension of that layer —
    Sun et al. (2024) call activations thousands of times the median "massive".
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(int(k), trace.hidden_size)
    n = trace.num_layers + 1
    layers = range(n) if layers is None else [layer + n if layer < 0 else layer for layer in layers]
    roles = [] if trace.cls_index is None else [("cls", trace.cls_index)]
    if trace.sep_index is not None:
        roles.append(("sep", trace.sep_index))
    rows = []
    for layer in layers:
        if not 0 <= layer < n:
            raise IndexError(f"layer {layer} is outside 0..{n - 1}")
        hidden = trace.hidden_states[layer].astype(np.float64)
        median = float(np.median(np.abs(hidden)))
        for role, position in roles:
            vec = hidden[position]
            order = np.argsort(-np.abs(vec), kind="stable")[:k]
            for rank, dim in enumerate(order, start=1):
                rows.append(
                    dict(
                        layer=layer,
                        role=role,
                        token=trace.tokens[position],
                        position=position,
                        rank=rank,
                        dimension=int(dim),
                        value=float(vec[dim]),
                        times_median=float(abs(vec[dim]) / median) if median > 0 else float("inf"),
                    )
                )
    return pd.DataFrame(rows)


def dimension_values(trace: Trace, dimension: int) -> np.ndarray:
    """float32 [L + 1, T]: one hidden dimension at every token and layer (follow a massive one)."""
    if not 0 <= int(dimension) < trace.hidden_size:
        raise IndexError(f"dimension {dimension} is outside 0..{trace.hidden_size - 1}")
    return trace.hidden_states[:, :, int(dimension)]


def massive_dimensions(top: pd.DataFrame) -> list[int]:
    """The dimensions of a :func:`top_dimensions` table, largest (× median) first."""
    order = top.groupby("dimension")["times_median"].max().sort_values(ascending=False, kind="stable")
    return [int(d) for d in order.index]
