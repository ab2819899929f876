"""The inversion ladder: how much of a held-out sentence each reading of one vector recovers, per
layer and pooling, beside simpler readers and the published state of the art.

On a corpus split into training and held-out texts, for every layer and pooling ([CLS], mean,
max by default):

* ``inverter``: a trained inverter (:func:`clsviz.experiments.inverter.fit_inverter`) writes a
  sentence from the held-out vector;
* ``retrieval``: the training sentence whose vector is nearest (cosine) is returned - what a
  search of the training texts recovers;
* ``bag of words``: the linear decoder of :mod:`clsviz.experiments.inversion` names words; it
  writes no sentence, so only its content-word F1 is reported (``metric="content_f1"``).

Token F1, BLEU and exact match are those of :mod:`clsviz.experiments.text_match`, each with a
95% bootstrap interval over the held-out sentences. :data:`PUBLISHED` holds vec2text's figures
with their setup (Morris et al. 2023) so a reader sees the distance.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import pandas as pd

from ..encoder import Encoder
from ..layers import check_layer
from ..metrics import bootstrap_interval, cosine_matrix
from ..progress import ProgressFn, check_cancel
from ..tables import Table, as_table
from ..vectors import check_poolings, extract
from .inversion import content_words, fit_bow_decoder
from .inverter import (
    TrainingTexts,
    check_corrections,
    check_steps,
    fit_inverter,
    prepare_texts,
    torch_threads,
)
from .text_match import score_interval, score_pairs

__all__ = ["LADDER_LAYERS", "LadderLayers", "LadderResult", "PUBLISHED", "inversion_ladder", "ladder_layers",
           "ladder_plan"]

LadderLayers = Literal["all", "every_other", "last"]
LADDER_LAYERS = get_args(LadderLayers)

PUBLISHED = pd.DataFrame(
    [
        {"method": "vec2text, one pass (no correction)", "model": "GTR-base", "max_tokens": 32, "correction_steps": 0,
         "bleu": 30.0, "exact": float("nan"),
         "note": "about 30 BLEU: the hypothesis model alone, conditioned on the embedding once"},
        {"method": "vec2text, 50 correction steps + sequence beam search", "model": "GTR-base", "max_tokens": 32,
         "correction_steps": 50, "bleu": 97.0, "exact": 0.92,
         "note": "92% of inputs recovered exactly (BLEU about 97)"},
    ]
).assign(
    data="Natural Questions (Wikipedia passages), cut to 32 tokens",
    inverter="T5-base encoder-decoder trained on millions of embedded passages, on GPUs",
    source="Morris, Kuleshov, Shmatikov, Rush (2023). Text Embeddings Reveal (Almost) As Much As Text. EMNLP.",
)
"""vec2text's published figures (approximate where marked), with the setup they hold for."""


def ladder_layers(choice: LadderLayers | Sequence[int], num_layers: int) -> tuple[int, ...]:
    """The hidden-state indexes a ladder reads: ``"all"`` (0..L), ``"every_other"`` (0, 2, ...,
    always ending at L), ``"last"`` (L), or explicit layers (negative counts from the end)."""
    if isinstance(choice, str):
        if choice not in LADDER_LAYERS:
            raise ValueError(f"Unknown layer choice {choice!r}. Valid: {', '.join(LADDER_LAYERS)}, or a list of layers.")
        if choice == "last":
            return (int(num_layers),)
        step = 1 if choice == "all" else 2
        return tuple(sorted({*range(0, int(num_layers) + 1, step), int(num_layers)}))
    layers = tuple(dict.fromkeys(check_layer(layer, num_layers) for layer in choice))
    if not layers:
        raise ValueError("No layers were asked for; give at least one.")
    return layers


@dataclass(frozen=True, eq=False)
class LadderResult:
    """The ladder's numbers.

    ``table`` (tidy): model, pooling, layer, method (inverter | retrieval | bag of words),
    metric (token_f1 | bleu | exact | content_f1), estimate, low, high, n_train, n_test.
    ``examples``: per held-out text and (pooling, layer, method): reference, output and its
    scores. ``settings``: what was run (steps, max_tokens, corrections, seed, split sizes,
    vocabulary size, share of the held-out texts' pieces unseen in training).
    ``train_texts`` / ``test_texts``: the split.
    """

    table: Table
    examples: pd.DataFrame
    model_name: str
    settings: dict = field(default_factory=dict)
    train_texts: tuple[str, ...] = ()
    test_texts: tuple[str, ...] = ()
    published: pd.DataFrame = field(default_factory=lambda: PUBLISHED.copy())

    def best(self, method: str = "inverter", metric: str = "bleu") -> pd.Series:
        """The table row with the highest estimate of ``metric`` for ``method``."""
        rows = self.table[(self.table["method"] == method) & (self.table["metric"] == metric)]
        return rows.loc[rows["estimate"].idxmax()]

    def summary(self) -> list[str]:
        """Plain sentences: the best inverter against retrieval and vec2text, and [CLS] against
        the mean at the last layer, with intervals and words that follow them."""
        t, s = self.table, self.settings
        best = self.best()
        lines = [
            f"Trained on {s.get('n_train')} texts and scored on {s.get('n_test')} others, the inverter recovers "
            f"BLEU {_fmt(best, '.1f')} at best ({best['pooling']}, layer {int(best['layer'])}); "
            f"vec2text reports about 30 in one pass and 97 (92% exact) with 50 correction steps, on GTR-base "
            f"with millions of training passages."
        ]
        last = int(t["layer"].max())
        for metric, label, spec in (("token_f1", "token F1", ".2f"), ("bleu", "BLEU", ".1f")):
            rows = t[(t["method"] == "inverter") & (t["metric"] == metric) & (t["layer"] == last)].set_index("pooling")
            if {"cls", "mean"} <= set(rows.index):
                a, b = rows.loc["cls"], rows.loc["mean"]
                lines.append(f"At layer {last}, {label}: [CLS] {_fmt(a, spec)} against the mean "
                             f"{_fmt(b, spec)}: {_compare(a, b)}.")
        ret = t[(t["method"] == "retrieval") & (t["metric"] == "bleu")]
        if len(ret):
            r = ret.loc[ret["estimate"].idxmax()]
            lines.append(f"Returning the nearest training sentence scores BLEU {_fmt(r, '.1f')} at best "
                         f"({r['pooling']}, layer {int(r['layer'])}): {_compare(best, r, 'the inverter', 'retrieval')}.")
        return lines


def _fmt(row, spec: str = ".2f") -> str:
    return f"{format(float(row['estimate']), spec)} [{format(float(row['low']), spec)}, {format(float(row['high']), spec)}]"


def _compare(a, b, name_a: str = "[CLS]", name_b: str = "the mean") -> str:
    """Words for two estimates with intervals: apart only when the intervals do not overlap."""
    if float(a["low"]) > float(b["high"]):
        return f"{name_a} recovers more"
    if float(b["low"]) > float(a["high"]):
        return f"{name_b} recovers more"
    return "about even (the intervals overlap)"


def _interval_rows(scores: pd.DataFrame, outputs, references, seed: int) -> list[dict]:
    return score_interval(scores, outputs, references, seed=seed).rename(columns={"n": "n_test"}).to_dict("records")


def _bow_rows(train_vectors, test_vectors, train_refs, test_refs, seed) -> tuple[list[dict], list[str], list[float]]:
    """(interval row, the words named per held-out text, their content-word F1)."""
    decoder, vocab = fit_bow_decoder(train_vectors, train_refs, seed=seed)
    predicted = decoder.predict(test_vectors)
    f1s, outputs = [], []
    for row, ref in zip(predicted, test_refs):
        got = {vocab[j] for j in np.flatnonzero(row)}
        truth = set(content_words(ref))
        common = len(got & truth)
        f1s.append(1.0 if not got and not truth else (2 * common / (len(got) + len(truth))))
        outputs.append(" ".join(sorted(got)))
    est, low, high = bootstrap_interval(np.mean, np.asarray(f1s), seed=seed)
    return [{"metric": "content_f1", "estimate": est, "low": low, "high": high, "n_test": len(f1s)}], outputs, f1s


def ladder_plan(enc: Encoder, texts: Sequence[str], *, layers: LadderLayers | Sequence[int] = "all", steps: int = 600,
                corrections: int = 0, held_out: float = 0.2, max_texts: int = 2000,
                seed: int = 0) -> tuple[tuple[int, ...], int, int, list[str], list[str]]:
    """(layers, steps, corrections, training texts, held-out texts) of :func:`inversion_ladder`, every
    setting checked (a ValueError or IndexError saying what is allowed) without embedding anything:
    also the quick check the app runs before it queues a ladder."""
    chosen = ladder_layers(layers, enc.info.num_layers)
    steps, corrections = check_steps(steps), check_corrections(corrections)
    if not 0.0 < float(held_out) < 1.0:
        raise ValueError(f"held_out must be a fraction between 0 and 1 (the share of texts that score), got {held_out}.")
    unique = list(dict.fromkeys(str(t) for t in texts if str(t).strip()))
    if len(unique) < 20:
        raise ValueError(f"{len(unique)} different non-empty texts; the ladder needs at least 20 (training and held out).")
    rng = np.random.default_rng(seed)
    if len(unique) > max_texts:
        unique = [unique[i] for i in sorted(rng.choice(len(unique), size=int(max_texts), replace=False))]
    order = rng.permutation(len(unique))
    n_test = max(5, int(round(len(unique) * float(held_out))))
    if len(unique) - n_test < 2:
        raise ValueError(f"held_out={held_out} of {len(unique)} texts leaves {len(unique) - n_test} to train on; "
                         "the inverters need at least 2: lower held_out or give more texts.")
    train = [unique[i] for i in sorted(order[n_test:])]
    test = [unique[i] for i in sorted(order[:n_test])]
    return chosen, steps, corrections, train, test


def inversion_ladder(
    enc: Encoder,
    texts: Sequence[str],
    *,
    layers: LadderLayers | Sequence[int] = "all",
    poolings: Sequence[str] = ("cls", "mean", "max"),
    steps: int = 600,
    corrections: int = 0,
    held_out: float = 0.2,
    max_texts: int = 2000,
    seed: int = 0,
    workers: int = 2,
    progress: ProgressFn | None = None,
    cancel=None,
    **inverter_options,
) -> LadderResult:
    """Train and score one inverter per (layer, pooling) on a corpus, beside retrieval and the
    bag-of-words decoder. Texts are de-duplicated and at most ``max_texts`` are used (a seeded
    sample); ``held_out`` of them score. ``workers`` inverters train at once (each on one CPU
    thread; on CUDA they share the device). ``inverter_options`` go to :func:`fit_inverter`.
    ``progress(done, total, message)`` counts training steps; ``cancel`` stops between steps.
    """
    poolings = check_poolings(enc, poolings)
    chosen, steps, corrections, train, test = ladder_plan(enc, texts, layers=layers, steps=steps,
                                                          corrections=corrections, held_out=held_out,
                                                          max_texts=max_texts, seed=seed)  # fmt: skip
    conditions = [(layer, p) for p in poolings for layer in chosen]
    total = len(conditions) * int(steps) + 2
    done = {"steps": 0}
    lock = threading.Lock()

    def report(message: str, add: int = 0) -> None:
        with lock:
            done["steps"] += add
            if progress is not None:
                progress(min(done["steps"], total), total, message)

    report("Embedding the training and held-out texts")
    data = TrainingTexts.build(enc, train, poolings, correction=corrections > 0, seed=seed, cancel=cancel)
    test_refs, _ = prepare_texts(enc, test, data.max_tokens)
    test_vectors = extract(enc, test_refs, poolings=poolings, cancel=cancel)
    report("Training the inverters", 2)

    def run(condition):
        layer, pooling = condition
        seen = {"n": 0}

        def step_progress(d, _total, message):
            report(f"{pooling}, layer {layer}: {message}", d - seen["n"])
            seen["n"] = d

        with torch_threads(1):
            inverter = fit_inverter(enc, data, layer, pooling, steps, seed, step_progress, cancel, **inverter_options)
            report(f"{pooling}, layer {layer}: scoring", int(steps) - seen["n"])
            check_cancel(cancel, "The inversion ladder")
            return inverter.evaluate(test, corrections=corrections, vectors=test_vectors.get(pooling, layer),
                                     cosines=False)  # the ladder scores words, not vectors: one encoder pass less

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        frames = list(pool.map(run, conditions))

    rows, examples = [], []
    for (layer, pooling), frame in zip(conditions, frames):
        check_cancel(cancel, "The inversion ladder")
        Xtr, Xte = data.vectors.get(pooling, layer), test_vectors.get(pooling, layer)
        nearest = cosine_matrix(Xte, Xtr).argmax(axis=1)
        retrieved = [data.references[j] for j in nearest]
        retrieval = pd.concat([pd.DataFrame({"text": test, "reference": test_refs, "output": retrieved}),
                               score_pairs(retrieved, test_refs)], axis=1)
        bow, bow_outputs, bow_f1 = _bow_rows(Xtr, Xte, data.references, test_refs, seed)
        per_method = {
            "inverter": _interval_rows(frame, frame["output"], frame["reference"], seed),
            "retrieval": _interval_rows(retrieval, retrieved, test_refs, seed),
            "bag of words": bow,
        }
        for method, method_rows in per_method.items():
            rows += [{"model": enc.name, "pooling": pooling, "layer": layer, "method": method, **r,
                      "n_train": len(train)} for r in method_rows]
        bow_frame = pd.DataFrame({"text": test, "reference": test_refs, "output": bow_outputs, "content_f1": bow_f1})
        for method, ex in (("inverter", frame), ("retrieval", retrieval), ("bag of words", bow_frame)):
            examples.append(ex.assign(pooling=pooling, layer=layer, method=method))
    vocabulary = {p for row in data.pieces for p in row}
    test_pieces = [p for row in prepare_texts(enc, test, data.max_tokens)[1] for p in row]
    settings = {
        "steps": int(steps), "corrections": int(corrections), "max_tokens": data.max_tokens, "seed": int(seed),
        "n_train": len(train), "n_test": len(test), "layers": list(chosen), "poolings": list(poolings),
        "vocabulary": len(vocabulary),
        "unseen_pieces": float(np.mean([p not in vocabulary for p in test_pieces])) if test_pieces else 0.0,
    }
    table = as_table(pd.DataFrame(rows))[["model", "pooling", "layer", "method", "metric", "estimate", "low", "high",
                                "n_train", "n_test"]]
    return LadderResult(table, pd.concat(examples, ignore_index=True), enc.name, settings, tuple(train), tuple(test))
