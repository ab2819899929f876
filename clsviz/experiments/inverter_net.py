"""The inverter's network: a small causal transformer decoder conditioned on a sentence vector
through a learned prefix, and its batched greedy decoding.

The decoder writes word pieces of the encoder's own tokenizer, restricted to the pieces of its
training texts (the *decoder vocabulary*: a piece it never saw has an untrained output row, so
it is left out and the softmax stays small enough to train on a CPU). The vector enters as
``prefix`` learned embeddings in front of the tokens: an MLP maps the standardised target
vector - and, for a correction step, the standardised vector of the previous hypothesis and
their difference (vec2text's idea, Morris et al. 2023) - to ``prefix x d_model`` numbers.

Parameters are drawn from a private ``torch.Generator`` (not the global random state), and the
network has no dropout, so training is deterministic for a seed even while other threads use
torch's global generator.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PrefixDecoder", "greedy_decode"]


class PrefixDecoder(nn.Module):
    """Causal transformer over ``[prefix; BOS; tokens]`` with tied input / output embeddings.

    Parameters
    ----------
    vector_size : int
        D, the size of the sentence vectors it reads.
    vocab_size : int
        V, the decoder vocabulary (local ids 0..V-1).
    d_model, num_layers, num_heads : int
        Width, depth and heads of the decoder (``4 * d_model`` feed-forward width).
    prefix : int
        Number of prefix positions the vector is mapped to.
    max_tokens : int
        Longest token sequence it writes (BOS and EOS not counted).
    seed : int
        Seed of the parameter draw.
    """

    def __init__(self, vector_size: int, vocab_size: int, d_model: int = 128, num_layers: int = 2,
                 num_heads: int = 4, prefix: int = 4, max_tokens: int = 32, seed: int = 0):
        super().__init__()
        self.config = {"vector_size": int(vector_size), "vocab_size": int(vocab_size), "d_model": int(d_model),
                       "num_layers": int(num_layers), "num_heads": int(num_heads), "prefix": int(prefix),
                       "max_tokens": int(max_tokens)}  # what rebuilds this network, without its weights
        self.vector_size, self.vocab_size, self.d_model = int(vector_size), int(vocab_size), int(d_model)
        self.prefix, self.max_tokens = int(prefix), int(max_tokens)
        hidden = 4 * self.d_model
        # Target vector, previous hypothesis' vector, their difference, and a "has a hypothesis" flag.
        self.condition = nn.Sequential(
            nn.Linear(3 * self.vector_size + 1, hidden), nn.GELU(), nn.Linear(hidden, self.prefix * self.d_model)
        )
        self.tokens = nn.Embedding(self.vocab_size, self.d_model)
        self.positions = nn.Embedding(self.prefix + self.max_tokens + 2, self.d_model)
        layer = nn.TransformerEncoderLayer(self.d_model, num_heads, hidden, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(self.d_model)
        self._init_parameters(seed)

    def _init_parameters(self, seed: int) -> None:
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.ndim == 1:  # layer-norm gains
                    p.fill_(1.0)
                else:
                    std = 0.02 if "tokens" in name or "positions" in name else 1.0 / math.sqrt(p.shape[1])
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def conditioning(self, target, hypothesis=None):
        """float [B, 3D + 1] inputs of the prefix MLP from standardised vectors [B, D]."""
        if hypothesis is None:
            zeros = torch.zeros_like(target)
            return torch.cat([target, zeros, zeros, torch.zeros_like(target[:, :1])], dim=1)
        has = torch.ones_like(target[:, :1])
        return torch.cat([target, hypothesis, target - hypothesis, has], dim=1)

    def forward(self, condition, tokens):
        """Logits [B, T, V] for the next piece at each of ``tokens`` [B, T] (long, BOS first),
        conditioned on ``condition`` [B, 3D + 1] (:meth:`conditioning`)."""
        b, t = tokens.shape
        prefix = self.condition(condition).view(b, self.prefix, self.d_model)
        x = torch.cat([prefix, self.tokens(tokens)], dim=1)
        x = x + self.positions(torch.arange(x.shape[1], device=x.device))[None]
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device, dtype=x.dtype)
        h = self.norm(self.blocks(x, mask=mask, is_causal=True))[:, self.prefix:]
        return h @ self.tokens.weight.T


def greedy_decode(net: PrefixDecoder, condition, bos: int, eos: int, max_tokens: int | None = None,
                  banned=()) -> list[list[int]]:
    """The most likely piece at every step, for a batch of conditions [B, 3D + 1].

    Stops a row at ``eos`` (not included) or after ``max_tokens`` pieces; ``banned`` local ids
    (BOS, padding) are never written. Returns one list of local ids per row.
    """
    limit = net.max_tokens if max_tokens is None else min(int(max_tokens), net.max_tokens)
    b = condition.shape[0]
    tokens = torch.full((b, 1), int(bos), dtype=torch.long, device=condition.device)
    done = torch.zeros(b, dtype=torch.bool, device=condition.device)
    with torch.inference_mode():
        for _ in range(limit + 1):
            logits = net(condition, tokens)[:, -1]
            for j in banned:
                logits[:, j] = -math.inf
            if tokens.shape[1] > limit:  # only EOS may follow the longest sequence
                nxt = torch.full((b,), int(eos), dtype=torch.long, device=condition.device)
            else:
                nxt = logits.argmax(dim=-1)
            nxt = torch.where(done, torch.full_like(nxt, int(eos)), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= nxt == eos
            if bool(done.all()):
                break
    out = []
    for row in tokens[:, 1:].tolist():
        out.append(row[: row.index(eos)] if eos in row else row)
    return out
