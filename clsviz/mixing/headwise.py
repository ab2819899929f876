"""Per-head weights: raw attention and value-norm weighted attention, [L, H, T, T].

Raw attention weights ignore the size of what a head copies; value-norm weighting
(Kobayashi et al. 2020, "Attention is Not Only a Weight") multiplies each weight by the norm
of the vector the head actually writes for that key.

* :data:`ATTENTION_METHODS` / :func:`attention_weights` - [L, H, T, T] weights of one method
* :func:`value_weighted_attention` - [L, H, T, T] ``||alpha_ij^h f_h(x_j)||``
"""

from __future__ import annotations

import numpy as np

from ..metrics import normalize_rows
from ..tracing import Trace

__all__ = ["ATTENTION_METHODS", "attention_weights", "check_attention_method", "value_weighted_attention"]

ATTENTION_METHODS = ("attention", "value_norm")
"""``"attention"``: softmax weights alpha. ``"value_norm"``: ||alpha f(x)|| per row, normalised to
sum to 1 (the share of each key token in the size of what the head writes)."""


def check_attention_method(method: str) -> str:
    """``method`` if it is one of :data:`ATTENTION_METHODS`, else ValueError listing them."""
    if method not in ATTENTION_METHODS:
        raise ValueError(f"Unknown attention method '{method}'; choose one of {', '.join(ATTENTION_METHODS)}.")
    return method


def _value_and_output_layers(encoder) -> list[tuple[object, object]]:
    """(value Linear, output-projection Linear) of each attention layer, in order."""
    model = encoder.model
    num_layers = encoder.info.num_layers
    enc = getattr(model, "encoder", None)
    layers = getattr(enc, "layer", None)
    if layers is not None and len(layers) and hasattr(layers[0], "attention"):
        attn = layers[0].attention
        if hasattr(getattr(attn, "self", None), "value") and hasattr(getattr(attn, "output", None), "dense"):
            return [(lay.attention.self.value, lay.attention.output.dense) for lay in layers]
    transformer = getattr(model, "transformer", None)
    layers = getattr(transformer, "layer", None)
    if layers is not None and len(layers) and hasattr(getattr(layers[0], "attention", None), "v_lin"):
        return [(lay.attention.v_lin, lay.attention.out_lin) for lay in layers]
    groups = getattr(enc, "albert_layer_groups", None)
    if groups is not None:
        config = model.config
        if any(len(g.albert_layers) != 1 for g in groups):
            raise ValueError(
                "Value-norm weighted attention supports ALBERT models with one layer per group "
                f"(inner_group_num=1); this one has inner_group_num={config.inner_group_num}."
            )
        per_group = num_layers / len(groups)
        picked = [groups[int(i / per_group)].albert_layers[0].attention for i in range(num_layers)]
        return [(att.value, att.dense) for att in picked]
    raise ValueError(
        "Value-norm weighted attention needs each layer's value and output-projection weights; "
        "clsviz knows where they are in BERT, RoBERTa, ELECTRA, DistilBERT and ALBERT models, "
        f"not in '{encoder.info.name}' (model type '{encoder.info.model_type}'). "
        "Use plain attention weights for this model."
    )


def value_weighted_attention(encoder, trace: Trace) -> np.ndarray:
    """Value-norm weighted attention ``||alpha_ij^h f_h(x_j)||`` (Kobayashi et al., 2020).

    ``f_h(x) = (x W_V^h + b_V^h) W_O^h`` is what head h writes for key token x: its value
    vector mapped through the head's slice of the attention output projection (the output
    bias is shared by all tokens and left out). Since alpha >= 0,
    ``||alpha_ij f_h(x_j)|| = alpha_ij * ||f_h(x_j)||``. ``x_j`` is the layer input
    ``trace.hidden_states[l]``, so the model is not run again.

    encoder: the Encoder that produced ``trace``. Returns float32 [L, H, T, T]. Raises
    ValueError for architectures whose value/output weights clsviz cannot locate.
    """
    import torch

    if trace.model_name != encoder.info.name:
        raise ValueError(
            f"The trace was made with '{trace.model_name}' but the encoder is '{encoder.info.name}'."
        )
    pairs = _value_and_output_layers(encoder)
    if len(pairs) != trace.num_layers:
        raise ValueError(f"Found {len(pairs)} attention layers in the model; the trace has {trace.num_layers}.")
    num_heads = trace.num_heads
    norms = np.empty((trace.num_layers, num_heads, trace.seq_len), dtype=np.float32)
    with torch.inference_mode():
        for layer, (value, output) in enumerate(pairs):
            weight = value.weight
            x = torch.as_tensor(trace.hidden_states[layer], device=weight.device, dtype=weight.dtype)
            head_dim = value.out_features // num_heads
            v = value(x).view(trace.seq_len, num_heads, head_dim).float()  # [T, H, d]
            w_o = output.weight.float().view(output.out_features, num_heads, head_dim)  # [D, H, d]
            # ||v_h W_O^h||^2 = v_h G_h v_h^T with G_h = W_O^h^T W_O^h: [H, d, d], cheaper than [H, T, D].
            gram = torch.einsum("dhk,dhm->hkm", w_o, w_o)
            sq = torch.einsum("thk,hkm,thm->ht", v, gram, v).clamp_min_(0.0)
            norms[layer] = sq.sqrt().cpu().numpy()
    return np.multiply(trace.attentions, norms[:, :, None, :], dtype=np.float32)  # one [L, H, T, T] array


def attention_weights(encoder, trace: Trace, method: str = "attention") -> np.ndarray:
    """float32 [L, H, T, T] weights of ``method`` (one of :data:`ATTENTION_METHODS`).

    "attention" is ``trace.attentions`` itself; "value_norm" is
    ``normalize_rows(value_weighted_attention(encoder, trace))``.
    """
    if method == "attention":
        return trace.attentions
    check_attention_method(method)
    return normalize_rows(value_weighted_attention(encoder, trace), inplace=True)


