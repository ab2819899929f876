"""What the causal tests share: texts as padded batches, runs that keep the attention, the
roles of the tokens, labels checked for a probe, and a probe fitted on clean vectors that
reads intervened ones.

Every run goes through :mod:`clsviz.blocks` (the blocks driven from the model's weights with
per-call knobs), so the shared model is only read: no hooks, no edits, no mode switches.

Shapes: N texts, B a batch, T tokens, D hidden size, H heads, dh = D / H, L blocks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..blocks import InterventionError, block_weights, embed, run_block
from ..corpus import demo_corpus, labelled_rows
from ..encoder import Encoder
from ..layers import block_row
from ..progress import check_cancel, single_blas_thread
from ..tracing import check_summary_token
from ..vectors import padded_batches, tokenize_texts
from .probe import DEFAULT_C, DEFAULT_MAX_ITER, ProbeError, check_labels, make_probe

__all__ = [
    "CleanProbe",
    "LabelledTexts",
    "MEAN_SAMPLE",
    "ROLES",
    "SweepResult",
    "TextBatch",
    "TokenizedBatches",
    "attention_shares",
    "cls_positions",
    "demo_sample",
    "labelled_texts",
    "run_last",
    "run_with_parts",
    "special_sums",
    "ticker",
    "token_roles",
]

MEAN_SAMPLE = 128
"""Texts of the demo corpus whose average stands in for a corpus mean when none is given."""

ROLES = ("cls", "registers", "special", "content")
"""Token roles of the attention tables: [CLS], inserted registers, the other special tokens
([SEP], </s>, ...), and the tokens of the text."""


def demo_sample(n: int = MEAN_SAMPLE, seed: int = 0) -> tuple[str, ...]:
    """``n`` texts of the demo corpus, a seeded random choice (the default corpus for means)."""
    texts = demo_corpus().texts
    rows = np.sort(np.random.default_rng(seed).choice(len(texts), size=min(n, len(texts)), replace=False))
    return tuple(texts[i] for i in rows)


# --- labels and the probe ------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with a usable label: ``texts`` (N), int64 codes ``y`` [N], ``classes``, notes."""

    texts: tuple[str, ...]
    y: np.ndarray
    classes: tuple[str, ...]
    label: str
    messages: tuple[str, ...] = ()

    @property
    def chance(self) -> float:
        return 1.0 / len(self.classes)

    @property
    def majority(self) -> float:
        return float(np.bincount(self.y).max() / len(self.y))


def labelled_texts(texts: Sequence[str], labels: Sequence, folds: int = 5, label: str = "label") -> LabelledTexts:
    """The texts that have a label, checked for a ``folds``-fold probe.

    Rows whose label is missing are left out (said in ``messages``). Raises
    :class:`~clsviz.experiments.probe.ProbeError` for too few labelled rows, a single class, a
    class smaller than the folds, or texts that are all the same sentence.
    """
    texts, labels = list(texts), list(labels)
    keep, messages = labelled_rows(texts, labels, label, ProbeError)
    y, classes = check_labels([labels[i] for i in keep], folds, label)
    kept = tuple(str(texts[i]) for i in keep)
    if len(set(kept)) == 1:
        raise ProbeError(
            f"All {len(kept)} labelled texts are the same sentence, so a probe can only guess. "
            "Use a corpus with different sentences."
        )
    return LabelledTexts(kept, y, classes, label, tuple(messages))


class CleanProbe:
    """A linear probe fitted on clean vectors and read on intervened vectors of the same texts.

    Cross-fitted: ``fit(X, y)`` (X float [N, D]) fits one :func:`make_probe` per stratified
    fold on the other folds' clean vectors; ``predict(X)`` reads row i of any [N, D] array of
    the same N texts (clean or intervened) with the probe that never saw text i, so an
    accuracy is never measured on training texts. Learned state: ``models_``, ``fold_of_``.
    """

    def __init__(self, folds: int = 5, seed: int = 0, C: float = DEFAULT_C, max_iter: int = DEFAULT_MAX_ITER):
        self.folds = folds
        self.seed = seed
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray) -> CleanProbe:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.model_selection import StratifiedKFold

        X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
        splits = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed).split(X, y)
        self.models_, self.fold_of_, self.y_ = [], np.empty(len(y), dtype=np.int64), y
        with single_blas_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for i, (train, test) in enumerate(splits):
                self.models_.append(make_probe(self.C, self.max_iter, self.seed).fit(X[train], y[train]))
                self.fold_of_[test] = i
        return self

    def predict(self, X: np.ndarray, texts: np.ndarray | None = None) -> np.ndarray:
        """int64 [M]: the class code each vector (row of ``X`` [M, D]) is read as.

        Row i belongs to text ``texts[i]`` (an index into the fitted texts; default: row i is
        text i, M = N) and is read by the probe of that text's fold."""
        X = np.asarray(X, dtype=np.float32)
        texts = np.arange(len(self.fold_of_)) if texts is None else np.asarray(texts, dtype=np.int64)
        if X.shape[0] != len(texts):
            raise ValueError(f"predict: {X.shape[0]} vectors for {len(texts)} texts")
        folds = self.fold_of_[texts]
        out = np.empty(len(X), dtype=np.int64)
        with single_blas_thread():
            for i, model in enumerate(self.models_):
                rows = folds == i
                if rows.any():
                    out[rows] = model.predict(X[rows])
        return out

    def accuracy(self, X: np.ndarray) -> float:
        """Share of texts whose vector in ``X`` [N, D] is read as their own label."""
        return float(np.mean(self.predict(X) == self.y_))


# --- batches -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TextBatch:
    """One padded batch on the encoder's device: ``rows`` [B] (indexes into the texts),
    ``ids`` long [B, T], ``mask`` bool [B, T] (real tokens), ``special`` bool [B, T],
    ``cls_index`` long [B] (the [CLS] position of each text)."""

    rows: np.ndarray
    ids: object
    mask: object
    special: object
    cls_index: object


@dataclass(frozen=True, eq=False)
class TokenizedBatches:
    """Texts tokenized once (special tokens added, literal "[CLS]" kept as text), ready to be
    run in length-sorted padded batches. ``ids`` / ``special`` per text; ``cls_index`` int [N]."""

    texts: tuple[str, ...]
    ids: list
    special: list
    cls_index: np.ndarray
    truncated: np.ndarray

    @classmethod
    def from_texts(cls, encoder: Encoder, texts: Sequence[str], max_tokens: int | None = None) -> TokenizedBatches:
        tok = tokenize_texts(encoder, texts, max_tokens)
        ids = [np.asarray(x, dtype=np.int64) for x in tok.input_ids]
        special = [np.asarray(x, dtype=bool) for x in tok.special_masks]
        return cls(tok.texts, ids, special, cls_positions(encoder, ids, special), tok.truncated)

    def __len__(self) -> int:
        return len(self.ids)

    def batches(self, encoder: Encoder, batch_size: int = 64) -> Iterator[TextBatch]:
        import torch

        for rows, ids, mask, special, _ in padded_batches(encoder, self.ids, self.special, batch_size):
            yield TextBatch(rows, ids, mask, special, torch.as_tensor(self.cls_index[rows], device=ids.device))

    def notes(self) -> tuple[str, ...]:
        n = int(np.sum(self.truncated))
        return (f"{n} text(s) were cut to the model's length limit.",) if n else ()


def cls_positions(encoder: Encoder, ids: Sequence[np.ndarray], special: Sequence[np.ndarray]) -> np.ndarray:
    """int64 [N]: the position of each text's [CLS]-like token (its first special copy, else 0).
    :class:`~clsviz.tracing.NoSummaryToken` for a model pretrained without one: every corpus
    sweep here reads [CLS]."""
    check_summary_token(encoder.info, "This corpus sweep (it reads [CLS])")
    out = np.zeros(len(ids), dtype=np.int64)
    for i, (x, s) in enumerate(zip(ids, special)):
        hits = np.flatnonzero((x == encoder.info.cls_token_id) & s)
        out[i] = hits[0] if len(hits) else 0
    return out


def token_roles(mask, special, cls, registers=None) -> dict:
    """bool [B, T] masks of the roles in :data:`ROLES` for a padded batch (torch tensors).

    ``cls`` long [B] positions; ``registers`` bool [B, T] or None (no registers)."""
    import torch

    batch, seq_len = mask.shape
    is_cls = torch.zeros_like(mask)
    is_cls[torch.arange(batch, device=mask.device), cls] = True
    regs = torch.zeros_like(mask) if registers is None else registers & mask
    return {
        "cls": is_cls & mask,
        "registers": regs,
        "special": special & mask & ~is_cls & ~regs,
        "content": mask & ~special & ~regs,
    }


def special_sums(h, batch, dims: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Sums of hidden dimensions ``dims`` of ``h`` [B, T, D] over the batch's [CLS] tokens (row 0)
    and its other special tokens (row 1): (float64 [2, K] sums, float64 [2] counts)."""
    import torch

    rows = torch.arange(h.shape[0], device=h.device)
    other = batch.special & batch.mask
    other[rows, batch.cls_index] = False
    sums = np.stack([h[rows, batch.cls_index][:, dims].double().sum(0).cpu().numpy(),
                     h[other][:, dims].double().sum(0).cpu().numpy()])  # fmt: skip
    return sums, np.array([h.shape[0], float(other.sum())], dtype=np.float64)


def attention_shares(probs, queries, roles: dict) -> tuple[np.ndarray, float]:
    """Attention landing on each role, summed over heads and the ``queries`` (bool [B, T]).

    ``probs`` [B, H, T, T] (rows: queries). Returns (float64 [len(roles)] summed shares, the
    number of (query, head) rows summed) so that batches add up to a mean.
    """
    q = queries.to(probs.dtype)
    sums = [
        float(((probs * role.to(probs.dtype)[:, None, None, :]).sum(-1) * q[:, None, :]).sum())
        for role in roles.values()
    ]
    return np.asarray(sums, dtype=np.float64), float(q.sum()) * probs.shape[1]


def run_with_parts(encoder: Encoder, ids, mask, *, start: int = 0, hidden=None, interventions=None,
                   replace=None, on_block: Callable | None = None, position_ids=None):  # fmt: skip
    """[L+1, B, T, D] every hidden state (rows before ``start`` NaN), like
    :func:`clsviz.blocks.run_stack`, calling ``on_block(block, parts)`` with each block's
    :class:`~clsviz.blocks.BlockParts` (attention weights, head contexts, ...).

    ``interventions`` {block: knobs of run_block}; ``replace`` {hidden-state index: h -> h'};
    ``position_ids`` long [B, T] (default: the model's own positions).
    """
    import torch

    weights = block_weights(encoder)
    interventions, replace = dict(interventions or {}), dict(replace or {})
    bad = [b for b in interventions if not (isinstance(b, int) and start < b <= len(weights))]
    bad += [i for i in replace if not (isinstance(i, int) and start <= i <= len(weights))]
    if bad:
        raise InterventionError(f"{bad}: not a block (or hidden-state index) run after index {start}.")
    h = embed(encoder, ids, position_ids=position_ids) if hidden is None else hidden
    if start in replace:
        h = replace[start](h)
    rows = [torch.full_like(h, float("nan")) for _ in range(start)] + [h]
    for block in range(start + 1, len(weights) + 1):
        h, parts = run_block(weights[block_row(block)], h, attention_mask=mask, return_parts=True,
                             **interventions.get(block, {}))  # fmt: skip
        if on_block is not None:
            on_block(block, parts)
        if block in replace:
            h = replace[block](h)
        rows.append(h)
    return torch.stack(rows)


def run_last(encoder: Encoder, hidden, mask, start: int, interventions: dict | None = None):
    """[B, T, D] the last hidden state, running blocks ``start + 1``..L on ``hidden`` (the state
    at hidden-state index ``start``) with ``interventions`` {block: knobs of run_block}. Like
    :func:`clsviz.blocks.run_stack` but keeps no intermediate rows (sweeps need the end only)."""
    weights = block_weights(encoder)
    plan = dict(interventions or {})
    h = hidden
    for block in range(start + 1, len(weights) + 1):
        h = run_block(weights[block_row(block)], h, attention_mask=mask, **plan.get(block, {}))
    return h


def ticker(progress, total: int, cancel, what: str) -> Callable[[str], None]:
    """A step counter: each call checks ``cancel`` and reports one more of ``step.total``
    steps (``total`` at first; a sweep that learns its size later sets ``step.total``)."""
    done = [0]

    def step(message: str = "") -> None:
        check_cancel(cancel, what)
        done[0] += 1
        if progress is not None:
            progress(done[0], max(step.total, done[0]), message)

    step.total = total
    return step


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SweepResult:
    """A corpus-level causal test: tidy ``table`` (and ``attention`` where the test looks at
    where attention goes), ``finding`` - one plain sentence of what this model does - the
    label probed (None without labels), texts used, notes and seconds taken."""

    kind: str
    table: pd.DataFrame
    finding: str
    model_name: str
    label: str | None
    n: int
    seconds: float
    messages: tuple[str, ...] = ()
    attention: pd.DataFrame | None = None
    per_text: pd.DataFrame | None = None
