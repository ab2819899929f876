"""Causal tests on one sentence: cut what [CLS] reads, swap it between sentences, ablate heads,
zero the massive dimensions, give the model registers (the corpus sweeps build on these, and
:mod:`clsviz.experiments.interventions` gathers both).

Every run drives the blocks from the model's weights (:mod:`clsviz.blocks`) with per-call masks
and knobs: the shared model is never changed, so other threads may trace it meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..blocks import InterventionError, run_stack
from ..encoder import Encoder, apply_pooler
from ..keywords import accepts_max_length
from ..layers import block_row, check_block, check_layer
from ..progress import check_cancel
from ..tracing import TokenizedText, Trace, check_summary_token, special_positions, tokenize
from .causal_runs import TokenizedBatches, demo_sample, run_with_parts, special_sums
from .knockouts import KNOCKOUT_KEYS
from .patching import check_pair

__all__ = [
    "HEAD_MODES",
    "ablate_dimensions",
    "ablate_heads",
    "add_registers",
    "check_dimension_means",
    "check_register_room",
    "check_dims",
    "dimension_means",
    "head_means",
    "head_plan",
    "knockout",
    "patch_cls",
    "register_tokens",
    "resolve_head_means",
    "special_replacer",
]


HEAD_MODES = ("zero", "mean")
"""Head ablation: the head's output set to zero, or to its mean over a corpus (fairer: the
next blocks still get the head's typical contribution, only its dependence on this input goes)."""


def _torch():
    import torch

    return torch


def _ids(encoder: Encoder, tt: TokenizedText):
    return _torch().as_tensor(tt.input_ids, device=encoder.device)[None]


def _blocks(layers, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(1, num_layers + 1))
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    try:
        return sorted({check_block(int(b), num_layers) for b in layers})
    except (IndexError, TypeError, ValueError) as exc:
        raise InterventionError(f"layers: {exc}. Give block numbers 1..{num_layers}, or None for every block.") from None


def _key_positions(tt: TokenizedText, cls_index: int, keys) -> np.ndarray:
    """bool [T]: the keys the [CLS] query may not read."""
    n = len(tt.tokens)
    cut = np.zeros(n, dtype=bool)
    if isinstance(keys, str):
        if keys not in KNOCKOUT_KEYS:
            raise InterventionError(f"keys={keys!r}: allowed are {', '.join(KNOCKOUT_KEYS)} or a list of positions.")
        cut[:] = {"others": True, "content": ~tt.special_mask, "special": tt.special_mask}[keys]
        cut[cls_index] = False
        return cut
    try:
        positions = [int(p) for p in keys]
    except (TypeError, ValueError):
        raise InterventionError(f"keys: give one of {', '.join(KNOCKOUT_KEYS)} or a list of token positions.") from None
    bad = [p for p in positions if not 0 <= p < n]
    if bad:
        raise InterventionError(f"keys: positions {bad} are outside 0..{n - 1} (this text has {n} tokens).")
    cut[positions] = True
    return cut


@accepts_max_length
def knockout(encoder: Encoder, text: str, layers=None, keys="others", max_tokens: int | None = None) -> np.ndarray:
    """float32 [L+1, D]: the [CLS] hidden state at every hidden-state index (0 = embeddings)
    when, in the given blocks, the [CLS] query may not attend to ``keys``.

    ``layers``: block numbers (1..L; -1 = the last) or None for every block. ``keys``:
    ``"others"`` (every position but [CLS] itself), ``"content"`` (the text's tokens),
    ``"special"`` (the other special tokens) or a list of token positions. Other queries
    read as usual. A query left with no key reads only itself, so with every read cut at
    every block [CLS] carries only itself: it equals a sequence holding [CLS] alone.
    """
    torch = _torch()
    check_summary_token(encoder.info, "Knocking out what [CLS] reads")
    tt = tokenize(encoder, text, max_tokens)
    cls_index, _ = special_positions(tt, encoder.info)
    blocks = _blocks(layers, encoder.info.num_layers)
    n = len(tt.tokens)
    blocked = torch.zeros(1, n, n, dtype=torch.bool, device=encoder.device)
    blocked[0, cls_index] = torch.as_tensor(_key_positions(tt, cls_index, keys), device=encoder.device)
    with torch.inference_mode():
        hidden = run_stack(encoder, _ids(encoder, tt), interventions={b: {"blocked": blocked} for b in blocks})
    return hidden[:, 0, cls_index].float().cpu().numpy()


@accepts_max_length
def patch_cls(encoder: Encoder, source: str, target: str, layer: int, max_tokens: int | None = None) -> np.ndarray:
    """float32 [L+1, D]: the target's [CLS] trajectory when its [CLS] hidden state at index
    ``layer`` (0 = embeddings .. L = last; -1 counts from the end) is replaced by the source's
    at the same index and the remaining blocks run on. Rows before ``layer`` are the target's
    clean states; at ``layer = L`` the last row is the source's final [CLS].

    Raises :class:`InterventionError` when source and target are the same sentence.
    """
    check_summary_token(encoder.info, "Patching [CLS]")
    torch = _torch()
    num_layers = encoder.info.num_layers
    try:
        layer = check_layer(int(layer), num_layers)
    except (IndexError, TypeError, ValueError) as exc:
        raise InterventionError(f"layer: {exc}") from None
    src, tgt = tokenize(encoder, source, max_tokens), tokenize(encoder, target, max_tokens)
    check_pair(src, tgt)
    src_cls, _ = special_positions(src, encoder.info)
    tgt_cls, _ = special_positions(tgt, encoder.info)
    with torch.inference_mode():
        vector = run_stack(encoder, _ids(encoder, src))[layer, 0, src_cls]

        def put(h):
            h = h.clone()
            h[:, tgt_cls] = vector
            return h

        hidden = run_stack(encoder, _ids(encoder, tgt), replace={layer: put})
    return hidden[:, 0, tgt_cls].float().cpu().numpy()


# --- heads -----------------------------------------------------------------------------------


def head_means(encoder: Encoder, texts: Sequence[str], batch_size: int = 32, max_tokens: int | None = None,
               progress=None, cancel=None) -> np.ndarray:  # fmt: skip
    """float32 [L, H, dh]: each head's output (its context vector before W_O) averaged over
    every real token of ``texts`` - what mean ablation puts in place of a head."""
    torch = _torch()
    batches = TokenizedBatches.from_texts(encoder, texts, max_tokens)
    info = encoder.info
    sums = torch.zeros(info.num_layers, info.num_heads, info.hidden_size // info.num_heads, dtype=torch.float64)
    count = 0.0
    todo = list(batches.batches(encoder, batch_size))
    for i, batch in enumerate(todo):
        check_cancel(cancel, "Averaging the heads")
        weight = batch.mask.to(torch.float64)[:, None, :, None]

        def add(block, parts, weight=weight):
            sums[block_row(block)] += (parts.context.to(torch.float64) * weight).sum(dim=(0, 2)).cpu()

        with torch.inference_mode():
            run_with_parts(encoder, batch.ids, batch.mask, on_block=add)
        count += float(batch.mask.sum())
        if progress is not None:
            progress(i + 1, len(todo), "Averaging each head's output")
    return (sums / max(count, 1.0)).numpy().astype(np.float32)


def _check_means(means, encoder: Encoder) -> np.ndarray:
    info = encoder.info
    want = (info.num_layers, info.num_heads, info.hidden_size // info.num_heads)
    means = np.asarray(means, dtype=np.float32)
    if means.shape != want:
        raise InterventionError(f"mean_from: head means must be [L, H, dh] = {list(want)}; got {list(means.shape)}.")
    return means


def resolve_head_means(encoder: Encoder, mean_from=None, max_tokens: int | None = None) -> np.ndarray:
    """float32 [L, H, dh] head means from ``mean_from``: an array of :func:`head_means` (checked),
    texts (or one text) to average over, or None for a sample of the demo corpus."""
    if mean_from is None:
        mean_from = demo_sample()
    elif isinstance(mean_from, str):
        mean_from = [mean_from]
    if isinstance(mean_from, np.ndarray) or (len(mean_from) and not isinstance(mean_from[0], str)):
        return _check_means(mean_from, encoder)
    return head_means(encoder, list(mean_from), max_tokens=max_tokens)


def head_plan(encoder: Encoder, heads, mode: str = "zero", mean_from=None) -> dict[int, dict]:
    """The run_stack interventions that ablate ``heads``: {block: {head_scale [H], head_bias [H, dh]}}.

    ``heads``: (block, head) pairs - block 1..L (1-based, -1 = last), head 0..H-1 (a 0-based
    index). ``mode``: ``"zero"`` or ``"mean"``; ``mean_from``: the [L, H, dh] array of
    :func:`head_means`, texts to average over, or None for a sample of the demo corpus.
    """
    torch = _torch()
    if mode not in HEAD_MODES:
        raise InterventionError(f"mode={mode!r}: allowed are {', '.join(HEAD_MODES)}.")
    info = encoder.info
    pairs = []
    try:
        for pair in heads:
            block, head = (int(x) for x in pair)
            pairs.append((check_block(block, info.num_layers), head))
    except (TypeError, ValueError, IndexError) as exc:
        raise InterventionError(
            f"heads: {exc}. Give (block, head) pairs such as [(3, 0), (3, 5)]: block 1..{info.num_layers}, "
            f"head 0..{info.num_heads - 1} (0-based)."
        ) from None
    bad = [h for _, h in pairs if not 0 <= h < info.num_heads]
    if bad:
        raise InterventionError(f"heads: head indexes {bad} are outside 0..{info.num_heads - 1} (0-based).")
    means = resolve_head_means(encoder, mean_from) if mode == "mean" and pairs else None
    plan: dict[int, dict] = {}
    dtype = torch.float32
    for block, head in pairs:
        knobs = plan.setdefault(block, {
            "head_scale": torch.ones(info.num_heads, dtype=dtype, device=encoder.device),
            "head_bias": torch.zeros(info.num_heads, info.hidden_size // info.num_heads, dtype=dtype, device=encoder.device),
        })  # fmt: skip
        knobs["head_scale"][head] = 0.0
        if means is not None:
            knobs["head_bias"][head] = torch.as_tensor(means[block_row(block), head], device=encoder.device)
    return plan


def _trace(encoder: Encoder, tt: TokenizedText, hidden, probs) -> Trace:
    """A Trace of an intervened run: ``hidden`` [L+1, T, D], ``probs`` [L, H, T, T] (torch)."""
    torch = _torch()
    cls_index, sep_index = special_positions(tt, encoder.info)
    with torch.inference_mode():
        pooled = apply_pooler(encoder.model, hidden[:, cls_index, :])
    return Trace(
        text=tt.text, tokens=tt.tokens, input_ids=tt.input_ids, special_mask=tt.special_mask,
        offsets=tt.offsets, word_ids=tt.word_ids, truncated=tt.truncated,
        attentions=probs.float().cpu().numpy(), hidden_states=hidden.float().cpu().numpy(),
        pooler_states=None if pooled is None else pooled.float().cpu().numpy(),
        cls_index=cls_index, sep_index=sep_index, info=encoder.info,
    )  # fmt: skip


def _traced_run(encoder: Encoder, tt: TokenizedText, interventions=None, replace=None) -> Trace:
    torch = _torch()
    probs = []
    with torch.inference_mode():
        hidden = run_with_parts(encoder, _ids(encoder, tt), None, interventions=interventions, replace=replace,
                                on_block=lambda block, parts: probs.append(parts.attn_probs[0]))  # fmt: skip
    return _trace(encoder, tt, hidden[:, 0], torch.stack(probs))


def ablate_heads(encoder: Encoder, text: str, heads, mode: str = "zero", mean_from=None,
                 max_tokens: int | None = None) -> Trace:  # fmt: skip
    """The run of ``text`` with every (block, head) in ``heads`` ablated, as a Trace
    (``hidden_states`` float32 [L+1, T, D], ``attentions`` float32 [L, H, T, T], ``tokens``).

    ``heads``: (block, head) pairs, block 1-based (1..L), head a 0-based index (0..H-1).
    ``mode="zero"`` sets the head's output (its context vector, before W_O) to zero;
    ``mode="mean"`` to its mean over ``mean_from`` (see :func:`head_plan`). An ablated head's
    own attention weights are still computed and shown: only what it writes is replaced.
    """
    plan = head_plan(encoder, heads, mode, mean_from)
    return _traced_run(encoder, tokenize(encoder, text, max_tokens), interventions=plan)


# --- massive dimensions ------------------------------------------------------------------------


def check_dims(dims, encoder: Encoder) -> list[int]:
    try:
        dims = [int(d) for d in ([dims] if isinstance(dims, (int, np.integer)) else dims)]
    except (TypeError, ValueError):
        raise InterventionError("dims: give hidden dimensions as whole numbers, e.g. [99, 223].") from None
    bad = [d for d in dims if not 0 <= d < encoder.info.hidden_size]
    if not dims or bad:
        raise InterventionError(f"dims: give at least one dimension in 0..{encoder.info.hidden_size - 1}; got {dims}.")
    return dims


def dimension_means(encoder: Encoder, texts: Sequence[str], dims, layer: int, max_tokens: int | None = None,
                    batch_size: int = 64) -> np.ndarray:  # fmt: skip
    """float32 [2, K]: the mean of the K hidden dimensions ``dims`` at hidden-state index
    ``layer`` over ``texts`` - row 0 on [CLS], row 1 on the other special tokens."""
    torch = _torch()
    dims = check_dims(dims, encoder)
    layer = check_layer(layer, encoder.info.num_layers)
    sums, counts = np.zeros((2, len(dims))), np.zeros(2)
    for batch in TokenizedBatches.from_texts(encoder, texts, max_tokens).batches(encoder, batch_size):
        with torch.inference_mode():
            h = run_stack(encoder, batch.ids, attention_mask=batch.mask)[layer]
        total, count = special_sums(h, batch, dims)
        sums, counts = sums + total, counts + count
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def check_dimension_means(means, dims: list[int]) -> np.ndarray:
    """``means`` as float32 [2, K] ([CLS] row, other-special row) for the K ``dims``, or a clear error."""
    values = np.asarray(means, dtype=np.float32)
    if values.shape != (2, len(dims)):
        raise InterventionError(
            f"means: expected [2, {len(dims)}] (a [CLS] row and an other-special-tokens row for the "
            f"{len(dims)} dimension(s)); got {list(values.shape)}. dimension_means() computes them."
        )
    return values


def special_replacer(dims: list[int], values, cls_index, special):
    """h -> h' [B, T, D] with ``dims`` of the special tokens set: ``values`` None (zero) or
    [2, K] ([CLS] row, other-special row); ``cls_index`` long [B]; ``special`` bool [B, T]."""
    torch = _torch()

    def replace(h):
        batch, seq_len, dim = h.shape
        is_cls = torch.zeros(batch, seq_len, dtype=torch.bool, device=h.device)
        is_cls[torch.arange(batch, device=h.device), cls_index] = True
        chosen = torch.zeros(dim, dtype=torch.bool, device=h.device)
        chosen[dims] = True
        for where, row in ((is_cls, 0), (special & ~is_cls, 1)):
            value = torch.zeros(dim, dtype=h.dtype, device=h.device)
            if values is not None:
                value[dims] = torch.as_tensor(values[row], dtype=h.dtype, device=h.device)
            h = torch.where(where[..., None] & chosen, value, h)
        return h

    return replace


def ablate_dimensions(encoder: Encoder, text: str, dims, layer: int, mode: str = "zero", means=None,
                      max_tokens: int | None = None) -> Trace:  # fmt: skip
    """A Trace of ``text`` with hidden dimensions ``dims`` of the special tokens ([CLS] and
    the others, where the massive activations sit) set at hidden-state index ``layer`` to
    zero (``mode="zero"``) or to their corpus mean (``mode="mean"``: ``means`` [2, K] from
    :func:`dimension_means`, or None for a demo-corpus sample); the later blocks run on."""
    check_summary_token(encoder.info, "Ablating the massive dimensions of [CLS]")
    torch = _torch()
    if mode not in HEAD_MODES:
        raise InterventionError(f"mode={mode!r}: allowed are {', '.join(HEAD_MODES)}.")
    dims = check_dims(dims, encoder)
    try:
        layer = check_layer(int(layer), encoder.info.num_layers)
    except (IndexError, TypeError, ValueError) as exc:
        raise InterventionError(f"layer: {exc}") from None
    values = None
    if mode == "mean":
        values = dimension_means(encoder, demo_sample(), dims, layer) if means is None else check_dimension_means(means, dims)
    tt = tokenize(encoder, text, max_tokens)
    cls_index, _ = special_positions(tt, encoder.info)
    special = torch.as_tensor(tt.special_mask, device=encoder.device)[None]
    cls = torch.tensor([cls_index], device=encoder.device)
    return _traced_run(encoder, tt, replace={layer: special_replacer(dims, values, cls, special)})


# --- registers -------------------------------------------------------------------------------


def check_register_room(encoder: Encoder, num_tokens: int, k: int) -> None:
    """Raise :class:`~clsviz.blocks.InterventionError` when ``k`` registers after [CLS] would take
    a text of ``num_tokens`` tokens (special tokens included) past the model's length limit."""
    limit = encoder.info.max_tokens
    if num_tokens + k > limit:
        raise InterventionError(
            f"{k} register(s) after [CLS] make {num_tokens + k} tokens, more than this model's limit of {limit}. "
            f"Use at most {max(0, limit - num_tokens)} register(s) or a shorter text."
        )


def register_tokens(encoder: Encoder, k: int) -> tuple[list[int], str]:
    """The ids of ``k`` register tokens and a sentence saying which: the unused vocabulary
    entries [unused0].. when the vocabulary has them (BERT), else the [CLS]-like token repeated."""
    tok = encoder.tokenizer
    names = [f"[unused{i}]" for i in range(max(int(k), 1))]
    with encoder.lock:
        ids = tok.convert_tokens_to_ids(names)
    if all(i is not None and i != tok.unk_token_id for i in ids):
        return ids[: int(k)], "unused vocabulary entries ([unused0], [unused1], ...), never seen in training"
    cls = encoder.info.cls_token
    return [encoder.info.cls_token_id] * int(k), f"copies of the [CLS]-like token {cls} (this vocabulary has no unused entries)"


def add_registers(encoder: Encoder, text: str, k: int, max_tokens: int | None = None) -> Trace:
    """A Trace of ``text`` with ``k`` register tokens (:func:`register_tokens`) right after
    [CLS]; they count as special tokens (``special_mask``). Raises :class:`InterventionError`
    when the text and the registers together exceed the model's length limit."""
    check_summary_token(encoder.info, "Adding registers after [CLS]")
    k = int(k)
    if k < 0:
        raise InterventionError(f"k={k}: the number of registers must be 0 or more.")
    tt = tokenize(encoder, text, max_tokens)
    check_register_room(encoder, len(tt.tokens), k)
    # The first special copy of the [CLS] token stays the [CLS] (repeated copies come after it).
    cls_index, _ = special_positions(tt, encoder.info)
    ids, _ = register_tokens(encoder, k)
    at = cls_index + 1
    with encoder.lock:
        names = tuple(encoder.tokenizer.convert_ids_to_tokens(ids))

    def insert(a, values):
        return np.concatenate([a[:at], np.asarray(values, dtype=a.dtype).reshape(-1, *a.shape[1:]), a[at:]])

    with_regs = TokenizedText(
        text=tt.text, tokens=tt.tokens[:at] + names + tt.tokens[at:], input_ids=insert(tt.input_ids, ids),
        special_mask=insert(tt.special_mask, [True] * k), offsets=insert(tt.offsets, [0, 0] * k),
        word_ids=tt.word_ids[:at] + (None,) * k + tt.word_ids[at:], truncated=tt.truncated,
        num_text_tokens=tt.num_text_tokens,
    )  # fmt: skip
    return _traced_run(encoder, with_regs)
