"""Every hidden state of padded batches, computed block by block into buffers reused from batch to batch.

Corpus extraction runs the whole model over thousands of texts. Run through the model's own
forward, each batch of long texts allocates fresh tensors of up to [B * T, F] floats per block
(100 MB at 64 texts of 256 tokens), and the C library hands allocations that large straight
back to the operating system when they are freed: every batch pays for zeroing fresh pages
again. Profiled on the long benchmark texts, page faults, copies of the biases into fresh
outputs and the final ``torch.stack`` of the hidden states took about a sixth of the time.
Here the same arithmetic (the same kernels: ``addmm`` with the bias, SDPA, LayerNorm, GELU, on
the model's own parameter tensors, read through :mod:`clsviz.architectures`) writes into one
:class:`Workspace` sized by the first (longest) batch of a length-sorted run, and each block's
output lands directly in the stacked [L + 1, B, T, D] array.

For every family of :data:`clsviz.architectures.SUPPORTED_FAMILIES`; other models raise
:class:`clsviz.architectures.BlockStructureError` (callers fall back to the model's forward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .architectures import block_weights
from .blocks import embed
from .layers import block_of_row

__all__ = ["BlockRunner", "Workspace", "hidden_states"]


class Workspace:
    """Named buffers that grow to the largest request and are reused for smaller ones.

    One per run over a corpus (never shared between threads): the tensors a call returns are
    views into it and are overwritten by the next call."""

    def __init__(self, device, dtype) -> None:
        self.device, self.dtype = device, dtype
        self._buffers: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A tensor of ``shape`` (uninitialised) backed by buffer ``name``."""
        size = 1
        for s in shape:
            size *= int(s)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < size:
            buf = self._buffers[name] = torch.empty(size, device=self.device, dtype=self.dtype)
        return buf[:size].view(shape)


def _fused_inputs(weights) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """{id(block): (W_qkv [3D, D], b_qkv [3D])}: the three input projections as one product."""
    return {id(w): (torch.cat([w.q_w, w.k_w, w.v_w]), torch.cat([w.q_b, w.k_b, w.v_b])) for w in weights}


def _is_exact_gelu(act) -> bool:
    name = type(act).__name__
    return act is F.gelu or (name == "GELU" and getattr(act, "approximate", "none") == "none") or (
        name == "GELUActivation" and getattr(act, "act", None) is F.gelu
    )


class BlockRunner:
    """The blocks of one encoder, ready to run batch after batch into one :class:`Workspace`."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.weights = block_weights(encoder)  # raises BlockStructureError for other families
        self.fused = _fused_inputs(self.weights)
        first = self.weights[0]
        self.workspace = Workspace(first.q_w.device, first.q_w.dtype)

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L + 1, T, D] (a view into the workspace): every hidden state of the padded batch
        ``ids`` [B, T] with ``mask`` [B, T] (True on real tokens), as the model computes them."""
        batch, seq_len = ids.shape
        weights, take = self.weights, self.workspace.take
        dim = weights[0].q_w.shape[1]
        rows = batch * seq_len
        hidden = take("hidden", (len(weights) + 1, rows, dim))
        hidden[0] = embed(self.encoder, ids, position_ids=positions).reshape(rows, dim)
        keep = mask[:, None, None, :]  # padding keys are never read
        for block, w in enumerate(weights):
            x = hidden[block]
            qkv_w, qkv_b = self.fused[id(w)]
            qkv = torch.addmm(qkv_b, x, qkv_w.t(), out=take("qkv", (rows, 3 * dim)))
            q, k, v = qkv.view(batch, seq_len, 3, w.num_heads, w.head_dim).permute(2, 0, 3, 1, 4)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # [B, H, T, dh]
            merged = take("context", (rows, dim))
            merged.view(batch, seq_len, w.num_heads, w.head_dim).copy_(context.transpose(1, 2))
            attended = torch.addmm(w.o_b, merged, w.o_w.t(), out=take("attended", (rows, dim))).add_(x)
            mid = F.layer_norm(attended, (dim,), w.ln1_w, w.ln1_b, w.ln1_eps)
            inner = torch.addmm(w.ff1_b, mid, w.ff1_w.t(), out=take("inner", (rows, w.ff1_w.shape[0])))
            inner = torch.ops.aten.gelu_(inner) if _is_exact_gelu(w.act) else w.act(inner)
            out = torch.addmm(w.ff2_b, inner, w.ff2_w.t(), out=take("ffn", (rows, dim))).add_(mid)
            hidden[block_of_row(block)] = F.layer_norm(out, (dim,), w.ln2_w, w.ln2_b, w.ln2_eps)
        return hidden.view(len(weights) + 1, batch, seq_len, dim).transpose(0, 1)


def hidden_states(encoder, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L + 1, T, D]: every hidden state of one padded batch (a fresh workspace; for many
    batches keep one :class:`BlockRunner`)."""
    return BlockRunner(encoder)(ids, mask, positions)
