"""A random content token per text: the "could *any* token do?" reading of the probe.

The token is chosen with a generator seeded by the text itself, so the same sentence gets the
same token in any corpus and any run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..encoder import Encoder
from ..vectors import hidden_batches, pick_random_content, tokenize_texts
from .probe import ProbeError

__all__ = ["random_content_positions", "random_token_vectors"]


def _pick_positions(texts: Sequence[str], special_masks, seed: int) -> np.ndarray:
    try:
        return pick_random_content(texts, special_masks, seed)
    except ValueError as exc:  # a text without content tokens: the probe's own error
        raise ProbeError(str(exc)) from None


def random_content_positions(
    encoder: Encoder, texts: Sequence[str], seed: int = 0, max_tokens: int | None = None
) -> np.ndarray:
    """int64 [N]: for each text, the position (special tokens counted) of one content token
    chosen at random with a generator seeded by ``(seed, crc32(text))``."""
    tokenized = tokenize_texts(encoder, texts, max_tokens)
    return _pick_positions(tokenized.texts, tokenized.special_masks, seed)


def random_token_vectors(
    encoder: Encoder,
    texts: Sequence[str],
    seed: int = 0,
    batch_size: int = 32,
    max_tokens: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """float32 [N, L + 1, D]: each text's randomly chosen content token at every layer.

    The token is the one :func:`random_content_positions` picks. Texts run in length-sorted
    batches with the model's fast attention kernel; ``progress(done, total)`` after each batch.
    """
    import torch

    tokenized = tokenize_texts(encoder, texts, max_tokens)
    positions = _pick_positions(tokenized.texts, tokenized.special_masks, seed)
    info = encoder.info
    n = len(tokenized.texts)
    out = np.empty((n, info.num_layers + 1, info.hidden_size), dtype=np.float32)
    done = 0
    with torch.inference_mode():
        for rows, hidden, *_ in hidden_batches(encoder, tokenized.input_ids, tokenized.special_masks, batch_size):
            pos = torch.as_tensor(positions[rows], device=hidden.device)
            out[rows] = hidden[torch.arange(len(rows), device=hidden.device), :, pos, :].float().cpu().numpy()
            done += len(rows)
            if progress is not None:
                progress(done, n)
    return out


