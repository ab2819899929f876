"""Two models side by side: probe and sentence-similarity curves of both, and the layer-by-layer
CKA comparison (:func:`clsviz.compare.compare_encoders`) read along its diagonal.

* :func:`run_side_by_side` – :class:`SideBySide`: a linear probe for a label and Spearman on
  scored sentence pairs, per layer × pooling, for model A and model B on the same texts
* :func:`diagonal_table` – CKA of each layer of A with its counterpart in B, per reading
* :func:`describe_change` – "where did B rewrite A, and did [CLS] change more than the rest?"
  in one plain sentence
* :func:`sample_corpus` – the sample of a corpus both models read
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..benchmark import benchmark_from_vectors, pair_texts
from ..compare import ModelComparison
from ..corpus import Corpus, is_missing, stratified_rows
from ..encoder import Encoder
from ..progress import check_cancel
from ..provenance import held_out
from ..vectors import extract
from .probe import ProbeError, check_labels, run_probe

__all__ = ["SIDES", "SideBySide", "describe_change", "diagonal_table", "run_side_by_side", "sample_corpus"]

SIDES = ("A", "B")
"""How tables name the two models (their names may be equal: a model against itself)."""

# Below this difference in 1 - CKA two readings "changed about as much".
_SAME_CHANGE = 0.02
# Below this 1 - CKA everywhere, the two models represent the texts alike.
_UNCHANGED = 0.001
_READING_WORDS = {"cls": "[CLS]", "mean": "the mean of the tokens", "tokens": "the token vectors"}


@dataclass(frozen=True, eq=False)
class SideBySide:
    """Probe and sentence-similarity curves of two models on the same texts.

    * ``probe``: one row per (side, layer, pooling): ``side`` ("A"/"B"), ``model``, ``layer``
      (0 = embeddings), ``pooling``, ``accuracy_mean``, ``accuracy_sd`` (over folds)
    * ``sts``: one row per (side, layer, pooling): ``side``, ``model``, ``layer``, ``pooling``,
      ``spearman`` (cosine vs the pairs' scores; NaN where undefined); None without pairs
    * ``chance`` / ``majority``: the probe's baselines; ``n`` texts probed; ``pairs`` scored
    """

    model_a: str
    model_b: str
    label: str
    probe: pd.DataFrame
    sts: pd.DataFrame | None
    chance: float
    majority: float
    n: int
    folds: int
    pairs: int = 0
    messages: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """The best [CLS] and mean reading of each model, for the probe and the pairs."""
        parts = []
        for side, name in zip(SIDES, (self.model_a, self.model_b)):
            rows = self.probe[self.probe["side"] == side]
            best = rows.loc[rows["accuracy_mean"].idxmax()]
            text = (
                f"{side} ({name}) predicts '{self.label}' best from {best['pooling']} at layer "
                f"{int(best['layer'])} ({best['accuracy_mean']:.1%})"
            )
            if self.sts is not None:
                scored = self.sts[(self.sts["side"] == side)].dropna(subset=["spearman"])
                if not scored.empty:
                    top = scored.loc[scored["spearman"].idxmax()]
                    text += (
                        f" and ranks the pairs best with {top['pooling']} at layer {int(top['layer'])} "
                        f"(ρ = {top['spearman']:.3f})"
                    )
            parts.append(text + ".")
        return " ".join(parts) + f" Chance {self.chance:.1%}, majority class {self.majority:.1%}."


def sample_corpus(corpus: Corpus, n: int | None, label: str | None = None, seed: int = 0) -> Corpus:
    """At most ``n`` texts of ``corpus`` (all when ``n`` is None or large enough), stratified by
    label column ``label`` when given, in corpus order."""
    if n is None or n >= len(corpus):
        return corpus
    values = corpus.labels[label] if label else [0] * len(corpus)
    rows = stratified_rows(values, int(n), seed=seed)
    return corpus.subset([int(r) for r in rows], name=f"{corpus.name} (sample of {int(n):,})")


class _Stages:
    """One progress bar over several stages: ``stage(size)`` returns a ``progress(done, total)``
    for the next stage that reports into the whole and checks ``cancel``."""

    def __init__(self, total: int, progress, cancel):
        self.total, self.offset, self.progress, self.cancel = max(1, total), 0, progress, cancel

    def stage(self, size: int, message: str) -> Callable[[int, int], None]:
        start = self.offset
        self.offset += size
        check_cancel(self.cancel, "The side-by-side run")

        def report(done: int, total: int) -> None:
            check_cancel(self.cancel, "The side-by-side run")
            if self.progress is not None:
                self.progress(start + min(size, round(size * done / max(1, total))), self.total, message)

        return report


def _tagged(table: pd.DataFrame, side: str, model: str, columns: Sequence[str]) -> pd.DataFrame:
    return table.assign(side=side, model=model)[["side", "model", *columns]]


def run_side_by_side(
    enc_a: Encoder,
    enc_b: Encoder,
    texts: Sequence[str],
    labels: Sequence,
    pairs: pd.DataFrame | None = None,
    *,
    poolings: Sequence[str] = ("cls", "mean"),
    folds: int = 5,
    seed: int = 0,
    label_name: str = "label",
    batch_size: int = 32,
    progress: Callable[..., None] | None = None,
    cancel=None,
) -> SideBySide:
    """Probe accuracy for ``labels`` and (with ``pairs``: columns sentence1, sentence2, score)
    Spearman on the pairs, per layer × pooling, for both models.

    Both models read the same ``texts`` and pairs; :func:`clsviz.experiments.run_probe` and
    :func:`clsviz.benchmark.benchmark_from_vectors` score them with the same folds and seed.
    Texts without a label are left out of the probe. Texts a fine-tuned model was trained on
    (its record, :func:`clsviz.provenance.held_out`) are left out of the probe and of the pairs,
    and ``messages`` says how many; a fine-tuned model with no record is said loudly.
    ``progress(done, total, message)``; ``cancel`` (a ``threading.Event``) stops between batches.
    """
    texts = [str(t) for t in texts]
    labels = list(labels)
    if len(texts) != len(labels):
        raise ProbeError(f"{len(labels)} labels for {len(texts)} texts: give one label per text.")
    check_labels([v for v in labels if not is_missing(v)], folds, label_name)  # before any model is read
    kept = held_out(texts, enc_a, enc_b)
    texts, labels = list(kept.texts), [labels[i] for i in kept.rows]
    leak_notes = [kept.note] if kept.note else []
    if pairs is not None and kept.removed:
        seen = set(held_out(pair_texts(pairs), enc_a, enc_b).texts)
        fresh = pairs["sentence1"].astype(str).isin(seen) & pairs["sentence2"].astype(str).isin(seen)
        if not fresh.all():
            leak_notes.append(f"{int((~fresh).sum())} pair(s) with a training text were left out of the pairs.")
        pairs = pairs[fresh].reset_index(drop=True)
    keep = [i for i, v in enumerate(labels) if not is_missing(v)]
    check_labels([labels[i] for i in keep], folds, label_name)  # before any model runs
    poolings = tuple(poolings)
    sentences = pair_texts(pairs) if pairs is not None else ()
    cells = len(poolings) * ((enc_a.info.num_layers + 1) + (enc_b.info.num_layers + 1))
    stages = _Stages(2 * len(texts) + cells + 2 * len(sentences), progress, cancel)
    probes, benches, messages = [], [], list(leak_notes)
    for side, enc in zip(SIDES, (enc_a, enc_b)):
        vectors = extract(
            enc, texts, poolings, batch_size=batch_size,
            progress=stages.stage(len(texts), f"{side}: embedding {len(texts):,} texts"),
        )
        result = run_probe(
            vectors, labels, poolings=poolings, folds=folds, seed=seed, label_name=label_name,
            progress=stages.stage(len(poolings) * (enc.info.num_layers + 1), f"{side}: probing '{label_name}'"),
            cancel=cancel,
        )
        messages += [m for m in result.messages if m not in messages]
        probes.append(_tagged(result.table, side, enc.name, ["layer", "pooling", "accuracy_mean", "accuracy_sd"]))
        if sentences:
            pair_vectors = extract(
                enc, sentences, poolings, batch_size=batch_size,
                progress=stages.stage(len(sentences), f"{side}: embedding {len(sentences):,} pair sentences"),
            )
            bench = benchmark_from_vectors(pair_vectors, pairs)
            benches.append(_tagged(bench.table, side, enc.name, ["layer", "pooling", "spearman"]))
    return SideBySide(
        model_a=enc_a.name,
        model_b=enc_b.name,
        label=label_name,
        probe=pd.concat(probes, ignore_index=True),
        sts=pd.concat(benches, ignore_index=True) if benches else None,
        chance=result.chance,
        majority=result.majority,
        n=result.n,
        folds=result.folds,
        pairs=0 if pairs is None else len(pairs),
        messages=tuple(messages),
    )


# --- reading a CKA comparison ----------------------------------------------------------------
def diagonal_table(comparison: ModelComparison) -> pd.DataFrame:
    """CKA of every layer of A with its counterpart in B, per computed reading.

    Columns ``reading``, ``layer_a``, ``layer_b``, ``cka`` and ``change`` (1 − CKA, float64; NaN
    where CKA is undefined). Models of the same depth pair layer l with layer l; otherwise layer
    l of A pairs with the layer of B at the same relative depth (round(l · L_B / L_A)).
    """
    frames = []
    for reading, m in comparison.cka.items():
        depth_a, depth_b = m.shape[0] - 1, m.shape[1] - 1
        layer_a = np.arange(depth_a + 1)
        if depth_a == depth_b:
            layer_b = layer_a
        else:
            layer_b = np.rint(layer_a * depth_b / max(1, depth_a)).astype(int)
        values = np.asarray(m, dtype=np.float64)[layer_a, layer_b]
        frames.append(
            pd.DataFrame(
                {"reading": reading, "layer_a": layer_a, "layer_b": layer_b, "cka": values,
                 "change": 1.0 - np.clip(values, 0.0, 1.0)}
            )
        )
    if not frames:
        return pd.DataFrame(columns=["reading", "layer_a", "layer_b", "cka", "change"])
    return pd.concat(frames, ignore_index=True)


def describe_change(comparison: ModelComparison) -> str:
    """One plain sentence: at which layer B differs most from A, and whether [CLS] changed more
    than the mean and the token vectors at the last layer (1 − CKA along the diagonal, with its
    95% interval over the texts where the comparison has one: "more" or "less" only when the
    intervals do not overlap)."""
    table = diagonal_table(comparison).dropna(subset=["change"])
    if table.empty:
        return "No CKA could be computed for these texts, so the two models cannot be compared here."
    if table["change"].max() < _UNCHANGED:
        return (
            f"The two models arrange these texts the same way at every layer (1 − CKA below {_UNCHANGED} "
            "everywhere): B kept A's representations."
        )
    depth_note = "" if (table["layer_a"] == table["layer_b"]).all() else " (layers paired by relative depth)"
    focus = "cls" if "cls" in set(table["reading"]) else str(table["reading"].iloc[0])
    rows = table[table["reading"] == focus]
    peak = rows.loc[rows["change"].idxmax()]
    words = _READING_WORDS.get(focus, focus)
    intervals = getattr(comparison, "intervals", {}) or {}

    def change_range(reading: str, layer: int) -> tuple[float, float] | None:
        """The 95% interval of 1 − CKA at ``layer`` (None without one)."""
        found = intervals.get(reading)
        if found is None or layer >= len(found) or not np.isfinite(found[layer]).all():
            return None
        return 1.0 - float(found[layer][1]), 1.0 - float(found[layer][0])

    def said(reading: str, layer: int, value: float) -> str:
        span = change_range(reading, layer)
        return f"{value:.3f}" + ("" if span is None else f" ({span[0]:.3f}–{span[1]:.3f})")

    text = (
        f"{words[0].upper()}{words[1:]} differs most at layer {int(peak['layer_a'])} of A{depth_note} "
        f"(1 − CKA = {said(focus, int(peak['layer_a']), peak['change'])})."
    )
    top = int(table["layer_a"].max())
    last = table[table["layer_a"] == top].set_index("reading")["change"]
    others = {r: float(v) for r, v in last.items() if r != "cls"}
    if "cls" in last and others:
        cls = float(last["cls"])
        spans = {r: change_range(r, top) for r in last.index}
        if all(v is not None for v in spans.values()):  # decided on the 95% intervals over the texts
            low, high = spans["cls"]
            rest = [spans[r] for r in others]
            if all(low > h for _, h in rest):
                verdict = "more than"
            elif all(high < lo for lo, _ in rest):
                verdict = "less than"
            else:
                verdict = "about as much as (the 95% intervals overlap)"
        elif cls > max(others.values()) + _SAME_CHANGE:
            verdict = "more than"
        elif cls < min(others.values()) - _SAME_CHANGE:
            verdict = "less than"
        elif all(abs(cls - v) < _SAME_CHANGE for v in others.values()):
            verdict = "about as much as"
        else:
            verdict = "neither clearly more nor less than"
        listed = ", ".join(f"{_READING_WORDS.get(r, r)} {said(r, top, v)}" for r, v in others.items())
        text += f" At the last layer [CLS] changed {verdict} the rest (1 − CKA: [CLS] {said('cls', top, cls)}, {listed})."
    return text
