"""Similarity: is the [CLS] vector an aggregate of the sentence?

* :func:`cls_token_cosines` and :func:`cls_summary`: how close [CLS] is to each token and to
  the sentence's averages, layer by layer;
* :func:`compare_sentences`: cosine between typed sentences per layer and pooling;
* :func:`token_table`: any per-layer, per-token array as a tidy table.

Every cosine has three views (:data:`~clsviz.baseline.VIEWS`): ``"raw"``; ``"minus
baseline"`` (minus the mean cosine of unrelated pairs of the same kind, from
:mod:`clsviz.baseline`); ``"centred"`` (each vector centred on the corpus mean of its own
kind, which removes the directions every input shares).

From a notebook::

    from clsviz import load_encoder, trace, figures
    from clsviz.baseline import measure_baseline
    from clsviz.similarity import cls_summary

    enc = load_encoder()
    base = measure_baseline(enc)
    t = trace(enc, "The film was not bad at all.")
    figures.cls_summary_figure(cls_summary(t, "minus baseline", base), base, "minus baseline")
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .baseline import Baseline, check_baseline, check_view
from .benchmark import COMPARE_POOLINGS
from .metrics import centre, cosine
from .pooling import check_pooling, pool
from .tracing import Trace, summary_index

__all__ = [
    "cls_summary",
    "cls_token_cosines",
    "compare_sentences",
    "comparison_at_layer",
    "describe_summary",
    "token_table",
]


def token_table(trace: Trace, values: np.ndarray, name: str = "value") -> pd.DataFrame:
    """Long table of a [L + 1, T] per-layer, per-token array: ``layer``, ``position``, ``token``,
    ``special`` and ``name`` (e.g. the output of :func:`cls_token_cosines` or :func:`token_norms`)."""
    values = np.asarray(values)
    expected = (trace.num_layers + 1, trace.seq_len)
    if values.shape != expected:
        raise ValueError(f"values: expected {list(expected)}, got {list(values.shape)}")
    layers, positions = np.meshgrid(np.arange(expected[0]), np.arange(expected[1]), indexing="ij")
    return pd.DataFrame(
        {
            "layer": layers.ravel(),
            "position": positions.ravel(),
            "token": [trace.tokens[p] for p in positions.ravel()],
            "special": trace.special_mask[positions.ravel()],
            name: values.ravel(),
        }
    )


# --- [CLS] against its own tokens ------------------------------------------------------------


def cls_token_cosines(trace: Trace, view: str = "raw", baseline: Baseline | None = None) -> np.ndarray:
    """float64 [L + 1, T]: cosine between [CLS] and every token, per layer (row 0 = embeddings).

    ``view="minus baseline"`` subtracts the mean cosine between a [CLS] and the tokens of
    unrelated sentences; ``view="centred"`` centres [CLS] on the mean [CLS] and every other
    token on the mean content token before the cosine.
    """
    check_view(view, baseline)
    check_baseline(baseline, trace.num_layers, trace.hidden_size, trace.model_name)
    hidden = trace.hidden_states.astype(np.float64)
    cls = hidden[:, summary_index(trace, "Cosines between [CLS] and the tokens"), :]
    if view == "centred":
        hidden = centre(hidden, baseline.token_mean[:, None, :])
        cls = centre(cls, baseline.mean_vector("cls"))
        hidden[:, trace.cls_index, :] = cls
    sims = cosine(hidden, cls[:, None, :])
    if view == "minus baseline":
        sims = sims - baseline.reference("cls_token")[0][:, None]
    return sims


def cls_summary(trace: Trace, view: str = "raw", baseline: Baseline | None = None) -> pd.DataFrame:
    """Per layer: cosine of [CLS] with the sentence's averages and with the pooler output.

    Columns: ``layer``, ``cls_vs_mean_content`` (mean of the text's own tokens),
    ``cls_vs_mean_all`` (mean of every token, specials included), ``cls_vs_pooler`` (the
    pooler head on the same [CLS]; NaN without a pooler), ``cls_norm``. In the
    ``"minus baseline"`` view each cosine has the matching unrelated-pair reference
    (``cls_mean_content``, ``cls_mean``, ``cls_pooler``) subtracted; in ``"centred"`` each
    vector is centred on the corpus mean of its kind first.
    """
    check_view(view, baseline)
    check_baseline(baseline, trace.num_layers, trace.hidden_size, trace.model_name)
    n = trace.num_layers + 1
    cls = np.stack([pool(trace, "cls", layer) for layer in range(n)]).astype(np.float64)
    mean_content = np.stack([pool(trace, "mean_content", layer) for layer in range(n)]).astype(np.float64)
    mean_all = np.stack([pool(trace, "mean", layer) for layer in range(n)]).astype(np.float64)
    pooler = None if trace.pooler_states is None else trace.pooler_states.astype(np.float64)
    norms = np.linalg.norm(cls, axis=-1)
    if view == "centred":
        cls = centre(cls, baseline.mean_vector("cls"))
        mean_content = centre(mean_content, baseline.mean_vector("mean_content"))
        mean_all = centre(mean_all, baseline.mean_vector("mean"))
        if pooler is not None and "pooler" in baseline.poolings:
            pooler = centre(pooler, baseline.mean_vector("pooler"))
    out = {
        "layer": np.arange(n),
        "cls_vs_mean_content": cosine(cls, mean_content),
        "cls_vs_mean_all": cosine(cls, mean_all),
        "cls_vs_pooler": cosine(cls, pooler) if pooler is not None else np.full(n, np.nan),
    }
    if view == "minus baseline":
        for column, kind in (
            ("cls_vs_mean_content", "cls_mean_content"),
            ("cls_vs_mean_all", "cls_mean"),
            ("cls_vs_pooler", "cls_pooler"),
        ):
            if kind in baseline.references:
                out[column] = out[column] - baseline.reference(kind)[0]
            else:
                out[column] = np.full(n, np.nan)
    out["cls_norm"] = norms
    return pd.DataFrame(out)


def describe_summary(summary: pd.DataFrame, baseline: Baseline | None = None, view: str = "raw") -> str:
    """One sentence reading the last layer of :func:`cls_summary` against the baseline."""
    last = summary.iloc[-1]
    layer = int(last["layer"])
    value = float(last["cls_vs_mean_content"])
    label = "cosine" if view == "raw" else f"cosine ({view})"
    text = f"Layer {layer}: {label} of [CLS] with the mean of its own tokens is {value:.2f}"
    if baseline is None or "cls_mean_content" not in baseline.references:
        return text + "."
    mean, std = baseline.reference("cls_mean_content", view)
    text += f"; with an unrelated sentence's tokens it is {mean[layer]:.2f} ± {std[layer]:.2f}"
    if std[layer] > 0:
        z = (value - mean[layer]) / std[layer]
        text += f", so this [CLS] sits {abs(z):.1f} standard deviations {'above' if z >= 0 else 'below'} chance"
    return text + "."


# --- comparing typed sentences ---------------------------------------------------------------


def compare_sentences(
    traces: Sequence[Trace],
    poolings: Sequence[str] = COMPARE_POOLINGS,
    view: str = "raw",
    baseline: Baseline | None = None,
) -> pd.DataFrame:
    """Cosine between every pair of sentences, per layer and pooling.

    Returns one row per (pair, layer, pooling) with columns ``a``, ``b`` (1-based sentence
    numbers), ``sentence_a``, ``sentence_b``, ``layer``, ``pooling``, ``cosine`` (in
    ``view``), and, with a baseline, ``reference`` / ``reference_std`` (unrelated sentences'
    cosine for the same pooling, in the same view). Raises ``ValueError`` with fewer than two.
    """
    if len(traces) < 2:
        raise ValueError(
            f"Comparing sentences needs at least two; got {len(traces)}. Type another sentence on a new line."
        )
    check_view(view, baseline)
    first = traces[0]
    check_baseline(baseline, first.num_layers, first.hidden_size, first.model_name)
    poolings = tuple(check_pooling(s) for s in poolings)
    n = first.num_layers + 1
    # vectors[s][i]: [L+1, D] for sentence i
    vectors = {
        s: [np.stack([pool(t, s, layer) for layer in range(n)]).astype(np.float64) for t in traces]
        for s in poolings
    }
    rows = []
    for s in poolings:
        refs = baseline.reference(s, view) if baseline is not None and s in baseline.references else None
        if view == "centred":
            vecs = [centre(v, baseline.mean_vector(s)) for v in vectors[s]]
        else:
            vecs = vectors[s]
        for i in range(len(traces)):
            for j in range(i + 1, len(traces)):
                sims = cosine(vecs[i], vecs[j])
                if view == "minus baseline":
                    sims = sims - baseline.reference(s)[0]
                for layer in range(n):
                    row = dict(
                        a=i + 1,
                        b=j + 1,
                        sentence_a=traces[i].text,
                        sentence_b=traces[j].text,
                        layer=layer,
                        pooling=s,
                        cosine=float(sims[layer]),
                    )
                    if baseline is not None:
                        row["reference"] = float(refs[0][layer]) if refs is not None else float("nan")
                        row["reference_std"] = float(refs[1][layer]) if refs is not None else float("nan")
                    rows.append(row)
    return pd.DataFrame(rows)




def comparison_at_layer(comparison: pd.DataFrame, layer: int | None = None) -> pd.DataFrame:
    """One row per sentence pair, one column per pooling: the cosines of :func:`compare_sentences`
    at ``layer`` (default: the last)."""
    layer = int(comparison["layer"].max()) if layer is None else int(layer)
    at = comparison[comparison["layer"] == layer]
    wide = at.pivot_table(index=["a", "b", "sentence_a", "sentence_b"], columns="pooling", values="cosine")
    return wide[list(dict.fromkeys(at["pooling"]))].reset_index().rename_axis(columns=None)
