"""Value zeroing (Mohebbi et al. 2023): rerun a whole block with one token's values zeroed.

For block ``l`` and contributing token ``j``, the block - attention, residual, LayerNorm,
feed-forward, LayerNorm - runs again on its own input with ``j``'s value vector zeroed in every
head, so no token can read ``j`` (``j`` itself still keeps its residual). The raw score of
receiving token ``i`` is ``1 - cos(out_i, out_i without j's values)``.

On the bundled model these changes are tiny (1 - cos of about 1e-8 to 1e-5 for the [CLS] output
of blocks 1-5), below float32 resolution, so blocks run in float64 from float64 copies of the
weights. The ``T`` reruns of a block are one batched :func:`clsviz.blocks.run_block` call
(batch element ``b`` zeroes token ``b``), split into chunks so that a 512-token input stays
inside a memory budget.
"""

from __future__ import annotations

import numpy as np

from ..progress import check_cancel
from .decomposition import DEFAULT_BUDGET

__all__ = ["BARELY_MIXES", "reruns_per_chunk", "value_zeroing_scores"]

BARELY_MIXES = 1e-5
"""A block whose largest value-zeroing score for a receiving token is below this
(``1 - cos < 1e-5``) barely mixes other tokens into it."""


def reruns_per_chunk(seq_len: int, hidden_size: int, num_heads: int, ffn_size: int,
                     budget: int = DEFAULT_BUDGET) -> int:  # fmt: skip
    """How many reruns of one block fit in ``budget`` bytes at once (float64 activations:
    attention scores and probabilities [H, T, T] plus the block's [T, D] and [T, F] states)."""
    per_rerun = 8 * (3 * num_heads * seq_len**2 + 12 * seq_len * hidden_size + 3 * seq_len * ffn_size)
    return int(max(1, min(seq_len, budget // per_rerun)))


def value_zeroing_scores(encoder, trace, progress=None, cancel=None, budget: int = DEFAULT_BUDGET) -> np.ndarray:
    """float64 [L, T, T]: ``1 - cos`` between each block output and the output with one
    token's values zeroed (row i = receiving token, column j = the zeroed token).

    ``progress(done, total, message)`` is called after each chunk of reruns; ``cancel`` (a
    ``threading.Event``) stops between chunks. Raises :class:`clsviz.blocks.BlockStructureError`
    for a family whose blocks clsviz cannot run.
    """
    import torch
    import torch.nn.functional as F

    from ..blocks import block_weights, run_block

    weights = block_weights(encoder)
    num_layers, seq_len = trace.num_layers, trace.seq_len
    first = weights[0]
    step = reruns_per_chunk(seq_len, first.q_w.shape[0], first.num_heads, first.ff1_w.shape[0], budget)
    chunks = -(-seq_len // step)
    scores = np.zeros((num_layers, seq_len, seq_len))
    cast: dict[int, object] = {}  # ALBERT repeats one shared block: cast it once
    device = first.q_w.device
    with torch.inference_mode():
        for layer in range(num_layers):
            w = weights[layer]
            if id(w) not in cast:
                cast[id(w)] = w.to(dtype=torch.float64)
            w64 = cast[id(w)]
            x = torch.as_tensor(trace.hidden_states[layer], device=device).to(torch.float64)[None]
            base = run_block(w64, x)  # [1, T, D]
            for c, start in enumerate(range(0, seq_len, step)):
                check_cancel(cancel, "Value zeroing")
                zeroed = torch.arange(start, min(seq_len, start + step), device=device)
                scale = torch.ones(len(zeroed), seq_len, dtype=torch.float64, device=device)
                scale[torch.arange(len(zeroed), device=device), zeroed] = 0.0
                altered = run_block(w64, x.expand(len(zeroed), -1, -1), value_scale=scale)  # [B, T, D]
                cos = F.cosine_similarity(altered, base, dim=-1).clamp(-1.0, 1.0)  # [B, T]: B zeroed, T receiving
                scores[layer, :, start : start + len(zeroed)] = (1.0 - cos).T.cpu().numpy()
                if progress is not None:
                    progress(layer * chunks + c + 1, num_layers * chunks, f"Value zeroing: block {layer + 1} of {num_layers}")
    return scores
