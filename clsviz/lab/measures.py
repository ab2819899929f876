"""What a lab checkpoint records, with clsviz's own instruments on a copy of the model being trained.

At each checkpoint the encoder (a frozen copy) is read on a held-out labelled set it never trained
on (by default the demo corpus, label ``topic``):

* ``probe_cls`` / ``probe_mean`` (per layer): cross-validated probe accuracy of the summary token and
  of the mean of the tokens (:func:`clsviz.experiments.dynamics.state_metrics`, which runs
  :func:`~clsviz.experiments.probe.run_probe`), with a 95% bootstrap interval over the texts
  (:func:`~clsviz.experiments.finetune.accuracy_interval`)
* ``cos_cls_mean`` (per layer): cos(summary token, mean of the text's own tokens)
* ``attention_to_cls`` / ``cls_entropy`` (per block): the share of attention the other tokens park on
  the summary token (the sink) and the entropy of the summary token's own attention
* ``attention_to_sep`` (per block): the same share for the closing [SEP] (where the sink goes when
  there is no summary token), over traces of the first texts
* ``massive_ratio`` (per layer): the largest activation of the summary token or [SEP] over the
  median activation of the layer (:func:`clsviz.norms.top_dimensions`), mean over the traced texts
  with a bootstrap interval
* ``anisotropy`` (per layer): the mean cosine between content tokens of different texts
  (:func:`clsviz.baseline.measure_baseline`, reference ``token``)

The token vectors are kept so that ``cka_to_final`` (linear CKA, :func:`clsviz.compare.cka`) can be
computed once the last checkpoint is known. Without a summary token (``"none"``) the rows about it
are left out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..baseline import measure_baseline
from ..compare import cka
from ..corpus import Corpus, demo_corpus, labelled_rows, stratified_rows
from ..encoder import encoder_from_model
from ..experiments.dynamics import state_metrics
from ..experiments.finetune import accuracy_interval
from ..layers import block_of_row
from ..metrics import bootstrap_interval
from ..norms import top_dimensions
from ..tracing import trace
from ..vectors import pad_rows, tokenize_texts

__all__ = ["CHECKPOINT_METRICS", "Checkpoint", "ProbeSet", "cka_rows", "measure_checkpoint", "probe_set"]

CHECKPOINT_METRICS = (
    "probe_cls", "probe_mean", "cos_cls_mean", "attention_to_cls", "cls_entropy", "attention_to_sep",
    "massive_ratio", "anisotropy", "cka_to_final",
)  # fmt: skip
"""The metrics recorded at each checkpoint (see the module note)."""

_SUMMARY_ONLY = ("probe_cls", "cos_cls_mean", "attention_to_cls", "cls_entropy")
_TRACED = 10  # texts traced for the [SEP] sink and massive activations
_CKA_TOKENS = 2000  # token vectors kept per checkpoint for CKA to the final one


@dataclass(frozen=True)
class ProbeSet:
    """The held-out labelled texts every checkpoint is measured on."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]
    label: str
    name: str


def probe_set(heldout: Corpus | None = None, label: str = "topic", size: int = 210, seed: int = 0) -> ProbeSet:
    """A stratified sample of at most ``size`` texts of ``heldout`` (default: the demo corpus) that
    carry ``label``; ValueError naming the label columns when it has no such column."""
    corpus = demo_corpus() if heldout is None else heldout
    if label not in corpus.labels:
        raise ValueError(
            f"The held-out set '{corpus.name}' has no label column '{label}'; its label columns: "
            f"{', '.join(corpus.labels) or 'none'}."
        )
    rows, _ = labelled_rows(corpus.texts, corpus.labels[label], label)
    values = [str(corpus.labels[label][i]) for i in rows]
    if len(set(values)) < 2 or len(values) < 10:
        raise ValueError(
            f"The held-out set needs at least 10 texts with two or more '{label}' values to probe; "
            f"'{corpus.name}' has {len(values)} labelled texts with {len(set(values))} value(s)."
        )
    keep = stratified_rows(values, min(int(size), len(values)), seed)
    return ProbeSet(tuple(corpus.texts[rows[i]] for i in keep), tuple(values[i] for i in keep), label, corpus.name)


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint's rows (``step``, ``metric``, ``value``, ``layer``, ``low``, ``high``) and its
    token vectors float32 [L+1, N, D] (a fixed sample of the held-out tokens) for CKA."""

    rows: list
    tokens: np.ndarray


def _slot_batches(enc, tokenized, summary: str, batch_size: int = 32):
    n = len(tokenized.input_ids)
    for start in range(0, n, batch_size):
        rows = list(range(start, min(n, start + batch_size)))
        ids, mask, special, _ = pad_rows(enc, tokenized.input_ids, tokenized.special_masks, rows)
        slot = mask.long().sum(dim=1) - 1 if summary == "last" else torch.zeros(len(rows), dtype=torch.long)
        yield ids, mask, special, slot


def _traced_rows(enc, texts, max_tokens: int, seed: int) -> list[dict]:
    """``attention_to_sep`` per block and ``massive_ratio`` per layer over traces of ``texts``."""
    sep, ratio = [], []
    for text in texts:
        t = trace(enc, text, max_tokens)
        if t.sep_index is not None:
            sep.append(t.attention_to(t.sep_index, include_self=False).mean(axis=1))  # [L]
        top = top_dimensions(t, k=1)
        ratio.append(top.groupby("layer")["times_median"].max().sort_index().to_numpy())  # [L+1]
    rows = []
    sep = np.asarray(sep, dtype=np.float64)  # [texts, L]
    for b in range(sep.shape[1] if sep.ndim == 2 else 0):
        row = dict(metric="attention_to_sep", layer=block_of_row(b), value=float(sep[:, b].mean()))
        if len(sep) > 1:  # 95% bootstrap interval over the traced texts
            _, row["low"], row["high"] = bootstrap_interval(np.mean, sep[:, b], seed=seed)
        rows.append(row)
    ratio = np.asarray(ratio, dtype=np.float64)
    for layer in range(ratio.shape[1]):
        values = ratio[:, layer]
        value, low, high = bootstrap_interval(np.mean, values, seed=seed) if len(values) > 1 else (values[0],) * 3
        rows.append(dict(metric="massive_ratio", layer=layer, value=float(value), low=float(low), high=float(high)))
    return rows


def measure_checkpoint(bert, tokenizer, summary: str, probe: ProbeSet, step: int, seed: int = 0,
                       name: str = "lab model") -> Checkpoint:  # fmt: skip
    """Every :data:`CHECKPOINT_METRICS` row but ``cka_to_final`` for the encoder ``bert`` (copied,
    so training can go on) on ``probe``."""
    model = copy.deepcopy(bert).float()
    enc = encoder_from_model(model, tokenizer, f"{name} (step {step})", summary=summary)
    max_tokens = enc.info.max_tokens
    tokenized = tokenize_texts(enc, probe.texts, max_tokens)
    state = state_metrics(enc.eager_model, _slot_batches(enc, tokenized, summary), probe.labels, seed=seed)
    n = len(probe.labels)
    rows = []
    for r in state.layers.itertuples():
        if r.metric == "cka_to_start":
            continue
        row = dict(metric=r.metric, layer=int(r.layer), value=float(r.value))
        if r.metric.startswith("probe_"):
            _, row["low"], row["high"] = accuracy_interval(r.value, n, seed)
        rows.append(row)
    for r in state.blocks.itertuples():
        row = dict(metric=r.metric, layer=int(r.block), value=float(r.value))
        values = state.per_text[r.metric][:, int(r.block) - 1]
        if len(values) > 1:  # 95% bootstrap interval over the held-out texts
            _, row["low"], row["high"] = bootstrap_interval(np.mean, values, seed=seed)
        rows.append(row)
    rows += _traced_rows(enc, probe.texts[:_TRACED], max_tokens, seed)
    base = measure_baseline(enc, probe.texts, sample=60, token_sample=1200, max_tokens=max_tokens, seed=seed)
    token = base.table[(base.table["reference"] == "token") & (base.table["view"] == "raw")]
    rows += [dict(metric="anisotropy", layer=int(r.layer), value=float(r.mean)) for r in token.itertuples()]
    if summary == "none":
        rows = [r for r in rows if r["metric"] not in _SUMMARY_ONLY]
    for r in rows:
        r["step"] = int(step)
    tokens = state.tokens
    if tokens.shape[1] > _CKA_TOKENS:
        keep = np.sort(np.random.default_rng(seed).choice(tokens.shape[1], _CKA_TOKENS, replace=False))
        tokens = tokens[:, keep]
    return Checkpoint(rows, np.ascontiguousarray(tokens, dtype=np.float32))


def cka_rows(checkpoints: dict[int, np.ndarray]) -> list[dict]:
    """``cka_to_final`` rows: linear CKA of each checkpoint's token vectors to the last one's, per layer."""
    if not checkpoints:
        return []
    final = checkpoints[max(checkpoints)]
    return [
        dict(step=int(step), metric="cka_to_final", layer=layer, value=float(cka(tokens[layer], final[layer])))
        for step, tokens in sorted(checkpoints.items())
        for layer in range(tokens.shape[0])
    ]
