"""Which encoder architectures clsviz can drive block by block, and their weights in one layout.

:func:`block_weights` reads a model's parameters as views (no copies) into one
:class:`BlockWeights` per block; :mod:`clsviz.blocks` runs them. Supported families
(``config.model_type``): BERT (and BERT-architecture models such as bge), RoBERTa, XLM-RoBERTa,
CamemBERT, ELECTRA, DistilBERT, and ALBERT with one layer per group (``inner_group_num=1``);
anything else raises :class:`BlockStructureError`. The reading is cached per model object
(weakly, nothing is set on the model).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, fields
from dataclasses import replace as _replace

import torch

__all__ = [
    "SUPPORTED_FAMILIES",
    "BlockStructureError",
    "BlockWeights",
    "EmbeddingWeights",
    "block_weights",
    "embedding_weights",
]

_BERT_LIKE = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
# Families whose position ids count from pad_token_id + 1 and skip padding tokens.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")
SUPPORTED_FAMILIES = (*_BERT_LIKE, "distilbert", "albert")
"""Model types (``config.model_type``) whose blocks clsviz can drive."""


class BlockStructureError(ValueError):
    """The model's architecture is not one whose blocks clsviz can run from the weights."""


@dataclass(frozen=True, eq=False)  # tensors: compare by identity
class BlockWeights:
    """One post-LN encoder block's parameters in one layout (torch Linear: ``y = x @ W.T + b``).

    Tensors taken from a model by :func:`block_weights` are views of its parameters (no
    copies): read them, never write them. ``q_w, k_w, v_w, o_w``: [D, D]; their biases [D];
    ``ff1_w``: [F, D], ``ff1_b``: [F]; ``ff2_w``: [D, F], ``ff2_b``: [D]; LayerNorm weights
    and biases [D]. ``act`` is the model's activation; ``ln1`` follows attention + residual,
    ``ln2`` follows the feed-forward + residual.
    """

    q_w: torch.Tensor
    q_b: torch.Tensor
    k_w: torch.Tensor
    k_b: torch.Tensor
    v_w: torch.Tensor
    v_b: torch.Tensor
    o_w: torch.Tensor
    o_b: torch.Tensor
    ln1_w: torch.Tensor
    ln1_b: torch.Tensor
    ln1_eps: float
    ff1_w: torch.Tensor
    ff1_b: torch.Tensor
    ff2_w: torch.Tensor
    ff2_b: torch.Tensor
    act: Callable[[torch.Tensor], torch.Tensor]
    ln2_w: torch.Tensor
    ln2_b: torch.Tensor
    ln2_eps: float
    num_heads: int
    head_dim: int

    def to(self, dtype=None, device=None) -> BlockWeights:
        """A copy with NEW tensors in ``dtype`` / on ``device``; the model is untouched."""
        new = {
            f.name: getattr(self, f.name).to(dtype=dtype, device=device, copy=True)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return _replace(self, **new)


@dataclass(frozen=True, eq=False)
class EmbeddingWeights:
    """The embedding layer's parameters (views, no copies; E = embedding size, D = hidden size).

    ``word`` [V, E], ``position`` [P, E], ``token_type`` [types, E] (None for DistilBERT),
    LayerNorm ``ln_w``, ``ln_b`` [E] and ``ln_eps``; ``proj_w`` [D, E] and ``proj_b`` [D] when
    the model projects embeddings to the hidden size (ELECTRA's ``embeddings_project``,
    ALBERT's ``embedding_hidden_mapping_in``), else None; ``pad_offset`` is the padding index
    for RoBERTa-style positions (they count from ``pad_offset + 1``), None for plain 0..T-1.
    """

    word: torch.Tensor
    position: torch.Tensor
    token_type: torch.Tensor | None
    ln_w: torch.Tensor
    ln_b: torch.Tensor
    ln_eps: float
    proj_w: torch.Tensor | None
    proj_b: torch.Tensor | None
    pad_offset: int | None


@dataclass(frozen=True, eq=False)
class _Structure:
    family: str
    embed: EmbeddingWeights
    blocks: tuple[BlockWeights, ...]


# --- reading the weights out of the model ------------------------------------------------


def _v(param) -> torch.Tensor:
    return param.detach()  # a view sharing the parameter's storage: no copy, no autograd link


def _linear(mod) -> tuple[torch.Tensor, torch.Tensor]:
    return _v(mod.weight), _v(mod.bias)


def _ln(mod) -> tuple[torch.Tensor, torch.Tensor, float]:
    return _v(mod.weight), _v(mod.bias), float(mod.eps)


def _block(heads, q, k, v, o, ln1, ff1, act, ff2, ln2) -> BlockWeights:
    q_w, q_b = _linear(q)
    k_w, k_b = _linear(k)
    v_w, v_b = _linear(v)
    o_w, o_b = _linear(o)
    ff1_w, ff1_b = _linear(ff1)
    ff2_w, ff2_b = _linear(ff2)
    ln1_w, ln1_b, ln1_eps = _ln(ln1)
    ln2_w, ln2_b, ln2_eps = _ln(ln2)
    return BlockWeights(
        q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln1_w, ln1_b, ln1_eps,
        ff1_w, ff1_b, ff2_w, ff2_b, act, ln2_w, ln2_b, ln2_eps,
        num_heads=int(heads), head_dim=int(q_w.shape[0]) // int(heads),
    )  # fmt: skip


def _blocks_of(family: str, model, cfg) -> tuple[BlockWeights, ...]:
    if family in _BERT_LIKE:
        return tuple(
            _block(cfg.num_attention_heads, a.self.query, a.self.key, a.self.value, a.output.dense,
                   a.output.LayerNorm, lay.intermediate.dense, lay.intermediate.intermediate_act_fn,
                   lay.output.dense, lay.output.LayerNorm)
            for lay in model.encoder.layer
            for a in (lay.attention,)
        )  # fmt: skip
    if family == "distilbert":
        return tuple(
            _block(cfg.n_heads, a.q_lin, a.k_lin, a.v_lin, a.out_lin, lay.sa_layer_norm,
                   lay.ffn.lin1, lay.ffn.activation, lay.ffn.lin2, lay.output_layer_norm)
            for lay in model.transformer.layer
            for a in (lay.attention,)
        )  # fmt: skip
    groups = [
        _block(cfg.num_attention_heads, a.query, a.key, a.value, a.dense, a.LayerNorm,
               lay.ffn, lay.activation, lay.ffn_output, lay.full_layer_layer_norm)
        for g in model.encoder.albert_layer_groups
        for lay in g.albert_layers
        for a in (lay.attention,)
    ]  # fmt: skip
    # The model's own rule for which shared group runs as block i (AlbertTransformer.forward).
    n, g = cfg.num_hidden_layers, cfg.num_hidden_groups
    return tuple(groups[int(i / (n / g))] for i in range(n))


def _embed_of(family: str, model) -> EmbeddingWeights:
    e = model.embeddings
    proj = None
    if family == "electra" and hasattr(model, "embeddings_project"):
        proj = model.embeddings_project
    elif family == "albert":
        proj = model.encoder.embedding_hidden_mapping_in
    tt = getattr(e, "token_type_embeddings", None)
    return EmbeddingWeights(
        word=_v(e.word_embeddings.weight),
        position=_v(e.position_embeddings.weight),
        token_type=None if tt is None else _v(tt.weight),
        ln_w=_v(e.LayerNorm.weight),
        ln_b=_v(e.LayerNorm.bias),
        ln_eps=float(e.LayerNorm.eps),
        proj_w=None if proj is None else _v(proj.weight),
        proj_b=None if proj is None else _v(proj.bias),
        pad_offset=int(e.padding_idx) if family in _OFFSET_POSITIONS else None,
    )


def _read_structure(model) -> _Structure:
    base = getattr(model, "base_model", model)
    cfg = base.config
    family = str(getattr(cfg, "model_type", "unknown"))
    name = type(base).__name__
    if family not in SUPPORTED_FAMILIES:
        raise BlockStructureError(
            f"clsviz cannot run the blocks of this model: it is a '{family}' model ({name}), and "
            f"block-by-block interventions support only these families: {', '.join(SUPPORTED_FAMILIES)}. "
            "Architectures with relative position terms inside attention (DeBERTa, MPNet, ...) differ "
            "from the BERT block. Pick a model of a supported family for the causal tools."
        )
    if getattr(cfg, "is_decoder", False):
        raise BlockStructureError(
            f"This {family} model is configured as a decoder (is_decoder=True, causal attention); "
            "clsviz runs bidirectional encoder blocks only. Load the model as an encoder."
        )
    if family == "albert" and int(getattr(cfg, "inner_group_num", 1)) != 1:
        raise BlockStructureError(
            f"This ALBERT model has inner_group_num={cfg.inner_group_num}: each of its blocks stacks "
            "several layers, which clsviz does not drive. Only ALBERT models with inner_group_num=1 "
            "(the setting of the published ALBERT checkpoints) are supported."
        )
    try:
        with torch.inference_mode(False):  # plain views, usable with autograd later
            return _Structure(family, _embed_of(family, base), _blocks_of(family, base, cfg))
    except AttributeError as exc:
        raise BlockStructureError(
            f"This '{family}' model ({name}) does not have the module layout of its family in "
            f"transformers ({exc}); clsviz cannot find its block weights."
        ) from exc


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _structure(encoder) -> _Structure:
    # Keyed weakly by the model object (nothing is set on it); the cached views hold the
    # parameter storage, not the module, so a dropped model is collected as usual.
    model = encoder.model
    with _CACHE_LOCK:
        hit = _CACHE.get(model)
    if hit is None:
        hit = _read_structure(model)
        with _CACHE_LOCK:
            hit = _CACHE.setdefault(model, hit)
    return hit


def block_weights(encoder) -> list[BlockWeights]:
    """One :class:`BlockWeights` per block, block 1 first (ALBERT repeats its shared layer).

    Raises :class:`BlockStructureError` for an unsupported architecture.
    """
    return list(_structure(encoder).blocks)


def embedding_weights(encoder) -> EmbeddingWeights:
    """The embedding layer's weights (views) of ``encoder``'s model; see :class:`EmbeddingWeights`."""
    return _structure(encoder).embed
