"""Evidence from a corpus's vectors (the Embeddings page): the corpus projected to 2-D at one
layer, how well a label separates in the full space at every layer, and one sentence's path
through the layers in a projection fit on all of them.

Each analysis reads several poolings (``poolings="cls,mean,max"``) and its result holds one panel
per pooling. The app fits each pooling on its own (so changing one panel refits one, and the
panels' UMAP fits run in parallel) and puts the panels side by side with ``join``; the command
line fits them in one call. Placing typed sentences into a fitted projection is a ``join`` too:
it computes no fit, so a new sentence never refits the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from .. import figures
from ..corpus import Corpus
from ..figures import pooling_title
from ..layers import check_layer
from ..pooling import check_pooling, pool
from ..projection import MIN_UMAP_SAMPLES, Projector, coordinates_table, trace_path, trajectory_stack
from ..separation import label_baselines, score_text, scores_at, separation_by_layer
from ..tracing import Trace
from ..vectors_io import as_corpus
from .core import NotApplicable, ParamError, Result, analysis

__all__ = [
    "MIN_TEXTS",
    "ProjectionResult",
    "SeparationResult",
    "TrajectoryResult",
    "VectorColumn",
    "parse_poolings",
]

MIN_TEXTS = MIN_UMAP_SAMPLES
"""A projection needs at least this many texts."""

SCORE_ROWS = 3000
"""A shard folder larger than this is scored on a seeded sample of this many rows (the scores
subsample that many anyway)."""

Method = Literal["umap", "pca"]


def parse_poolings(text: str, held) -> tuple[str, ...]:
    """The comma-separated pooling names of ``text`` (in order, once each), each one that the
    vectors hold (``held``: their pooling names); a :class:`ParamError` naming what they hold."""
    names = tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    if not names:
        raise ParamError("poolings: name at least one, comma-separated (e.g. 'cls,mean').")
    for name in names:
        if name != "random":
            check_pooling(name)
    missing = [p for p in names if p not in held]
    if missing:
        raise ParamError(f"These vectors hold no {', '.join(missing)}; they hold {', '.join(held) or 'nothing'}.")
    return names


def _check_rows(corpus: Corpus, vectors) -> None:
    if len(corpus) != len(vectors.texts):
        raise ValueError(f"The corpus has {len(corpus):,} texts but the vectors {len(vectors.texts):,}: "
                         "give the vectors of this corpus.")


@dataclass(frozen=True, eq=False)
class VectorColumn:
    """One (pooling, layer) column of corpus vectors: what a projection reads, small enough to
    send to another process. Reads like :class:`clsviz.PooledVectors` for that column only."""

    values: np.ndarray  # float32 [N, D]
    pooling: str
    layer: int
    num_layers: int
    model_name: str

    @classmethod
    def of(cls, vectors, pooling: str, layer: int) -> VectorColumn:
        layer = check_layer(layer, vectors.num_layers)
        return cls(vectors.get(pooling, layer), pooling, layer, vectors.num_layers, vectors.model_name)

    @property
    def poolings(self) -> tuple[str, ...]:
        return (self.pooling,)

    @property
    def texts(self) -> range:  # only its length is read
        return range(len(self.values))

    def get(self, pooling: str, layer: int = -1, rows=None) -> np.ndarray:
        if pooling != self.pooling or check_layer(layer, self.num_layers) != self.layer:
            raise KeyError(f"this column holds {self.pooling} at layer {self.layer} only")
        return self.values if rows is None else self.values[np.asarray(rows, dtype=np.int64)]


# -- projection ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ProjectionResult(Result):
    """The corpus projected to 2-D at one ``layer``, one fitted :class:`clsviz.projection.Projector`
    per pooling; ``typed`` holds typed sentences placed into each (pooling -> float32 [M, 2]),
    ``subtitles`` a line under each panel's title (the label scores).

    View: ``colour``, the label column to colour the points by (None: one colour)."""

    projectors: dict  # pooling -> fitted Projector
    layer: int
    method: str
    texts: tuple[str, ...]
    labels: dict  # label column -> N values
    typed: dict = field(default_factory=dict)
    typed_texts: tuple[str, ...] = ()
    subtitles: dict = field(default_factory=dict)

    @property
    def poolings(self) -> tuple[str, ...]:
        return tuple(self.projectors)

    def coordinates(self, pooling: str) -> np.ndarray:
        """float32 [N, 2]: the corpus texts in the ``pooling`` panel."""
        return self.projectors[pooling].embedding_

    def fitted_rows(self) -> int:
        """How many texts the projections were fit on (the rest were placed with transform)."""
        return min(len(getattr(p, "fit_rows_", p.embedding_)) for p in self.projectors.values())

    def title(self) -> str:
        n, fitted = len(self.texts), self.fitted_rows()
        sample = f" (fitted on a sample of {fitted:,}; the rest placed with transform)" if fitted < n else ""
        return f"{self.method.upper()} of {n:,} texts after layer {self.layer}{sample}"

    @classmethod
    def join(cls, parts, traces=(), scores: SeparationResult | None = None) -> ProjectionResult:
        """One result with the panels of ``parts`` (same corpus, layer and method) side by side,
        the typed ``traces`` placed into each and ``scores`` (at this layer) under each title."""
        first = parts[0]
        if any((p.layer, p.method, len(p.texts)) != (first.layer, first.method, len(first.texts)) for p in parts):
            raise ValueError("Only projections of the same corpus at the same layer and method join.")
        projectors = {k: v for p in parts for k, v in p.projectors.items()}
        traces = list(traces)
        typed = {
            s: proj.transform(np.stack([pool(t, s, first.layer) for t in traces]).astype(np.float32))
            for s, proj in projectors.items()
        } if traces else {}  # fmt: skip
        subtitles = {}
        if scores is not None:
            for s in projectors:
                sc = scores.at(s, first.layer)
                if sc:
                    subtitles[s] = (f"kNN acc {score_text(sc['knn_accuracy'], '.2f')} · "
                                    f"silhouette {score_text(sc['silhouette'], '.2f')}")  # fmt: skip
        return cls(projectors, first.layer, first.method, first.texts, first.labels, typed,
                   tuple(t.text for t in traces), subtitles)  # fmt: skip

    def _colour(self, colour: str | None):
        if colour is None:
            return None
        if colour not in self.labels:
            raise KeyError(f"no label column {colour!r}; the corpus has {', '.join(self.labels) or 'none'}")
        return self.labels[colour]

    def table(self) -> pd.DataFrame:
        return self.figure_table("embeddings.panels", colour=next(iter(self.labels), None))

    def figure_keys(self) -> tuple[str, ...]:
        return ("embeddings.panels",)

    def figure(self, key: str, colour: str | None = None, **view):
        if key != "embeddings.panels":
            return super().figure(key)
        return figures.embedding_panels(
            {pooling_title(s): self.coordinates(s) for s in self.poolings},
            self.texts,
            labels=self._colour(colour),
            label_name=colour or "",
            typed={pooling_title(s): xy for s, xy in self.typed.items()},
            typed_texts=self.typed_texts,
            subtitles={pooling_title(s): line for s, line in self.subtitles.items()},
            title=self.title(),
        )

    def figure_table(self, key: str, colour: str | None = None, **view) -> pd.DataFrame:
        """Every 2-D position shown: source (corpus / typed), text, the ``colour`` label, pooling,
        layer, method, x, y."""
        coords = {s: self.coordinates(s) for s in self.poolings}
        return coordinates_table(self.texts, self._colour(colour), colour or "", coords, self.typed_texts, self.typed,
                                 self.layer, self.method)  # fmt: skip

    def summary(self) -> list[str]:
        return [f"{self.title()}: {', '.join(pooling_title(s) for s in self.poolings)}. A picture, not a measure: "
                "read how well a label separates from the scores in the full space (the 'separation' analysis)."]


@analysis("projection", title="The corpus projected to 2-D", inputs=("corpus", "vectors"), optional=("traces",),
          figures=("embeddings.panels",), questions=(1, 2))  # fmt: skip
def projection_analysis(
    corpus: Corpus,
    vectors,
    traces=None,
    *,
    poolings: str = "cls,mean",
    layer: int = -1,
    method: Method = "umap",
    seed: int | None = 42,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
) -> ProjectionResult:
    """The corpus's vectors at one layer projected to 2-D by UMAP (cosine) or PCA, one panel per
    pooling: do sentences with the same label sit together when read through [CLS], through the
    mean, or another pooling? Typed sentences are placed into each projection."""
    _check_rows(corpus, vectors)
    names = parse_poolings(poolings, vectors.poolings)
    if len(corpus) < MIN_TEXTS:
        raise NotApplicable(f"The corpus has {len(corpus)} text(s); a projection needs at least {MIN_TEXTS}.")
    layer = check_layer(layer, vectors.num_layers)
    projectors = {
        s: Projector(method, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed).fit(vectors.get(s, layer))
        for s in names
    }
    result = ProjectionResult(projectors, layer, method, corpus.texts, corpus.labels)
    return ProjectionResult.join([result], traces or ()) if traces else result


# -- separation ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SeparationResult(Result):
    """kNN accuracy and silhouette of one label column at every layer, per pooling, in the full
    space (:func:`clsviz.separation.separation_by_layer`), with the label's majority share.

    View: ``layer``, the layer marked in the figure."""

    scores: pd.DataFrame  # layer, pooling, metric, value
    label: str
    majority: float
    classes: int
    rows: int  # texts scored (a sample of a large shard folder)
    folds: int = 5

    @property
    def poolings(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.scores["pooling"]))

    def at(self, pooling: str, layer: int) -> dict[str, float]:
        """``{metric: value}`` of one pooling at one layer (empty when that layer was not scored)."""
        return scores_at(self.scores, pooling, layer)

    @classmethod
    def join(cls, parts) -> SeparationResult:
        """The scores of every pooling of ``parts`` (the same label) in one result."""
        first = parts[0]
        table = pd.concat([p.scores for p in parts], ignore_index=True)
        return cls(table, first.label, first.majority, first.classes, first.rows, first.folds)

    def table(self) -> pd.DataFrame:
        return self.scores.assign(label_column=self.label)

    def figure_keys(self) -> tuple[str, ...]:
        return ("embeddings.separation",)

    def figure(self, key: str, layer: int | None = None, **view):
        if key == "embeddings.separation":
            return figures.separation_figure(self.scores, layer=layer, chance=self.majority)
        return super().figure(key)

    def summary(self) -> list[str]:
        sentences = []
        for s in self.poolings:
            knn = self.scores[(self.scores["pooling"] == s) & (self.scores["metric"] == "knn_accuracy")]
            knn = knn[np.isfinite(knn["value"].astype(float))]
            if knn.empty:
                sentences.append(f"{pooling_title(s)}: undefined at every layer (every text has the same vector).")
                continue
            best = knn.loc[knn["value"].astype(float).idxmax()]
            sil = self.at(s, int(best["layer"])).get("silhouette", float("nan"))
            sentences.append(
                f"{pooling_title(s)}: kNN accuracy of '{self.label}' peaks at {best['value']:.3f} at layer "
                f"{int(best['layer'])} (silhouette {score_text(sil)}; guessing the commonest label scores "
                f"{self.majority:.3f})."
            )
        sentences.append(f"Each kNN accuracy is one {self.folds}-fold cross-validated estimate on {self.rows:,} texts, with no interval: "
                         "read differences of a few points between poolings as 'about even'.")
        return sentences


@analysis("separation", title="How well a label separates, layer by layer", inputs=("corpus", "vectors"),
          figures=("embeddings.separation",), questions=(1, 2))  # fmt: skip
def separation_analysis(
    corpus: Corpus,
    vectors,
    *,
    label_column: str = "",
    poolings: str = "cls,mean",
    k: int = 5,
    folds: int = 5,
    max_classes: int = 50,
) -> SeparationResult:
    """kNN accuracy (cosine, cross-validated) and silhouette of a label column at every layer and
    pooling, in the full space before any projection: where does [CLS] separate the label as well
    as the mean? ``label_column`` defaults to the corpus's first label column."""
    _check_rows(corpus, vectors)
    names = parse_poolings(poolings, vectors.poolings)
    if not corpus.labels:
        raise NotApplicable("The corpus has no label column, so there is nothing to separate.")
    label = label_column or corpus.label_names[0]
    if label not in corpus.labels:
        raise ParamError(f"No label column {label!r}; the corpus has {', '.join(corpus.label_names)}.")
    _, majority, n_classes = label_baselines(corpus.labels[label])
    if n_classes > max_classes:
        raise NotApplicable(f"'{label}' has {n_classes:,} different values; the scores need a label with a few "
                            f"classes (at most {max_classes}). The colours still show it.")  # fmt: skip
    layers = getattr(vectors, "layers", None)  # a shard folder: the layers it saved
    labels = corpus.labels[label]
    if hasattr(vectors, "sample") and len(corpus) > SCORE_ROWS:
        vectors = vectors.sample(SCORE_ROWS, poolings=names)
        labels = as_corpus(vectors).labels[label]  # the sample's labels, as text like the corpus's
    table = separation_by_layer(vectors, labels, poolings=names, k=k, folds=folds,
                                layers=None if layers is None else tuple(layers))  # fmt: skip
    return SeparationResult(table, label, majority, n_classes, len(labels), folds)


# -- trajectory ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TrajectoryResult(Result):
    """One projection per pooling fit on a sample of the corpus at every layer at once (so
    positions at different layers compare), and the typed sentence's path through it."""

    projectors: dict  # pooling -> Projector fit on the stacked sample
    background_layers: np.ndarray  # int [M]: the layer of each fitted point
    background_texts: tuple[str, ...]
    method: str
    paths: dict = field(default_factory=dict)  # pooling -> float32 [L + 1, 2]
    text: str = ""

    @classmethod
    def join(cls, parts, trace: Trace | None = None) -> TrajectoryResult:
        """The panels of ``parts`` side by side, with ``trace``'s path through each."""
        first = parts[0]
        projectors = {k: v for p in parts for k, v in p.projectors.items()}
        paths = {s: proj.transform(trace_path(trace, s)) for s, proj in projectors.items()} if trace is not None else {}
        return cls(projectors, first.background_layers, first.background_texts, first.method, paths,
                   "" if trace is None else trace.text)  # fmt: skip

    def table(self) -> pd.DataFrame:
        frames = []
        for s, proj in self.projectors.items():
            xy = proj.embedding_
            frames.append(pd.DataFrame({"source": "corpus", "text": list(self.background_texts), "pooling": s,
                                        "layer": self.background_layers, "x": xy[:, 0], "y": xy[:, 1]}))  # fmt: skip
            if s in self.paths:
                path = self.paths[s]
                frames.append(pd.DataFrame({"source": "typed", "text": self.text, "pooling": s,
                                            "layer": np.arange(len(path)), "x": path[:, 0], "y": path[:, 1]}))  # fmt: skip
        return pd.concat(frames, ignore_index=True)

    def figure_keys(self) -> tuple[str, ...]:
        return ("embeddings.trajectory",) if self.paths else ()

    def figure(self, key: str, **view):
        if key == "embeddings.trajectory" and self.paths:
            backgrounds = {pooling_title(s): (p.embedding_, self.background_layers) for s, p in self.projectors.items()}
            return figures.trajectory_figure({pooling_title(s): xy for s, xy in self.paths.items()}, backgrounds,
                                             text=self.text, background_texts=list(self.background_texts))  # fmt: skip
        return super().figure(key)

    def summary(self) -> list[str]:
        if not self.paths:
            return ["Give a sentence (a trace) to follow its path through the layers."]
        return [f"The path of '{self.text}' through the layers, {self.method.upper()} fit on "
                f"{len(self.background_texts):,} corpus points at every layer at once."]


@analysis("trajectory", title="One sentence across layers", inputs=("corpus", "vectors"), optional=("trace",),
          figures=("embeddings.trajectory",), questions=(3,))  # fmt: skip
def trajectory_analysis(
    corpus: Corpus,
    vectors,
    trace: Trace | None = None,
    *,
    poolings: str = "cls,mean",
    method: Method = "pca",
    seed: int | None = 42,
) -> TrajectoryResult:
    """A sentence's pooled vector after every layer, in one projection fit on a sample of the
    corpus at every layer together (so positions at different layers can be compared): does its
    [CLS] drift somewhere the corpus does not go?"""
    _check_rows(corpus, vectors)
    names = parse_poolings(poolings, vectors.poolings)
    projectors, layers, rows = {}, None, None
    for s in names:
        stack, rows, layers = trajectory_stack(vectors, s)
        projectors[s] = Projector(method, random_state=seed).fit(stack)
    result = TrajectoryResult(projectors, layers, tuple(corpus.texts[r] for r in rows), method)
    return TrajectoryResult.join([result], trace) if trace is not None else result
