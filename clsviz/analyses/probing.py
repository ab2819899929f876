"""Could any token do? A linear probe at every layer x pooling, and the controls that say what
its accuracy means: a control task (selectivity, Hewitt & Liang 2019) and the online code (MDL,
Voita & Titov 2020). One long analysis, so the app runs it as one background job whose progress
reads "step 2 of 3 (control task): 40 of 98".
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import figures
from ..corpus import Corpus, is_missing, stratified_rows
from ..experiments import (
    RANDOM_TOKEN,
    ProbeError,
    ProbeResult,
    check_labels,
    random_token_vectors,
    run_mdl,
    run_probe,
    run_selectivity,
    summarize_selectivity,
    word_types,
)
from ..narrative import fold_noise
from ..progress import Steps, check_cancel
from .core import Result, analysis
from .embeddings import parse_poolings

__all__ = ["ProbeGrid", "labelled_rows", "layer_sentence", "probe_subset"]


def labelled_rows(corpus: Corpus, label: str) -> list[int]:
    """The rows of ``corpus`` that have a value in label column ``label``."""
    return [i for i, v in enumerate(corpus.labels[label]) if not is_missing(v)]


def probe_subset(corpus: Corpus, label: str, max_texts: int, folds: int, seed: int = 0) -> tuple[Corpus, str | None]:
    """The corpus a probe reads: its texts labelled in ``label``, at most ``max_texts`` of them (a
    sample stratified by label, in corpus order), and a note when it is a sample. The whole corpus
    itself when every text is used (its vectors are then shared with other pages). Raises
    :class:`clsviz.experiments.ProbeError` when the labels cannot be probed with ``folds`` folds."""
    rows = labelled_rows(corpus, label)
    note = None
    if len(rows) > max_texts:
        picked = stratified_rows([corpus.labels[label][i] for i in rows], max_texts, seed=seed)
        note = f"A stratified sample of {max_texts:,} of the {len(rows):,} labelled texts is used."
        rows = [rows[i] for i in picked]
    check_labels([corpus.labels[label][i] for i in rows], folds, label)
    if len({corpus.texts[i] for i in rows}) == 1:
        raise ProbeError("All the texts are the same sentence, so a probe can only guess. Use different sentences.")
    return (corpus if len(rows) == len(corpus) else corpus.subset(rows)), note


def layer_sentence(result: ProbeResult) -> str | None:
    """Whether one layer is clearly best for the best pooling: a layer is about even with the best
    when the 95% interval of their gap (:func:`clsviz.narrative.fold_noise`) includes 0."""
    table = result.table
    best = table.loc[table["accuracy_mean"].idxmax()]
    rows = table[table["pooling"] == best["pooling"]].sort_values("layer")
    if len(rows) < 2:
        return None
    noise = fold_noise(best["accuracy_sd"], rows["accuracy_sd"].fillna(0).to_numpy(), result.folds)
    even = [int(layer) for layer, gap, n in zip(rows["layer"], best["accuracy_mean"] - rows["accuracy_mean"], noise)
            if gap <= n]  # fmt: skip
    if len(even) > 1:
        return (f"No clear layer for {best['pooling']}: layers {', '.join(map(str, even))} are about even with the best "
                f"({best['accuracy_mean']:.1%} ± {best['accuracy_sd']:.1%}; the 95% interval of each gap includes 0).")
    return (f"For {best['pooling']}, layer {int(best['layer'])} is clearly best: the 95% interval of its gap to every "
            "other layer excludes 0.")


@dataclass(frozen=True, eq=False)
class ProbeGrid(Result):
    """The probe (:class:`clsviz.experiments.ProbeResult`: accuracy mean and sd over folds per
    layer x pooling, chance and majority), and when asked for the control task (``selectivity``:
    accuracy, control accuracy, their sds and selectivity per cell) and the online code (``mdl``:
    codelength bits per cell)."""

    probe: ProbeResult
    selectivity: pd.DataFrame | None = None
    mdl: pd.DataFrame | None = None

    @property
    def extras(self) -> dict[str, pd.DataFrame]:
        """The controls computed: "selectivity" and / or "mdl" -> their tables."""
        return {k: v for k, v in (("selectivity", self.selectivity), ("mdl", self.mdl)) if v is not None}

    def table(self) -> pd.DataFrame:
        p = self.probe
        return p.table.assign(label=p.label, chance=p.chance, majority=p.majority)

    def figure_keys(self) -> tuple[str, ...]:
        return ("probe.accuracy", *(f"probe.{k}" for k in self.extras))

    def figure(self, key: str, **view):
        if key == "probe.accuracy":
            return figures.probe_figure(self.probe)
        if key == "probe.selectivity" and self.selectivity is not None:
            return figures.selectivity_figure(self.selectivity)
        if key == "probe.mdl" and self.mdl is not None:
            return figures.mdl_figure(self.mdl)
        return super().figure(key)

    def figure_table(self, key: str, **view) -> pd.DataFrame:
        return self.extras.get(key.removeprefix("probe."), self.table())

    def probe_sentences(self, baseline=None) -> str:
        """The probe read at every layer with its spread over folds (a ``baseline`` adds the
        near-identical-vectors note), and whether one layer is clearly best."""
        return " ".join(s for s in (self.probe.summary(baseline), layer_sentence(self.probe)) if s)

    def selectivity_sentence(self) -> str | None:
        """Where selectivity is highest, each accuracy with its spread over folds."""
        if self.selectivity is None or self.selectivity.empty:
            return None
        return summarize_selectivity(self.selectivity)

    def mdl_sentence(self) -> str | None:
        if self.mdl is None or self.mdl.empty:
            return None
        best = self.mdl.loc[self.mdl["codelength_bits"].idxmin()]
        return (f"The labels are cheapest to transmit from {best['pooling']} at layer {int(best['layer'])}: "
                f"{best['codelength_bits']:.0f} bits against {best['uniform_bits']:.0f} for the uniform code "
                "(one seeded ordering of the texts, so no interval: treat differences of a few percent as even).")

    def summary(self, baseline=None) -> list[str]:
        return [s for s in (self.probe_sentences(baseline), self.selectivity_sentence(), self.mdl_sentence()) if s]


def _carried_random_token(vectors, encoder, rows: int, seed: int):
    """The random-token vectors ``vectors`` carry from their own pass (:func:`clsviz.extract` with
    ``random_token_seed``) when they were picked with this ``seed`` at the encoder's token limit
    (as :func:`random_token_vectors` picks them), else None."""
    carried = getattr(vectors, "random_token", None)
    if carried is None or encoder is None or len(carried) != rows or vectors.model_name != encoder.name:
        return None
    return carried if getattr(vectors, "random_token_of", None) == (int(seed), encoder.info.token_limit()) else None


@analysis("probe", title="Could any token do? A linear probe at every layer × pooling", inputs=("corpus",),
          optional=("vectors", "encoder"), figures=("probe.accuracy", "probe.selectivity", "probe.mdl"), long=True,
          questions=(2,))  # fmt: skip
def probe_analysis(
    corpus: Corpus,
    vectors=None,
    encoder=None,
    *,
    label_column: str = "",
    poolings: str = "",
    folds: int = 5,
    seed: int = 0,
    control: bool = False,
    mdl: bool = False,
    memory_budget: int | None = None,
    progress=None,
    cancel=None,
) -> ProbeGrid:
    """Cross-validated logistic-regression accuracy of a label column from every layer x pooling
    of the corpus's ``vectors`` (``poolings``: comma-separated, default all they hold; ``random``,
    one random content token per text, reads the texts with the ``encoder``), then the control
    task (``control``) and the MDL probe (``mdl``) on the same rows. ``label_column`` defaults to
    the corpus's first label column; ``memory_budget`` (bytes) streams a shard folder's columns that
    do not fit it."""
    if not corpus.labels:
        raise ProbeError("The corpus has no label column, so there is nothing for a probe to predict.")
    label = label_column or corpus.label_names[0]
    if label not in corpus.labels:
        raise ProbeError(f"No label column '{label}'. Available: {', '.join(corpus.label_names)}.")
    held = (*(vectors.poolings if vectors is not None else ()), *((RANDOM_TOKEN,) if encoder is not None else ()))
    names = list(parse_poolings(poolings or ",".join(held), held))
    named = [p for p in names if p != RANDOM_TOKEN]
    if vectors is not None and len(vectors.texts) != len(corpus):
        raise ValueError(f"The corpus has {len(corpus):,} texts but the vectors {len(vectors.texts):,}.")
    sharded = hasattr(vectors, "content_key")  # a shard folder: probed on its own label column, maybe streamed
    if sharded and (control or mdl):
        raise ProbeError("The control task and the MDL probe read vectors held in memory; a shard folder is probed "
                         "without them.")
    need_random = RANDOM_TOKEN in names
    # Weights: reading a random token is one forward pass over the texts; the probe, the control
    # task and the MDL probe each fit every layer x pooling cell, several times.
    plan = [("random tokens", 1.0)] * need_random + [("probe", 5.0)] + [("control task", 5.0)] * control
    plan += [("MDL probe", 5.0)] * bool(mdl and named)
    steps = Steps(progress, [name for name, _ in plan], weights=[weight for _, weight in plan])
    index = iter(range(len(steps.names)))
    random_vectors = None
    if need_random:
        random_vectors = _carried_random_token(vectors, encoder, len(corpus), seed)
        if random_vectors is None:
            random_vectors = random_token_vectors(encoder, list(corpus.texts), seed=seed,
                                                  progress=steps.step(next(index)))  # fmt: skip
        else:
            steps.step(next(index))(1, 1)
        check_cancel(cancel, "The probe")
    source = vectors if named else {}
    labels = label if sharded else list(corpus.labels[label])
    budget = {} if memory_budget is None else {"memory_budget": int(memory_budget)}
    result = run_probe(source, labels, poolings=names, random_token=random_vectors, folds=int(folds), seed=seed,
                       label_name=label, progress=steps.step(next(index)), cancel=cancel, **budget)  # fmt: skip
    selectivity = table_mdl = None
    if control:
        selectivity = run_selectivity(
            source, list(corpus.labels[label]), types=word_types(corpus.texts), poolings=names,
            random_token=random_vectors, folds=int(folds), seed=seed, real=result, label_name=label,
            progress=steps.step(next(index)), cancel=cancel,
        )
    if mdl and named:
        table_mdl = run_mdl(source, list(corpus.labels[label]), poolings=named, seed=seed,
                            progress=steps.step(next(index)), cancel=cancel)  # fmt: skip
    return ProbeGrid(result, selectivity, table_mdl)
