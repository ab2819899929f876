"""Where fine-tuning writes (Merchant et al. 2020; Kovaleva et al. 2019): linear CKA of every
layer's token vectors between this model and a fine-tuned copy of it, on held-out sentences.

The copy is an input (``check_claims(finetuned=...)``: a folder or an Encoder), never a result
a session happened to compute. Texts it was trained on (its ``clsviz.json`` record,
:func:`clsviz.provenance.held_out`) are left out of the sample; a fine-tuned copy without a
record is said loudly. The deciding number, CKA of the lower third of the layers minus CKA of
the upper third, carries a 95% interval from 1,000 bootstrap resamples of the sentences (tokens
resampled with their sentence), computed with :class:`clsviz.compare.ResampledCKA` (the Gram form
of linear CKA, so a resample costs O(sentences²)).
"""

from __future__ import annotations

import numpy as np

from ..compare import ResampledCKA, resample_weights
from ..encoder import load_encoder
from ..narrative import describe_series, layer_span
from ..provenance import held_out
from ..vectors import hidden_batches, tokenize_texts
from ..verdicts import Estimate
from .claims import NOT_MEASURABLE, NOT_YET, Claim
from .measures import MAX_TOKENS, MEASURED, Context, Measurement, sample_texts

__all__ = ["TEXTS", "finetune_change", "layer_thirds", "token_states", "weighted_cka"]

TEXTS = 120
"""Sentences sampled for the comparison (before the fine-tuned copy's training texts are left out)."""
BOOTSTRAP = 1000


def layer_thirds(num_layers: int) -> tuple[list[int], list[int]]:
    """(lower, upper) thirds of layers 1..L."""
    k = max(1, num_layers // 3)
    layers = list(range(1, num_layers + 1))
    return layers[:k], layers[-k:]


def token_states(encoder, texts) -> tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]]:
    """(float64 [L+1, M, D] every content token's hidden states, int [M] its sentence, each
    sentence's content tokens as strings)."""
    import torch  # the model runs here; importing clsviz.literature stays light

    tok = tokenize_texts(encoder, list(texts), MAX_TOKENS)
    per_text: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for rows, hidden, _, mask, special in hidden_batches(encoder, tok.input_ids, tok.special_masks, 32):
            content = (mask & ~special).cpu().numpy()
            h = hidden.double().cpu().numpy()
            for j, r in enumerate(rows):
                per_text[int(r)] = h[j][:, content[j]]  # [L+1, T_j, D]
    states = np.concatenate([per_text[i] for i in range(len(texts))], axis=1)
    owner = np.concatenate([np.full(per_text[i].shape[1], i) for i in range(len(texts))])
    words = [tuple(encoder.tokenizer.convert_ids_to_tokens([int(x) for x, s in zip(ids, sp) if not s]))
             for ids, sp in zip(tok.input_ids, tok.special_masks)]  # fmt: skip
    return states, owner, words


def weighted_cka(X: np.ndarray, Y: np.ndarray, owner: np.ndarray, weights: np.ndarray) -> float:
    """Linear CKA of token rows X [M, D1] and Y [M, D2] when sentence i (``owner``) counts
    ``weights[i]`` times; with every weight 1 it is :func:`clsviz.compare.cka` of X and Y."""
    return ResampledCKA(X, Y, owner, len(weights))(weights)


def _finetuned(ctx: Context):
    given = ctx.finetuned
    return given if given is None or hasattr(given, "info") else load_encoder(str(given))


def finetune_change(claim: Claim, ctx: Context) -> Measurement:
    """CKA per layer between this model and a fine-tuned copy on held-out sentences: did the upper
    layers change more than the lower ones? (interval over the sentences)"""
    try:
        other = _finetuned(ctx)
    except (ValueError, OSError, RuntimeError) as exc:
        return Measurement(NOT_MEASURABLE, notes=(f"The fine-tuned copy could not be loaded: {exc}",))
    if other is None:
        return Measurement(NOT_YET, notes=(f"Not measured yet: {claim.to_measure[:1].lower()}{claim.to_measure[1:]}",))
    if other.info.num_layers != ctx.num_layers:
        return Measurement(NOT_MEASURABLE, notes=(f"The fine-tuned copy has {other.info.num_layers} layers and this "
                                                  f"model {ctx.num_layers}: its layers have no counterparts here.",))
    if ctx.num_layers < 2:
        return Measurement(NOT_MEASURABLE, notes=("lower and upper layers need at least two blocks; this model has one",))
    kept = held_out(sample_texts(ctx.corpus, TEXTS, ctx.seed), other)
    if len(kept.texts) < 10:
        return Measurement(NOT_MEASURABLE, notes=(f"Only {len(kept.texts)} sentences of the sample were not among the "
                                                  "fine-tuned copy's training texts; give a larger corpus.",))
    states_a, owner, words_a = token_states(ctx.encoder, kept.texts)
    states_b, _, words_b = token_states(other, kept.texts)
    if words_a != words_b:
        return Measurement(NOT_MEASURABLE, notes=("The two models split the sentences into different tokens, so their "
                                                  "token vectors cannot be paired.",))
    n = len(kept.texts)
    grams = [ResampledCKA(states_a[layer], states_b[layer], owner, n) for layer in range(ctx.num_layers + 1)]
    lower, upper = layer_thirds(ctx.num_layers)
    ones = np.ones(n)
    cka = np.array([g(ones) for g in grams])

    def gap(w):
        values = np.array([grams[layer](w) for layer in lower + upper])
        return values[: len(lower)].mean() - values[len(lower):].mean()

    draws = resample_weights(n, BOOTSTRAP, ctx.seed)
    boot = np.array([gap(w.astype(np.float64)) for w in draws])
    low, high = np.nanpercentile(boot, [2.5, 97.5])
    numbers = {"lower_minus_upper": Estimate(float(gap(ones)), float(low), float(high), n)}
    layers = list(range(1, ctx.num_layers + 1))
    value = (f"CKA with the fine-tuned copy {describe_series(cka[1:], layers, '.3f')}; {layer_span(lower)} "
             f"{np.mean(cka[lower]):.3f}, {layer_span(upper)} {np.mean(cka[upper]):.3f}; lower minus upper "
             f"{numbers['lower_minus_upper'].text('.3f')}")
    notes = tuple(x for x in (kept.note,) if x)
    return Measurement(MEASURED, value, numbers, "linear CKA of content-token vectors, layer l against layer l; "
                       "1,000 bootstrap resamples of the sentences", f"{n} corpus sentences, against {other.name}", notes)
