"""Pooled vectors of many texts: :class:`PooledVectors` and :func:`extract`, which runs the model.

The batched forward pass is written once here and shared by every corpus-level computation
(extraction, the anisotropy baseline, the random-token and moved-[CLS] probes):

* :func:`tokenize_texts` - the texts as the model sees them, literal "[CLS]" kept as text;
* :func:`pad_rows` / :func:`padded_batches` - right-padded (length-sorted) batches on the device;
* :func:`hidden_batches` - the model run on each batch, every hidden state kept;
* :func:`extract` - every text pooled at every layer with every pooling (and, asked for, one
  random content token per text from the same pass: :func:`pick_random_content`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .architectures import BlockStructureError
from .batched_forward import BlockRunner
from .encoder import Encoder, apply_pooler
from .keywords import accepts_max_length
from .layers import check_layer
from .pooling import check_pooling, pool_hidden
from .progress import check_cancel
from .tracing import check_summary_token, has_content

__all__ = [
    "PooledVectors",
    "check_poolings",
    "TokenizedTexts",
    "extract",
    "hidden_batches",
    "pad_rows",
    "padded_batches",
    "pick_random_content",
    "tokenize_texts",
]


@dataclass(frozen=True, eq=False)
class PooledVectors:
    """Pooled vectors of a corpus.

    * ``vectors``: float32 [N, L + 1, P, D] (texts, layers with 0 = embeddings, poolings, dims)
    * ``poolings``: the P pooling names, in the order of axis 2
    * ``texts``: the N texts, in input order; ``truncated``: bool [N]
    * ``labels``: optional label columns (name -> N values)
    * ``random_token``: optional float32 [N, L + 1, D], each text's randomly picked content token
      at every layer (:func:`pick_random_content`), read from the same forward pass;
      ``random_token_of`` = (seed, token limit) it was picked with
    """

    vectors: np.ndarray
    poolings: tuple[str, ...]
    texts: tuple[str, ...]
    model_name: str
    truncated: np.ndarray
    labels: dict = field(default_factory=dict)
    random_token: np.ndarray | None = None
    random_token_of: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        n, layers, p, dim = self.vectors.shape
        if p != len(self.poolings):
            raise ValueError(f"vectors: expected {len(self.poolings)} poolings on axis 2, got {p}")
        if n != len(self.texts):
            raise ValueError(f"vectors: expected {len(self.texts)} texts on axis 0, got {n}")
        if self.random_token is not None and self.random_token.shape != (n, layers, dim):
            raise ValueError(f"random_token: expected shape {(n, layers, dim)}, got {self.random_token.shape}")

    @property
    def num_layers(self) -> int:
        """Encoder blocks (the vectors hold num_layers + 1 rows, embeddings first)."""
        return self.vectors.shape[1] - 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the vector arrays (what a memory budget counts)."""
        return int(self.vectors.nbytes) + (0 if self.random_token is None else int(self.random_token.nbytes))

    def get(self, pooling: str, layer: int = -1, rows=None) -> np.ndarray:
        """float32 [N, D] (or [len(rows), D]): the texts' vectors for one pooling at one layer."""
        if pooling not in self.poolings:
            raise KeyError(f"{pooling!r} was not extracted; available: {', '.join(self.poolings)}")
        column = self.vectors[:, check_layer(layer, self.num_layers), self.poolings.index(pooling)]
        return column if rows is None else column[np.asarray(rows, dtype=np.int64)]


@dataclass(frozen=True)
class TokenizedTexts:
    """Texts tokenized for a batched run: ``input_ids`` / ``special_masks`` are per-text lists
    (special tokens added), ``truncated`` bool [N] marks texts cut to the length limit."""

    texts: tuple[str, ...]
    input_ids: list
    special_masks: list
    truncated: np.ndarray


@accepts_max_length
def tokenize_texts(encoder: Encoder, texts: Sequence[str], max_tokens: int | None = None) -> TokenizedTexts:
    """Tokenize ``texts`` for a batched run (truncated to the model's limit or ``max_tokens``).

    Literal special-token text ("[CLS]", "<s>") stays ordinary text. Raises ``ValueError``
    naming the rows (1-based) of empty texts, or when there are no texts at all.
    """
    texts = [t if isinstance(t, str) else str(t) for t in texts]
    if not texts:
        raise ValueError("No texts: the corpus is empty.")
    bad = [i + 1 for i, t in enumerate(texts) if not has_content(t)]
    if bad:
        shown = ", ".join(str(i) for i in bad[:10])
        raise ValueError(f"{len(bad)} text(s) are empty (rows {shown}{'...' if len(bad) > 10 else ''}).")
    info, tok = encoder.info, encoder.tokenizer
    limit = info.token_limit(max_tokens)
    with encoder.lock:
        enc = tok(
            texts,
            truncation=True,
            max_length=limit,
            split_special_tokens=True,
            return_special_tokens_mask=True,
            verbose=False,
        )
        full = tok(texts, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]
    num_special = tok.num_special_tokens_to_add(pair=False)
    truncated = np.array([len(ids) + num_special > limit for ids in full], dtype=bool)
    return TokenizedTexts(tuple(texts), enc["input_ids"], enc["special_tokens_mask"], truncated)


def pick_random_content(texts: Sequence[str], special_masks, seed: int) -> np.ndarray:
    """int64 [N]: for each text, the position (special tokens counted) of one of its content
    tokens, picked with a generator seeded by ``(seed, crc32(text))`` - by the text, not its row,
    so the same sentence gets the same token in any corpus. ``ValueError`` names a text with no
    content token."""
    positions = np.empty(len(texts), dtype=np.int64)
    for i, (text, special) in enumerate(zip(texts, special_masks)):
        content = np.flatnonzero(~np.asarray(special, dtype=bool))
        if len(content) == 0:
            raise ValueError(f"Text {i + 1} has no content tokens after tokenization: {text[:60]!r}.")
        rng = np.random.default_rng([int(seed), zlib.crc32(text.encode("utf-8"))])
        positions[i] = content[rng.integers(len(content))]
    return positions


def pad_rows(encoder: Encoder, all_ids, all_special, rows, all_positions=None):
    """Right-pad the tokenized texts ``rows`` into tensors on the encoder's device.

    all_ids / all_special : per-text token ids and special-token masks (lists)
    all_positions : optional per-text position ids (padding repeats the first id)
    Returns ``(ids, mask, special, positions)``: long / bool / bool / long-or-None [B, T];
    ``mask`` is True on real (non-padding) tokens.
    """
    import torch

    lengths = [len(all_ids[r]) for r in rows]
    width = max(lengths)
    pad_id = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    special = torch.zeros((len(rows), width), dtype=torch.bool)
    positions = None if all_positions is None else torch.zeros((len(rows), width), dtype=torch.long)
    for j, (r, n) in enumerate(zip(rows, lengths)):
        ids[j, :n] = torch.as_tensor(np.asarray(all_ids[r], dtype=np.int64))
        mask[j, :n] = True
        special[j, :n] = torch.as_tensor(np.asarray(all_special[r], dtype=bool))
        if positions is not None:
            positions[j] = int(all_positions[r][0])
            positions[j, :n] = torch.as_tensor(np.asarray(all_positions[r], dtype=np.int64))
    device = encoder.device
    return ids.to(device), mask.to(device), special.to(device), None if positions is None else positions.to(device)


def padded_batches(encoder: Encoder, all_ids, all_special, batch_size: int, all_positions=None):
    """Length-sorted batches of :func:`pad_rows`: yields ``(rows, ids, mask, special, positions)``
    with the texts' indexes ``rows`` [B]."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    lengths = np.array([len(x) for x in all_ids])
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield (rows, *pad_rows(encoder, all_ids, all_special, rows, all_positions))


def hidden_batches(
    encoder: Encoder, all_ids, all_special, batch_size: int = 32, all_positions=None
) -> Iterator[tuple]:
    """Run the model (no attention weights) on :func:`padded_batches`.

    Yields ``(rows, hidden, ids, mask, special)`` with ``hidden`` float [B, L + 1, T, D] on the
    encoder's device. Call it inside ``torch.inference_mode()``. ``hidden`` is only valid until
    the next batch: the blocks run into buffers reused from batch to batch
    (:mod:`clsviz.batched_forward`), or, for a family clsviz cannot run block by block, through
    the model's own forward.
    """
    import torch

    try:
        runner = BlockRunner(encoder)
    except BlockStructureError:
        runner = None
    for rows, ids, mask, special, positions in padded_batches(encoder, all_ids, all_special, batch_size, all_positions):
        if runner is not None:
            yield rows, runner(ids, mask, positions), ids, mask, special
            continue
        kwargs = dict(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
        if positions is not None:
            kwargs["position_ids"] = positions
        result = encoder.model(**kwargs)
        yield rows, torch.stack(result.hidden_states, dim=1), ids, mask, special


def check_poolings(encoder: Encoder, poolings: Sequence[str]) -> tuple[str, ...]:
    """``poolings`` checked by name and against ``encoder`` (a summary token for 'cls', a pooler
    head for 'pooler'): a ValueError saying what to drop, before anything is embedded."""
    poolings = tuple(check_pooling(p) for p in poolings)
    if not poolings:
        raise ValueError("No poolings were asked for; give at least one (e.g. 'cls', 'mean').")
    if {"cls", "pooler"} & set(poolings):
        check_summary_token(encoder.info, f"The {' and '.join(repr(p) for p in poolings if p in ('cls', 'pooler'))} pooling")
    if "pooler" in poolings and not encoder.info.has_pooler:
        raise ValueError(f"'{encoder.name}' has no pooler head; drop 'pooler' from the poolings.")
    return poolings


@accepts_max_length
def extract(
    encoder: Encoder,
    texts: Sequence[str],
    poolings: Sequence[str] = ("cls", "mean", "max"),
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    max_tokens: int | None = None,
    labels: dict | None = None,
    cancel=None,
    random_token_seed: int | None = None,
) -> PooledVectors:
    """Pool every text at every layer with every pooling.

    Texts are tokenized once, sorted by length and run in batches with the model's fast
    attention kernel (no attention weights are needed) under ``torch.inference_mode``.
    ``progress(done, total)`` is called after each batch; setting ``cancel`` (a
    ``threading.Event``) stops it between batches with :class:`clsviz.progress.Cancelled`.
    With ``random_token_seed``, each text's random content token (:func:`pick_random_content`)
    is read from the same pass into ``random_token`` (what the probe's "random" reading needs,
    without a second pass over the corpus). Returns :class:`PooledVectors`.
    """
    import torch

    tokenized = tokenize_texts(encoder, texts, max_tokens)
    poolings = check_poolings(encoder, poolings)
    info = encoder.info
    n_texts = len(tokenized.texts)
    out = np.empty((n_texts, info.num_layers + 1, len(poolings), info.hidden_size), dtype=np.float32)
    picked = random_out = None
    if random_token_seed is not None:
        picked = pick_random_content(tokenized.texts, tokenized.special_masks, random_token_seed)
        random_out = np.empty((n_texts, info.num_layers + 1, info.hidden_size), dtype=np.float32)
    done = 0
    with torch.inference_mode():
        batches = hidden_batches(encoder, tokenized.input_ids, tokenized.special_masks, batch_size)
        for rows, hidden, ids, mask, special in batches:
            check_cancel(cancel, "Embedding the corpus")
            cls_index = ((ids == info.cls_token_id) & special).int().argmax(dim=1)
            pooled_states = None
            if "pooler" in poolings:
                b, nl, _, d = hidden.shape
                cls_vecs = hidden[torch.arange(b, device=hidden.device), :, cls_index, :]  # [B, L+1, D]
                pooled_states = apply_pooler(encoder.model, cls_vecs.reshape(b * nl, d)).reshape(b, nl, d)
            stacked = torch.stack(
                [pool_hidden(hidden, mask, special, p, cls_index, pooled_states) for p in poolings], dim=2
            )  # [B, L+1, P, D]
            out[rows] = stacked.float().cpu().numpy()
            if picked is not None:
                at = torch.as_tensor(picked[rows], device=hidden.device)
                random_out[rows] = hidden[torch.arange(len(rows), device=hidden.device), :, at, :].float().cpu().numpy()
            done += len(rows)
            if progress is not None:
                progress(done, n_texts)
    return PooledVectors(
        vectors=out,
        poolings=poolings,
        texts=tokenized.texts,
        model_name=encoder.name,
        truncated=tokenized.truncated,
        labels=dict(labels or {}),
        random_token=random_out,
        random_token_of=None if random_out is None else (int(random_token_seed), info.token_limit(max_tokens)),
    )
