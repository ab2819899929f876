"""The layer profile of probes (Jawahar et al. 2019; Tenney et al. 2019): at which layer does a
[CLS] probe peak for a surface, a syntax and a semantics label, and is that peak clear of noise?

The per-layer accuracies are :func:`clsviz.experiments.probe.run_probe`'s, the same function every
page uses. Their noise comes from which sentences were sampled and how the folds fell, so each
text's out-of-fold answer is averaged over :data:`CV_SEEDS` fold assignments (the same
``StratifiedKFold`` splits as ``run_probe`` with seeds 0, 1, 2), and the peak is recomputed on
1,000 bootstrap resamples of the texts. A label whose peak layer moves across the resamples has
"no clear layer"; the deciding numbers are the differences of peak depths (layer / layers)
between the kinds, with their intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..experiments.probe import check_labels, make_probe, run_probe
from ..narrative import layer_span
from ..progress import check_cancel, single_blas_thread
from ..verdicts import Estimate
from .claims import Claim
from .measures import MEASURED, Context, Measurement

__all__ = ["CV_SEEDS", "KINDS", "out_of_fold_correct", "peak_layer", "probe_peaks"]

CV_SEEDS = (0, 1, 2)
"""Fold assignments each text's out-of-fold answer is averaged over."""
KINDS = ("surface", "syntax", "semantics")
BOOTSTRAP = 1000


def peak_layer(accuracy: Sequence[float], tolerance: float = 0.02) -> int:
    """The first layer whose accuracy is within ``tolerance`` of the best (``accuracy`` [L+1])."""
    acc = np.asarray(accuracy, dtype=np.float64)
    if len(acc) < 2:
        raise ValueError("A peak needs accuracies for at least two layers.")
    return int(np.flatnonzero(acc >= np.nanmax(acc) - tolerance)[0])


def out_of_fold_correct(X: np.ndarray, y: np.ndarray, folds: int = 5, seeds: Sequence[int] = CV_SEEDS,
                        cancel=None) -> np.ndarray:  # fmt: skip
    """float64 [L+1, N]: for each layer of ``X`` [N, L+1, D] and each text, the share of the
    ``seeds`` fold assignments in which the probe trained without that text read it right."""
    from sklearn.exceptions import ConvergenceWarning  # sklearn is heavy: loaded when a probe runs
    from sklearn.model_selection import StratifiedKFold

    n, layers = X.shape[0], X.shape[1]
    right = np.zeros((layers, n))
    with single_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in seeds:
            splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), y))
            for layer in range(layers):
                check_cancel(cancel, "Checking the published findings")
                features = np.ascontiguousarray(X[:, layer], dtype=np.float32)
                for train, test in splits:
                    model = make_probe(random_state=seed).fit(features[train], y[train])
                    right[layer, test] += model.predict(features[test]) == y[test]
    return right / len(seeds)


def _peaks(right: np.ndarray, rows: np.ndarray, tolerance: float) -> int:
    return peak_layer(right[:, rows].mean(axis=1), tolerance)


def _layer_interval(layers: np.ndarray) -> tuple[int, int]:
    low, high = np.percentile(layers, [2.5, 97.5])
    return int(np.floor(low)), int(np.ceil(high))


def probe_peaks(claim: Claim, ctx: Context) -> Measurement:
    """The relative depth at which a [CLS] probe peaks for a surface, a syntax and a semantics
    label, each with the range of peak layers over bootstrap resamples of the texts; the
    deciding numbers are the depth differences between the kinds."""
    p = claim.params
    vectors = ctx.demo_vectors()
    pooling = str(p["pooling"])
    tolerance = float(p["tolerance"])
    k = vectors.poolings.index(pooling)
    rng = np.random.default_rng(ctx.seed)
    depth_draws, peaks, counts, parts, sizes = {}, {}, {}, [], []
    for kind in KINDS:
        label = str(p[kind])
        check_cancel(ctx.cancel, "Checking the published findings")
        result = run_probe(vectors, label, poolings=[pooling], seed=ctx.seed, n_jobs=1, cancel=ctx.cancel)
        acc = result.table.sort_values("layer")["accuracy_mean"].to_numpy()
        keep = np.array([v is not None and str(v) != "" and v == v for v in vectors.labels[label]])
        y, _ = check_labels([v for v, ok in zip(vectors.labels[label], keep) if ok], 5, label)
        right = out_of_fold_correct(vectors.vectors[keep][:, :, k], y, cancel=ctx.cancel)
        n = counts[kind] = int(keep.sum())
        draws = np.array([_peaks(right, rng.integers(0, n, n), tolerance) for _ in range(BOOTSTRAP)])
        depth_draws[kind] = draws / ctx.num_layers
        layer = peaks[kind] = peak_layer(acc, tolerance)
        low, high = _layer_interval(draws)
        said = f"{acc[layer]:.0%} at layer {layer} of {ctx.num_layers}; majority {result.majority:.0%}"
        if low == high:
            parts.append(f"{label} ({kind}) peaks at layer {layer} in every resample ({said})")
        else:
            parts.append(f"{label} ({kind}): no clear layer - the peak is at layer {layer} on the whole sample but "
                         f"anywhere in {layer_span(range(low, high + 1))} across resamples ({said})")
        sizes.append(f"{n} ({label})")
    n = min(counts.values())
    numbers = {}
    for a, b in (("semantics", "surface"), ("syntax", "surface"), ("semantics", "syntax")):
        low, high = np.percentile(depth_draws[a] - depth_draws[b], [2.5, 97.5])
        numbers[f"{a}_minus_{b}"] = Estimate((peaks[a] - peaks[b]) / ctx.num_layers, float(low), float(high), n, "texts")
    return Measurement(MEASURED, "; ".join(parts), numbers,
                       f"5-fold logistic-regression probe on {pooling}, layers 0–{ctx.num_layers} "
                       f"(clsviz.experiments.run_probe); peak = first layer within {100 * tolerance:.0f} points of the "
                       f"best; intervals from 1,000 bootstrap resamples of the texts, each text's answer averaged over "
                       f"{len(CV_SEEDS)} fold assignments", "demo texts: " + ", ".join(sizes))
