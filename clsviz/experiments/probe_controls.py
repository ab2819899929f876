"""Probing done right: control tasks and selectivity, and the minimum-description-length probe.

A probe that reaches high accuracy may read the property from the representation, or it may
memorise: learn an arbitrary mapping from something the representation identifies (a word) to
the label. Two checks separate them:

* **Control tasks** (Hewitt & Liang 2019): give every *type* (by default the text's first word,
  :func:`word_types`) a random label, with the class balance of the real labels
  (:func:`control_labels`). The control task can only be solved by memorising types, so
  **selectivity** = accuracy - control accuracy (:func:`run_selectivity`, per layer x pooling)
  is high only where the probe reads the property rather than memorising.
* **MDL probe** (Voita & Titov 2020, online code): the number of bits needed to transmit the
  labels when a probe trained on the first blocks of the data encodes the next block
  (:func:`online_codelength`, :func:`run_mdl`). Shorter codes mean the labels are more easily
  extracted; unlike accuracy it keeps separating poolings that all reach the ceiling.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..corpus import is_missing
from ..narrative import fold_noise
from ..progress import check_cancel, single_blas_thread
from ..vectors import PooledVectors
from .probe import DEFAULT_C, DEFAULT_MAX_ITER, ProbeError, ProbeResult, check_labels, make_probe, run_probe

__all__ = [
    "MDL_FRACTIONS",
    "control_labels",
    "online_codelength",
    "run_mdl",
    "run_selectivity",
    "summarize_selectivity",
    "word_types",
]

MDL_FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)
"""Block boundaries of the online code, as shares of the data (Voita & Titov 2020)."""

_WORD = re.compile(r"\w+", re.UNICODE)


def word_types(texts: Sequence[str]) -> list[str]:
    """The type of each text for the control task: its first word, lower-cased ("" when none)."""
    out = []
    for text in texts:
        found = _WORD.search(str(text))
        out.append(found.group(0).lower() if found else "")
    return out


def control_labels(types: Sequence, labels: Sequence, seed: int = 0) -> np.ndarray:
    """Control labels [N] (values of ``labels``): one random label per distinct type, drawn so
    that the texts keep the real class balance as closely as whole types allow.

    Types are visited in a seeded random order; each takes a class drawn with probability
    proportional to how many texts that class still lacks (Hewitt & Liang 2019's control task,
    with the balance matched instead of only expected).
    """
    types, labels = [str(t) for t in types], list(labels)
    if len(types) != len(labels):
        raise ProbeError(f"{len(types)} types for {len(labels)} labels: give one type per text.")
    keys = np.asarray([str(v) for v in labels], dtype=object)
    classes, codes = np.unique(keys, return_inverse=True)
    values = {str(v): v for v in labels}
    need = np.bincount(codes, minlength=len(classes)).astype(float)
    names, index, sizes = np.unique(np.asarray(types, dtype=object), return_inverse=True, return_counts=True)
    rng = np.random.default_rng(int(seed))
    assigned = np.empty(len(names), dtype=np.int64)
    for t in rng.permutation(len(names)):
        weights = np.clip(need, 0, None)
        weights = weights if weights.sum() > 0 else np.bincount(codes, minlength=len(classes)).astype(float)
        c = int(rng.choice(len(classes), p=weights / weights.sum()))
        assigned[t] = c
        need[c] -= sizes[t]
    return np.asarray([values[str(classes[assigned[i]])] for i in index], dtype=object)


def run_selectivity(
    vectors: PooledVectors | Mapping[str, np.ndarray],
    labels: str | Sequence,
    *,
    types: Sequence | None = None,
    poolings: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    folds: int = 5,
    seed: int = 0,
    random_token: np.ndarray | None = None,
    label_name: str | None = None,
    real: ProbeResult | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> pd.DataFrame:
    """Probe accuracy, control-task accuracy and selectivity per layer x pooling (tidy).

    Arguments as :func:`~clsviz.experiments.probe.run_probe`; ``types`` [N] are what the control
    task assigns labels to (default: :func:`word_types` of ``vectors.texts``). Both probes use the
    same folds and seed; ``real``, a :class:`ProbeResult` of the same vectors, labels, folds and
    seed, is reused instead of probing the real labels again. Columns: ``layer``, ``pooling``, ``accuracy``, ``accuracy_sd``,
    ``control_accuracy``, ``control_sd``, ``selectivity`` (accuracy - control accuracy), ``n``,
    ``folds``, ``types`` (distinct types among the probed texts).
    """
    if isinstance(labels, str):
        if not isinstance(vectors, PooledVectors) or labels not in vectors.labels:
            raise ProbeError(f"No label column '{labels}' to probe.")
        label_name = label_name or labels
        labels = vectors.labels[labels]
    labels = list(labels)
    if types is None:
        if not isinstance(vectors, PooledVectors):
            raise ProbeError("Give types= (one per text) for the control task: the vectors carry no texts.")
        types = word_types(vectors.texts)
    types = list(types)
    if len(types) != len(labels):
        raise ProbeError(f"{len(types)} types for {len(labels)} labels: give one type per text.")
    keep = [i for i, v in enumerate(labels) if not is_missing(v)]
    control = np.full(len(labels), None, dtype=object)
    control[keep] = control_labels([types[i] for i in keep], [labels[i] for i in keep], seed)
    kinds = {types[i] for i in keep}
    if len(set(control[keep])) < 2:
        shown = f" (all are {next(iter(kinds))!r})" if len(kinds) == 1 else ""
        raise ProbeError(
            f"The control task needs texts of several types, but the {len(keep)} texts have {len(kinds)} type(s)"
            f"{shown}, so a random label per type gives every text the same label. Use texts that start with "
            "different words, or pass types= that vary."
        )
    try:
        check_labels(list(control[keep]), folds, "control task")
    except ProbeError as exc:
        raise ProbeError(f"The control task (a random label per type) cannot be probed: {exc}") from None

    def half(offset):
        if progress is None:
            return None
        return lambda done, total: progress(offset + done, 2 * total)

    common = dict(poolings=poolings, layers=layers, folds=folds, seed=seed, random_token=random_token, cancel=cancel)
    if real is None:
        real = run_probe(vectors, labels, label_name=label_name, progress=half(0), **common)
    elif real.folds != folds:
        raise ProbeError(f"The given probe result used {real.folds} folds, not {folds}: probe both alike.")
    check_cancel(cancel, "The control task")
    n_cells = len(real.table)
    ctrl = run_probe(vectors, list(control), label_name="control", progress=half(n_cells), **common)
    table = real.table.merge(
        ctrl.table[["layer", "pooling", "accuracy_mean", "accuracy_sd"]].rename(
            columns={"accuracy_mean": "control_accuracy", "accuracy_sd": "control_sd"}
        ),
        on=["layer", "pooling"],
    ).rename(columns={"accuracy_mean": "accuracy"})
    table["selectivity"] = table["accuracy"] - table["control_accuracy"]
    table["types"] = len({types[i] for i in keep})
    columns = ["layer", "pooling", "accuracy", "accuracy_sd", "control_accuracy", "control_sd", "selectivity",
               "n", "folds", "types"]  # fmt: skip
    return table[columns]


def summarize_selectivity(table: pd.DataFrame) -> str:
    """One plain sentence: where selectivity is highest (each accuracy with its spread over folds,
    and "inconclusive" when the 95% interval of the gap includes 0), and [CLS] against the mean."""
    if table.empty:
        return ""
    best = table.loc[table["selectivity"].idxmax()]
    noise = float(fold_noise(best["accuracy_sd"], best["control_sd"], int(best["folds"])))
    within = " - its 95% interval includes 0, so inconclusive" if best["selectivity"] <= noise else ""
    text = (
        f"Selectivity is highest for {best['pooling']} at layer {int(best['layer'])}: accuracy "
        f"{best['accuracy']:.1%} ± {best['accuracy_sd']:.1%} against {best['control_accuracy']:.1%} ± "
        f"{best['control_sd']:.1%} on the control task ({100 * best['selectivity']:.1f} ± {100 * noise:.1f} points"
        f"{within})."
    )
    poolings = set(table["pooling"])
    if {"cls", "mean"} <= poolings:
        parts = []
        for name in ("cls", "mean"):
            rows = table[table["pooling"] == name]
            row = rows.loc[rows["accuracy"].idxmax()]
            parts.append(f"{name} {100 * row['selectivity']:.1f} points (layer {int(row['layer'])})")
        text += " At their most accurate layers the selectivity is " + " and ".join(parts) + "."
    return text


# --- MDL ----------------------------------------------------------------------------------------


def _order(y: np.ndarray, seed: int) -> np.ndarray:
    """A seeded random order of the rows whose first rows hold one example of every class, so the
    first block can train a probe over all classes."""
    rng = np.random.default_rng(int(seed))
    order = rng.permutation(len(y))
    firsts = [int(order[np.flatnonzero(y[order] == c)[0]]) for c in np.unique(y)]
    rest = [int(i) for i in order if int(i) not in set(firsts)]
    return np.asarray(firsts + rest, dtype=np.int64)


def online_codelength(X: np.ndarray, y: np.ndarray, *, fractions: Sequence[float] = MDL_FRACTIONS, seed: int = 0,
                      C: float = DEFAULT_C, max_iter: int = DEFAULT_MAX_ITER) -> dict:  # fmt: skip
    """The online codelength (bits) of labels ``y`` [N] (int codes) given features ``X`` [N, D].

    The first block (at least one text per class) is sent with the uniform code (log2 K bits
    each); every later block is encoded with a probe (:func:`make_probe`) trained on all the
    blocks before it: -log2 p(y | x) bits per text, p floored at 1e-12. Returns ``codelength``,
    ``uniform`` (N log2 K) and ``compression`` (uniform / codelength) in a dict.
    """
    X, y = np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.int64)
    n, classes = len(y), np.unique(y)
    k = len(classes)
    order = _order(y, seed)
    X, y = X[order], y[order]
    cuts = sorted({max(k, int(round(f * n))) for f in fractions if f > 0} | {n})
    cuts = [c for c in cuts if c <= n]
    bits = cuts[0] * np.log2(k)
    for start, stop in zip(cuts[:-1], cuts[1:]):
        probe = make_probe(C, max_iter, seed).fit(X[:start], y[:start])
        proba = np.zeros((stop - start, k))
        proba[:, np.searchsorted(classes, probe.classes_)] = probe.predict_proba(X[start:stop])
        p = np.clip(proba[np.arange(stop - start), np.searchsorted(classes, y[start:stop])], 1e-12, 1.0)
        bits += float(-np.log2(p).sum())
    uniform = n * np.log2(k)
    return {"codelength": float(bits), "uniform": float(uniform), "compression": float(uniform / bits)}


def run_mdl(
    vectors: PooledVectors | Mapping[str, np.ndarray],
    labels: str | Sequence,
    *,
    poolings: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> pd.DataFrame:
    """The online codelength per layer x pooling (tidy): ``layer``, ``pooling``,
    ``codelength_bits``, ``uniform_bits``, ``compression``, ``n``. Rows with a missing label are
    left out; the same order of the texts is used for every cell."""
    from sklearn.exceptions import ConvergenceWarning

    if isinstance(vectors, PooledVectors):
        feats = {s: vectors.vectors[:, :, i] for i, s in enumerate(vectors.poolings)}
        if isinstance(labels, str):
            if labels not in vectors.labels:
                raise ProbeError(f"No label column '{labels}'. Available: {', '.join(vectors.labels) or 'none'}.")
            labels = vectors.labels[labels]
    else:
        feats = {str(k): np.asarray(v) for k, v in vectors.items()}
    labels = list(labels)
    keep = np.flatnonzero([not is_missing(v) for v in labels])
    y, _ = check_labels([labels[i] for i in keep], 2, "label")
    poolings = list(feats) if poolings is None else list(poolings)
    missing = [p for p in poolings if p not in feats]
    if missing:
        raise ProbeError(f"Not extracted: {', '.join(missing)}. Available: {', '.join(feats)}.")
    num_rows = next(iter(feats.values())).shape[1]
    layers = list(range(num_rows)) if layers is None else [int(v) for v in layers]
    if any(not 0 <= v < num_rows for v in layers):
        raise ProbeError(f"Layers must lie in 0..{num_rows - 1}, got {layers}.")
    rows, cells = [], [(layer, p) for layer in layers for p in poolings]
    with single_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i, (layer, p) in enumerate(cells, start=1):
            check_cancel(cancel, "The MDL probe")
            code = online_codelength(feats[p][keep, layer], y, seed=seed)
            rows.append({"layer": layer, "pooling": p, "codelength_bits": code["codelength"],
                         "uniform_bits": code["uniform"], "compression": code["compression"], "n": len(y)})  # fmt: skip
            if progress is not None:
                progress(i, len(cells))
    return pd.DataFrame(rows)
