"""Comparing two encoders (say a base model and its fine-tuned classifier) on the same texts.

* :func:`cka` – linear CKA (Kornblith et al., 2019, "Similarity of Neural Network
  Representations Revisited") of two matrices [N, D1], [N, D2] whose rows are the same N items
* :func:`layer_cka` – float64 [L_A+1, L_B+1]: CKA between every layer of A and every layer of B
  (both computed in :mod:`clsviz.linear_cka`)
* :func:`compare_encoders` – :class:`ModelComparison`: layer CKA for token vectors, [CLS]
  vectors and mean vectors of a text sample ("where did fine-tuning rewrite the model, and
  did [CLS] change more than the rest?")
* :func:`attention_change` – :class:`AttentionChange`: attention to and from [CLS] per
  layer × head in both models and its change (B − A), for one text tokenized the same way

CKA needs only the same texts, so models of different sizes and tokenizers compare; views
that pair tokens one to one need the same tokenization and say so
(:class:`TokenizationMismatch`) when the tokenizers split a text differently.

The degenerate case: when every row of a matrix is the same vector (after centring it is all
zeros, e.g. the [CLS] embedding at layer 0, identical for every text) CKA is undefined and
is returned as NaN; pages show it as "undefined".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .attention import attention_to_cls, cls_entropy, cls_rows
from .encoder import Encoder
from .linear_cka import cka, layer_cka
from .pooling import pool_hidden
from .progress import check_cancel
from .resampled_cka import ResampledCKA, diagonal_intervals, resample_weights
from .tracing import Trace, has_content, no_summary_message, summary_index
from .vectors import hidden_batches

__all__ = [
    "ResampledCKA",
    "diagonal_intervals",
    "resample_weights",
    "ATTENTION_MEASURES",
    "CKA_READINGS",
    "AttentionChange",
    "ModelComparison",
    "TokenizationMismatch",
    "attention_change",
    "cka",
    "compare_encoders",
    "layer_cka",
]

CKA_READINGS = ("tokens", "cls", "mean")
"""What :func:`compare_encoders` compares: every content token of the texts (needs the same
tokenization in both models), the [CLS]-like vector of each text, the mean of each text's tokens."""

ATTENTION_MEASURES = {
    "to_cls": "mean attention the other tokens pay to [CLS]",
    "cls_to_content": "share of [CLS]'s attention that goes to the text's own tokens",
    "cls_entropy": "entropy of [CLS]'s attention row (nats): broad (high) or focused (low)",
}
"""The per layer × head quantities :func:`attention_change` compares."""

_FEW_TEXTS = 20


class TokenizationMismatch(ValueError):
    """Two tokenizers split a text differently, so token-level views cannot pair the tokens."""


def _tokens_differ(name_a: str, name_b: str, tokens_a: Sequence[str], tokens_b: Sequence[str]) -> str:
    def show(tokens):
        head = " ".join(tokens[:12])
        return f"{head} …" if len(tokens) > 12 else head

    return (
        f"The two tokenizers split this text differently: '{name_a}' gives {len(tokens_a)} tokens "
        f"({show(tokens_a)}), '{name_b}' gives {len(tokens_b)} ({show(tokens_b)}). Views that pair "
        "tokens one to one need the same tokenization; compare [CLS] and mean vectors with CKA instead."
    )


# --- two encoders on a text sample -----------------------------------------------------------
@dataclass(frozen=True)
class ModelComparison:
    """Layer-by-layer CKA of two encoders on the same texts.

    ``cka`` maps each computed reading (see :data:`CKA_READINGS`) to float64 [L_A+1, L_B+1]
    (rows: hidden-state index of A, 0 = embeddings; columns: of B). ``intervals`` maps a reading
    to float64 [L+1, 2], the 95% bootstrap interval (resampling the texts) of its diagonal, for
    models of the same depth. ``skipped`` maps a reading
    that could not be computed to the reason. ``num_tokens`` is the number of token vectors the
    "tokens" reading used (a random sample when the texts have more than ``token_sample``).
    """

    model_a: str
    model_b: str
    num_texts: int
    num_tokens: int
    same_tokenization: bool
    cka: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    messages: tuple[str, ...] = ()
    intervals: dict[str, np.ndarray] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """Tidy table: one row per (reading, layer_a, layer_b) with ``cka`` (NaN = undefined)."""
        frames = []
        for reading, m in self.cka.items():
            la, lb = np.meshgrid(np.arange(m.shape[0]), np.arange(m.shape[1]), indexing="ij")
            frames.append(
                pd.DataFrame(
                    {"model_a": self.model_a, "model_b": self.model_b, "reading": reading,
                     "layer_a": la.ravel(), "layer_b": lb.ravel(), "cka": m.ravel()}
                )
            )
        columns = ["model_a", "model_b", "reading", "layer_a", "layer_b", "cka"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def diagonal(self, reading: str) -> np.ndarray:
        """float64 [L+1]: CKA of layer l of A with layer l of B (models with the same depth)."""
        if reading not in self.cka:
            why = self.skipped.get(reading, f"it was not computed (computed: {', '.join(self.cka) or 'none'})")
            raise ValueError(f"No CKA for reading '{reading}': {why}")
        m = self.cka[reading]
        if m.shape[0] != m.shape[1]:
            raise ValueError(
                f"The models have different depths ({m.shape[0] - 1} and {m.shape[1] - 1} layers), so "
                "layer l of one has no counterpart in the other; read the full heatmap instead."
            )
        return np.diagonal(m).copy()


def _tokenize(enc: Encoder, texts: list[str], limit: int):
    with enc.lock:
        out = enc.tokenizer(
            texts, truncation=True, max_length=limit, split_special_tokens=True,
            return_special_tokens_mask=True, verbose=False,
        )
    ids = [list(x) for x in out["input_ids"]]
    special = [np.asarray(x, dtype=bool) for x in out["special_tokens_mask"]]
    content = [
        tuple(enc.tokenizer.convert_ids_to_tokens([i for i, s in zip(row, sp) if not s]))
        for row, sp in zip(ids, special)
    ]
    return ids, special, content


def _layer_vectors(enc: Encoder, ids, special, readings, picks, batch_size, progress) -> dict[str, np.ndarray]:
    """float32 [L+1, N, D] per reading ("cls", "mean"; "tokens": [L+1, M, D] for ``picks``, the
    content-token ordinals of each text, so both models read the same tokens whatever their specials)."""
    import torch

    info = enc.info
    n_texts, n_layers = len(ids), info.num_layers + 1
    out = {r: np.empty((n_layers, n_texts, info.hidden_size), dtype=np.float32) for r in readings if r != "tokens"}
    if "tokens" in readings:
        out["tokens"] = np.empty((n_layers, sum(len(p) for p in picks.values()), info.hidden_size), dtype=np.float32)
        slots, start = {}, 0
        for r in sorted(picks):
            slots[r] = np.arange(start, start + len(picks[r]))
            start += len(picks[r])
    with torch.inference_mode():
        for rows, hidden, batch_ids, mask, spec in hidden_batches(enc, ids, [s.tolist() for s in special], batch_size):
            cls_index = ((batch_ids == info.cls_token_id) & spec).int().argmax(dim=1)
            for r in ("cls", "mean"):
                if r in out:
                    pooled = pool_hidden(hidden, mask, spec, r, cls_index)  # [B, L+1, D]
                    out[r][:, rows] = pooled.float().cpu().numpy().transpose(1, 0, 2)
            if "tokens" in out:
                for j, r in enumerate(rows):
                    if len(picks.get(r, ())):
                        positions = torch.as_tensor(np.flatnonzero(~special[r])[picks[r]], device=hidden.device)
                        out["tokens"][:, slots[r]] = hidden[j][:, positions].float().cpu().numpy()
            if progress is not None:
                progress(len(rows))
    return out


def _pick_tokens(special: list[np.ndarray], token_sample: int, seed: int) -> dict[int, np.ndarray]:
    """Ordinals of content tokens per text (k-th token of the text): all, or a sample of ``token_sample``."""
    pairs = [(t, k) for t, sp in enumerate(special) for k in range(int((~sp).sum()))]
    if len(pairs) > token_sample:
        keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=token_sample, replace=False))
        pairs = [pairs[k] for k in keep]
    picks: dict[int, list[int]] = {}
    for t, p in pairs:
        picks.setdefault(t, []).append(int(p))
    return {t: np.asarray(p, dtype=np.int64) for t, p in picks.items()}


def compare_encoders(
    enc_a: Encoder,
    enc_b: Encoder,
    texts: Sequence[str],
    readings: Sequence[str] = CKA_READINGS,
    *,
    token_sample: int = 1000,
    batch_size: int = 16,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> ModelComparison:
    """Linear CKA between every layer of ``enc_a`` and every layer of ``enc_b`` on ``texts``.

    Both models read the texts cut to the shorter of their two length limits. "cls" and "mean"
    compare one vector per text (N = len(texts)); "tokens" compares every content token (a
    ``seed``-ed sample of ``token_sample`` when there are more) and needs both tokenizers to
    split every text the same way: otherwise it is left out and ``skipped["tokens"]`` says why.
    ``progress(done, total)`` counts texts over both models; setting ``cancel`` (a
    ``threading.Event``) stops it between batches with :class:`clsviz.progress.Cancelled`.
    """
    texts = [t if isinstance(t, str) else str(t) for t in texts]
    readings = tuple(dict.fromkeys(readings))
    unknown = [r for r in readings if r not in CKA_READINGS]
    if unknown or not readings:
        raise ValueError(f"Unknown CKA reading(s) {unknown}; choose from {', '.join(CKA_READINGS)}.")
    if len(texts) < 2:
        raise ValueError(f"CKA compares how items vary, so it needs at least 2 texts; got {len(texts)}.")
    empty = [i + 1 for i, t in enumerate(texts) if not has_content(t)]
    if empty:
        raise ValueError(f"{len(empty)} text(s) are empty (rows {', '.join(map(str, empty[:10]))}); remove them.")
    if token_sample < 2 or batch_size < 1:
        raise ValueError(f"token_sample must be at least 2 and batch_size at least 1 (got {token_sample}, {batch_size}).")

    limit = min(enc_a.info.max_tokens, enc_b.info.max_tokens)
    ids_a, special_a, content_a = _tokenize(enc_a, texts, limit)
    ids_b, special_b, content_b = _tokenize(enc_b, texts, limit)
    differs = [i for i in range(len(texts)) if content_a[i] != content_b[i]]
    wanted, skipped, messages = list(readings), {}, []
    if "tokens" in wanted and differs:
        k = differs[0]
        skipped["tokens"] = f"Text {k + 1}: " + _tokens_differ(enc_a.name, enc_b.name, content_a[k], content_b[k])
        wanted.remove("tokens")
    without = [e.name for e in (enc_a, enc_b) if e.info.summary == "none"]
    if "cls" in wanted and without:
        skipped["cls"] = no_summary_message("The 'cls' reading", without[0])
        wanted.remove("cls")
    if not wanted:
        raise ValueError(" ".join(skipped.values()))
    picks = _pick_tokens(special_a, token_sample, seed) if "tokens" in wanted else {}
    num_tokens = sum(len(p) for p in picks.values())
    if len(texts) < _FEW_TEXTS and ({"cls", "mean"} & set(wanted)):
        messages.append(
            f"CKA over {len(texts)} texts is rough (few items make any two layers look alike); "
            "a few hundred texts give a steadier picture."
        )

    total, done = 2 * len(texts), 0

    def step(n: int) -> None:
        nonlocal done
        check_cancel(cancel, "The comparison")
        done += n
        if progress is not None:
            progress(done, total)

    vec_a = _layer_vectors(enc_a, ids_a, special_a, wanted, picks, batch_size, step)
    vec_b = _layer_vectors(enc_b, ids_b, special_b, wanted, picks, batch_size, step)
    results = {r: layer_cka(vec_a[r], vec_b[r]) for r in readings if r in wanted}
    intervals = {}
    if enc_a.info.num_layers == enc_b.info.num_layers:
        owners = {"tokens": np.concatenate([np.full(len(picks[t]), i) for i, t in enumerate(sorted(picks))])} if picks else {}
        for r in results:
            intervals[r] = diagonal_intervals(vec_a[r], vec_b[r], owners.get(r), seed=seed)
    if "cls" in results and np.isnan(results["cls"][0]).all():
        messages.append("At layer 0 the [CLS] vector is the same embedding for every text, so its CKA is undefined.")
    return ModelComparison(
        model_a=enc_a.name,
        model_b=enc_b.name,
        num_texts=len(texts),
        num_tokens=num_tokens,
        same_tokenization=not differs,
        cka=results,
        skipped=skipped,
        messages=tuple(messages),
        intervals=intervals,
    )


# --- attention around [CLS], per layer x head ----------------------------------------------------
@dataclass(frozen=True)
class AttentionChange:
    """Attention to and from [CLS] in two models for one text, per block × head.

    ``a`` and ``b`` map each measure of :data:`ATTENTION_MEASURES` to float32 [L, H] (array index
    l is block l + 1); :meth:`change` is B − A in float64.
    """

    model_a: str
    model_b: str
    tokens: tuple[str, ...]
    a: dict[str, np.ndarray]
    b: dict[str, np.ndarray]

    def change(self, measure: str) -> np.ndarray:
        """float64 [L, H]: ``b[measure] - a[measure]``."""
        if measure not in ATTENTION_MEASURES:
            raise ValueError(f"Unknown measure '{measure}'; choose from {', '.join(ATTENTION_MEASURES)}.")
        return self.b[measure].astype(np.float64) - self.a[measure].astype(np.float64)

    def table(self) -> pd.DataFrame:
        """Tidy table: one row per (measure, layer 1..L, head 1..H) with ``a``, ``b``, ``change``."""
        frames = []
        for measure in ATTENTION_MEASURES:
            num_layers, num_heads = self.a[measure].shape
            layer, head = np.meshgrid(np.arange(1, num_layers + 1), np.arange(1, num_heads + 1), indexing="ij")
            frames.append(
                pd.DataFrame(
                    {"measure": measure, "layer": layer.ravel(), "head": head.ravel(),
                     "a": self.a[measure].ravel().astype(np.float64), "b": self.b[measure].ravel().astype(np.float64),
                     "change": self.change(measure).ravel()}
                )
            )
        return pd.concat(frames, ignore_index=True)


def _attention_measures(trace: Trace) -> dict[str, np.ndarray]:
    a, cls = trace.attentions, summary_index(trace, "Comparing the attention around [CLS]")
    rows = cls_rows(a, cls).astype(np.float64)  # [L, H, T]
    return {
        "to_cls": attention_to_cls(a, cls, include_self=False),
        "cls_to_content": np.clip(rows[:, :, trace.content_mask].sum(axis=-1), 0.0, 1.0).astype(np.float32),
        "cls_entropy": cls_entropy(a, cls),
    }


def _same_tokens(trace_a: Trace, trace_b: Trace) -> bool:
    """Token i of one trace is token i of the other: the same text pieces, and special tokens
    ([CLS] / <s>, [SEP] / </s>) at the same places, whatever each tokenizer calls them."""
    if trace_a.seq_len != trace_b.seq_len or trace_a.cls_index != trace_b.cls_index:
        return False
    if not np.array_equal(trace_a.special_mask, trace_b.special_mask):
        return False
    return all(x == y for x, y, s in zip(trace_a.tokens, trace_b.tokens, trace_a.special_mask) if not s)


def attention_change(trace_a: Trace, trace_b: Trace) -> AttentionChange:
    """Attention to and from [CLS] in two traces of the same text, and its change (B − A).

    The traces must pair their tokens one to one (the same text pieces, the special tokens at
    the same places). Raises :class:`TokenizationMismatch` when the two tokenizers split the
    text differently and ``ValueError`` when the models differ in layers or heads.
    """
    if trace_a.text != trace_b.text:
        raise ValueError("The two traces are of different texts; trace the same text with both models.")
    if not _same_tokens(trace_a, trace_b):
        raise TokenizationMismatch(_tokens_differ(trace_a.model_name, trace_b.model_name, trace_a.tokens, trace_b.tokens))
    shape_a, shape_b = (trace_a.num_layers, trace_a.num_heads), (trace_b.num_layers, trace_b.num_heads)
    if shape_a != shape_b:
        raise ValueError(
            f"Per layer × head changes need models of the same shape: '{trace_a.model_name}' has "
            f"{shape_a[0]} layers × {shape_a[1]} heads, '{trace_b.model_name}' has {shape_b[0]} × {shape_b[1]}. "
            "Compare them with CKA instead."
        )
    return AttentionChange(
        model_a=trace_a.model_name,
        model_b=trace_b.model_name,
        tokens=trace_a.tokens,
        a=_attention_measures(trace_a),
        b=_attention_measures(trace_b),
    )
